"""Model benchmarks: the families side by side under one time budget, and training memory.

    python -m core.bench models --dataset digits --budget-seconds 180 --json models.json
    python -m core.bench memory --json memory.json

Each measurement runs in a fresh subprocess, so peak memory (CUDA max_memory_allocated, or the
process's peak RSS on the CPU) belongs to that measurement alone and no run warms another's caches.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import subprocess
import sys
import tempfile
import time
from typing import Any

from ..training import DEVICES, RunDir, atomic_write_json
from .solvers import machine_info

#: name -> (family, extra core.train flags). DEQ: Anderson forward, implicit backward (the presets' default).
MODEL_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "node": ("node", []),
    "anode": ("anode", []),
    "deq": ("deq", ["--solver", "anderson", "--backward", "implicit"]),
    "homoode-fixed": ("homoode", ["--start-point", "fixed"]),
    "homoode-learned": ("homoode", ["--start-point", "learnable"]),
}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _payload(name: str, args: argparse.Namespace, records: list, start: float, **extra: Any) -> dict[str, Any]:
    """The JSON written by every subcommand here: what ran, when, where, and its records."""
    return {
        "benchmark": name,
        "command": args.command_line,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(args.threads),
        **extra,
        "records": records,
        "seconds_total": time.perf_counter() - start,
    }


# ----------------------------------------------------------------------------------------------- models


def run_models(args: argparse.Namespace) -> int:
    """Train each variant for the same wall-clock budget in a fresh ``python -m core.train`` process."""
    records = []
    start = time.perf_counter()
    for name in args.models:
        family, extra = MODEL_VARIANTS[name]
        with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as out:
            cmd = [
                sys.executable, "-m", "core.train",
                "--model", family, "--dataset", args.dataset, "--time-budget", str(args.budget_seconds),
                "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
                "--threads", str(args.threads), "--device", args.device, "--eval-every", str(args.eval_every),
                "--out", out, "--quiet", *extra, *args.train_args,
            ]  # fmt: skip
            if args.data_dir:
                cmd += ["--data-dir", args.data_dir]
            _log(f"{name}: {' '.join(cmd[1:])}")
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                _log(proc.stderr[-2000:])
                records.append({"model": name, "error": proc.stderr.strip().splitlines()[-1:]})
                continue
            summary = RunDir(out).read_summary()
        record = {
            "model": name,
            "family": family,
            "params": summary["params"],
            "test_accuracy": summary["test_accuracy"],
            "best_val_accuracy": summary["best_val_accuracy"],
            "nfe_forward": summary["mean_nfe_forward"],
            "nfe_backward": summary["mean_nfe_backward"],
            "peak_memory_bytes": summary["peak_memory_bytes"],
            "baseline_memory_bytes": summary["baseline_memory_bytes"],
            "memory_measure": summary["memory_measure"],
            "peak_graph_bytes": summary["peak_graph_bytes"],
            "seconds_per_epoch": summary["seconds_per_epoch"],
            "epochs": summary["epochs"],
            "steps": summary["steps"],
            "process_seconds": time.perf_counter() - t,
        }
        _log(f"  -> test {record['test_accuracy']:.4f}, nfe {record['nfe_forward']:.1f}/{record['nfe_backward']:.1f}")
        records.append(record)
    settings = {k: getattr(args, k) for k in ("dataset", "budget_seconds", "batch_size", "lr", "seed", "threads")}
    payload = _payload("models", args, records, start, settings=settings)
    if args.json:
        atomic_write_json(args.json, payload)
    print(models_table(records))
    return 0 if all("error" not in r for r in records) else 1


def models_table(records: list[dict[str, Any]]) -> str:
    rows = [
        "| model | params | test acc | NFE fwd | NFE bwd | peak mem (MB) | above start (MB) | s / epoch | epochs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        if "error" in r:
            rows.append(f"| {r['model']} | failed: {' '.join(r['error'])} | | | | | | | |")
            continue
        mb = r["peak_memory_bytes"] / 2**20
        above = (r["peak_memory_bytes"] - r["baseline_memory_bytes"]) / 2**20
        spe = "n/a" if r["seconds_per_epoch"] is None else f"{r['seconds_per_epoch']:.1f}"
        rows.append(
            f"| {r['model']} | {r['params']:,} | {100 * r['test_accuracy']:.2f} % | {r['nfe_forward']:.1f} | "
            f"{r['nfe_backward']:.1f} | {mb:.0f} | {above:.0f} | {spe} | {r['epochs']:.2f} |"
        )
    return "\n".join(rows)


def _add_models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "models",
        help="NODE, ANODE, DEQ and HomoODE (fixed / learned start) under one time budget",
        description="Train each model family at matched parameter counts for the same time budget, each in a "
        "fresh process with the same seed; print a markdown table.",
    )
    p.add_argument("--dataset", default="digits", help="dataset name (default digits)")
    p.add_argument("--budget-seconds", type=float, default=180.0, help="wall-clock budget per model (default 180)")
    p.add_argument("--json", metavar="PATH", help="write the records here (atomically)")
    p.add_argument("--models", nargs="+", choices=tuple(MODEL_VARIANTS), default=list(MODEL_VARIANTS), metavar="MODEL")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-every", type=int, default=0, help="validate every N steps (0: each epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--data-dir", help="folder with standard dataset files")
    p.add_argument(
        "--train-arg",
        dest="train_args",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra flag passed to every `python -m core.train` run, e.g. --train-arg=--ode-method=rk4",
    )
    p.set_defaults(func=run_models, check=_check_models, parser=p)


def _check_models(args: argparse.Namespace) -> str | None:
    if args.budget_seconds <= 0 or args.batch_size < 1 or args.threads < 1 or args.lr <= 0:
        return "--budget-seconds and --lr must be > 0; --batch-size and --threads >= 1"
    return None


# ----------------------------------------------------------------------------------------------- memory

#: (family, gradient) pairs measured: direct backprop through the ODE solver vs the adjoint; DEQ implicit
#: (memory of one cell evaluation) vs phantom (one unrolled step).
MEMORY_VARIANTS = (
    ("node", "direct"),
    ("node", "adjoint"),
    ("anode", "direct"),
    ("anode", "adjoint"),
    ("homoode", "direct"),
    ("homoode", "adjoint"),
    ("deq", "implicit"),
    ("deq", "phantom"),
)


def memory_probe(family: str, gradient: str, batch: int, n_steps: int, kind: str, device: str) -> dict[str, Any]:
    """One training step's peak memory above the state before it (run in a fresh process).

    ODE families integrate with rk4 over ``n_steps`` equal steps (NFE = 4 n_steps), so memory can be
    read against NFE; DEQ ignores ``n_steps``.
    """
    import dataclasses

    import torch
    from torch import nn

    from ..models import build_model, preset, preset_name
    from ..training import SavedTensorMeter, peak_memory, resolve_device

    dev = resolve_device(device)
    cfg = preset(preset_name(family, kind))
    if family == "deq":
        cfg = cfg.replace(deq=dataclasses.replace(cfg.deq, backward=gradient))
    else:
        ode = dataclasses.replace(cfg.ode, method="rk4", n_steps=n_steps, adjoint=gradient == "adjoint")
        cfg = cfg.replace(ode=ode)
    model = build_model(cfg).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((batch, *cfg.input_shape), generator=gen).to(dev)
    y = torch.randint(0, cfg.num_classes, (batch,), generator=gen).to(dev)

    # Bytes the forward graph keeps for backward, each storage once: deterministic, unlike RSS.
    meter = SavedTensorMeter()

    def step() -> tuple[int, int]:
        opt.zero_grad(set_to_none=True)
        with meter:
            out = model(x)
            loss = nn.functional.cross_entropy(out.logits, y)
        loss.backward()
        opt.step()
        return out.stats.nfe, model.nfe_backward

    with torch.no_grad():  # warm-up: allocator pools and lazy kernels, no graph kept
        model(x)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
    else:
        before = peak_memory(dev)[0]
    nfe, nfe_b = step()
    peak, measure = peak_memory(dev)
    return {
        "family": family,
        "gradient": gradient,
        "batch_size": batch,
        "n_steps": n_steps if family != "deq" else None,
        "nfe_forward": nfe,
        "nfe_backward": nfe_b,
        "peak_bytes": peak,
        "before_bytes": before,
        "training_bytes": peak - before,
        "graph_bytes": meter.nbytes,
        "memory_measure": measure,
    }


def run_memory(args: argparse.Namespace) -> int:
    grid = []
    for family, gradient in MEMORY_VARIANTS:
        if args.families and family not in args.families:
            continue
        for batch in args.batch_sizes:
            grid.append((family, gradient, batch, args.base_steps))
        if family != "deq":
            for n in args.n_steps:
                if n != args.base_steps:
                    grid.append((family, gradient, args.base_batch, n))
    records = []
    start = time.perf_counter()
    for family, gradient, batch, n in grid:
        probe = "import sys; from core.bench.models import probe_main; probe_main(sys.argv[1:])"
        settings = [family, gradient, str(batch), str(n), args.kind, args.device, str(args.threads)]
        cmd = [sys.executable, "-c", probe, *settings]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            _log(proc.stderr[-1500:])
            return 1
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        _log(
            f"{family:8s} {gradient:8s} batch {batch:4d} steps {n:3d}: "
            f"{record['training_bytes'] / 2**20:8.1f} MB (nfe {record['nfe_forward']})"
        )
        records.append(record)
    payload = _payload("memory", args, records, start)
    if args.json:
        atomic_write_json(args.json, payload)
    print(memory_table(records, args.base_batch, args.base_steps))
    return 0


def memory_table(records: list[dict[str, Any]], base_batch: int, base_steps: int) -> str:
    """Two markdown tables: training memory vs batch size, and vs NFE (ODE families)."""
    out = []
    batches = sorted({r["batch_size"] for r in records if r["n_steps"] in (None, base_steps)})
    out.append(
        "Training memory in MB: peak RSS above the pre-step state (in brackets: bytes the forward graph saves "
        f"for backward), vs batch size (ODE: rk4, {base_steps} steps)\n"
    )
    out.append("| model | gradient | " + " | ".join(f"B={b}" for b in batches) + " |")
    out.append("|---|---|" + "---:|" * len(batches))
    for family, gradient in MEMORY_VARIANTS:
        mine = [r for r in records if r["family"] == family and r["gradient"] == gradient]
        rows = {r["batch_size"]: r for r in mine if r["n_steps"] in (None, base_steps)}
        if rows:
            cells = [
                f"{rows[b]['training_bytes'] / 2**20:.0f} ({rows[b]['graph_bytes'] / 2**20:.0f})" if b in rows else ""
                for b in batches
            ]
            out.append(f"| {family} | {gradient} | " + " | ".join(cells) + " |")
    steps = sorted({r["n_steps"] for r in records if r["n_steps"] is not None and r["batch_size"] == base_batch})
    out.append(f"\nThe same vs forward NFE (rk4 steps x 4), batch {base_batch}\n")
    out.append("| model | gradient | " + " | ".join(f"NFE={4 * s}" for s in steps) + " |")
    out.append("|---|---|" + "---:|" * len(steps))
    for family, gradient in MEMORY_VARIANTS:
        mine = [r for r in records if r["family"] == family and r["gradient"] == gradient]
        rows = {r["n_steps"]: r for r in mine if r["batch_size"] == base_batch}
        if rows and family != "deq":
            cells = [
                f"{rows[s]['training_bytes'] / 2**20:.0f} ({rows[s]['graph_bytes'] / 2**20:.0f})" if s in rows else ""
                for s in steps
            ]
            out.append(f"| {family} | {gradient} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _add_memory_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "memory",
        help="peak training memory vs batch size and vs NFE, direct backprop vs adjoint / implicit",
        description="Measure one training step's peak memory per family and gradient mode, each in a fresh process.",
    )
    p.add_argument("--json", metavar="PATH")
    p.add_argument("--kind", choices=("image28", "image32", "points"), default="image28")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128, 256])
    p.add_argument("--n-steps", type=int, nargs="+", default=[1, 2, 4, 8, 16], help="rk4 steps for the NFE sweep")
    p.add_argument("--base-batch", type=int, default=64, help="batch size of the NFE sweep")
    p.add_argument("--base-steps", type=int, default=2, help="rk4 steps of the batch-size sweep")
    p.add_argument("--families", nargs="+", choices=("node", "anode", "deq", "homoode"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.set_defaults(func=run_memory, check=_check_memory, parser=p)


def _check_memory(args: argparse.Namespace) -> str | None:
    if min(args.batch_sizes + args.n_steps + [args.base_batch, args.base_steps, args.threads]) < 1:
        return "batch sizes, step counts and threads must be >= 1"
    return None


SUBCOMMANDS = (_add_models_parser, _add_memory_parser)


def probe_main(argv: list[str]) -> None:
    """Entry of the fresh measuring process: one memory measurement, printed as one JSON line."""
    import torch

    family, gradient, batch, n_steps, kind, device, threads = argv
    torch.set_num_threads(int(threads))
    print(json.dumps(memory_probe(family, gradient, int(batch), int(n_steps), kind, device)))
