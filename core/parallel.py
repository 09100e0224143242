"""The one piece of data parallelism the layers below training need: a differentiable sum over ranks.

(``core.training.distributed`` builds the rest on it; models use it so that an ODE's step-size control under
data parallelism is the one of a single process on the global batch, gradient included.)
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def active() -> bool:
    """Whether this process is one of several ranks (torchrun)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _SumOverRanks(torch.autograd.Function):
    """y = Σ_ranks x; each rank's gradient is the sum of every rank's upstream gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


def sum_over_ranks(x: torch.Tensor) -> torch.Tensor:
    """Σ over ranks of ``x``, differentiable (``x`` itself in a single process)."""
    return _SumOverRanks.apply(x) if active() else x


def global_rms_norm(t: torch.Tensor) -> torch.Tensor:
    """torchdiffeq's RMS norm sqrt(mean(t²)) over every rank's part of the batch, differentiable like the
    single-process one (backprop through an adaptive solver reaches its step sizes)."""
    count = sum_over_ranks(torch.tensor(float(t.numel()), dtype=torch.float64, device=t.device))
    return (sum_over_ranks(t.double().pow(2).sum()) / count).sqrt().to(t.dtype)
