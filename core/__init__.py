"""core: implicit deep-learning models (NODE, ANODE, DEQ, HomoODE) and their root solvers.

Pure PyTorch + torchdiffeq; never imports a UI library.
"""

from .solvers import METHODS, SolverError, SolverStats, Status, make_options, solve

__all__ = ["METHODS", "SolverError", "SolverStats", "Status", "make_options", "solve"]
__version__ = "0.1.0"
