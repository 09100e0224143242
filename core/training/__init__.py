"""Training: configs, the event-streaming loop, checkpoints."""

from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .events import CheckpointEvent, ErrorEvent, EvalEvent, Event, FinishedEvent, StepEvent, json_safe
from .loop import Divergence, Trainer, load_trainer, peak_memory, resolve_device, resume, train

__all__ = [
    "CheckpointError",
    "CheckpointEvent",
    "Divergence",
    "ErrorEvent",
    "EvalEvent",
    "Event",
    "FinishedEvent",
    "StepEvent",
    "TrainConfig",
    "Trainer",
    "atomic_write_bytes",
    "atomic_write_json",
    "json_safe",
    "load_checkpoint",
    "load_trainer",
    "peak_memory",
    "resolve_device",
    "resume",
    "save_checkpoint",
    "train",
]
