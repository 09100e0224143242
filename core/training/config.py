"""The training configuration: one frozen dataclass for the CLI, the app and the tests."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..checks import SEED, fail, from_fields, is_number
from ..models import ModelConfig
from .events import json_safe

#: Where a run trains: auto (CUDA when present, else CPU), cpu or cuda. The CLI, the benchmarks and the app
#: offer exactly these (the app only those this machine has).
DEVICES = ("auto", "cpu", "cuda")
#: Training precisions: fp32; mixed precision (torch.autocast) in bfloat16 or float16 (with loss scaling);
#: or fp64 throughout (slow; for checking solvers, gradients and data-parallel runs to rounding level).
PRECISIONS = ("fp32", "bf16", "fp16", "fp64")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a run needs; saved with every run and checkpoint.

    Attributes:
        model: the model to build.
        dataset: a name known to ``core.data`` (digits, circles, mnist, ...).
        data_dir: folder holding standard dataset files (None: the defaults ``core.data`` searches).
        download: let torchvision download a missing dataset (needs internet).
        epochs / steps: length of the run; ``steps`` wins when both are set.
        batch_size, lr, lr_min: Adam with cosine decay per iteration from lr to lr_min.
        weight_decay: Adam's L2 penalty.
        grad_clip: clip the gradient norm to this value (None: no clipping).
        start_lr, start_every: HomoODE's learnable start point: SGD at ``start_lr`` on
            SmoothL1(z0, stop_grad(z(1))) every ``start_every`` steps (official: 0.02, every 20).
        val_fraction: share of the training set held out for validation (None: the dataset's default).
        augment: random crop + flip on 32x32 colour sets.
        eval_every: validate every this many steps (0: at the end of each epoch).
        eval_batches: cap on validation batches (None: the whole split).
        train_limit: use only the first N training examples (quick experiments, tests); validation and
            test stay whole.
        test_limit: measure test accuracy on the first N test examples only (the test split's fixed,
            class-balanced order makes them a stratified sample); recorded in the summary.
        toy_size, toy_noise: generated toy sets only: points in the train and in the test split, and the
            Gaussian noise of the points (None: the set's default).
        seed: seeds the data order, augmentation and dropout.
        device: auto (CUDA when present), cpu or cuda.
        precision: fp32, or mixed precision with ``torch.autocast``: bf16 or fp16 (fp16 with a gradient
            scaler). Only the layers inside the field, cell, features and head run in low precision; the
            implicit state, the ODE integrator's step-size control and the solvers' residuals stay fp32,
            so a tolerance keeps its meaning. fp64: parameters, data and state in float64.
        threads: torch CPU threads (None: leave torch's default).
        time_budget: stop after this many seconds of wall time (evaluation included); the learning rate
            then follows the cosine over the share of the budget spent.
        channels_last: image models and their inputs in channels-last memory layout (faster convolutions
            on recent GPUs, above all in bf16/fp16); ignored, with a warning, for points.
        compile: ``torch.compile`` the field / cell (the function every solver step calls); where it
            cannot compile here, the run goes on eagerly with a warning saying why.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 1
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    lr_min: float = 1e-6
    weight_decay: float = 0.0
    grad_clip: float | None = None
    start_lr: float = 0.02
    start_every: int = 20
    val_fraction: float | None = None
    augment: bool = False
    eval_every: int = 0
    eval_batches: int | None = None
    train_limit: int | None = None
    test_limit: int | None = None
    toy_size: int = 1000
    toy_noise: float | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    threads: int | None = None
    time_budget: float | None = None
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, ModelConfig):
            fail("model must be a ModelConfig")
        for name in ("epochs", "batch_size", "start_every", "toy_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("steps", "eval_batches", "train_limit", "test_limit", "threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                fail(f"{name} must be an integer >= 1 (or unset), got {value!r}")
        if not isinstance(self.eval_every, int) or self.eval_every < 0:
            fail(f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        for name in ("lr", "start_lr"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                fail(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.lr_min, (int, float)) or not 0 <= self.lr_min <= self.lr:
            fail(f"lr_min must be in [0, lr={self.lr}], got {self.lr_min!r}")
        if not is_number(self.weight_decay) or self.weight_decay < 0:
            fail(f"weight_decay must be a number >= 0, got {self.weight_decay!r}")
        if self.grad_clip is not None and (not is_number(self.grad_clip) or self.grad_clip <= 0):
            fail(f"grad_clip must be a positive number (or unset), got {self.grad_clip!r}")
        SEED.check(self.seed, "seed")
        if self.val_fraction is not None and (
            not isinstance(self.val_fraction, (int, float)) or not 0 < self.val_fraction < 1
        ):
            fail(f"val_fraction must be in (0, 1), got {self.val_fraction!r}")
        if self.toy_noise is not None and (
            not isinstance(self.toy_noise, (int, float)) or not math.isfinite(self.toy_noise) or self.toy_noise < 0
        ):
            fail(f"toy_noise must be a number >= 0 (or unset), got {self.toy_noise!r}")
        if self.time_budget is not None and (
            not isinstance(self.time_budget, (int, float))
            or not math.isfinite(self.time_budget)
            or self.time_budget <= 0
        ):
            fail(f"time_budget must be a positive number of seconds (or unset), got {self.time_budget!r}")
        if self.device not in DEVICES:
            fail(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                fail(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.precision not in PRECISIONS:
            fail(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys raise ValueError naming the valid ones."""
        data = dict(data)
        if isinstance(data.get("model"), dict):
            data["model"] = ModelConfig.from_dict(data["model"])
        return from_fields(cls, data)


def nested_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{dotted.name: {"old": ..., "new": ...}}`` for every leaf that differs between two nested dicts (a
    leaf on one side only has None on the other), in ``old``'s order then ``new``'s."""

    def flat(value: Any, prefix: str, out: dict[str, Any]) -> dict[str, Any]:
        if isinstance(value, dict):
            for k, v in value.items():
                flat(v, f"{prefix}{k}.", out)
        else:
            out[prefix[:-1]] = value
        return out

    before, after = flat(old, "", {}), flat(new, "", {})
    missing = object()
    changed = {}
    for key in [*before, *(k for k in after if k not in before)]:
        a, b = before.get(key, missing), after.get(key, missing)
        if a != b:
            changed[key] = {"old": None if a is missing else a, "new": None if b is missing else b}
    return changed


def config_changes(old: TrainConfig, new: TrainConfig) -> dict[str, dict[str, Any]]:
    """``{name: {"old": ..., "new": ...}}`` for every setting that differs, nested ones by dotted name
    (``lr``, ``ode.rtol``, ``deq.solver_options.tol``; model settings without the ``model.`` prefix)."""
    changes = nested_changes(old.to_dict(), new.to_dict())
    return {key.removeprefix("model."): json_safe(change) for key, change in changes.items()}
