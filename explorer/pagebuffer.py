"""What a page reads of a training session: per model, the step, validation and change rows a worker appended
(``LaneMetrics``), and the last pictures, behind one lock (``PageBuffer``); a redraw takes one consistent copy
(``Snapshot``). Only the worker (``explorer.sessions.SessionTrainer``) writes; any thread reads."""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.training import ChangeEvent, ErrorEvent, EvalEvent, Event, StepEvent

from .runs import STEP_CURVES, describe_changes, step_curves

_BUFFER_SERIALS = itertools.count(1)


#: The per-step series a lane keeps (one value per step row).
STEP_SERIES = tuple(STEP_CURVES)


@dataclass
class LaneMetrics:
    """The buffer of one lane; only the worker appends, under the trainer's buffer lock."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    nfe_forward: list[float] = field(default_factory=list)
    nfe_backward: list[float] = field(default_factory=list)
    memory_mb: list[float] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    change_step: list[int] = field(default_factory=list)  # live setting changes: after which step
    change_text: list[str] = field(default_factory=list)  # ... and what changed ("lr 0.002 → 0.0005")
    error: tuple[str, str] | None = None  # (message, advice) of the last divergence
    unconverged: int = 0  # DEQ steps whose root solves missed their tolerance (approximate gradients)
    finished: dict[str, Any] | None = None
    visual: Any = None  # whatever the visual callback computed last (read-only for the page)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in STEP_SERIES}
        out["val_step"] = np.asarray(self.val_step, dtype=np.float64)
        out["val_acc"] = np.asarray(self.val_acc, dtype=np.float64)
        out["change_step"] = np.asarray(self.change_step, dtype=np.float64)
        out["change_text"] = list(self.change_text)
        return out


@dataclass(frozen=True)
class Snapshot:
    """A consistent copy of a trainer's buffer for one redraw."""

    state: str
    step: int
    total_steps: int
    metrics: dict[str, dict[str, np.ndarray]]
    last: dict[str, dict[str, float]]
    errors: dict[str, tuple[str, str]]
    finished: dict[str, dict[str, Any]]
    visuals: dict[str, Any]
    steps_per_second: float
    message: str
    version: int = 0  # bumps with every new picture
    serial: int = 0  # the buffer's (a reset or a new trainer starts another): with version, names a picture
    gradients: dict[str, str] = field(default_factory=dict)  # lane -> direct, adjoint, implicit or phantom


class PageBuffer:
    """What the page reads of a :class:`SessionTrainer`: one :class:`LaneMetrics` per lane and the last
    pictures, behind one lock. Only the worker writes (events, errors, finished summaries); any thread
    takes a :meth:`snapshot`.

    Args:
        lanes: how many models.
        max_points: keep at most this many step rows per lane (older rows are thinned by half).
    """

    def __init__(self, lanes: int, max_points: int):
        self.max_points = max_points
        self.lanes = [LaneMetrics() for _ in range(lanes)]
        self.version = 0  # bumps with every new picture
        self.serial = next(_BUFFER_SERIALS)  # this buffer among every one of the process
        self._lock = threading.Lock()

    def record(self, lane: int, event: Event) -> None:
        """One of core's events into a lane's series (steps, validation, divergence)."""
        m = self.lanes[lane]
        with self._lock:
            if isinstance(event, StepEvent):
                for key, value in step_curves(event).items():
                    getattr(m, key).append(value)
                m.unconverged += event.solves_converged is False
                if len(m.step) > self.max_points:
                    # Thin the older half: long runs keep their shape at a bounded cost.
                    for key in STEP_SERIES:
                        values = getattr(m, key)
                        half = len(values) // 2
                        setattr(m, key, values[:half:2] + values[half:])
            elif isinstance(event, EvalEvent):
                m.val_step.append(event.step)
                m.val_acc.append(event.accuracy)
            elif isinstance(event, ChangeEvent) and event.changes:
                m.change_step.append(event.step)
                m.change_text.append(describe_changes(event.changes))
            elif isinstance(event, ErrorEvent):
                # The step was rolled back: the run stays usable after a settings change.
                m.error = (event.message, event.advice)

    def clear_errors(self) -> None:
        with self._lock:
            for m in self.lanes:
                m.error = None

    def publish(self, lane: int, *, visual: Any = None, finished: dict[str, Any] | None = None) -> None:
        """A lane's new picture, or its summary once its files are written."""
        with self._lock:
            if finished is not None:
                self.lanes[lane].finished = finished
            else:
                self.lanes[lane].visual = visual

    def new_version(self) -> None:
        with self._lock:
            self.version += 1

    def unfinished(self) -> list[int]:
        with self._lock:
            return [i for i, m in enumerate(self.lanes) if m.finished is None]

    def errors(self) -> bool:
        with self._lock:
            return any(m.error for m in self.lanes)

    def pictures(self, names: list[str]) -> dict[str, Any]:
        """The fields of a :class:`Snapshot` a picture needs, without copying the curves (an animation frame
        reads them many times a second): the visuals, their version, the errors, and each lane's last step
        and validation accuracy as ``last``."""
        with self._lock:
            last = {}
            for n, m in zip(names, self.lanes):
                if m.step:
                    last[n] = {"step": float(m.step[-1])}
                    if m.val_acc:
                        last[n]["val_acc"] = float(m.val_acc[-1])
            return {
                "visuals": {n: m.visual for n, m in zip(names, self.lanes)},
                "version": self.version,
                "serial": self.serial,
                "errors": {n: m.error for n, m in zip(names, self.lanes) if m.error},
                "last": last,
            }

    def copy(self, names: list[str]) -> dict[str, Any]:
        """The fields of a :class:`Snapshot` that come from the buffer, by lane name (lists to arrays)."""
        with self._lock:
            metrics = {n: m.arrays() for n, m in zip(names, self.lanes)}
            out = {
                "metrics": metrics,
                "errors": {n: m.error for n, m in zip(names, self.lanes) if m.error},
                "finished": {n: dict(m.finished) for n, m in zip(names, self.lanes) if m.finished},
                "visuals": {n: m.visual for n, m in zip(names, self.lanes)},
                "version": self.version,
                "serial": self.serial,
            }
            unconverged = {n: m.unconverged for n, m in zip(names, self.lanes)}
        last = {}
        for name, m in metrics.items():
            if len(m["step"]):
                last[name] = {k: float(m[k][-1]) for k in STEP_SERIES if len(m[k])}
                last[name]["unconverged_steps"] = unconverged[name]
                if len(m["val_acc"]):
                    last[name]["val_acc"] = float(m["val_acc"][-1])
        return {**out, "last": last}
