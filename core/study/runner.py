"""Running a study: train what is missing, resume what was cut short, measure what is trained.

    OUT/study.json                         the study's settings and its runs (written first)
    OUT/<dataset>-<variant>-s<seed>/       an ordinary run folder (``core.training.RunDir``) ...
        measurements.json                  ... plus the study's measurements of its selected model

A run folder is skipped when its run has finished (``summary.json`` says so) and ``measurements.json`` is
there; measured only when it has finished; resumed from its ``checkpoint.pt`` when it stopped before its
end; started afresh when it holds no checkpoint. A run folder trained with other settings is never reused:
the study stops and says which settings differ.
"""

from __future__ import annotations

import datetime as _dt
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..bench import machine_info
from ..training import ErrorEvent, FinishedEvent, RunDir, Trainer, atomic_write_json, load_trainer, resolve_device
from ..training.rundir import read_json
from .measure import measure_trainer
from .plan import RunSpec, StudyPreset, config_differences, plan_runs

STUDY_FILE = "study.json"
MEASUREMENTS = "measurements.json"
#: The format tag of ``study.json``.
FORMAT = "implicit-explorer-study/1"


class StudyError(ValueError):
    """A study folder that cannot be used as asked (other settings, a foreign folder); the message says why."""


@dataclass(frozen=True)
class RunOutcome:
    """What the study did with one run: skipped, measured, resumed, trained (or failed: diverged)."""

    name: str
    action: str
    seconds: float
    diverged: bool = False


def run_status(run: RunDir) -> str:
    """``measured`` (nothing to do), ``finished`` (to measure), ``partial`` (to resume from its checkpoint),
    ``started`` (a config but no checkpoint: to start afresh) or ``new``."""
    summary = run.read_summary()
    if summary and (summary.get("stopped") is False or read_json(run.path / MEASUREMENTS).get("diverged")):
        return "measured" if read_json(run.path / MEASUREMENTS).get("format") else "finished"
    if run.checkpoint.is_file():
        return "partial"
    return "started" if run.path.is_dir() and any(run.path.iterdir()) else "new"


def write_study_file(out: Path, study: StudyPreset, specs: list[RunSpec], command: str | None) -> None:
    """Record the study in ``out/study.json``; a folder holding another study (other settings) is refused,
    one holding the same study gains the new runs (more seeds or datasets)."""
    path = out / STUDY_FILE
    old = read_json(path) if path.exists() else None
    if path.exists() and not old:
        raise StudyError(f"{path} is not a study file this program can read; pick another --out")
    if old:
        if old.get("format") != FORMAT:
            raise StudyError(f"{path} is not a study file of this program; pick another --out")
        if old.get("settings") != study.settings():
            diff = _dict_diff(old.get("settings", {}), study.settings())
            raise StudyError(
                f"{out} holds a study with other settings ({'; '.join(diff[:4])}): pick another --out, or run "
                f"the study it holds (--preset {old.get('preset', {}).get('name', '?')})"
            )
    runs = list(dict.fromkeys([*(old or {}).get("runs", []), *(s.name for s in specs)]))
    datasets = list(dict.fromkeys([*(old or {}).get("datasets", []), *study.datasets]))
    seeds = sorted({*(old or {}).get("seeds", []), *study.seeds})
    record = {
        "format": FORMAT,
        "preset": study.to_dict(),
        "settings": study.settings(),
        "datasets": datasets,
        "seeds": seeds,
        "runs": runs,
        "created": (old or {}).get("created") or _now(),
        "updated": _now(),
        "commands": [*(old or {}).get("commands", []), *([command] if command else [])][-20:],
        "machine": machine_info(torch.get_num_threads()),
    }
    atomic_write_json(path, record)


def _dict_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            out += _dict_diff(x, y, f"{prefix}{key}.")
        elif x != y:
            out.append(f"{prefix}{key}: {x!r} there, {y!r} now")
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_study(
    study: StudyPreset,
    out: str | Path,
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | None = None,
    command: str | None = None,
    log: Callable[[str], None] = _log,
) -> list[RunOutcome]:
    """Train and measure every run of ``study`` in ``out`` that is not done yet (see the module's doc).

    Runs one after another in this process. Interrupt it at any time (Ctrl-C): started again with the same
    settings, it skips what is done and resumes the run it was training from that run's last checkpoint.

    Raises:
        StudyError: ``out`` holds another study, or a run folder trained with other settings.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"--out {out} is a file, not a folder; pick another path")
    specs = plan_runs(study, device=device, threads=threads, data_dir=data_dir)
    if not specs:
        raise StudyError(
            "the study plans no runs ('paper-cifar10' runs only on 3x32x32 datasets: cifar10, cifar100, svhn); "
            "add a variant or a dataset"
        )
    for spec in specs:  # before anything is trained: a mismatch must not show up after an hour
        run = RunDir(out / spec.name)
        if run.has_config():
            diff = config_differences(spec.config, run.read_config())
            if diff:
                raise StudyError(
                    f"run folder {run.path} was trained with other settings ({', '.join(diff[:6])}); "
                    "delete it or pick another --out"
                )
    out.mkdir(parents=True, exist_ok=True)
    write_study_file(out, study, specs, command)
    outcomes = []
    for k, spec in enumerate(specs, 1):
        t0 = time.perf_counter()
        run = RunDir(out / spec.name)
        status = run_status(run)
        head = f"[{k}/{len(specs)}] {spec.name}"
        if status == "measured":
            log(f"{head}: done, skipped")
            outcomes.append(RunOutcome(spec.name, "skipped", 0.0))
            continue
        settings = study.for_dataset(spec.dataset).measure
        _reset_peak(device)
        if status == "finished":
            log(f"{head}: trained; measuring")
            trainer = load_trainer(run.checkpoint_file(), out_dir=None, **_machine_overrides(spec))
            action, diverged = "measured", False
        else:
            if status == "partial":
                trainer = load_trainer(run.checkpoint_file(), out_dir=run.path, **_machine_overrides(spec))
                log(f"{head}: resuming at step {trainer.step_count} of {trainer.total_steps}")
                action = "resumed"
            else:
                if status == "started":
                    run.clear()  # a config and rows but no checkpoint: nothing to resume
                    (run.path / MEASUREMENTS).unlink(missing_ok=True)
                log(f"{head}: training")
                trainer = Trainer(spec.config, out_dir=run.path)
                action = "trained"
            diverged = _train(trainer, log, head)
        measurements = measure_trainer(trainer, settings, spec.seed)
        if diverged:
            measurements["diverged"] = diverged
        atomic_write_json(run.path / MEASUREMENTS, measurements)
        seconds = time.perf_counter() - t0
        log(f"{head}: {action} in {seconds:.0f} s{_brief(run)}")
        outcomes.append(RunOutcome(spec.name, action, seconds, bool(diverged)))
    return outcomes


def _machine_overrides(spec: RunSpec) -> dict[str, Any]:
    c = spec.config
    return {"device": c.device, "threads": c.threads, "data_dir": c.data_dir}  # load_trainer never downloads


def _reset_peak(device: str) -> None:
    """On a GPU the summary's peak memory is then this run's own (the trainer reports the process's peak)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _train(trainer: Trainer, log: Callable[[str], None], head: str) -> dict[str, Any] | None:
    """Train to the end; a diverged run is ended where it stopped (its model selected on validation so far
    is tested and measured) and reported: returns {step, message} then, else None."""
    last = None
    for event in trainer.events():
        last = event
    if isinstance(last, ErrorEvent):
        log(f"{head}: diverged at step {last.step}: {last.message}")
        trainer.end(stopped=True)
        return {"step": last.step, "message": last.message}
    if not isinstance(last, FinishedEvent):  # the trainer always ends with one of the two
        raise RuntimeError(f"{head}: training ended without a finished event")
    return None


def _brief(run: RunDir) -> str:
    s = run.read_summary()
    acc = s.get("test_accuracy")
    if acc is None:
        return ""
    return f": test {100 * acc:.2f} %, NFE {s.get('mean_nfe_forward', 0):.1f}/{s.get('mean_nfe_backward', 0):.1f}"
