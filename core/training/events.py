"""Typed training events: what the loop yields and every front end (CLI, app) consumes.

Each event is a frozen dataclass with a ``kind`` tag and ``to_dict()`` for JSON lines.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (also inside dicts and lists) as None: JSON has no NaN/inf,
    so metrics.jsonl, summary.json and exports stay valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    step: int
    epoch: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **json_safe(dataclasses.asdict(self))}


@dataclass(frozen=True)
class StepEvent(Event):
    """One optimisation step.

    Attributes:
        loss: cross-entropy of the batch.
        train_acc: accuracy on the batch (before the update).
        nfe_forward / nfe_backward: field (or cell) evaluations of the forward pass / of the backward
            pass (adjoint re-integration or implicit-backward VJPs; 0 for plain backprop).
        residual: worst relative equilibrium residual of the batch (DEQ), else None.
        backward_residual: worst relative residual of the implicit backward's linear solve (DEQ), else None.
        solves_converged: DEQ: did the forward and the backward solve both meet their tolerance on every
            rank? When False, the step's gradient is approximate (how far off depends on the residuals).
            None for the ODE families.
        start_loss: the start-point SmoothL1 loss when the start point was updated this step.
        lr: learning rate used for this step.
        peak_memory_bytes: the whole process's peak so far, shared by every run trained in that process
            (CUDA max_memory_allocated on a GPU, peak RSS on the CPU); see ``graph_bytes`` for the run's own.
        graph_bytes: bytes of the tensors this step's forward pass kept for backward: the run's own
            memory, deterministic; excludes weights' optimizer state (each storage once, see
            :class:`~core.training.memory.SavedTensorMeter`).
        step_seconds: wall time of this step; wall_seconds: since the run started (a resumed run goes on
            from the time its checkpoint was saved, so curves against wall time stay continuous).
    """

    kind: ClassVar[str] = "step"
    loss: float
    train_acc: float
    nfe_forward: int
    nfe_backward: int
    residual: float | None
    start_loss: float | None
    lr: float
    peak_memory_bytes: int
    graph_bytes: int
    step_seconds: float
    wall_seconds: float
    backward_residual: float | None = None
    solves_converged: bool | None = None


@dataclass(frozen=True)
class EvalEvent(Event):
    """Validation after ``step`` steps: loss, accuracy, mean forward NFE; ``is_best`` when selected."""

    kind: ClassVar[str] = "eval"
    split: str
    loss: float
    accuracy: float
    nfe_forward: float
    is_best: bool
    seconds: float


@dataclass(frozen=True)
class CheckpointEvent(Event):
    kind: ClassVar[str] = "checkpoint"
    path: str


@dataclass(frozen=True)
class FinishedEvent(Event):
    """The run ended. Test accuracy is measured once, on the model selected by validation.

    ``stopped`` is True when the run was stopped before its planned number of steps (or time budget).
    ``seconds`` is the run's wall time, a resumed run's including the time before its checkpoint.
    ``peak_memory_bytes`` / ``memory_measure`` are the whole process's peak (shared by every run in it);
    ``peak_graph_bytes`` is the run's own: the largest ``graph_bytes`` of its steps (kept in the
    checkpoint, so a resumed run's figure covers the steps before the resume too).
    """

    kind: ClassVar[str] = "finished"
    test_accuracy: float | None
    test_loss: float | None
    best_val_accuracy: float | None
    best_step: int | None
    params: int
    mean_nfe_forward: float
    mean_nfe_backward: float
    peak_memory_bytes: int
    memory_measure: str
    peak_graph_bytes: int
    seconds: float
    stopped: bool


@dataclass(frozen=True)
class ChangeEvent(Event):
    """Settings changed during a run (``Trainer.apply``), effective from step ``step + 1`` on.

    ``changes`` maps each changed setting to ``{"old": ..., "new": ...}``, JSON-ready: ``lr`` is the
    base rate of the schedule, ODE and DEQ settings appear field by field with dotted names
    (``ode.rtol``, ``deq.solver_options.tol``). Empty when the call changed nothing.
    """

    kind: ClassVar[str] = "change"
    changes: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ErrorEvent(Event):
    """The run could not go on (divergence, solver failure). ``advice`` names the setting to change;
    ``checkpoint`` is the last good checkpoint, kept untouched (None when none was written)."""

    kind: ClassVar[str] = "error"
    message: str
    advice: str
    checkpoint: str | None
