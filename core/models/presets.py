"""Named model configurations.

For each input kind the four families come at matched parameter counts (within ±10 %, tested):
images share one layout (ANODE takes its ``augment_dim`` channels out of the feature extractor's
width, so its state keeps ``width`` channels); on points, hidden widths were chosen so the
families match the 2-D NODE. ``paper-cifar10`` is the official HomoODE CIFAR-10 network
(132,938 parameters plus 192 for the learnable start point).
"""

from __future__ import annotations

from .config import FAMILIES, ModelConfig, ODEConfig

#: The ODE solver recipes a user picks by name (``python -m core.bench recipes`` measures them):
#: the paper's, dopri5 at rtol = atol = 1e-3 as the official code trains, and the fast fixed-step one.
PAPER_ODE_RECIPE = "dopri5"
FAST_ODE_RECIPE = "rk4x1"
ODE_RECIPES: dict[str, ODEConfig] = {
    FAST_ODE_RECIPE: ODEConfig(method="rk4", n_steps=1),
    PAPER_ODE_RECIPE: ODEConfig(method="dopri5", rtol=1e-3, atol=1e-3),
}

_POINTS_ODE = ODE_RECIPES[PAPER_ODE_RECIPE]
# Images train with the fast recipe by default: at equal steps it keeps dopri5's accuracy in a fraction of
# the time (docs/benchmarks.md, "ODE solver recipes"); ``paper-cifar10`` keeps the paper's solver. Points
# keep dopri5: the Playground shows how a NODE's adaptive NFE grows where its trajectories must squeeze.
_IMAGE_ODE = ODE_RECIPES[FAST_ODE_RECIPE]

# Hidden widths on points, matched to the NODE's 328 parameters (see tests/core/test_models.py).
_POINTS = {
    "node": dict(hidden=64),
    "anode": dict(hidden=45, augment_dim=1),
    "deq": dict(width=4, hidden=29),
    "homoode": dict(width=4, hidden=29),
}


def _image(kind: str, family: str, num_classes: int = 10) -> ModelConfig:
    extra = {"augment_dim": 4} if family == "anode" else {}
    return ModelConfig(
        family=family,
        input_kind=kind,
        num_classes=num_classes,
        width=32,
        head_dim=64,
        head_pool=4,
        ode=_IMAGE_ODE,
        **extra,
    )


def preset_name(family: str, input_kind: str) -> str:
    """The name of the preset that builds a ``family`` model for ``input_kind`` inputs (``image28-deq``)."""
    return f"{input_kind}-{family}"


def _build_presets() -> dict[str, ModelConfig]:
    presets: dict[str, ModelConfig] = {}
    for family in FAMILIES:
        presets[f"points-{family}"] = ModelConfig(
            family=family, input_kind="points", num_classes=2, ode=_POINTS_ODE, **_POINTS[family]
        )
        for kind in ("image28", "image32"):
            presets[preset_name(family, kind)] = _image(kind, family)
    for kind in ("image28", "image32"):
        # The DEQ tutorials' residual GroupNorm cell: not a contraction (most solves miss 1e-4 within 30
        # Anderson iterations once trained), the Solver lab's example of where homotopy continuation helps.
        presets[f"{kind}-deq-groupnorm"] = _image(kind, "deq").replace(cell="groupnorm")
    presets["paper-cifar10"] = ModelConfig(
        family="homoode",
        input_kind="image32",
        num_classes=10,
        width=64,
        head_dim=256,
        head_pool=1,
        dropout=0.1,
        start="learnable",
        ode=ODE_RECIPES[PAPER_ODE_RECIPE],
    )
    return presets


PRESETS: dict[str, ModelConfig] = _build_presets()


def preset(name: str) -> ModelConfig:
    """The named configuration; unknown names raise ValueError listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(sorted(PRESETS))}")
    return PRESETS[name]
