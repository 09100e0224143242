"""Damped fixed-point (Picard) iteration: z_{k+1} = (1 - β) z_k + β f(z_k).

Converges linearly when f is a contraction (spectral radius of ∂f/∂z below 1 near z*); damping
(β < 1) rescues maps whose Jacobian eigenvalues have real part < 1 but modulus >= 1 only when
|1 - β + β μ| < 1 for every eigenvalue μ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_in_range
from .base import CountedMap, SolverOptions, SolverStats, Tracker


@dataclass(frozen=True)
class FixedPointOptions(SolverOptions):
    """Attributes:
    beta: step weight β in (0, 1]; 1 is plain iteration, smaller values damp it.
    """

    beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_in_range(self.beta, "beta", 0.0, 1.0, low_open=True)


def fixed_point(f: CountedMap, z0: torch.Tensor, opts: FixedPointOptions) -> tuple[torch.Tensor, SolverStats]:
    tracker = Tracker(f, opts)
    z, status, steps = z0, None, 0
    for steps in range(1, opts.max_iter + 1):
        fz = f(z)
        stop, status = tracker.check(z, fz, z0)
        if stop:
            break
        z = fz if opts.beta == 1.0 else (1 - opts.beta) * z + opts.beta * fz
    return tracker.finish("fixed_point", status, steps)
