"""The implicit blocks: ODE (NODE, ANODE), HomoODE and DEQ, with their statistics.

Every block maps the output of the feature extractor to a state of the same layout and returns
``(state, BlockStats)``. Counting conventions (the same for every family):
- ``nfe`` (forward): calls of the vector field / DEQ cell made during the forward pass.
- backward NFE (``block.nfe_backward`` after ``loss.backward()``): field calls made by the adjoint
  re-integration, or vector-Jacobian products made by the DEQ's implicit backward solve. Plain
  backprop through recorded operations (direct ODE backprop, phantom gradient) calls nothing: 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .. import parallel
from ..solvers import SolverStats, evenly_spaced, make_options, solve
from .config import DEQConfig, ODEConfig
from .layers import LearnableStart, alternating_start


@dataclass(frozen=True)
class BlockStats:
    """Statistics of one forward pass of an implicit block.

    Attributes:
        family: node, anode, deq or homoode.
        nfe: calls of the field / cell during the forward pass.
        n_steps: ODE steps attempted, or root-solver iterations.
        abs_residual, rel_residual: (B,) ||f(z) - z|| (and / ||f(z)||) of the DEQ equilibrium; None for
            ODE blocks, which have no map whose fixed point they seek.
        solver: the DEQ root solver's full statistics.
        times: (T,) time / λ / iteration index of each trajectory state, when a trajectory was asked for.
        trajectory: (T, B, ...) detached states (ODE solution, homotopy path, or solver iterates).
        jac_loss: DEQ in training with ``jac_reg > 0``: the scalar ||εᵀ ∂f/∂z||² / d at z* (with a graph),
            to be added to the loss times ``jac_reg``; else None.
    """

    family: str
    nfe: int
    n_steps: int
    abs_residual: torch.Tensor | None = None
    rel_residual: torch.Tensor | None = None
    solver: SolverStats | None = None
    times: torch.Tensor | None = None
    trajectory: torch.Tensor | None = None
    jac_loss: torch.Tensor | None = None


class ODEStepLimitError(RuntimeError):
    """An adaptive solve hit ``max_steps`` or its step size underflowed."""


class _CountedField(nn.Module):
    """The torchdiffeq right-hand side: counts calls and steps, carries the condition."""

    def __init__(self, field: nn.Module, max_steps: int):
        super().__init__()
        self.field = field
        self.max_steps = max_steps
        self.condition: torch.Tensor | None = None
        self.calls = 0
        self.steps = 0

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.field(z) if self.condition is None else self.field(z, self.condition)
        return out.to(z.dtype)  # autocast's bf16/fp16 back to the state's dtype: the integrator stays fp32

    def callback_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise ODEStepLimitError(
                f"the ODE solver attempted more than max_steps={self.max_steps} steps: the field is stiff "
                "here; raise max_steps, loosen rtol/atol, use a fixed-step method (rk4), or lower the learning rate"
            )


class ODEBlock(nn.Module):
    """Integrates dz/dt = F(z) (or F(z; x)) from t = 0 to 1 with torchdiffeq.

    Args:
        field: the vector field module.
        config: integration settings.
    """

    family = "node"

    def __init__(self, field: nn.Module, config: ODEConfig):
        super().__init__()
        self.fn = _CountedField(field, config.max_steps)
        self.config = config
        self._nfe_forward = 0

    def set_ode(self, config: ODEConfig) -> None:
        """Change the integration settings of a built model (e.g. a solver sweep after training)."""
        self.config = config
        self.fn.max_steps = config.max_steps

    @property
    def nfe_backward(self) -> int:
        return self.fn.calls - self._nfe_forward

    def integrate(
        self, z0: torch.Tensor, condition: torch.Tensor | None, trajectory: int = 0
    ) -> tuple[torch.Tensor, BlockStats]:
        """z0 (B, ...) -> z(1) (B, ...) and stats; ``trajectory`` > 0 also keeps that many states."""
        cfg = self.config
        self.fn.calls = self.fn.steps = 0
        self.fn.condition = condition
        if cfg.adaptive:
            times = torch.linspace(0, 1, max(trajectory, 2), dtype=z0.dtype, device=z0.device)
            options = {"max_num_steps": cfg.max_steps}
            if self.training and parallel.active():
                options["norm"] = parallel.global_rms_norm
        else:
            # The output grid is the step grid: fixed-step states are the integrator's own.
            times = torch.linspace(0, 1, cfg.n_steps + 1, dtype=z0.dtype, device=z0.device)
            options = {}
        kwargs = dict(method=cfg.method, rtol=cfg.rtol, atol=cfg.atol, options=options)
        try:
            if cfg.adjoint and torch.is_grad_enabled():
                params = tuple(p for p in self.fn.parameters() if p.requires_grad)
                if condition is not None and condition.requires_grad:
                    params = (*params, condition)  # the condition's gradient reaches the features
                states = odeint_adjoint(self.fn, z0, times, adjoint_params=params, adjoint_options=options, **kwargs)
            else:
                states = odeint(self.fn, z0, times, **kwargs)
        except AssertionError as err:  # torchdiffeq's guards: step underflow, non-finite state
            raise ODEStepLimitError(
                f"the ODE solve failed ({err}); the field is stiff or produced inf/nan: "
                "lower the learning rate, loosen rtol/atol, or use a fixed-step method (rk4)"
            ) from None
        self._nfe_forward = self.fn.calls
        traj = None
        if trajectory:
            idx = evenly_spaced(len(times), trajectory)
            traj = (times[idx].detach().cpu(), states[idx.to(states.device)].detach())
        stats = BlockStats(
            family=self.family,
            nfe=self.fn.calls,
            n_steps=self.fn.steps,
            times=None if traj is None else traj[0],
            trajectory=None if traj is None else traj[1],
        )
        return states[-1], stats


class NODEBlock(ODEBlock):
    """Neural ODE (Chen et al. 2018): z(0) = features(x), dz/dt = F(z), output z(1).

    ANODE (Dupont et al. 2019) is the same with ``augment_dim`` zero channels appended to z(0).
    """

    def __init__(self, field: nn.Module, config: ODEConfig, augment_dim: int = 0):
        super().__init__(field, config)
        self.augment_dim = augment_dim
        self.family = "anode" if augment_dim else "node"

    def forward(self, features: torch.Tensor, trajectory: int = 0) -> tuple[torch.Tensor, BlockStats]:
        z0 = features
        if self.augment_dim:
            pad = features.new_zeros((features.shape[0], self.augment_dim) + features.shape[2:])
            z0 = torch.cat([features, pad], dim=1)
        return self.integrate(z0, None, trajectory)


class HomoODEBlock(ODEBlock):
    """HomoODE (Ding et al. 2023): dz/dλ = F(z; x), z(0) = z0 shared by all inputs, output z(1).

    The condition x enters F at every evaluation. The start point is either fixed (+1/-1 by
    channel) or learnable; a learnable z0 enters the ODE detached and is trained only by
    ``start_point_loss`` = SmoothL1(z0, stop_grad(z(1))) on its own optimizer, which moves it toward
    the typical equilibrium and shortens the path.
    """

    family = "homoode"

    def __init__(self, field: nn.Module, config: ODEConfig, state_shape: tuple[int, ...], start: str = "fixed"):
        super().__init__(field, config)
        self.state_shape = state_shape
        self.learnable = start == "learnable"
        if self.learnable:
            self.start = LearnableStart(state_shape)
        else:
            self.register_buffer("fixed_start", alternating_start(state_shape))
        self.last_z1: torch.Tensor | None = None

    def start_point(self) -> torch.Tensor:
        """(*state_shape) the current start point, detached."""
        return (self.start() if self.learnable else self.fixed_start).detach()

    def forward(self, condition: torch.Tensor, trajectory: int = 0) -> tuple[torch.Tensor, BlockStats]:
        """condition (B, ...) -> z(1) (B, *state_shape)."""
        z0 = self.start_point().to(condition.dtype).expand((condition.shape[0], *self.state_shape)).contiguous()
        drop = getattr(self.fn.field, "drop", None)
        if drop is not None:
            drop.new_mask(z0)  # one dropout mask per solve
        z1, stats = self.integrate(z0, condition, trajectory)
        self.last_z1 = z1.detach()
        return z1, stats

    def start_point_loss(self) -> torch.Tensor:
        """SmoothL1(z0, stop_grad(z(1))) over the last forward's batch; only z0's parameters get gradients."""
        if not self.learnable:
            raise ValueError("this HomoODE has a fixed start point; build it with start='learnable'")
        if self.last_z1 is None:
            raise ValueError("run a forward pass before the start-point update")
        z0 = self.start().expand_as(self.last_z1)
        return nn.functional.smooth_l1_loss(z0, self.last_z1)


class DEQBlock(nn.Module):
    """Deep equilibrium block (Bai et al. 2019): z* = f(z*; x), found by ``core.solve``.

    Forward: solve without a graph from z0 = 0, then one more evaluation z = f(z*; x) with the graph.
    Backward ("implicit"): the implicit function theorem gives dL/dθ = gᵀ ∂f/∂θ with
    g = Jᵀ g + dL/dz (J = ∂f/∂z at z*), solved as a linear fixed point by ``backward_solver``.
    Backward ("phantom"): backprop through ``phantom_steps`` unrolled steps from z* (Geng et al. 2021).
    """

    family = "deq"

    def __init__(self, cell: nn.Module, config: DEQConfig, state_shape: tuple[int, ...]):
        super().__init__()
        self.cell = cell
        self.state_shape = state_shape
        self.set_solver(config)
        self.calls = 0
        self.backward_vjps = 0
        self.last_backward_stats: SolverStats | None = None

    def set_solver(self, config: DEQConfig) -> None:
        """Change the solver settings of a built model (e.g. a tolerance sweep after training)."""
        self.config = config
        self.forward_options = make_options(config.solver, **config.solver_options)
        self.backward_options = make_options(config.backward_solver, **config.backward_options)

    @property
    def nfe_backward(self) -> int:
        return self.backward_vjps

    def bound_cell(self):
        """The cell as ``f(z, x)`` for one forward pass: a cell with ``bind()`` (the contractive cell's normalised
        weights) computes what it needs once here, with its graph when gradients are on, instead of at each of
        the solve's evaluations."""
        bind = getattr(self.cell, "bind", None)
        return self.cell if bind is None else bind()

    def _f(self, cell, x: torch.Tensor, record: list | None = None):
        def f(z: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if record is not None:
                record.append(z.detach())
            return cell(z, x).to(z.dtype)  # the solver's state and residuals stay fp32 under autocast

        return f

    def forward(self, x: torch.Tensor, trajectory: int = 0) -> tuple[torch.Tensor, BlockStats]:
        self.calls = self.backward_vjps = 0
        self.last_backward_stats = None  # set by the implicit backward of this forward, if it runs
        iterates: list[torch.Tensor] | None = [] if trajectory else None
        z0 = x.new_zeros((x.shape[0], *self.state_shape))
        cell = self.bound_cell()
        with torch.no_grad():
            z_star, stats = solve(
                self._f(cell, x, iterates), z0, method=self.config.solver, options=self.forward_options
            )
        needs_graph = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        f = self._f(cell, x)
        if not needs_graph:
            z = z_star
        elif self.config.backward == "phantom":
            z = z_star
            for _ in range(self.config.phantom_steps):
                z = f(z)
        else:
            z = f(z_star)
            z_in = z_star.clone().requires_grad_(True)
            with torch.enable_grad():
                f_in = cell(z_in, x.detach()).to(z_in.dtype)
            self.calls += 1
            z.register_hook(self._implicit_hook(z_in, f_in))
        jac_loss = (
            self.jacobian_loss(z_star, x, cell) if needs_graph and self.training and self.config.jac_reg > 0 else None
        )
        traj = times = None
        if trajectory:
            if stats.path is not None:
                times, states = stats.path.lambdas, stats.path.states
            else:
                states = torch.stack(iterates)
                times = torch.arange(len(iterates), dtype=torch.float32)
            idx = evenly_spaced(len(times), trajectory)
            traj, times = states[idx.to(states.device)], times[idx]
        return z, BlockStats(
            family="deq",
            nfe=self.calls,
            n_steps=stats.n_steps,
            abs_residual=stats.abs_residual,
            rel_residual=stats.rel_residual,
            solver=stats,
            times=times,
            trajectory=traj,
            jac_loss=jac_loss,
        )

    def jacobian_loss(self, z_star: torch.Tensor, x: torch.Tensor, cell=None) -> torch.Tensor:
        """||εᵀ J||² / d with J = ∂f/∂z at z*, ε ~ N(0, I) of z*'s shape (B, ...), d = z*.numel().

        E[||εᵀ J||²] = ||J||_F², so this is a one-sample Hutchinson estimate of the mean squared Jacobian
        entry per state element. One more evaluation of f and a double backward; the graph reaches the
        cell's parameters (and x), so minimising it makes f more contractive around its equilibrium.
        """
        cell = self.bound_cell() if cell is None else cell
        z_in = z_star.detach().requires_grad_(True)
        with torch.enable_grad():
            f_in = cell(z_in, x).to(z_in.dtype)
            self.calls += 1
            eps = torch.randn_like(f_in)
            (vjp,) = torch.autograd.grad(f_in, z_in, eps, create_graph=True)
        return vjp.pow(2).sum() / eps.numel()

    def _implicit_hook(self, z_in: torch.Tensor, f_in: torch.Tensor):
        def hook(grad: torch.Tensor | None) -> torch.Tensor | None:
            if grad is None:  # an undefined incoming gradient stays undefined
                return None

            def vjp_map(g: torch.Tensor) -> torch.Tensor:
                self.backward_vjps += 1
                (jtg,) = torch.autograd.grad(f_in, z_in, g, retain_graph=True)
                return jtg + grad

            with torch.enable_grad():
                g, stats = solve(vjp_map, torch.zeros_like(grad), self.config.backward_solver, self.backward_options)
            self.last_backward_stats = stats
            return g

        return hook
