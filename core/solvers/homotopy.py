"""Root finding by homotopy continuation: follow the zero path of H(z, λ) from λ = 0 to 1.

Fixed-point homotopy (default; the bridge of Ding et al. 2023, "Two Sides of the Same Coin"):

    H(z, λ) = z - λ f(z) - (1 - λ) z0          dz/dλ = (I - λ ∂f/∂z)^-1 (f(z) - z0),  z(0) = z0

Newton homotopy:

    H(z, λ) = g(z) - (1 - λ) g(z0), g = z - f     dz/dλ = (I - ∂f/∂z)^-1 (f(z0) - z0)

(one explicit Euler step of it with Δλ = 1 is one Newton step). The ODE is integrated with
torchdiffeq; each right-hand side evaluates f once and solves the linear system matrix-free
(``linear.solve_shifted``). The path of the fixed-point homotopy stays regular as long as ∂f/∂z has
no real eigenvalue >= 1 along it, which includes many maps where plain iteration diverges
(e.g. eigenvalues near -2). At λ = 1 a Newton corrector, z <- z + (I - J)^-1 (f(z) - z), brings
the endpoint to ``tol`` rather than to the ODE's accuracy; ``max_iter`` caps its steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchdiffeq import odeint

from ..checks import check_choice, check_in_range, check_positive_int
from .base import CountedMap, SolverOptions, SolverPath, SolverStats, Status, Tracker, all_finite, evenly_spaced
from .linear import JACOBIAN_MODES, LINEAR_SOLVERS, JacobianAt, solve_shifted

#: torchdiffeq methods every ODE setting of the project takes (homotopy paths, NODE / ANODE / HomoODE blocks):
#: fixed-step ones take a step count, adaptive ones rtol / atol.
FIXED_STEP_METHODS = ("euler", "midpoint", "rk4")
ADAPTIVE_METHODS = ("dopri5", "bosh3", "adaptive_heun", "dopri8")
ODE_METHODS = FIXED_STEP_METHODS + ADAPTIVE_METHODS
HOMOTOPIES = ("fixed_point", "newton")


@dataclass(frozen=True)
class HomotopyOptions(SolverOptions):
    """Attributes (``tol`` / ``max_iter`` belong to the final Newton corrector):

    homotopy: "fixed_point" or "newton".
    ode_method: torchdiffeq method, fixed-step (euler, midpoint, rk4) or adaptive (dopri5, bosh3,
        adaptive_heun, dopri8).
    n_steps: number of equal λ steps for fixed-step methods.
    step_size: alternative to ``n_steps`` (n_steps = ceil(1 / step_size)).
    rtol, atol: tolerances of adaptive methods.
    max_ode_steps: attempted-step cap of adaptive methods, so a stiff path cannot hang.
    corrector: "newton" (default) or "none".
    linear_solver: "auto" (dense LU for states of <= dense_max numbers, else GMRES), "gmres", "dense".
    jacobian: "vjp" (reverse mode twice) or "jvp" (forward mode; each product calls f once more).
    krylov_dim, krylov_restarts, krylov_tol: GMRES settings (tolerance relative to ||rhs||).
    dense_max: the "auto" switch point.
    record_path: keep the λ grid and states in ``stats.path``.
    path_max_points: subsample the recorded path to at most this many states.
    """

    max_iter: int = 10
    homotopy: str = "fixed_point"
    ode_method: str = "rk4"
    n_steps: int = 4
    step_size: float | None = None
    rtol: float = 1e-3
    atol: float = 1e-4
    max_ode_steps: int = 500
    corrector: str = "newton"
    linear_solver: str = "auto"
    jacobian: str = "vjp"
    krylov_dim: int = 30
    krylov_restarts: int = 5
    krylov_tol: float = 1e-3
    dense_max: int = 64
    record_path: bool = True
    path_max_points: int = 65

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice(self.homotopy, "homotopy", HOMOTOPIES)
        check_choice(self.ode_method, "ode_method", ODE_METHODS)
        check_positive_int(self.n_steps, "n_steps")
        if self.step_size is not None:
            check_in_range(self.step_size, "step_size", 0.0, 1.0, low_open=True)
        check_in_range(self.rtol, "rtol", 0.0, 1.0, low_open=True)
        check_in_range(self.atol, "atol", 0.0, 1e6, low_open=True)
        check_positive_int(self.max_ode_steps, "max_ode_steps")
        check_choice(self.corrector, "corrector", ("newton", "none"))
        check_choice(self.linear_solver, "linear_solver", LINEAR_SOLVERS)
        check_choice(self.jacobian, "jacobian", JACOBIAN_MODES)
        check_positive_int(self.krylov_dim, "krylov_dim")
        check_positive_int(self.krylov_restarts, "krylov_restarts")
        check_in_range(self.krylov_tol, "krylov_tol", 0.0, 1.0, low_open=True)
        check_positive_int(self.dense_max, "dense_max", minimum=0)
        check_positive_int(self.path_max_points, "path_max_points", minimum=2)

    @property
    def fixed_steps(self) -> int:
        if self.step_size is not None:
            return max(1, math.ceil(1.0 / self.step_size - 1e-9))
        return self.n_steps


class _Stop(Exception):
    def __init__(self, status: Status):
        self.status = status


class _PathField:
    """The right-hand side dz/dλ handed to torchdiffeq, with its step callbacks."""

    def __init__(self, f: CountedMap, z0: torch.Tensor, opts: HomotopyOptions, tracker: Tracker):
        self.f, self.z0, self.opts, self.tracker = f, z0, opts, tracker
        self.attempted = 0
        self.accepted: list[tuple[float, torch.Tensor]] = []
        self.newton_rhs: torch.Tensor | None = None
        if opts.homotopy == "newton":
            f0 = f(z0)
            if not all_finite(f0):
                raise _Stop(Status.NON_FINITE)
            tracker.observe(z0, f0)
            self.newton_rhs = f0 - z0

    def __call__(self, lam: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        op = JacobianAt(self.f, z, self.opts.jacobian)
        if not all_finite(op.fz):
            raise _Stop(Status.NON_FINITE)
        self.tracker.observe(op.z, op.fz)
        if self.tracker.ran_away():
            raise _Stop(Status.DIVERGED)
        if self.newton_rhs is None:
            rhs, shift = op.fz - self.z0, float(lam)
        else:
            rhs, shift = self.newton_rhs, 1.0
        dz = solve_shifted(
            op,
            rhs,
            1.0,
            shift,
            method=self.opts.linear_solver,
            dense_max=self.opts.dense_max,
            tol=self.opts.krylov_tol,
            krylov_dim=self.opts.krylov_dim,
            max_restarts=self.opts.krylov_restarts,
        )
        if not all_finite(dz):
            # I - λJ became singular: the path turned back or bifurcated.
            raise _Stop(Status.DIVERGED)
        return dz

    def callback_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        # Fixed-step methods take exactly the n_steps asked for: max_ode_steps only caps adaptive ones.
        self.attempted += 1


class _AdaptivePathField(_PathField):
    """Adaptive integrators also report accepted steps: they are the path's real λ grid."""

    def callback_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        # Refuse the step past the cap before it is counted or taken, so a stiff path cannot hang.
        if self.attempted >= self.opts.max_ode_steps:
            raise _Stop(Status.MAX_ITER)
        super().callback_step(t0, y0, dt)

    def callback_accept_step(self, t0: torch.Tensor, y0: torch.Tensor, dt: torch.Tensor) -> None:
        self.accepted.append((float(t0), y0.detach()))


def homotopy(f: CountedMap, z0: torch.Tensor, opts: HomotopyOptions) -> tuple[torch.Tensor, SolverStats]:
    tracker = Tracker(f, opts)
    z0 = z0.detach()
    adaptive = opts.ode_method in ADAPTIVE_METHODS
    path: SolverPath | None = None
    field: _PathField | None = None
    try:
        field = (_AdaptivePathField if adaptive else _PathField)(f, z0, opts, tracker)
        if adaptive:
            grid = torch.tensor([0.0, 1.0], dtype=z0.dtype, device=z0.device)
        else:
            # The output grid is the step grid, so recorded states are the integrator's own (no interpolation).
            grid = torch.linspace(0.0, 1.0, opts.fixed_steps + 1, dtype=z0.dtype, device=z0.device)
        with torch.no_grad():
            states = odeint(field, z0, grid, method=opts.ode_method, rtol=opts.rtol, atol=opts.atol)
        z = states[-1]
        ode_steps = len(field.accepted) if adaptive else opts.fixed_steps
        if opts.record_path:
            if adaptive:
                lambdas = torch.tensor([t for t, _ in field.accepted] + [1.0], dtype=z0.dtype)
                states = torch.stack([s for _, s in field.accepted] + [z])
            else:
                lambdas = grid.cpu()
            path = _subsample(lambdas, states, opts.path_max_points)
    except _Stop as stop:
        ode_steps = 0 if field is None else len(field.accepted) if adaptive else field.attempted
        if tracker.best_z is None:
            tracker.observe(z0, torch.full_like(z0, float("inf")))
        return tracker.finish("homotopy", stop.status, ode_steps)
    except AssertionError as err:  # torchdiffeq's own guards, e.g. "underflow in dt"
        if "underflow" not in str(err) and "max_num_steps" not in str(err):
            raise
        return tracker.finish("homotopy", Status.DIVERGED, len(field.accepted))

    status, corrector_steps = _newton_corrector(f, z, opts, tracker)
    return tracker.finish("homotopy", status, ode_steps + corrector_steps, path=path)


def _newton_corrector(
    f: CountedMap, z: torch.Tensor, opts: HomotopyOptions, tracker: Tracker
) -> tuple[Status | None, int]:
    """Newton steps z <- z + (I - J)^-1 (f(z) - z) at λ = 1 until ``tol`` or ``max_iter`` steps."""
    steps = 0
    while True:
        op = JacobianAt(f, z, opts.jacobian)
        if not all_finite(op.fz):
            return Status.NON_FINITE, steps
        tracker.observe(op.z, op.fz)
        if opts.corrector == "none" or tracker.converged():
            return None, steps
        if steps >= opts.max_iter:
            return None, steps
        if tracker.diverging():
            return Status.DIVERGED, steps
        delta = solve_shifted(
            op,
            op.fz - op.z,
            1.0,
            1.0,
            method=opts.linear_solver,
            dense_max=opts.dense_max,
            tol=opts.krylov_tol,
            krylov_dim=opts.krylov_dim,
            max_restarts=opts.krylov_restarts,
        )
        if not all_finite(delta):
            return Status.DIVERGED, steps
        # Converged samples stay where they are.
        done = tracker.key(tracker.last_abs, tracker.last_rel) <= opts.tol
        z = torch.where(done.view((-1,) + (1,) * (z.dim() - 1)), op.z, op.z + delta)
        steps += 1


def _subsample(lambdas: torch.Tensor, states: torch.Tensor, max_points: int) -> SolverPath:
    n = lambdas.shape[0]
    if n > max_points:
        idx = evenly_spaced(n, max_points)
        lambdas, states = lambdas[idx], states[idx.to(states.device)]
    return SolverPath(lambdas=lambdas.detach().cpu(), states=states.detach())
