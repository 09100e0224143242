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
from .solvers import METHODS, SolverError, SolverStats, Status, make_options, solve

__all__ = [
    "FAMILIES",
    "INPUT_KINDS",
    "METHODS",
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
