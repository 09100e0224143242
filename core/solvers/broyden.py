"""Limited-memory "good" Broyden method on g(z) = f(z) - z (Broyden 1965; DEQ usage: Bai et al. 2019).

The inverse Jacobian of g is approximated by H_k = -I + Σ_i u_i v_iᵀ (H_0 = -I, so the first step is
a plain fixed-point step), the Newton-like step is z_{k+1} = z_k - H_k g_k, and after each step
the Sherman-Morrison form of Broyden's update, with s = z_{k+1} - z_k and y = g_{k+1} - g_k,

    H_{k+1} = H_k + (s - H_k y) (sᵀ H_k) / (sᵀ H_k y),

adds one rank-one pair per sample. When ``memory`` pairs are stored the oldest is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_positive_int
from .base import CountedMap, SolverOptions, SolverStats, Tracker, batch_dot


@dataclass(frozen=True)
class BroydenOptions(SolverOptions):
    """Attributes:
    memory: number of rank-one updates kept (>= 1).
    """

    memory: int = 30

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.memory, "memory")


def broyden(f: CountedMap, z0: torch.Tensor, opts: BroydenOptions) -> tuple[torch.Tensor, SolverStats]:
    tracker = Tracker(f, opts)
    bsz = z0.shape[0]
    # Rank-one pairs in two (B, memory, N) buffers used as rings: H = -I + Σ_i u_i v_iᵀ does not depend on
    # the order of its terms, so the oldest pair is simply overwritten, and H x is two batched products.
    us = vs = None
    count = 0

    def apply_h(x: torch.Tensor) -> torch.Tensor:  # H x
        if count == 0:
            return -x
        k = min(count, opts.memory)
        return -x + torch.einsum("bmn,bm->bn", us[:, :k], torch.einsum("bmn,bn->bm", vs[:, :k], x))

    def apply_ht(x: torch.Tensor) -> torch.Tensor:  # Hᵀ x
        if count == 0:
            return -x
        k = min(count, opts.memory)
        return -x + torch.einsum("bmn,bm->bn", vs[:, :k], torch.einsum("bmn,bn->bm", us[:, :k], x))

    z = z0.reshape(bsz, -1)
    g_prev = z_prev = None
    status, steps = None, 0
    for steps in range(1, opts.max_iter + 1):
        fz = f(z.view_as(z0))
        stop, status = tracker.check(z.view_as(z0), fz, z0)
        if stop:
            break
        g = fz.reshape(bsz, -1) - z
        if g_prev is not None:
            s, y = z - z_prev, g - g_prev
            hy = apply_h(y)
            vt = apply_ht(s)  # (sᵀ H)ᵀ
            denom = batch_dot(vt, y)
            # Skip the update for a sample whose denominator vanishes (the secant carries no information).
            ok = denom.abs() > 1e-12 * (batch_dot(vt, vt).sqrt() * batch_dot(y, y).sqrt()).clamp_min(1e-30)
            safe = torch.where(ok, denom, torch.ones_like(denom))
            u = torch.where(ok[:, None], (s - hy) / safe[:, None], torch.zeros_like(s))
            if us is None:
                us = z.new_zeros((bsz, opts.memory, z.shape[1]))
                vs = z.new_zeros((bsz, opts.memory, z.shape[1]))
            slot = count % opts.memory
            us[:, slot] = u
            vs[:, slot] = vt
            count += 1
        z_prev, g_prev = z, g
        z = z - apply_h(g)
    return tracker.finish("broyden", status, steps)
