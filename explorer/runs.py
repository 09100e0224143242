"""Saved runs, read back from their folders: the runs table (Train and Compare tabs), each run's curves
from ``metrics.jsonl``, and the table's CSV / JSON export.

A run folder is what core's trainer wrote, from ``python -m core.train`` or the Train tab alike; its
format belongs to ``core.training.RunDir``, which reads it here. A half-written or foreign file makes
that run's cells blank, never an error.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.checks import short_repr
from core.solvers import FIXED_STEP_METHODS
from core.training import RUN_NAME, RunDir, atomic_write_bytes, json_safe

#: Columns of the runs table, in order; ``RunRecord.row()`` fills them.
RUN_COLUMNS = [
    "run",
    "model",
    "dataset",
    "params",
    "steps",
    "test acc %",
    "best val %",
    "NFE fwd",
    "NFE bwd",
    "graph MB",
    "s",
    "device",
    "lr",
    "batch",
    "solver",
    "tol",
    "state",
]
EXPORT_FORMATS = ("csv", "json")
#: A text cell starting with one of these is quoted in a CSV export (see ``_csv_cell``).
CSV_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _finite(value: Any) -> float | None:
    """A finite float, or None for anything else (a missing, non-numeric, NaN or infinite cell)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class RunRecord:
    """One run folder: its name, path, ``config.json`` and (once ended) ``summary.json``."""

    name: str
    folder: Path
    config: dict[str, Any]
    summary: dict[str, Any]

    @property
    def family(self) -> str | None:
        model = self.config.get("model")
        return model.get("family") if isinstance(model, dict) else None

    @property
    def state(self) -> str:
        """finished / stopped / failed / in progress (``RunDir.state``)."""
        return RunDir(self.folder).state()

    @property
    def params(self) -> int | None:
        if isinstance(self.summary.get("params"), int):
            return self.summary["params"]
        return _count_params(json.dumps(self.config.get("model"), sort_keys=True))

    def values(self) -> dict[str, Any]:
        """The table's cells by column name (None where unknown): percentages, MB, rounded for reading."""
        s = self.summary

        def pct(key: str) -> float | None:
            v = _finite(s.get(key))
            return None if v is None else round(100 * v, 2)

        def rounded(key: str, digits: int, scale: float = 1.0) -> float | None:
            v = _finite(s.get(key))
            return None if v is None else round(v / scale, digits)

        return {
            "run": self.name,
            "model": self.family,
            "dataset": self.config.get("dataset"),
            "params": self.params,
            "steps": s.get("steps") if isinstance(s.get("steps"), int) else None,
            "test acc %": pct("test_accuracy"),
            "best val %": pct("best_val_accuracy"),
            "NFE fwd": rounded("mean_nfe_forward", 1),
            "NFE bwd": rounded("mean_nfe_backward", 1),
            # The run's own memory (what its forward kept for backward), not the shared process's peak.
            "graph MB": rounded("peak_graph_bytes", 1, 2**20),
            "s": rounded("seconds", 1),
            "device": s.get("device") or self.config.get("device"),
            **self.hyperparameters(),
            "state": self.state,
        }

    def hyperparameters(self) -> dict[str, Any]:
        """lr, batch, solver (the DEQ's root solver, or the ODE method with its step count) and tolerance from
        config.json: the settings in force (the history of live changes is in metrics.jsonl)."""
        c, model = self.config, self.config.get("model")
        model = model if isinstance(model, dict) else {}
        ode = model.get("ode") if isinstance(model.get("ode"), dict) else {}
        deq = model.get("deq") if isinstance(model.get("deq"), dict) else {}
        if model.get("family") == "deq":
            options = deq.get("solver_options") if isinstance(deq.get("solver_options"), dict) else {}
            solver, tol = deq.get("solver"), options.get("tol")
        else:
            method, n = ode.get("method"), ode.get("n_steps")
            fixed = method in FIXED_STEP_METHODS
            solver = f"{method} × {n}" if fixed and isinstance(n, int) else method
            tol = None if fixed else ode.get("rtol")
        return {
            "lr": _finite(c.get("lr")),
            "batch": c.get("batch_size") if isinstance(c.get("batch_size"), int) else None,
            "solver": solver if isinstance(solver, str) else None,
            "tol": _finite(tol),
        }

    def row(self) -> list[Any]:
        cells = self.values()
        return [cells[c] for c in RUN_COLUMNS]


#: The model-config fields that decide the parameter count: a config must state them all to be counted.
SHAPE_FIELDS = (
    "family",
    "input_kind",
    "num_classes",
    "width",
    "hidden",
    "augment_dim",
    "head_dim",
    "head_pool",
    "start",
)


@functools.lru_cache(maxsize=256)
def _count_params(model_json: str) -> int | None:
    """Parameter count of a model config (for runs still in progress, whose summary is not written).

    Built on the meta device (no memory, no init work) with the global RNG forked, so a training thread's
    random stream is untouched. A config missing any of ``SHAPE_FIELDS`` (foreign or partial) gives None
    rather than the count of defaults filled in for it; solver settings added since do not matter.
    """
    try:
        import torch

        import core

        raw = json.loads(model_json)
        if not all(key in raw for key in SHAPE_FIELDS):
            return None
        config = core.ModelConfig.from_dict(raw)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return sum(p.numel() for p in core.build_model(config).parameters())
    except Exception:  # a foreign or older config: the cell stays blank
        return None


def read_runs(runs_dir: str | Path, limit: int = 50, only: set[Path] | None = None) -> list[RunRecord]:
    """The newest ``limit`` run folders under ``runs_dir`` (newest first by the time the run started),
    optionally only the folders in ``only``."""
    records = []
    for run in RunDir.list(runs_dir, limit=limit, only=only):
        config = run.read_config()
        if config:
            records.append(RunRecord(run.name, run.path, config, run.read_summary()))
    return records


def filter_runs(records: list[RunRecord], text: str) -> list[RunRecord]:
    """The runs whose table row contains every word of ``text`` (case-insensitive, any column)."""
    words = str(text or "").lower().split()
    if not words:
        return records
    texts = [" ".join(str(v).lower() for v in r.row()) for r in records]  # each row read once
    return [r for r, text in zip(records, texts) if all(w in text for w in words)]


def run_folder(runs_dir: str | Path, name: str) -> Path:
    """The folder of run ``name``, directly inside ``runs_dir`` (``RunDir.find``); renaming and deleting go
    only through here."""
    return RunDir.find(runs_dir, name).path


def rename_run(runs_dir: str | Path, name: str, new_name: str) -> Path:
    """Rename a run folder inside ``runs_dir``; the new name must be free and a valid run name."""
    folder = run_folder(runs_dir, name)
    new_name = str(new_name or "").strip()
    if not RUN_NAME.fullmatch(new_name):
        raise ValueError(
            f"a run's new name must be 1-100 letters, digits, '.', '_' or '-' (not starting with one of the "
            f"last three), got {short_repr(new_name)}"
        )
    target = folder.parent / new_name
    if target.exists() or target.is_symlink():
        raise ValueError(f"there is already a run (or file) called {short_repr(new_name)}; pick another name")
    folder.rename(target)
    return target


def delete_run(runs_dir: str | Path, name: str) -> None:
    """Delete a run folder inside ``runs_dir`` (its files only: links inside it are removed, never followed)."""
    shutil.rmtree(run_folder(runs_dir, name))


def run_rows(records: list[RunRecord]) -> list[list[Any]]:
    return [r.row() for r in records]


def describe_changes(changes: dict[str, dict[str, Any]]) -> str:
    """``{"lr": {"old": 0.002, "new": 0.0005}}`` -> ``"lr 0.002 → 0.0005"`` (several joined by commas)."""

    def show(value: Any) -> str:
        return f"{value:g}" if isinstance(value, float) else str(value)

    return ", ".join(f"{k} {show(v.get('old'))} → {show(v.get('new'))}" for k, v in changes.items())


#: The page's curves of a training step: series name -> (the step event's field, scale). One table for the
#: live curves (``sessions``, from core's ``StepEvent``) and a saved run's (``read_metrics``, from its
#: ``metrics.jsonl``, where each event is written with its fields' names).
STEP_CURVES: dict[str, tuple[str, float]] = {
    "step": ("step", 1.0),
    "loss": ("loss", 1.0),
    "train_acc": ("train_acc", 1.0),
    "nfe_forward": ("nfe_forward", 1.0),
    "nfe_backward": ("nfe_backward", 1.0),
    "memory_mb": ("graph_bytes", 1 / 2**20),  # the run's own graph, not the process's peak
    "step_ms": ("step_seconds", 1000.0),
    "lr": ("lr", 1.0),
    "wall_s": ("wall_seconds", 1.0),
}


def step_curves(event: Any) -> dict[str, float]:
    """One step event (core's ``StepEvent`` or its recorded dict) as the curves' values (``STEP_CURVES``);
    a missing or non-finite value is NaN."""
    get = event.get if isinstance(event, dict) else lambda name: getattr(event, name, None)
    out = {}
    for name, (field, scale) in STEP_CURVES.items():
        value = _finite(get(field))
        out[name] = np.nan if value is None else value * scale
    return out


def read_metrics(folder: str | Path) -> dict[str, np.ndarray]:
    """A run's curves from ``metrics.jsonl``, in the arrays ``plots.curves_figure`` draws.

    Returns the ``STEP_CURVES`` (one entry per step event, shape (S,); ``memory_mb`` is the run's own
    ``graph_bytes``, NaN in runs recorded before it existed), ``change_step`` (C,) and ``change_text``
    (live setting changes) and ``val_step``, ``val_acc`` (validation events,
    (E,)). A resumed run appends to the same file, so a step seen twice keeps its last record. A run trained
    by direct backprop (an ODE model without the adjoint) has no backward solve, so no ``nfe_backward``.
    """
    steps: dict[int, dict[str, Any]] = {}
    evals: dict[int, float] = {}
    changes: list[tuple[int, str]] = []
    for event in RunDir(folder).events():
        if not isinstance(event.get("step"), int):
            continue
        if event.get("kind") == "step":
            steps[event["step"]] = event
        elif event.get("kind") == "eval" and event.get("split", "val") == "val":
            evals[event["step"]] = event.get("accuracy")
        elif event.get("kind") == "change" and isinstance(event.get("changes"), dict) and event["changes"]:
            try:
                changes.append((event["step"], describe_changes(event["changes"])))
            except (AttributeError, TypeError):  # a hand-edited line: skip it, keep the rest
                continue

    val_acc = [_finite(evals[k]) for k in sorted(evals)]
    model = RunDir(folder).read_config().get("model")
    ode = model.get("ode") if isinstance(model, dict) else None
    direct = isinstance(ode, dict) and model.get("family") != "deq" and ode.get("adjoint") is False
    rows = [step_curves(steps[k]) for k in sorted(steps)]
    curves = {name: np.asarray([r[name] for r in rows], dtype=np.float64) for name in STEP_CURVES}
    curves["step"] = np.asarray(sorted(steps), dtype=np.float64)
    if direct:
        del curves["nfe_backward"]
    return {
        **curves,
        "val_step": np.asarray(sorted(evals), dtype=np.float64),
        "val_acc": np.asarray([np.nan if v is None else v for v in val_acc], dtype=np.float64),
        "change_step": np.asarray([s for s, _ in changes], dtype=np.float64),
        "change_text": [t for _, t in changes],
    }


def _csv_cell(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet, and so is one starting with a tab or a
    # carriage return (some spreadsheets strip them, then read the formula behind): quote text cells that
    # do (not numbers) (OWASP, "CSV Injection").
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in CSV_FORMULA_STARTS:
        return "'" + value
    return value


def export_runs(records: list[RunRecord], fmt: str, dest_dir: str | Path | None = None) -> Path:
    """Write the runs table to ``runs.csv`` or ``runs.json`` (atomically) and return its path.

    JSON keeps every field of each run's config and summary (for scripts); CSV has the table's columns.
    ``dest_dir`` defaults to a fresh temporary folder (the web app serves downloads from there).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {short_repr(fmt)}")
    if not records:
        raise ValueError("there are no saved runs to export yet: train one in the Train tab (or with core.train)")
    folder = Path(dest_dir) if dest_dir is not None else Path(tempfile.mkdtemp(prefix="explorer-export-"))
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(RUN_COLUMNS)
        writer.writerows([_csv_cell(v) for v in r.row()] for r in records)
        text = buffer.getvalue()
    else:
        text = json.dumps(
            [json_safe({**r.values(), "config": r.config, "summary": r.summary}) for r in records],
            indent=1,
            allow_nan=False,
        )
    path = folder / f"runs.{fmt}"
    atomic_write_bytes(path, text.encode())
    return path
