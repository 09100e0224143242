"""The Train tab's logic: image-run settings (validated), run folders, and the table of saved runs."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import core
from core import FAMILY_NAMES, checks
from core.checks import short_repr
from core.data import DATASETS, dataset_info, is_available
from core.training import TrainConfig

# Real image sets only: the synthetic noise set is for benchmarks, never for the Train tab.
IMAGE_DATASETS = tuple(name for name, info in DATASETS.items() if info.kind in ("bundled", "files"))
#: Devices this server can train on: a web user is never offered (or told to pass a flag for) a missing GPU.
DEVICES = tuple(d for d in core.DEVICES if d != "cuda" or torch.cuda.is_available())
#: Each number of the Train form: its name in messages and its range, core's (``core.checks.SETTINGS``).
NUMBER_FIELDS = {k: v for k, v in checks.SETTINGS.items() if k != "max_iter"}
#: Train-form fields that may be left blank (blank, or 0, means "not used"); every other number must be filled in.
OPTIONAL_FIELDS = ("train_limit", "epochs")
#: Settings that "Apply lr / tolerance now" changes in a running run.
LIVE_FIELDS = ("lr", "tol")


def check_field(name: str, value: Any) -> None:
    """Check one number of the Train form as every entry point does (``core.checks.check_setting``): Start
    (the whole form) and "Apply lr / tolerance now" (a live change) alike."""
    checks.check_setting(name, value)


def live_changes(model: core.ModelConfig, lr: Any, tol: Any) -> dict[str, Any]:
    """The ``Trainer.apply`` changes that "Apply lr / tolerance now" makes to a run of ``model``, checked as
    Start checks them (:func:`check_field`): the learning rate, and the tolerance of the DEQ's solver or of
    the ODE (rtol = atol)."""
    check_field("lr", lr)
    check_field("tol", tol)
    solved = model.with_solver_settings(tol=tol)
    return {"lr": lr, **({"deq": solved.deq} if model.family == "deq" else {"ode": solved.ode})}


def presets_for(family: str, input_kind: str) -> list[str]:
    """The presets that build a ``family`` model for ``input_kind`` inputs (what the preset menu offers)."""
    return sorted(name for name, cfg in core.PRESETS.items() if cfg.family == family and cfg.input_kind == input_kind)


def dataset_choices() -> list[tuple[str, str]]:
    """(label, name) pairs for the dataset menu; sets missing on this machine are marked."""
    out = []
    for name in IMAGE_DATASETS:
        info = DATASETS[name]
        mark = "" if info.kind == "bundled" or is_available(name) else " (not available here)"
        out.append((f"{info.title}{mark}", name))
    return out


@dataclass(frozen=True)
class TrainSettings:
    """The Train tab's controls; ``train_config()`` turns them into the TrainConfig the CLI would build."""

    dataset: str = "digits"
    family: str = "homoode"
    preset: str = "auto"
    steps: int = 300
    batch_size: int = 64
    lr: float = 2e-3
    # The fast fixed-step recipe is the default (docs/benchmarks.md, "ODE solver recipes"); dopri5, the paper's
    # solver, is one choice away in the menu.
    ode_method: str = core.ODE_RECIPES[core.FAST_ODE_RECIPE].method
    n_steps: int = core.ODE_RECIPES[core.FAST_ODE_RECIPE].n_steps
    tol: float = 1e-3
    deq_solver: str = "anderson"
    device: str = "auto"
    eval_every: int = 50
    train_limit: int | None = None
    seed: int = 0
    epochs: int | None = None  # when set, the run lasts this many passes over the training split (not steps)

    def __post_init__(self) -> None:
        if self.dataset not in IMAGE_DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(IMAGE_DATASETS)}, got {short_repr(self.dataset)}")
        if self.family not in FAMILY_NAMES:
            raise ValueError(f"model family must be one of {', '.join(FAMILY_NAMES)}, got {short_repr(self.family)}")
        if self.preset != "auto":
            # The preset must build the model the form names, for the dataset's inputs: a DEQ run must never
            # train a HomoODE preset while it is named and saved as a DEQ.
            kind = dataset_info(self.dataset).input_kind
            fitting = presets_for(self.family, kind)
            if self.preset not in fitting:
                raise ValueError(
                    f"preset {short_repr(self.preset)} does not build a {FAMILY_NAMES[self.family]} for "
                    f"{self.dataset} ({kind} inputs); pick 'auto'"
                    + (f" or one of {', '.join(fitting)}" if fitting else "")
                )
        for name in ("steps", "batch_size", "lr"):
            check_field(name, getattr(self, name))
        checks.check_choice(self.ode_method, "ODE method", core.ODE_METHODS)
        check_field("n_steps", self.n_steps)
        check_field("tol", self.tol)
        checks.check_choice(self.deq_solver, "DEQ solver", core.METHODS)
        if self.device not in DEVICES:
            gpu = "" if "cuda" in DEVICES else " (this server has no CUDA GPU)"
            raise ValueError(f"device must be one of {', '.join(DEVICES)}{gpu}, got {short_repr(self.device)}")
        check_field("eval_every", self.eval_every)
        for name in OPTIONAL_FIELDS:
            if getattr(self, name) is not None:
                check_field(name, getattr(self, name))
        check_field("seed", self.seed)

    @classmethod
    def from_form(cls, **values: Any) -> TrainSettings:
        """From the page's widgets, with the Playground's rule: a blank number is an error ("... is empty"),
        except the optional fields (training subset, epochs), where blank (or 0) means "not used"; a whole
        float becomes an int, and a fraction in a whole-number field is an error (never silently rounded)."""
        ints = {"steps", "batch_size", "n_steps", "eval_every", "train_limit", "seed", "epochs"}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if checks.is_blank(value):
                if key in OPTIONAL_FIELDS:
                    clean[key] = None
                    continue
                if key in NUMBER_FIELDS:
                    check_field(key, value)  # "... is empty: enter a number"
                continue
            if key in ints and isinstance(value, float) and value.is_integer():
                value = int(value)
            if key in OPTIONAL_FIELDS and value == 0:
                value = None
            clean[key] = value
        return cls(**clean)

    def model_config(self) -> core.ModelConfig:
        info = dataset_info(self.dataset)
        name = self.preset if self.preset != "auto" else core.preset_name(self.family, info.input_kind)
        model = core.preset(name)  # its family and input kind match the form's (checked on construction)
        model = model.with_solver_settings(self.tol, self.ode_method, self.n_steps, self.deq_solver)
        return model.replace(num_classes=info.num_classes, seed=self.seed)

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            model=self.model_config(),
            dataset=self.dataset,
            steps=None if self.epochs is not None else self.steps,
            epochs=self.epochs or 1,
            batch_size=self.batch_size,
            lr=self.lr,
            eval_every=self.eval_every,
            eval_batches=8,  # validation stays a few seconds on a CPU; the test split is measured in full
            train_limit=self.train_limit,
            seed=self.seed,
            device=self.device,
        )

    @property
    def display_name(self) -> str:
        preset = "" if self.preset == "auto" else f" ({self.preset})"
        return f"{FAMILY_NAMES[self.family]}{preset} on {self.dataset}"


def new_run_dir(runs_dir: Path, settings: TrainSettings, session_key: str) -> Path:
    """A fresh, unique, readable folder name: time, family, dataset, a piece of the session id."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    tag = re.sub(r"[^a-zA-Z0-9]", "", session_key)[:6] or "local"
    base = runs_dir / f"{stamp}-{settings.family}-{settings.dataset}-{tag}"
    runs_dir.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()  # atomic: of two starts in the same second, each gets its own folder
            return path
        except FileExistsError:
            k += 1
            path = base.with_name(f"{base.name}-{k}")
