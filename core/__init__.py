"""core: implicit deep-learning models (NODE, ANODE, DEQ, HomoODE) and their root solvers.

Pure PyTorch + torchdiffeq; never imports a UI library.
"""

from .models import (
    FAMILIES,
    FAMILY_NAMES,
    FAST_ODE_RECIPE,
    INPUT_KINDS,
    ODE_RECIPES,
    PAPER_ODE_RECIPE,
    PRESETS,
    DEQConfig,
    ImplicitClassifier,
    ModelConfig,
    ModelOutput,
    ODEConfig,
    build_model,
    preset,
    preset_name,
)
from .solvers import METHODS, ODE_METHODS, SolverError, SolverStats, Status, make_options, solve
from .training import DEVICES

__all__ = [
    "DEVICES",
    "FAMILIES",
    "FAMILY_NAMES",
    "FAST_ODE_RECIPE",
    "INPUT_KINDS",
    "METHODS",
    "ODE_METHODS",
    "ODE_RECIPES",
    "PAPER_ODE_RECIPE",
    "PRESETS",
    "DEQConfig",
    "ImplicitClassifier",
    "ModelConfig",
    "ModelOutput",
    "ODEConfig",
    "SolverError",
    "SolverStats",
    "Status",
    "build_model",
    "make_options",
    "preset",
    "preset_name",
    "solve",
]
__version__ = "0.1.0"
