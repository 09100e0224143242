"""ODE solver recipes side by side: what each costs and what it keeps, per family, dataset and seed.

    python -m core.bench recipes --out runs/recipes --json recipes.json            # the whole grid
    python -m core.bench recipes --out runs/recipes --report-only                  # the table from the folders

Every ODE family (NODE, ANODE, HomoODE with fixed and learned start) is trained with every recipe for the
same number of steps, each cell an ordinary run folder ``OUT/<dataset>-<model>-<recipe>-s<seed>/`` written
by a fresh ``python -m core.train`` process. Started again, finished cells are skipped and an unfinished
one starts over, so the grid can be spread over several sessions (commit the folders' small files).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import ODE_RECIPES, PAPER_ODE_RECIPE, ODEConfig
from ..training import DEVICES, RunDir, atomic_write_json
from .models import MODEL_VARIANTS, _log, _payload

#: The ODE models of ``core.bench models`` (the DEQ has no ODE solver).
ODE_MODELS = tuple(name for name in MODEL_VARIANTS if name != "deq")
#: Recipes measured besides the named ones of ``core.models.ODE_RECIPES``: more rk4 steps, and a cheaper
#: adaptive setting (bosh3, third order, 3 evaluations a step, at the paper's tolerance).
EXTRA_RECIPES: dict[str, ODEConfig] = {
    "rk4x2": ODEConfig(method="rk4", n_steps=2),
    "rk4x4": ODEConfig(method="rk4", n_steps=4),
    "bosh3": ODEConfig(method="bosh3", rtol=1e-3, atol=1e-3),
}
RECIPES: dict[str, ODEConfig] = {**ODE_RECIPES, **EXTRA_RECIPES}
#: Seconds one field evaluation of an image28 model costs per training step of batch 64 on 2 CPU threads
#: (measured: HomoODE with dopri5, 152 s / 300 steps / 25.4 NFE), and the forward NFE each adaptive recipe
#: took there: only for the estimate printed before the grid starts.
_SECONDS_PER_NFE = 0.02
_ADAPTIVE_NFE_GUESS = 26.0


def recipe_flags(recipe: ODEConfig) -> list[str]:
    """The ``python -m core.train`` flags that select ``recipe``."""
    if recipe.adaptive:
        return ["--ode-method", recipe.method, "--rtol", repr(recipe.rtol), "--atol", repr(recipe.atol)]
    return ["--ode-method", recipe.method, "--n-steps", str(recipe.n_steps)]


def recipe_nfe(recipe: ODEConfig) -> float:
    """Forward field evaluations per solve: exact for a fixed-step method, a guess for an adaptive one."""
    per_step = {"euler": 1, "midpoint": 2, "rk4": 4, "explicit_adams": 1, "implicit_adams": 1}
    if recipe.adaptive:
        return _ADAPTIVE_NFE_GUESS
    return float(per_step.get(recipe.method, 4) * recipe.n_steps)


@dataclass(frozen=True)
class Cell:
    dataset: str
    model: str
    recipe: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model}-{self.recipe}-s{self.seed}"


def plan(args: argparse.Namespace) -> list[Cell]:
    """Seed by seed, so that a grid stopped half-way has whole seeds to compare."""
    return [
        Cell(dataset, model, recipe, seed)
        for seed in args.seeds
        for dataset in args.datasets
        for recipe in args.recipes
        for model in args.models
    ]


def finished_summary(folder: Path) -> dict[str, Any] | None:
    """The summary of the finished run in ``folder`` (all its steps, tested), or None."""
    summary = RunDir(folder).read_summary() if (folder / "summary.json").is_file() else {}
    return summary if summary.get("stopped") is False and summary.get("test_accuracy") is not None else None


def run_cell(cell: Cell, args: argparse.Namespace) -> dict[str, Any] | None:
    """Train one cell in a fresh process (unless its folder holds a finished run); its record, or None."""
    folder = args.out / cell.name
    if finished_summary(folder) is None:
        family, extra = MODEL_VARIANTS[cell.model]
        cmd = [
            sys.executable, "-m", "core.train", "--model", family, "--dataset", cell.dataset,
            "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--seed", str(cell.seed), "--threads", str(args.threads), "--device", args.device,
            "--eval-every", str(args.eval_every), "--eval-batches", str(args.eval_batches),
            "--test-limit", str(args.test_limit), "--out", str(folder), "--overwrite", "--quiet",
            *extra, *recipe_flags(RECIPES[cell.recipe]),
        ]  # fmt: skip
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        _log(f"{cell.name}: start (load {_load():.2f})")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            _log(f"{cell.name}: failed\n{proc.stderr[-1500:]}")
            return None
    return record(cell, folder)


def record(cell: Cell, folder: Path) -> dict[str, Any] | None:
    s = finished_summary(folder)
    if s is None:
        return None
    return {
        "dataset": cell.dataset,
        "model": cell.model,
        "recipe": cell.recipe,
        "seed": cell.seed,
        "test_accuracy": s["test_accuracy"],
        "test_examples": s.get("test_examples"),
        "nfe_forward": s["mean_nfe_forward"],
        "nfe_backward": s["mean_nfe_backward"],
        "train_seconds": s["train_seconds"],
        "steps": s["steps"],
    }


def _load() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def recipes_table(records: list[dict[str, Any]], reference: str = PAPER_ODE_RECIPE) -> str:
    """Per dataset, one row per model and recipe: test accuracy mean ± std over seeds, forward NFE, training
    seconds, time and accuracy against the ``reference`` recipe of the same model and seeds. "within noise":
    the accuracy difference is at most √(std_a² + std_b²) (the study's rule), with ≥ 2 seeds on each side."""
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        out.append(f"\n**{dataset}**\n")
        out.append(
            "| model | recipe | seeds | test acc (%) | NFE fwd | train s | time vs "
            f"{reference} | acc − {reference} (points) |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---|")
        mine = [r for r in records if r["dataset"] == dataset]
        for model in dict.fromkeys(r["model"] for r in mine):
            ref = [r for r in mine if r["model"] == model and r["recipe"] == reference]
            for recipe in dict.fromkeys(r["recipe"] for r in mine if r["model"] == model):
                rows = [r for r in mine if r["model"] == model and r["recipe"] == recipe]
                acc, acc_sd = _mean_std([100 * r["test_accuracy"] for r in rows])
                nfe = statistics.fmean(r["nfe_forward"] for r in rows)
                secs = statistics.fmean(r["train_seconds"] for r in rows)
                ratio = diff = "–"
                if ref and recipe != reference:
                    ref_acc, ref_sd = _mean_std([100 * r["test_accuracy"] for r in ref])
                    ratio = f"{secs / statistics.fmean(r['train_seconds'] for r in ref):.2f}×"
                    noise = math.hypot(acc_sd, ref_sd)
                    verdict = ""
                    if len(rows) > 1 and len(ref) > 1:
                        verdict = " (within noise)" if abs(acc - ref_acc) <= noise else " (beyond noise)"
                    diff = f"{acc - ref_acc:+.2f}{verdict}"
                sd = "" if math.isnan(acc_sd) else f" ± {acc_sd:.2f}"
                out.append(
                    f"| {model} | {recipe} | {len(rows)} | {acc:.2f}{sd} | {nfe:.1f} | {secs:.0f} | {ratio} | {diff} |"
                )
    return "\n".join(out)


def run_recipes(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    cells = plan(args)
    if not args.report_only:
        todo = [c for c in cells if finished_summary(args.out / c.name) is None]
        estimate = sum(args.steps * recipe_nfe(RECIPES[c.recipe]) * _SECONDS_PER_NFE for c in todo) / args.jobs
        _log(
            f"{len(cells)} cells, {len(cells) - len(todo)} already finished; the rest: roughly {estimate / 60:.0f} "
            f"min of training with {args.jobs} at once (from {_SECONDS_PER_NFE} s per field evaluation per step on "
            "2 threads; evaluation comes on top)"
        )
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda c: run_cell(c, args), todo))
    records = [r for c in cells if (r := record(c, args.out / c.name)) is not None]
    settings = {
        k: getattr(args, k)
        for k in ("datasets", "models", "recipes", "seeds", "steps", "batch_size", "lr", "threads", "jobs")
    }
    settings["recipe_settings"] = {name: RECIPES[name].__dict__ for name in args.recipes}
    payload = _payload("recipes", args, records, start, settings=settings, cells=len(cells))
    if args.json:
        atomic_write_json(args.json, payload)
    print(f"{len(records)} of {len(cells)} cells finished")
    print(recipes_table(records))
    return 0 if len(records) == len(cells) else 1


def _add_recipes_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "recipes",
        help="every ODE family x solver recipe x seed x dataset: accuracy, NFE and time at equal steps",
        description="Train each ODE model with each solver recipe for the same steps, in fresh processes, one run "
        "folder per cell (resumable); print a markdown table of mean ± std over seeds.",
    )
    p.add_argument("--out", type=Path, default=Path("runs/recipes"), help="folder of the cells' run folders")
    p.add_argument("--json", metavar="PATH", help="write the records here (atomically)")
    p.add_argument("--report-only", action="store_true", help="only read the finished cells and print the table")
    p.add_argument("--datasets", nargs="+", default=["digits", "fashion-mnist"])
    p.add_argument("--models", nargs="+", choices=ODE_MODELS, default=list(ODE_MODELS), metavar="MODEL")
    p.add_argument("--recipes", nargs="+", choices=tuple(RECIPES), default=list(RECIPES), metavar="RECIPE")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-every", type=int, default=100, help="validate every N steps (the best model is tested)")
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--test-limit", type=int, default=2000, help="test examples (a stratified sample)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of each run")
    p.add_argument("--jobs", type=int, default=1, help="runs at once (with --threads 1 each on 2 cores: 2)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--data-dir", help="folder with standard dataset files")
    p.set_defaults(func=run_recipes, check=_check_recipes, parser=p)


def _check_recipes(args: argparse.Namespace) -> str | None:
    if min(args.steps, args.batch_size, args.threads, args.jobs, args.eval_batches, args.test_limit) < 1:
        return "--steps, --batch-size, --threads, --jobs, --eval-batches and --test-limit must be >= 1"
    if args.lr <= 0 or args.eval_every < 0:
        return "--lr must be > 0 and --eval-every >= 0"
    if len(set(args.seeds)) != len(args.seeds):
        return f"seeds must differ, got {args.seeds}"
    from .. import data as data_lib

    for name in args.datasets:
        try:
            data_lib.dataset_info(name)
        except ValueError as err:
            return str(err)
    if not args.report_only:
        for name in args.datasets:
            if not data_lib.is_available(name, args.data_dir):
                return data_lib.sources.unavailable_message(name, args.data_dir)
    return None


SUBCOMMANDS = (_add_recipes_parser,)
