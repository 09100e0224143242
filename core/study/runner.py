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
import heapq
import math
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import data as data_lib
from ..bench import machine_info
from ..training import (
    CheckpointError,
    ErrorEvent,
    FinishedEvent,
    RunDir,
    Trainer,
    atomic_write_json,
    load_trainer,
    resolve_device,
)
from ..training.config import nested_changes
from ..training.rundir import read_json
from .digest import write_digest
from .measure import add_graph_measurement, measure_trainer
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
    state = run.state()
    measurements = read_json(run.path / MEASUREMENTS)
    if state == "finished" or (state == "stopped" and measurements.get("diverged")):
        return "measured" if measurements.get("format") else "finished"
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
            diff = [
                f"{key}: {change['old']!r} there, {change['new']!r} now"
                for key, change in sorted(nested_changes(old.get("settings", {}), study.settings()).items())
            ]
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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def add_missing_graphs(
    specs: list[RunSpec],
    out: Path,
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] = _log,
) -> int:
    """Give every measured run whose record lacks it the exact training-graph measurement
    (:func:`~core.study.measure.add_graph_measurement`: seconds a run, from its checkpoint), so that every run
    of a study reports graph memory measured one way. Returns how many were added; a run without its
    checkpoint here (a fresh clone) is left as it is, and said so."""
    added, missing = 0, []
    for spec in specs:
        run = RunDir(out / spec.name)
        record = read_json(run.path / MEASUREMENTS)
        if run_status(run) != "measured" or "graph" in record:
            continue
        if not run.checkpoint.is_file():
            missing.append(spec.name)
            continue
        try:
            record["graph"] = add_graph_measurement(run, device, threads, data_dir)
        except (CheckpointError, data_lib.DatasetUnavailable, OSError, ValueError) as err:
            log(f"{spec.name}: the training-graph measurement failed ({err}); its record is left as it is")
            continue
        atomic_write_json(run.path / MEASUREMENTS, record)
        added += 1
    if added:
        log(f"{added} measured run(s) given the training-graph measurement")
    if missing:
        log(
            f"{len(missing)} measured run(s) lack the training-graph measurement, and their checkpoint here: "
            f"{', '.join(missing)}"
        )
    return added


def run_study(
    study: StudyPreset,
    out: str | Path,
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | None = None,
    command: str | None = None,
    log: Callable[[str], None] = _log,
    jobs: int = 1,
) -> list[RunOutcome]:
    """Train and measure every run of ``study`` in ``out`` that is not done yet (see the module's doc).

    ``jobs`` = 1: one run after another in this process; more: that many runs at once, each in its own
    process (``threads`` torch threads each, default 1). Interrupt it at any time (Ctrl-C): started again
    with the same settings, it skips what is done and resumes each unfinished run from its last checkpoint.

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
    add_missing_graphs(specs, out, device, threads, data_dir, log)
    for line in estimate_lines(specs, out, jobs):
        log(line)
    if jobs > 1:
        return _run_in_processes(specs, out, jobs, device, threads, data_dir, log)
    return [run_one(study, spec, out, log, f"[{k}/{len(specs)}] {spec.name}") for k, spec in enumerate(specs, 1)]


#: Seconds of one training step at batch 64 of 28x28 images on one core of a 2-core CPU with a second run
#: on the other (``--jobs 2``), per variant: the estimate's prior until the study has finished runs of its
#: own. Measured here (2026-12-06) with ``python -m core.study --preset standard --steps 20 --seeds 0
#: --datasets digits --measure-examples 50 --jobs 2``; dopri5's NFE, and so its step time, grows as a
#: model trains.
REFERENCE_STEP_SECONDS = {
    "node": 1.04,
    "anode": 0.99,
    "deq": 0.39,
    "homoode-learned": 0.86,
    "homoode-fixed": 0.79,
    "homoode-adjoint": 1.77,
    "homoode-fast": 0.13,
}
#: Validation, test and measurements on top of the training steps, for a variant without finished runs.
REFERENCE_OVERHEAD = 0.25


def remaining_seconds(specs: list[RunSpec], out: Path) -> dict[str, float | None]:
    """{name: seconds of compute it still needs} of every unfinished run of ``specs`` (None: no estimate yet).
    A run's cost per step comes from the finished runs of its variant on its dataset in ``out`` (their whole
    time per step, validation, test and measurements included: a larger test split costs more), else on any
    dataset, else :data:`REFERENCE_STEP_SECONDS` scaled by batch size plus :data:`REFERENCE_OVERHEAD`; a partial
    run counts its remaining steps. Runs of an epoch-long study have no estimate until one of their variant
    has finished (their steps are known only once the data is loaded)."""
    per_step: dict[tuple[str, ...], list[float]] = {}
    per_run: dict[tuple[str, ...], list[float]] = {}
    for spec in specs:
        run = RunDir(out / spec.name)
        summary = run.read_summary()
        if run_status(run) == "measured" and summary.get("steps") and summary.get("seconds"):
            seconds = summary["seconds"] + float(read_json(run.path / MEASUREMENTS).get("seconds") or 0.0)
            for key in ((spec.dataset, spec.variant), (spec.variant,)):
                per_step.setdefault(key, []).append(seconds / summary["steps"])
                per_run.setdefault(key, []).append(seconds)

    def mean_of(table: dict[tuple[str, ...], list[float]], spec: RunSpec) -> float | None:
        values = table.get((spec.dataset, spec.variant)) or table.get((spec.variant,))
        return sum(values) / len(values) if values else None

    left: dict[str, float | None] = {}
    for spec in specs:
        run = RunDir(out / spec.name)
        if run_status(run) == "measured":
            continue
        steps = spec.config.steps
        if steps is None:
            left[spec.name] = mean_of(per_run, spec)
            continue
        done = sum(1 for r in run.events() if r.get("kind") == "step") if run.checkpoint.is_file() else 0
        cost = mean_of(per_step, spec)
        if cost is None and spec.variant in REFERENCE_STEP_SECONDS:
            cost = REFERENCE_STEP_SECONDS[spec.variant] * spec.config.batch_size / 64 * (1 + REFERENCE_OVERHEAD)
        left[spec.name] = None if cost is None else cost * max(0, steps - done)
    return left


def estimate_seconds(specs: list[RunSpec], out: Path) -> tuple[float, int, int]:
    """(seconds of compute the unfinished runs of ``specs`` still need, how many there are, how many of them
    have no estimate): :func:`remaining_seconds` summed."""
    left = remaining_seconds(specs, out)
    return sum(c for c in left.values() if c is not None), len(left), sum(c is None for c in left.values())


def longest_first(specs: list[RunSpec], out: Path) -> list[RunSpec]:
    """The unfinished runs of ``specs``, the longest still to do first (runs without an estimate before them,
    ties in plan order): with several jobs, a long run started last would train alone at the end while the
    other cores idle (longest-processing-time-first scheduling)."""
    left = remaining_seconds(specs, out)
    todo = [s for s in specs if s.name in left]
    return sorted(todo, key=lambda s: -math.inf if left[s.name] is None else -left[s.name])


def makespan(seconds: list[float], jobs: int) -> float:
    """Wall time of runs lasting ``seconds``, started in that order whenever one of ``jobs`` slots is free."""
    slots = [0.0] * max(1, jobs)
    for cost in seconds:
        heapq.heapreplace(slots, slots[0] + cost)
    return max(slots)


def estimate_lines(specs: list[RunSpec], out: Path, jobs: int) -> list[str]:
    """What the study will take, printed before it starts."""
    left = remaining_seconds(specs, out)
    known = [c for c in left.values() if c is not None]
    unknown = len(left) - len(known)
    if not left:
        return [f"all {len(specs)} runs are done"]
    if not known:
        return [f"{len(left)} of {len(specs)} runs to do (no estimate before one of each variant has finished)"]
    wall = makespan(sorted(known, reverse=True) if jobs > 1 else known, jobs)
    return [
        f"{len(left)} of {len(specs)} runs to do: about {sum(known) / 3600:.1f} h of compute, about "
        f"{wall / 3600:.1f} h with {jobs} job(s) at once (the longest first) on a 2-core CPU like the one the "
        f"reference step times were measured on (from {'finished runs and ' if len(left) < len(specs) else ''}"
        f"measured step times; a guide only{f'; {unknown} run(s) without an estimate' if unknown else ''})"
    ]


def run_recorded(
    out: str | Path,
    name: str,
    head: str,
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] = _log,
) -> RunOutcome:
    """Run ``name`` of the study recorded in ``out/study.json`` in this process, alone (what each process of
    ``run_study(jobs > 1)`` does): its peak RSS is then the run's own."""
    out = Path(out)
    record = read_json(out / STUDY_FILE)
    if record.get("format") != FORMAT:
        raise StudyError(f"{out} holds no study file of this program; run `python -m core.study --out {out}`")
    study = StudyPreset.from_dict(record["preset"])
    specs = [s for s in plan_runs(study, device=device, threads=threads, data_dir=data_dir) if s.name == name]
    if not specs:
        raise StudyError(f"the study in {out} plans no run named {name!r}")
    return run_one(study, specs[0], out, log, head, own_process=True)


#: A file of this name in a study's folder pauses its runs' training between steps, their clocks stopped, until
#: it is removed (``touch OUT/PAUSE``, ``rm OUT/PAUSE``): the machine is quiet for a benchmark, and no step's
#: time counts the wait (a process stopped by a signal counts it: one step of 15 minutes).
PAUSE_FILE = "PAUSE"


def run_one(
    study: StudyPreset, spec: RunSpec, out: Path, log: Callable[[str], None], head: str, own_process: bool = False
) -> RunOutcome:
    """Train (or resume) and measure one run of ``study`` in ``out/spec.name`` (see the module's doc);
    ``own_process``: nothing else ran in this process, so its peak RSS is the run's (recorded with the
    measurements)."""
    t0 = time.perf_counter()
    run = RunDir(out / spec.name)
    status = run_status(run)
    if status == "measured":
        log(f"{head}: done, skipped")
        return RunOutcome(spec.name, "skipped", 0.0)
    settings = study.for_dataset(spec.dataset).measure
    _reset_peak(spec.config.device)
    if status == "finished":
        log(f"{head}: trained; measuring")
        trainer = load_trainer(run.checkpoint_file(), out_dir=None, **_machine_overrides(spec))
        action, diverged = "measured", None
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
        diverged = _train(trainer, log, head, paused=lambda: (out / PAUSE_FILE).exists())
    measurements = measure_trainer(trainer, settings, spec.seed)
    if diverged:
        measurements["diverged"] = diverged
    measurements["own_process"] = own_process
    write_digest(run)
    atomic_write_json(run.path / MEASUREMENTS, measurements)  # last: its presence marks the run done
    seconds = time.perf_counter() - t0
    log(f"{head}: {action} in {seconds:.0f} s{_brief(run)}")
    return RunOutcome(spec.name, action, seconds, bool(diverged))


def _run_in_processes(
    specs: list[RunSpec],
    out: Path,
    jobs: int,
    device: str,
    threads: int | None,
    data_dir: str | None,
    log: Callable[[str], None],
) -> list[RunOutcome]:
    """Each unfinished run in a fresh ``python -m core.study --run-one`` process, ``jobs`` at a time, each
    with ``threads`` torch threads (default 1). On a 2-core CPU two one-thread runs at once train 1.33x
    faster than one two-thread run after the other (docs/study.md); a fresh process per run also makes its
    peak RSS its own. The longest runs start first (:func:`longest_first`). Interrupted, it stops the runs it
    started (each resumes from its checkpoint)."""
    done = {s.name for s in specs if run_status(RunDir(out / s.name)) == "measured"}
    number = {s.name: k for k, s in enumerate(specs, 1)}
    todo = [(number[s.name], s) for s in longest_first(specs, out)]
    outcomes = [RunOutcome(name, "skipped", 0.0) for name in done]
    if done:
        log(f"{len(done)} of {len(specs)} runs done, skipped")
    running: dict[subprocess.Popen, tuple[int, RunSpec, float]] = {}
    failed = []
    # A SIGTERM (a session's end, `kill`) stops the children too, as Ctrl-C does: none trains on unwatched.
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    try:
        while todo or running:
            while todo and len(running) < jobs:
                k, spec = todo.pop(0)
                command = [
                    sys.executable, "-m", "core.study", "--out", str(out), "--run-one", spec.name,
                    "--head", f"[{k}/{len(specs)}] {spec.name}", "--threads", str(threads or 1), "--device", device,
                    *(["--data-dir", data_dir] if data_dir else []),
                ]  # fmt: skip
                running[subprocess.Popen(command, cwd=_project_root())] = (k, spec, time.perf_counter())
            time.sleep(0.5)
            for proc in [p for p in running if p.poll() is not None]:
                k, spec, t0 = running.pop(proc)
                if proc.returncode != 0:
                    failed.append(f"{spec.name} (exit {proc.returncode})")
                    log(f"[{k}/{len(specs)}] {spec.name}: its process failed with exit status {proc.returncode}")
                outcomes.append(
                    RunOutcome(spec.name, "trained" if proc.returncode == 0 else "failed", time.perf_counter() - t0)
                )
    finally:
        for proc in running:  # Ctrl-C or an error here: the children stop too (each resumes later)
            proc.terminate()
        for proc in running:
            proc.wait()
        if in_main:
            signal.signal(signal.SIGTERM, previous)
    if failed:
        raise StudyError(f"{len(failed)} run(s) failed: {', '.join(failed)}; run the same command again to retry")
    return outcomes


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _project_root() -> Path:
    """The folder ``core`` is imported from, so a child process imports the same code."""
    return Path(__file__).resolve().parents[2]


def _machine_overrides(spec: RunSpec) -> dict[str, Any]:
    c = spec.config
    return {"device": c.device, "threads": c.threads, "data_dir": c.data_dir}  # load_trainer never downloads


def _reset_peak(device: str) -> None:
    """On a GPU the summary's peak memory is then this run's own (the trainer reports the process's peak)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def _train(
    trainer: Trainer, log: Callable[[str], None], head: str, paused: Callable[[], bool] | None = None
) -> dict[str, Any] | None:
    """Train to the end, waiting between steps while ``paused()`` (the run's clock stopped); a diverged run
    is ended where it stopped (its model selected on validation so far is tested and measured) and
    reported: returns {step, message} then, else None."""
    last = None
    for event in trainer.events(should_pause=paused):
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
