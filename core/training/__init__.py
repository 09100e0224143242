"""Training: configs, the event-streaming loop, checkpoints, memory figures."""

from .checkpoint import CheckpointError, atomic_write_bytes, atomic_write_json, load_checkpoint, save_checkpoint
from .config import DEVICES, PRECISIONS, TrainConfig
from .distributed import World, resolve_device
from .events import ChangeEvent, CheckpointEvent, ErrorEvent, EvalEvent, Event, FinishedEvent, StepEvent, json_safe
from .loop import LIVE_SETTINGS, Trainer, load_trainer, resume, train
from .memory import SavedTensorMeter, peak_memory
from .rundir import RUN_NAME, RunDir
from .stepping import Divergence

__all__ = [
    "DEVICES",
    "LIVE_SETTINGS",
    "PRECISIONS",
    "RUN_NAME",
    "ChangeEvent",
    "CheckpointError",
    "CheckpointEvent",
    "Divergence",
    "ErrorEvent",
    "EvalEvent",
    "Event",
    "FinishedEvent",
    "RunDir",
    "SavedTensorMeter",
    "StepEvent",
    "TrainConfig",
    "Trainer",
    "World",
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
