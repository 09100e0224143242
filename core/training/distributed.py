"""Data-parallel training on PyTorch's own engine: ``torchrun`` starts the processes, ``torch.distributed``
connects them (NCCL between GPUs, gloo between CPU processes), ``DistributedDataParallel`` averages the
gradients.

    torchrun --nproc_per_node 4 -m core.train --model homoode --dataset cifar10 --batch-size 256 --out runs/x

What this module adds is only what data parallelism of *these* models needs to equal one process on the
global batch: batch-norm statistics over the global batch (``SyncBatchNorm`` on GPUs; on CPUs, where it is
not supported, :class:`GlobalBatchNorm` built on ``torch.distributed.nn``'s differentiable all-reduce), and
sums / means across ranks for the figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..parallel import sum_over_ranks


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes the run folder and prints."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def setup(device: str) -> tuple[World, torch.device]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``/``MASTER_PORT``); a plain ``python`` start is a world of one.

    Args:
        device: auto, cpu or cuda (as ``TrainConfig.device``). Under torchrun, CUDA means this rank's
            ``cuda:LOCAL_RANK`` and the NCCL backend; the CPU means gloo.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World(), resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    if use_cuda and local_rank >= torch.cuda.device_count():
        raise ValueError(
            f"torchrun started {size} processes but this machine has {torch.cuda.device_count()} GPU(s) for "
            f"local rank {local_rank}; use --nproc_per_node <= the number of GPUs"
        )
    dev = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return World(dist.get_rank(), dist.get_world_size(), local_rank), dev


def resolve_device(name: str) -> torch.device:
    """auto -> CUDA when available, else CPU; asking for cuda without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu or auto")
    return torch.device(name)


def data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` wrapped in ``DistributedDataParallel``, its batch norms over the global batch. HomoODE's
    start point is left out of DDP: it has its own loss and optimizer, and the trainer all-reduces its
    gradient itself."""
    from torch.nn.parallel import DistributedDataParallel

    global_batchnorm(model, device)
    start = {id(p) for p in getattr(model, "start_point_parameters", list)()}
    ignored = [name for name, p in model.named_parameters() if id(p) in start]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def shard(n: int, world: World) -> slice:
    """This rank's contiguous part of a global batch of ``n`` (the parts' sizes differ by at most one)."""
    base, extra = divmod(n, world.size)
    start = world.rank * base + min(world.rank, extra)
    return slice(start, start + base + (world.rank < extra))


def everywhere(ok: torch.Tensor, world: World) -> bool:
    """True when ``ok`` holds on every rank (one all-reduce under torchrun, a read-back otherwise)."""
    if not world.parallel:
        return bool(ok)
    return int(all_sum(ok.to(torch.int64).reshape(1))) == world.size


def any_rank(world: World, device: torch.device, *flags: bool) -> list[bool]:
    """Each flag, true when it holds on any rank (one all-reduce under torchrun): decisions taken together."""
    if not world.parallel:
        return list(flags)
    return [bool(v) for v in all_max(torch.tensor([float(f) for f in flags], device=device)).tolist()]


def all_sum(values: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of ``values`` (a copy; itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    out = values.clone()
    dist.all_reduce(out)
    return out


def all_max(values: torch.Tensor) -> torch.Tensor:
    """The maximum over ranks of ``values`` (a copy; itself when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    out = values.clone()
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return out


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch, on any backend (gloo included).

    In training, mean and variance over (N, H, W) of every rank's shard together:
    mean = Σx / n, var = Σ(x − mean)² / n with sums all-reduced (differentiably, so the backward is
    all-reduced too); the running statistics follow with the unbiased variance, as
    ``nn.BatchNorm2d``. In eval it is plain batch norm on the running statistics.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"batch norm expects (N, C, ...) input, got shape {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        all_reduce = sum_over_ranks
        dims = [0, *range(2, x.dim())]
        count = all_reduce(torch.tensor(float(x.numel() // x.shape[1]), device=x.device))
        mean = all_reduce(x.sum(dims)) / count
        shape = (1, -1, *([1] * (x.dim() - 2)))
        var = all_reduce((x - mean.view(shape)).pow(2).sum(dims)) / count
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * count / (count - 1).clamp_min(1))
            self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def global_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm of ``model`` by one over the global batch: ``SyncBatchNorm`` on a GPU,
    :class:`GlobalBatchNorm` elsewhere (weights and running statistics carried over)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            ref = child.running_mean if child.running_mean is not None else child.weight
            new = new.to(device=ref.device, dtype=ref.dtype)  # before loading: keeps fp64 as fp64
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            global_batchnorm(child, device)
    return model
