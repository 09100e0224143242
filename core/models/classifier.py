"""The classifier every family shares: features -> implicit block -> head, and ``build_model``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..solvers import SolverStats
from .blocks import BlockStats, DEQBlock, HomoODEBlock, NODEBlock
from .config import DEQConfig, ModelConfig, ODEConfig
from .layers import ContractiveConvCell, ConvFeatures, ConvField, ConvHead, GroupNormConvCell, MLPCell, MLPField


@dataclass(frozen=True)
class ModelOutput:
    """logits: (B, num_classes); stats: the implicit block's statistics of this call."""

    logits: torch.Tensor
    stats: BlockStats


class ImplicitClassifier(nn.Module):
    """x (B, *input_shape) -> logits (B, K) through features, an implicit block and a head."""

    def __init__(self, config: ModelConfig, features: nn.Module, block: nn.Module, head: nn.Module):
        super().__init__()
        self.config = config
        self.features = features
        self.block = block
        self.head = head

    @property
    def family(self) -> str:
        return self.config.family

    def forward(self, x: torch.Tensor, trajectory: int = 0) -> ModelOutput:
        """Args:
        x: (B, *config.input_shape) inputs.
        trajectory: keep up to this many states of the implicit block (0: none).
        """
        expected = self.config.input_shape
        if not isinstance(x, torch.Tensor) or x.dim() != len(expected) + 1 or tuple(x.shape[1:]) != expected:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"{self.config.family} model for {self.config.input_kind} expects input of shape "
                f"(B, {', '.join(map(str, expected))}), got {got}"
            )
        feat = self.features(x)
        # Mixed precision: the features may come out of autocast in bf16/fp16; the implicit state, the
        # solvers and their residuals stay in the parameters' precision (the blocks cast each field call
        # back to it), so a tolerance means the same as in fp32.
        feat = feat.to(self.state_dtype)
        z, stats = self.block(feat, trajectory=trajectory)
        return ModelOutput(self.head(z), stats)

    @property
    def state_dtype(self) -> torch.dtype:
        """The dtype of the implicit state: the parameters' (float32, or float64 in exact tests)."""
        return next(self.parameters()).dtype

    def fixed_point_map(self, x: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """A DEQ's equilibrium problem for inputs ``x``: ``(f, z0)`` with f(z) = cell(z; features(x)) and
        z0 = 0 of shape (B, *state_shape), the start the model itself uses. Any root solver takes it,
        ``core.solve(f, z0, method=...)``, homotopy continuation included; ``model.head(z*)`` gives the
        logits. Calls to ``f`` are not counted in the model's NFE.

        Args:
            x: (B, *config.input_shape) inputs.
        """
        if not isinstance(self.block, DEQBlock):
            raise ValueError(f"a {self.family} model has no fixed-point map; only deq does (its map is z = f(z; x))")
        feat = self.features(x).to(self.state_dtype)
        cell = self.block.bound_cell()

        def f(z: torch.Tensor) -> torch.Tensor:
            return cell(z, feat).to(z.dtype)

        return f, feat.new_zeros((x.shape[0], *self.block.state_shape))

    def vector_field(self, z: torch.Tensor) -> torch.Tensor:
        """A NODE's or ANODE's dz/dt = F(z) at states ``z`` (B, state dim or shape); not counted in the NFE.
        (HomoODE's field depends on the input too: its path is in ``model(x, trajectory=T).stats``.)"""
        if self.family not in ("node", "anode"):
            raise ValueError(f"a {self.family} model has no autonomous vector field; node and anode do")
        return self.block.fn.field(z)

    @property
    def backward_solver_stats(self) -> SolverStats | None:
        """The root solve of the last implicit backward (DEQ), None where none ran since the last forward."""
        return getattr(self.block, "last_backward_stats", None)

    @property
    def nfe_backward(self) -> int:
        """Backward NFE of the last backward pass (see ``core.models.blocks``)."""
        return self.block.nfe_backward

    # HomoODE's learnable start point lives on its own optimizer.
    def start_point_parameters(self) -> list[nn.Parameter]:
        block = self.block
        return list(block.start.parameters()) if isinstance(block, HomoODEBlock) and block.learnable else []

    def main_parameters(self) -> list[nn.Parameter]:
        """All parameters but the start point's: what the classification optimizer trains."""
        skip = {id(p) for p in self.start_point_parameters()}
        return [p for p in self.parameters() if id(p) not in skip]

    def start_point_loss(self) -> torch.Tensor:
        if not isinstance(self.block, HomoODEBlock):
            raise ValueError(f"a {self.family} model has no start point; only homoode does")
        return self.block.start_point_loss()

    def update_start_point(self, optimizer: torch.optim.Optimizer) -> float:
        """One step of the start-point optimizer on SmoothL1(z0, stop_grad(z(1))) of the last batch."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.start_point_loss()
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    def num_parameters(self, include_start: bool = True) -> int:
        params = self.parameters() if include_start else self.main_parameters()
        return sum(p.numel() for p in params)

    def set_ode(self, config: ODEConfig) -> None:
        if not hasattr(self.block, "set_ode"):
            raise ValueError(f"a {self.family} model has no ODE settings; use set_solver")
        self.block.set_ode(config)

    def set_solver(self, config: DEQConfig) -> None:
        if not hasattr(self.block, "set_solver"):
            raise ValueError(f"a {self.family} model has no root solver; use set_ode")
        self.block.set_solver(config)


def build_model(config: ModelConfig) -> ImplicitClassifier:
    """The one constructor every front end uses."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"build_model expects a ModelConfig, got {type(config).__name__}")
    if config.seed is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            return _build(config)
    return _build(config)


def _build(c: ModelConfig) -> ImplicitClassifier:
    if c.input_kind == "points":
        return _build_points(c)
    in_channels = c.input_shape[0]
    width = c.width
    if c.family in ("node", "anode"):
        feat_channels = width - c.augment_dim if c.family == "anode" else width
        features = ConvFeatures(in_channels, feat_channels)
        block = NODEBlock(ConvField(width), c.ode, augment_dim=c.augment_dim if c.family == "anode" else 0)
    elif c.family == "homoode":
        features = ConvFeatures(in_channels, width)
        spatial = c.input_shape[1] // 2
        block = HomoODEBlock(ConvField(width, c.dropout), c.ode, (width, spatial, spatial), start=c.start)
    else:
        features = ConvFeatures(in_channels, width)
        spatial = c.input_shape[1] // 2
        cell = (
            ContractiveConvCell(width, spatial, c.contraction) if c.cell == "contractive" else GroupNormConvCell(width)
        )
        block = DEQBlock(cell, c.deq, (width, spatial, spatial))
    head = ConvHead(width, c.head_dim, c.num_classes, c.head_pool)
    return ImplicitClassifier(c, features, block, head)


def _build_points(c: ModelConfig) -> ImplicitClassifier:
    # NODE keeps the input's 2 dimensions (the story: its trajectories cannot cross); ANODE adds
    # augment_dim zeros; DEQ and HomoODE solve for a `width`-dimensional state conditioned on x.
    if c.family == "node":
        dim, block = 2, NODEBlock(MLPField(2, c.hidden, depth=c.depth), c.ode)
    elif c.family == "anode":
        dim = 2 + c.augment_dim
        block = NODEBlock(MLPField(dim, c.hidden, depth=c.depth), c.ode, augment_dim=c.augment_dim)
    elif c.family == "homoode":
        dim = c.width
        block = HomoODEBlock(MLPField(dim, c.hidden, cond_dim=2, depth=c.depth), c.ode, (dim,), start=c.start)
    else:
        dim = c.width
        block = DEQBlock(MLPCell(dim, c.hidden, cond_dim=2, depth=c.depth), c.deq, (dim,))
    return ImplicitClassifier(c, nn.Identity(), block, nn.Linear(dim, c.num_classes))
