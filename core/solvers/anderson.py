"""Anderson acceleration (type II; Walker & Ni 2011, as used for DEQs by Bai et al. 2019).

With the last m iterates X_i and their images F_i = f(X_i), residuals G_i = F_i - X_i, solve per sample

    α = argmin ||Σ_i α_i G_i||²  subject to  Σ_i α_i = 1

(regularised: (G Gᵀ + λ s I) y = 1, α = y / Σ y, with s the mean of diag(G Gᵀ) so that λ is
relative to the residuals' size and the default works at any scale), then mix

    z_{k+1} = β Σ_i α_i F_i + (1 - β) Σ_i α_i X_i.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_in_range, check_positive_int
from .base import CountedMap, SolverOptions, SolverStats, Tracker, wide_dtype


@dataclass(frozen=True)
class AndersonOptions(SolverOptions):
    """Attributes:
    window: history size m (>= 1); m = 1 reduces to damped fixed-point iteration.
    reg: Tikhonov regularisation λ, relative to the mean squared residual in the window.
    beta: mixing β in (0, 1].
    """

    window: int = 5
    reg: float = 1e-4
    beta: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int(self.window, "window")
        check_in_range(self.reg, "reg", 0.0, 1e6)
        check_in_range(self.beta, "beta", 0.0, 1.0, low_open=True)


def anderson(f: CountedMap, z0: torch.Tensor, opts: AndersonOptions) -> tuple[torch.Tensor, SolverStats]:
    tracker = Tracker(f, opts)
    bsz = z0.shape[0]
    xs: list[torch.Tensor] = []  # flattened iterates, each (B, N)
    fs: list[torch.Tensor] = []  # their images
    z, status, steps = z0, None, 0
    for steps in range(1, opts.max_iter + 1):
        fz = f(z)
        stop, status = tracker.check(z, fz, z0)
        if stop:
            break
        xs.append(z.reshape(bsz, -1))
        fs.append(fz.reshape(bsz, -1))
        if len(xs) > opts.window:
            xs.pop(0)
            fs.pop(0)
        z = _mix(xs, fs, opts).view_as(z0)
    return tracker.finish("anderson", status, steps)


def _mix(xs: list[torch.Tensor], fs: list[torch.Tensor], opts: AndersonOptions) -> torch.Tensor:
    X = torch.stack(xs, dim=1)  # (B, n, N)
    F = torch.stack(fs, dim=1)
    n = X.shape[1]
    if n == 1:
        return opts.beta * F[:, 0] + (1 - opts.beta) * X[:, 0]
    G = (F - X).to(wide_dtype(X.device))
    H = G @ G.transpose(1, 2)  # (B, n, n)
    scale = H.diagonal(dim1=1, dim2=2).mean(dim=1).clamp_min(1e-300)  # (B,)
    eye = torch.eye(n, dtype=H.dtype, device=H.device)
    H = H + (opts.reg * scale)[:, None, None] * eye + 1e-14 * scale[:, None, None] * eye
    ones = torch.ones(H.shape[0], n, 1, dtype=H.dtype, device=H.device)
    y = torch.linalg.solve(H, ones)
    alpha = (y / y.sum(dim=1, keepdim=True)).to(X.dtype)  # (B, n, 1)
    mixed_f = (alpha * F).sum(dim=1)
    if opts.beta == 1.0:
        return mixed_f
    return opts.beta * mixed_f + (1 - opts.beta) * (alpha * X).sum(dim=1)
