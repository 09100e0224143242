"""Root solvers for z = f(z) with one contract: ``z, stats = solve(f, z0, method=..., **options)``.

Example:
    >>> import torch, core
    >>> z, stats = core.solve(torch.cos, torch.zeros(4, 1), method="anderson", tol=1e-8)
    >>> round(float(z[0, 0]), 6), stats.status.value
    (0.739085, 'converged')
"""

from __future__ import annotations

from typing import Any

import torch

from .anderson import AndersonOptions, anderson
from .base import (
    CountedMap,
    Map,
    SolverError,
    SolverOptions,
    SolverPath,
    SolverStats,
    Status,
    batch_norm,
    evenly_spaced,
)
from .broyden import BroydenOptions, broyden
from .fixed_point import FixedPointOptions, fixed_point
from .homotopy import ADAPTIVE_METHODS, FIXED_STEP_METHODS, ODE_METHODS, HomotopyOptions, homotopy
from .linear import JacobianAt
from .paths import PCABasis, fit_pca

#: method name -> (options class, solver function)
SOLVERS: dict[str, tuple[type[SolverOptions], Any]] = {
    "anderson": (AndersonOptions, anderson),
    "broyden": (BroydenOptions, broyden),
    "fixed_point": (FixedPointOptions, fixed_point),
    "homotopy": (HomotopyOptions, homotopy),
}
METHODS: tuple[str, ...] = tuple(sorted(SOLVERS))


def make_options(method: str, **options: Any) -> SolverOptions:
    """Validate ``method`` and its options; raises ``ValueError`` naming the valid values."""
    if method not in SOLVERS:
        raise ValueError(f"unknown solver {method!r}; expected one of {', '.join(METHODS)}")
    return SOLVERS[method][0].from_kwargs(method, options)


def solve(
    f: Map,
    z0: torch.Tensor,
    method: str = "anderson",
    options: SolverOptions | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, SolverStats]:
    """Find z with z = f(z), for each sample of a batch.

    Args:
        f: batched map (B, ...) -> (B, ...); samples must not interact (block-diagonal Jacobian).
        z0: (B, ...) start point.
        method: one of ``METHODS``: anderson, broyden, fixed_point, homotopy.
        options: a prebuilt options object (from ``make_options``), or pass options as keywords
            (tol, max_iter, stop_mode, throw, and the method's own, see its ``*Options`` class).

    Returns:
        z: (B, ...) the best iterate of each sample (detached), and ``stats`` (:class:`SolverStats`).

    Raises:
        ValueError: unknown method or option, or an invalid value; bad z0.
        SolverError: only with ``throw=True``, when the solve did not converge.
    """
    if options is None:
        options = make_options(method, **kwargs)
    elif kwargs:
        raise ValueError("pass either an options object or keyword options, not both")
    elif method not in SOLVERS or not isinstance(options, SOLVERS[method][0]):
        expected = SOLVERS[method][0].__name__ if method in SOLVERS else "a known method"
        raise ValueError(f"options of type {type(options).__name__} do not fit method {method!r} ({expected})")
    if not isinstance(z0, torch.Tensor) or z0.dim() < 1 or z0.shape[0] == 0:
        raise ValueError("z0 must be a tensor of shape (B, ...) with B >= 1")
    if not z0.is_floating_point():
        raise ValueError(f"z0 must be floating point, got {z0.dtype}")
    counted = f if isinstance(f, CountedMap) else CountedMap(f)
    with torch.no_grad():
        return SOLVERS[method][1](counted, z0.detach(), options)


__all__ = [
    "ADAPTIVE_METHODS",
    "FIXED_STEP_METHODS",
    "METHODS",
    "ODE_METHODS",
    "SOLVERS",
    "AndersonOptions",
    "BroydenOptions",
    "CountedMap",
    "FixedPointOptions",
    "HomotopyOptions",
    "JacobianAt",
    "Map",
    "PCABasis",
    "SolverError",
    "SolverOptions",
    "SolverPath",
    "SolverStats",
    "Status",
    "batch_norm",
    "evenly_spaced",
    "fit_pca",
    "make_options",
    "solve",
]
