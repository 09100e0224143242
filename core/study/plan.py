"""What a study trains and measures: its presets, its model variants, and the list of runs to do.

A study is datasets x variants x seeds, one ordinary run folder each (``OUT/<dataset>-<variant>-s<seed>``),
every variant at the parameters of the ``image28-*`` / ``image32-*`` presets (matched within 10 %), all
runs of one dataset with the same steps, batch, learning rate and data. A seed sets the data order, the
validation split, the train/test subsets of ``train_limit`` and the model's initialisation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .. import data as data_lib
from ..checks import SEED, check, check_choice, check_positive_int, from_fields, is_number
from ..models import FAST_ODE_RECIPE, ODE_RECIPES, PAPER_ODE_RECIPE, ModelConfig, preset, preset_name
from ..training import TrainConfig

#: variant -> (preset family, ModelConfig changes, ODEConfig changes that win over the study's ``ode``).
#: ``homoode-learned`` is the paper's model (a shared start point trained by its own SGD); ``homoode-fixed``
#: the same network from the fixed ±1 start; ``homoode-adjoint`` the paper's model differentiated by the
#: exact adjoint (the O(1)-memory mode the paper's memory claim is about); ``homoode-fast`` the paper's model
#: with the presets' fast fixed-step recipe instead of the study's adaptive solver.
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "node": ("node", {}, {}),
    "anode": ("anode", {}, {}),
    "deq": ("deq", {}, {}),
    "homoode-learned": ("homoode", {"start": "learnable"}, {}),
    "homoode-fixed": ("homoode", {"start": "fixed"}, {}),
    "homoode-adjoint": ("homoode", {"start": "learnable"}, {"adjoint": True}),
    "homoode-fast": (
        "homoode",
        {"start": "learnable"},
        {k: getattr(ODE_RECIPES[FAST_ODE_RECIPE], k) for k in ("method", "n_steps", "adjoint")},
    ),
    # The official HomoODE CIFAR-10 network (132,938 parameters + 192): not at the others' size, so it is
    # reported beside them, never in a comparison rule.
    "paper-cifar10": ("homoode", {}, {}),
}
#: The paper's ODE recipe as ``ODEConfig`` changes: what a study integrates with unless told otherwise.
PAPER_ODE = {k: getattr(ODE_RECIPES[PAPER_ODE_RECIPE], k) for k in ("method", "rtol", "atol")}
#: The variants every study compares: the four families, HomoODE from a learned and from a fixed start.
BASE_VARIANTS = ("node", "anode", "deq", "homoode-learned", "homoode-fixed")
#: The variant that stands for "HomoODE" in the paper's claims (its learned start point is part of it).
PAPER_HOMOODE = "homoode-learned"
#: The variant that stands for HomoODE in the memory claim when a study has it (its O(1)-memory mode).
MEMORY_HOMOODE = "homoode-adjoint"
#: Settings of a run that belong to the machine rather than to the study (ignored when a run is reused).
MACHINE_SETTINGS = ("device", "threads", "data_dir", "download")


def model_config(
    variant: str,
    input_kind: str,
    seed: int,
    ode: dict[str, Any] | None = None,
    deq: dict[str, Any] | None = None,
) -> ModelConfig:
    """The model of ``variant`` for ``input_kind`` inputs, initialised from ``seed``; ``ode`` changes the ODE
    families' integration (``ODEConfig`` fields), ``deq`` the DEQ's forward solver options (tol, max_iter)."""
    check_choice(variant, "variant", tuple(VARIANTS))
    if variant == "paper-cifar10":
        check(input_kind == "image32", "variant 'paper-cifar10' is for 3x32x32 images (cifar10, cifar100, svhn)")
        config = preset("paper-cifar10").replace(seed=seed)
    else:
        family, changes, own_ode = VARIANTS[variant]
        config = preset(preset_name(family, input_kind)).replace(seed=seed, **changes)
        ode = {**(ode or {}), **own_ode}
    if config.family == "deq" and deq:
        return config.replace(deq=config.deq.with_forward(**deq))
    if config.family != "deq" and ode:
        return config.replace(ode=dataclasses.replace(config.ode, **ode))
    return config


@dataclass(frozen=True)
class MeasureSettings:
    """What is measured on each trained model (the one selected on validation), after training.

    Perturbation strengths are in pixel units (images in [0, 1]; the perturbed image is clipped to [0, 1]
    and normalised as the data is).

    Attributes:
        examples: test examples measured (a prefix of the run's test split: a stratified sample).
        noise: standard deviations of additive Gaussian noise.
        fgsm: L∞ radii of the fast gradient sign attack (Goodfellow et al. 2015).
        pgd: L∞ radii of projected gradient descent (Madry et al. 2018), ``pgd_steps`` steps of size
            2.5 eps / steps from a uniform random start in the ball.
        tolerances: the solver tolerance after training: dopri5 rtol = atol (NODE, ANODE, HomoODE), the DEQ's
            Anderson relative residual (its iteration cap raised to ``tol_max_iter`` so the tolerance binds).
        rk4_steps: fixed-step budgets of the ODE families (rk4 over [0, 1]: 4 evaluations per step).
        deq_iters: the DEQ's matching budgets: Anderson capped at this many iterations (tolerance 1e-8).
        batch_size: examples per forward pass in the measurements.
    """

    examples: int = 128
    noise: tuple[float, ...] = (0.1, 0.3)
    fgsm: tuple[float, ...] = (0.05,)
    pgd: tuple[float, ...] = (0.05,)
    pgd_steps: int = 3
    tolerances: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4)
    tol_max_iter: int = 100
    rk4_steps: tuple[int, ...] = (1, 2, 4)
    deq_iters: tuple[int, ...] = (3, 7, 15)
    batch_size: int = 64

    def __post_init__(self) -> None:
        check_positive_int(self.examples, "measure examples")
        check_positive_int(self.pgd_steps, "pgd_steps")
        check_positive_int(self.tol_max_iter, "tol_max_iter")
        check_positive_int(self.batch_size, "measure batch_size")
        for name in ("noise", "fgsm", "pgd"):
            values = getattr(self, name)
            check(
                isinstance(values, tuple) and all(is_number(v) and 0 < v <= 1 for v in values),
                f"{name} strengths must be numbers in (0, 1] (pixel units), got {values!r}",
            )
        check(
            isinstance(self.tolerances, tuple) and all(is_number(t) and 0 < t < 1 for t in self.tolerances),
            f"tolerances must be numbers in (0, 1), got {self.tolerances!r}",
        )
        for name in ("rk4_steps", "deq_iters"):
            values = getattr(self, name)
            check(isinstance(values, tuple), f"{name} must be a tuple")
            for v in values:
                check_positive_int(v, name)
        check(
            len(self.rk4_steps) == len(self.deq_iters),
            f"rk4_steps and deq_iters pair up budget by budget: give as many of each, got {self.rk4_steps} and "
            f"{self.deq_iters}",
        )


@dataclass(frozen=True)
class StudyPreset:
    """The training and measurement settings of a study; ``per_dataset`` overrides them for one dataset.

    Attributes:
        name: quick, full, or anything a caller names it.
        datasets, seeds, variants: the default grid (the CLI may change datasets and seeds).
        optional_datasets: datasets of ``datasets`` that are skipped, with a note, when their files are
            not on this machine (``full``'s CIFAR-10); any other missing dataset is an error.
        steps / epochs: length of every run (``steps`` wins when set).
        batch_size, lr: Adam with cosine decay to 1e-6 over the run (the trainer's schedule).
        train_limit: train on at most this many examples (a stratified subset drawn with the run's seed;
            validation and test stay whole), None: the whole training split.
        test_limit: measure test accuracy on the first this many test examples (a stratified prefix: the
            test split's order is fixed and class-balanced), None: the whole test split.
        eval_every: validate (and checkpoint) every this many steps; 0: every epoch.
        eval_batches: validation batches per evaluation (None: the whole validation split).
        start_lr, start_every: the learned start point's SGD (the official schedule is 0.02 every 20 steps
            over 300 epochs; a short run needs it faster to move z0 at all).
        augment: crop + flip for the 32x32 sets.
        ode: changes to the ODE families' integration (``ODEConfig`` fields; default: the paper's recipe,
            dopri5 at rtol = atol = 1e-3 as the official code, not the presets' fast rk4: the learned start
            point's saving only shows with an adaptive solver), e.g. ``{"method": "rk4", "n_steps": 1}``.
        deq: changes to the DEQ's forward solver options ({}: the presets' Anderson to 1e-4, at most 30
            iterations), e.g. ``{"max_iter": 10}``.
        measure: what is measured after training.
        per_dataset: dataset -> {setting: value} (``measure`` as a dict of its own fields; ``variants`` to
            add variants for that dataset only).
    """

    name: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    variants: tuple[str, ...] = BASE_VARIANTS
    optional_datasets: tuple[str, ...] = ()
    steps: int | None = None
    epochs: int = 1
    batch_size: int = 64
    lr: float = 3e-3
    train_limit: int | None = None
    test_limit: int | None = None
    eval_every: int = 0
    eval_batches: int | None = None
    start_lr: float = 0.02
    start_every: int = 20
    augment: bool = False
    ode: dict[str, Any] = field(default_factory=lambda: dict(PAPER_ODE))
    deq: dict[str, Any] = field(default_factory=dict)
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check(bool(self.datasets), "a study needs at least one dataset")
        check(bool(self.seeds), "a study needs at least one seed")
        for seed in self.seeds:
            SEED.check(seed, "seed")
        check(len(set(self.seeds)) == len(self.seeds), f"seeds must differ, got {list(self.seeds)}")
        check(len(set(self.datasets)) == len(self.datasets), f"datasets must differ, got {list(self.datasets)}")
        check(bool(self.variants), "a study needs at least one variant")
        for variant in self.variants:
            check_choice(variant, "variant", tuple(VARIANTS))
        for name in self.datasets:
            info = data_lib.dataset_info(name)  # ValueError naming the valid ones
            check(
                info.input_kind in ("image28", "image32"),
                f"the study compares image models; {name!r} holds {info.input_kind}: pick image datasets "
                f"({', '.join(n for n, i in data_lib.DATASETS.items() if i.input_kind != 'points')})",
            )
        check(isinstance(self.measure, MeasureSettings), "measure must be MeasureSettings")
        model_config("node", "image28", 0, ode=self.ode)  # a bad ODE or solver setting fails here, named
        model_config("deq", "image28", 0, deq=self.deq)

    def replace(self, **changes: Any) -> StudyPreset:
        return dataclasses.replace(self, **changes)

    def for_dataset(self, dataset: str) -> StudyPreset:
        """These settings with ``dataset``'s overrides applied."""
        changes = dict(self.per_dataset.get(dataset, {}))
        if "measure" in changes:
            changes["measure"] = dataclasses.replace(self.measure, **changes["measure"])
        if "variants" in changes:
            changes["variants"] = tuple(dict.fromkeys((*self.variants, *changes["variants"])))
        return dataclasses.replace(self, per_dataset={}, **changes) if changes else self

    def settings(self) -> dict[str, Any]:
        """What must agree for two studies' runs to be one study's (the grid itself may grow)."""
        out = dataclasses.asdict(self)
        for key in ("name", "datasets", "seeds", "optional_datasets"):
            out.pop(key)
        return _jsonable(out)

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyPreset:
        data = dict(data)
        if isinstance(data.get("measure"), dict):
            data["measure"] = from_fields(MeasureSettings, _tuples(data["measure"]))
        for key in ("datasets", "seeds", "variants", "optional_datasets"):
            if isinstance(data.get(key), list):
                data[key] = tuple(data[key])
        if isinstance(data.get("per_dataset"), dict):
            data["per_dataset"] = {d: _tuples(v) for d, v in data["per_dataset"].items() if isinstance(v, dict)}
        return from_fields(cls, data)


def _tuples(value: Any) -> Any:
    """JSON's lists back to the tuples the settings hold (in nested dicts too)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


#: 2 datasets x 3 seeds x 5 variants, 60 steps of 64 each (3,840 training examples: 70 % of an epoch of the
#: digits), dopri5 as the presets (and the official code) train; test accuracy on a stratified 1,000 of each
#: test split (the whole of it would cost ~20 of the 2-core minutes whatever the training budget; a 1,000-image
#: test has a binomial standard error of about 1 point at 85 %, recorded in each summary). About 35-40 minutes
#: on 2 CPU cores; ``--steps`` trades minutes for accuracy.
QUICK = StudyPreset(
    name="quick",
    datasets=("digits", "fashion-mnist"),
    steps=60,
    batch_size=64,
    lr=3e-3,
    test_limit=1000,
    eval_every=20,
    eval_batches=2,
    # 60 steps: the official every-20-steps schedule would move z0 three times; every 5 at 0.1, the
    # benchmarks' faster schedule (docs/benchmarks.md), gives it 12 updates.
    start_lr=0.1,
    start_every=5,
    measure=MeasureSettings(),
)

#: The study long enough to speak about the paper: 1,000 steps of 64 per run (about 9 epochs of
#: the digits, 1.1 of Fashion-MNIST), 3 seeds, the five compared variants plus HomoODE by the exact adjoint
#: (memory in the O(1) mode of the paper's claim) and by the fast fixed-step recipe (what it costs in
#: accuracy and saves in time); dopri5 at 1e-3 for the other ODE runs, the whole test split. Several hours
#: on 2 CPU cores (the study prints its estimate): run it with ``--jobs 2`` and commit the finished runs'
#: small files (``studies/standard/``, see the README); with ``--device cuda`` a GPU gets through it fastest.
STANDARD = StudyPreset(
    name="standard",
    datasets=("digits", "fashion-mnist"),
    variants=(*BASE_VARIANTS, "homoode-adjoint", "homoode-fast"),
    steps=1000,
    batch_size=64,
    lr=1e-3,
    eval_every=100,
    eval_batches=8,
    # The official 0.02 every 20 steps would move z0 50 times in 1,000 steps; the benchmarks' 0.1 every 5
    # gives it 200 updates (docs/benchmarks.md).
    start_lr=0.1,
    start_every=5,
    measure=MeasureSettings(
        examples=500,
        noise=(0.1, 0.3),
        fgsm=(0.05, 0.1),
        pgd=(0.05,),
        pgd_steps=5,
        batch_size=250,
    ),
)

#: For a GPU: the whole of each dataset, CIFAR-10 (with the official network) when its files are present.
FULL = StudyPreset(
    name="full",
    datasets=("digits", "fashion-mnist", "cifar10"),
    optional_datasets=("cifar10",),
    epochs=20,
    batch_size=128,
    lr=1e-3,
    eval_every=0,
    start_lr=0.02,
    start_every=20,
    measure=MeasureSettings(
        examples=1000,
        noise=(0.05, 0.1, 0.2, 0.3),
        fgsm=(0.05, 0.1),
        pgd=(0.05, 0.1),
        pgd_steps=10,
        rk4_steps=(1, 2, 4, 8),
        deq_iters=(3, 7, 15, 31),
        batch_size=500,
    ),
    per_dataset={
        "cifar10": {
            "epochs": 50,
            "augment": True,
            "variants": ("paper-cifar10",),
            "measure": {"noise": (0.02, 0.05, 0.1), "fgsm": (2 / 255, 8 / 255), "pgd": (2 / 255, 8 / 255)},
        }
    },
)

STUDY_PRESETS: dict[str, StudyPreset] = {"quick": QUICK, "standard": STANDARD, "full": FULL}


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: its folder's name and its training config."""

    name: str
    dataset: str
    variant: str
    seed: int
    config: TrainConfig


def run_name(dataset: str, variant: str, seed: int) -> str:
    return f"{dataset}-{variant}-s{seed}"


def plan_runs(
    study: StudyPreset, device: str = "auto", threads: int | None = None, data_dir: str | None = None
) -> list[RunSpec]:
    """Every run of ``study``, dataset by dataset, seed by seed, variant by variant (so a study stopped
    half-way has whole seeds of the first dataset rather than one variant of everything)."""
    specs = []
    for dataset in study.datasets:
        s = study.for_dataset(dataset)
        kind = data_lib.dataset_info(dataset).input_kind
        for seed in study.seeds:
            for variant in s.variants:
                if variant == "paper-cifar10" and kind != "image32":
                    continue
                config = TrainConfig(
                    model=model_config(variant, kind, seed, ode=s.ode, deq=s.deq),
                    dataset=dataset,
                    data_dir=data_dir,
                    epochs=s.epochs,
                    steps=s.steps,
                    batch_size=s.batch_size,
                    lr=s.lr,
                    start_lr=s.start_lr,
                    start_every=s.start_every,
                    augment=s.augment,
                    eval_every=s.eval_every,
                    eval_batches=s.eval_batches,
                    train_limit=s.train_limit,
                    test_limit=s.test_limit,
                    seed=seed,
                    device=device,
                    threads=threads,
                )
                specs.append(RunSpec(run_name(dataset, variant, seed), dataset, variant, seed, config))
    return specs


def config_differences(planned: TrainConfig, stored: dict[str, Any]) -> list[str]:
    """The settings (dotted names) in which a run folder's ``config.json`` differs from the plan, those of
    the machine (device, threads, data folder) left out."""
    from ..training.config import config_changes

    try:
        saved = TrainConfig.from_dict(stored)
    except (TypeError, ValueError) as err:
        return [f"unreadable config ({err})"]
    machine = {k: getattr(planned, k) for k in MACHINE_SETTINGS}
    return sorted(config_changes(planned, saved.replace(**machine)))
