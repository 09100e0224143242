"""Training: configs, the event-streaming loop, checkpoints, memory figures."""

from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .events import ChangeEvent, CheckpointEvent, ErrorEvent, EvalEvent, Event, FinishedEvent, StepEvent, json_safe
from .loop import Divergence, Trainer, load_trainer, resolve_device, resume, train
from .memory import SavedTensorMeter, peak_memory

__all__ = [
    "ChangeEvent",
    "CheckpointError",
    "CheckpointEvent",
    "Divergence",
    "ErrorEvent",
    "EvalEvent",
    "Event",
    "FinishedEvent",
    "SavedTensorMeter",
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
