"""A finished run's training record in a few kilobytes: what a study's report reads from ``metrics.jsonl``.

``metrics.jsonl`` holds one row per step (~400 bytes: 0.4 MB a 1,000-step run), too much to commit for a
study of 42 runs. ``digest.json`` keeps what the report uses, binned per tenth of the run's steps (per 100
steps of a 1,000-step run):

    {"format": ..., "bin_steps": B, "step_rows": n,
     "bins": [{"first_step", "last_step", "steps", "nfe_forward", "nfe_backward", "loss", "train_accuracy",
               "step_seconds"}, ...],      # means over the bin's steps; step_seconds summed
     "evals": [the run's eval rows, as recorded]}

The study writes it when a run is measured; :func:`read_digest` computes the same from ``metrics.jsonl``
when there is no digest (a run of an older study), so the report reads one thing either way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ..training import RunDir, atomic_write_json
from ..training.rundir import METRICS, read_json

DIGEST = "digest.json"
FORMAT = "implicit-explorer-digest/1"
#: A run's curves have this many bins (the last may be shorter).
BINS = 10


def bin_steps(steps: int | None) -> int:
    """Steps per bin of a run of ``steps`` steps: a tenth of it, at least 1."""
    return max(1, math.ceil((steps or 1) / BINS))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def digest_events(events: Iterable[dict[str, Any]], steps: int | None) -> dict[str, Any]:
    """The digest of a run's metric rows (``steps``: the run's planned steps, which set the bin width)."""
    per_bin = bin_steps(steps)
    bins: dict[int, list[dict[str, Any]]] = {}
    evals = []
    for row in events:
        if row.get("kind") == "step" and row.get("step") is not None:
            bins.setdefault((int(row["step"]) - 1) // per_bin, []).append(row)
        elif row.get("kind") == "eval":
            evals.append(row)

    def mean_of(rows: list[dict[str, Any]], key: str) -> float | None:
        return _mean([float(r[key]) for r in rows if r.get(key) is not None])

    out_bins = []
    for b in sorted(bins):
        rows = bins[b]
        out_bins.append(
            {
                "first_step": b * per_bin + 1,
                "last_step": (b + 1) * per_bin,
                "steps": len(rows),
                "nfe_forward": mean_of(rows, "nfe_forward"),
                "nfe_backward": mean_of(rows, "nfe_backward"),
                "loss": mean_of(rows, "loss"),
                "train_accuracy": mean_of(rows, "train_acc"),
                "step_seconds": sum(float(r.get("step_seconds") or 0.0) for r in rows),
            }
        )
    return {
        "format": FORMAT,
        "bin_steps": per_bin,
        "step_rows": sum(b["steps"] for b in out_bins),
        "bins": out_bins,
        "evals": evals,
    }


def planned_steps(run: RunDir) -> int | None:
    """The steps the run was set to train: its config's, or its epochs times the steps of one (from its
    summary) for an epoch-long run; else the steps it trained. Bins of the plan, so that a run stopped early
    (diverged) lines up with the others bin by bin."""
    config, summary = run.read_config(), run.read_summary()
    if config.get("steps"):
        return int(config["steps"])
    steps, epochs = summary.get("steps"), summary.get("epochs")
    if config.get("epochs") and steps and epochs:
        return round(config["epochs"] * steps / epochs)
    return steps


def write_digest(run: RunDir) -> None:
    """Write ``digest.json`` from the run's ``metrics.jsonl`` (atomically)."""
    atomic_write_json(run.path / DIGEST, digest_events(run.events(), planned_steps(run)))


def read_digest(run: RunDir) -> dict[str, Any]:
    """The run's digest: from ``metrics.jsonl`` when it is there (the whole record), else ``digest.json``
    (a committed study keeps only that), else an empty one."""
    steps = planned_steps(run)
    if (run.path / METRICS).is_file():
        return digest_events(run.events(), steps)
    stored = read_json(run.path / DIGEST)
    return stored if stored.get("format") == FORMAT else digest_events([], steps)
