"""core: implicit deep-learning models (NODE, ANODE, DEQ, HomoODE) and their root solvers.

Pure PyTorch + torchdiffeq; never imports a UI library.
"""

from .models import (
    FAMILIES,
    INPUT_KINDS,
    PRESETS,
    DEQConfig,
    ImplicitClassifier,
    ModelConfig,
    ModelOutput,
    ODEConfig,
    build_model,
    preset,
)
from .solvers import METHODS, ODE_METHODS, SolverError, SolverStats, Status, make_options, solve
from .training import DEVICES

__all__ = [
    "DEVICES",
    "FAMILIES",
    "INPUT_KINDS",
    "METHODS",
    "ODE_METHODS",
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
    "solve",
]
__version__ = "0.1.0"
