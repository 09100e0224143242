"""The four implicit model families on three kinds of input, built from one config.

Example:
    >>> import torch
    >>> from core.models import build_model, preset
    >>> model = build_model(preset("points-homoode"))
    >>> out = model(torch.randn(8, 2))
    >>> out.logits.shape, out.stats.nfe > 0
    (torch.Size([8, 2]), True)
"""

from .blocks import BlockStats, DEQBlock, HomoODEBlock, NODEBlock, ODEStepLimitError
from .budget import BUDGET_SWEEPS, Budget, accuracy_and_nfe, budget_curve, budgets, solver_settings
from .classifier import ImplicitClassifier, ModelOutput, build_model
from .config import DEQ_CELLS, DEQ_MAX_ITER, FAMILIES, FAMILY_NAMES, INPUT_KINDS, DEQConfig, ModelConfig, ODEConfig
from .presets import FAST_ODE_RECIPE, ODE_RECIPES, PAPER_ODE_RECIPE, PRESETS, preset, preset_name

__all__ = [
    "BUDGET_SWEEPS",
    "DEQ_CELLS",
    "DEQ_MAX_ITER",
    "FAMILIES",
    "FAMILY_NAMES",
    "FAST_ODE_RECIPE",
    "INPUT_KINDS",
    "ODE_RECIPES",
    "PAPER_ODE_RECIPE",
    "PRESETS",
    "BlockStats",
    "Budget",
    "DEQBlock",
    "DEQConfig",
    "HomoODEBlock",
    "ImplicitClassifier",
    "ModelConfig",
    "ModelOutput",
    "NODEBlock",
    "ODEConfig",
    "ODEStepLimitError",
    "accuracy_and_nfe",
    "budget_curve",
    "budgets",
    "build_model",
    "preset",
    "preset_name",
    "solver_settings",
]
