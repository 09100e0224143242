"""What every root solver shares: options, statistics, residuals, best-iterate bookkeeping.

A solver looks for z* with z* = f(z*) for a batched map f: (B, ...) -> (B, ...). Samples are
independent (the Jacobian of f is block-diagonal over the batch), so residuals, convergence and
"best iterate" are all per sample, while the iteration count and NFE are shared by the batch.

Residuals follow TorchDEQ's convention:
    abs_b = ||f(z_b) - z_b||,    rel_b = abs_b / (||f(z_b)|| + eps)
and a solve stops when the worst sample of the batch is under ``tol``.

What "converged" means: every sample's residual is under ``tol``, and, in the relative mode, its absolute
residual has also fallen to at most half of its first value (unless the start already met ``tol``). The
relative residual alone can be met by running away: on f(z) = z + 1 (no fixed point) ||f(z) - z|| stays 1
while ||f(z)|| grows, so rel -> 0 as z -> infinity; that is never a solution. An iterative solve whose
absolute residual stops falling (oscillation, a map without fixed point) stops early as ``stalled``.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..checks import check

Map = Callable[[torch.Tensor], torch.Tensor]

#: Guards the relative residual against division by zero when f(z) = 0.
REL_EPS = 1e-9


class Status(str, enum.Enum):
    """How a solve ended."""

    CONVERGED = "converged"  # worst sample's residual <= tol
    MAX_ITER = "max_iter"  # budget (iterations, ODE steps) spent without reaching tol
    DIVERGED = "diverged"  # residual grew without bound, or the path could not be followed
    NON_FINITE = "non_finite"  # f produced inf/nan; the best finite iterate is returned
    STALLED = "stalled"  # the absolute residual stopped falling (oscillation, or no fixed point to reach)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class SolverPath:
    """The path a continuation solver followed.

    Attributes:
        lambdas: (T,) homotopy parameter λ (or ODE time t) of each recorded state, increasing.
        states: (T, B, ...) detached states z(λ) on the solver's device.
    """

    lambdas: torch.Tensor
    states: torch.Tensor

    def __post_init__(self) -> None:
        if self.lambdas.shape[0] != self.states.shape[0]:
            raise ValueError("path lambdas and states must have the same length")


@dataclass(frozen=True)
class SolverStats:
    """Statistics of one solve, in the same format for every method.

    Attributes:
        method: name of the solver that ran.
        status: how the solve ended (see :class:`Status`).
        nfe: exact number of calls of f (every call, whatever made it: with ``jacobian="jvp"`` each
            forward-mode product is one more call of f and counts here too).
        n_jac: number of Jacobian-vector or vector-Jacobian products.
        n_steps: iterations for iterative solvers; ODE steps plus corrector steps for ``homotopy``.
        abs_residual: (B,) ||f(z) - z|| of the returned z.
        rel_residual: (B,) ||f(z) - z|| / (||f(z)|| + eps) of the returned z.
        trace_abs: (K, B) absolute residual after each real evaluation (no padding).
        trace_rel: (K, B) relative residual, same rows.
        trace_nfe: (K,) value of ``nfe`` when each trace row was measured (x-axis for plots).
        tol: the tolerance the solve was asked for.
        stop_mode: ``"rel"`` or ``"abs"``: which residual ``tol`` applies to.
        seconds: wall time of the solve.
        path: for path-following solvers, the λ grid and states; otherwise ``None``.
    """

    method: str
    status: Status
    nfe: int
    n_jac: int
    n_steps: int
    abs_residual: torch.Tensor
    rel_residual: torch.Tensor
    trace_abs: torch.Tensor
    trace_rel: torch.Tensor
    trace_nfe: torch.Tensor
    tol: float
    stop_mode: str
    seconds: float
    path: SolverPath | None = None

    @property
    def converged(self) -> bool:
        return self.status is Status.CONVERGED

    @property
    def residual(self) -> torch.Tensor:
        """(B,) the residual that ``tol`` applies to."""
        return self.rel_residual if self.stop_mode == "rel" else self.abs_residual

    @property
    def trace(self) -> torch.Tensor:
        """(K, B) trace of the residual that ``tol`` applies to."""
        return self.trace_rel if self.stop_mode == "rel" else self.trace_abs

    @property
    def sample_nfe(self) -> torch.Tensor:
        """(B,) float: the NFE at which each sample's residual first met ``tol`` in the trace, or ``nfe``
        for a sample that never did.

        The batch stops when its slowest sample converges, so ``nfe`` is about the largest of these; the
        rest show how hard each input is (the solvers treat samples independently, so this is what the
        sample would have cost alone, up to the final bookkeeping evaluation).
        """
        trace = self.trace
        batch = self.residual.shape[0]
        if trace.numel() == 0:
            return torch.full((batch,), float(self.nfe))
        hit = trace <= self.tol  # (K, B)
        first = hit.to(torch.int8).argmax(0)  # first row under tol (0 when none: replaced below)
        out = self.trace_nfe.to(torch.float64)[first]
        return torch.where(hit.any(0), out, torch.full_like(out, float(self.nfe)))

    def summary(self) -> dict[str, Any]:
        """JSON-ready scalars: status, counts and the worst sample's residuals."""
        return {
            "method": self.method,
            "status": self.status.value,
            "nfe": self.nfe,
            "n_jac": self.n_jac,
            "n_steps": self.n_steps,
            "abs_residual": float(self.abs_residual.max()) if self.abs_residual.numel() else 0.0,
            "rel_residual": float(self.rel_residual.max()) if self.rel_residual.numel() else 0.0,
            "seconds": self.seconds,
        }


class SolverError(RuntimeError):
    """Raised by ``solve(..., throw=True)`` when a solve does not converge."""

    def __init__(self, message: str, stats: SolverStats):
        super().__init__(message)
        self.stats = stats


# ----------------------------------------------------------------------------------------------
# Options


@dataclass(frozen=True)
class SolverOptions:
    """Options every method accepts.

    Attributes:
        tol: stop when the worst sample's residual is <= tol.
        max_iter: iteration cap (for ``homotopy``: the cap of its Newton corrector).
        stop_mode: ``"rel"`` (||f(z) - z|| / ||f(z)||, default) or ``"abs"`` (||f(z) - z||).
        divergence_ratio: stop as ``diverged`` when a sample's residual exceeds this multiple of the
            best residual it had reached.
        patience: iterative solvers stop as ``stalled`` when no unconverged sample's absolute residual
            has fallen by 1 % over this many evaluations.
        throw: raise :class:`SolverError` instead of returning a non-converged result.
    """

    tol: float = 1e-4
    max_iter: int = 50
    stop_mode: str = "rel"
    divergence_ratio: float = 1e4
    patience: int = 50
    throw: bool = False

    def __post_init__(self) -> None:
        check(
            isinstance(self.tol, (int, float)) and math.isfinite(self.tol) and self.tol > 0,
            f"tol must be a positive number, got {self.tol!r}",
        )
        check(
            isinstance(self.max_iter, int) and not isinstance(self.max_iter, bool) and self.max_iter >= 1,
            f"max_iter must be an integer >= 1, got {self.max_iter!r}",
        )
        check(
            self.stop_mode in ("rel", "abs"),
            f"stop_mode must be one of 'abs', 'rel', got {self.stop_mode!r}",
        )
        check(
            isinstance(self.divergence_ratio, (int, float)) and self.divergence_ratio > 1,
            f"divergence_ratio must be > 1, got {self.divergence_ratio!r}",
        )
        check(
            isinstance(self.patience, int) and not isinstance(self.patience, bool) and self.patience >= 1,
            f"patience must be an integer >= 1, got {self.patience!r}",
        )

    @classmethod
    def from_kwargs(cls, method: str, kwargs: dict[str, Any]) -> SolverOptions:
        """Build options from keyword arguments, naming the valid ones when one is unknown."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise ValueError(
                f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                f"for method {method!r}; valid options are {', '.join(sorted(valid))}"
            )
        return cls(**kwargs)

    def replace(self, **changes: Any) -> SolverOptions:
        return dataclasses.replace(self, **changes)


# ----------------------------------------------------------------------------------------------
# Counting, residuals, bookkeeping


class CountedMap:
    """Wraps f and counts its calls, so ``stats.nfe`` is exact whatever the solver does."""

    def __init__(self, f: Map):
        self.f = f
        self.calls = 0
        self.jac_products = 0

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        fz = self.f(z)
        # The contract, checked at every call (a few attribute reads): a map that broadcasts to another
        # shape would otherwise "converge" with residual 0, and a tuple fails deep inside with a bare error.
        if not isinstance(fz, torch.Tensor):
            raise ValueError(f"f must return one tensor of the state's shape {tuple(z.shape)}, got {type(fz).__name__}")
        if fz.shape != z.shape:
            raise ValueError(
                f"f returned shape {tuple(fz.shape)} for a state of shape {tuple(z.shape)}; a fixed-point map "
                "must return the state's shape (check for broadcasting)"
            )
        if fz.dtype != z.dtype:
            raise ValueError(f"f returned {fz.dtype} for a {z.dtype} state; return the state's dtype (fz.to(z.dtype))")
        return fz


def wide_dtype(device: torch.device) -> torch.dtype:
    """float64 for the solvers' small dense systems, except where the backend has none (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def evenly_spaced(n: int, k: int) -> torch.Tensor:
    """Indices of at most k evenly spaced items out of n, first and last included (for subsampling paths)."""
    return torch.linspace(0, n - 1, min(k, n)).round().long().unique()


def batch_norm(x: torch.Tensor) -> torch.Tensor:
    """(B, ...) -> (B,) Euclidean norm of each sample, computed in float32 at least: in float16 the squares
    of residuals below ~1e-4 underflow to 0, and a solve would report a residual of exactly 0."""
    flat = x.reshape(x.shape[0], -1)
    return flat.to(torch.promote_types(flat.dtype, torch.float32)).norm(dim=1)


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, N), (B, N) -> (B,) per-sample inner product."""
    return (a * b).sum(dim=1)


def residuals(z: torch.Tensor, fz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, ...) state and f(state) -> (abs, rel) residuals, each (B,)."""
    abs_res = batch_norm(fz - z)
    rel_res = abs_res / (batch_norm(fz) + REL_EPS)
    return abs_res, rel_res


def all_finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


@dataclass
class Tracker:
    """Keeps the residual trace and the best iterate of every sample.

    ``observe(z, fz)`` records the residual of the pair (z, f(z)) and keeps z for each sample
    whose residual improved; the best z is what the solver returns, so the reported final
    residual is exactly that of the returned state.
    """

    counted: CountedMap
    options: SolverOptions
    best_z: torch.Tensor | None = None
    best_abs: torch.Tensor | None = None
    best_rel: torch.Tensor | None = None
    last_abs: torch.Tensor | None = None
    last_rel: torch.Tensor | None = None
    min_abs: torch.Tensor | None = None  # smallest absolute residual each sample has had
    first_abs: torch.Tensor | None = None  # (B,) absolute residual of the first evaluation
    first_key: torch.Tensor | None = None  # (B,) the residual tol applies to, at the first evaluation
    origin: torch.Tensor | None = None  # the first state observed
    far: torch.Tensor | None = None  # (B,) bool: the latest state ran away from the origin (see observe)
    history_min_abs: list[torch.Tensor] = field(default_factory=list)  # min_abs of the last patience+1 checks
    rows_abs: list[torch.Tensor] = field(default_factory=list)
    rows_rel: list[torch.Tensor] = field(default_factory=list)
    rows_nfe: list[int] = field(default_factory=list)
    start: float = field(default_factory=time.perf_counter)

    def observe(self, z: torch.Tensor, fz: torch.Tensor) -> None:
        abs_res, rel_res = residuals(z, fz)
        abs_res, rel_res = abs_res.detach(), rel_res.detach()
        self.rows_abs.append(abs_res.cpu())
        self.rows_rel.append(rel_res.cpu())
        self.rows_nfe.append(self.counted.calls)
        self.last_abs, self.last_rel = abs_res, rel_res
        finite_abs = torch.nan_to_num(abs_res, nan=math.inf)
        self.min_abs = finite_abs if self.min_abs is None else torch.minimum(self.min_abs, finite_abs)
        key = self.key(abs_res, rel_res)
        if self.best_z is None:
            self.first_abs, self.first_key = finite_abs, key
            self.origin = z.detach().clone()
            self.far = torch.zeros_like(finite_abs, dtype=torch.bool)
            self.best_z = z.detach().clone()
            self.best_abs, self.best_rel = abs_res.clone(), rel_res.clone()
            return
        # A state divergence_ratio first residuals away from the start has run away: a root that far would
        # need a contraction factor above 1 - 1/divergence_ratio. Far out, z + 1 == z in floating point, so
        # such a state can show a residual of 0; it is never taken as the answer.
        self.far = batch_norm(z.detach() - self.origin) > self.options.divergence_ratio * self.first_abs.clamp_min(
            1e-12
        )
        best_key = self.key(self.best_abs, self.best_rel)
        better = (key < best_key) & ~self.far
        if bool(better.any()):
            shape = (-1,) + (1,) * (z.dim() - 1)
            self.best_z = torch.where(better.view(shape), z.detach(), self.best_z)
            self.best_abs = torch.where(better, abs_res, self.best_abs)
            self.best_rel = torch.where(better, rel_res, self.best_rel)

    def key(self, abs_res: torch.Tensor, rel_res: torch.Tensor) -> torch.Tensor:
        res = rel_res if self.options.stop_mode == "rel" else abs_res
        return torch.nan_to_num(res, nan=math.inf)

    def sample_converged(self) -> torch.Tensor:
        """(B,) bool: is each sample's best iterate a solution (see the module docstring)?

        Under tol, and in the relative mode also an absolute residual that fell to half its first value:
        the relative residual of a run-away iterate falls without the residual itself falling.
        """
        under = self.key(self.best_abs, self.best_rel) <= self.options.tol
        if self.options.stop_mode == "abs":
            return under
        fell = (self.best_abs <= 0.5 * self.first_abs) | (self.first_key <= self.options.tol)
        return under & fell

    def converged(self) -> bool:
        """Is every sample's best iterate a solution?"""
        return bool(self.sample_converged().all())

    def stalled(self) -> bool:
        """Has no unconverged sample's absolute residual fallen by 1 % over the last ``patience`` checks?"""
        self.history_min_abs.append(self.min_abs)
        if len(self.history_min_abs) <= self.options.patience:
            return False
        then = self.history_min_abs.pop(0)
        moving = self.min_abs < 0.99 * then
        pending = ~self.sample_converged()
        return not bool((moving & pending).any())

    def ran_away(self) -> bool:
        """Has some unconverged sample's latest state run away from the start (see ``observe``)?"""
        return bool((self.far & ~self.sample_converged()).any())

    def diverging(self) -> bool:
        """Has some sample's latest absolute residual blown up relative to its best, or its state run away?

        Judged on the absolute residual whatever the stop mode: when iterates blow up, ||f(z)|| grows
        with ||f(z) - z|| and the relative residual stays bounded.
        """
        last = torch.nan_to_num(self.last_abs, nan=math.inf)
        blown = (last > self.options.divergence_ratio * self.min_abs.clamp_min(1e-30)) | self.far
        # Samples already under tol keep their best iterate while the batch iterates on; their residual
        # can hit exactly 0 and then wobble at round-off level, which is not divergence.
        return bool((blown & ~self.sample_converged()).any())

    def check(self, z: torch.Tensor, fz: torch.Tensor, z0: torch.Tensor) -> tuple[bool, Status | None]:
        """Record one evaluation fz = f(z) of an iterative solver (z shaped like z0) and say whether to stop:
        (True, NON_FINITE) on a NaN/inf, (True, None) once converged (``finish`` names the status),
        (True, DIVERGED) when a pending sample blows up, (True, STALLED) when no pending sample's residual
        still falls, else (False, None)."""
        if not all_finite(fz) or not all_finite(z):
            if self.best_z is None:  # nothing finite seen yet: keep the start as the answer
                self.observe(z0, torch.nan_to_num(fz, nan=float("inf")))
            return True, Status.NON_FINITE
        self.observe(z, fz)
        if self.converged():
            return True, None
        if self.diverging():
            return True, Status.DIVERGED
        if self.stalled():
            return True, Status.STALLED
        return False, None

    def finish(
        self,
        method: str,
        status: Status | None,
        n_steps: int,
        path: SolverPath | None = None,
    ) -> tuple[torch.Tensor, SolverStats]:
        """Pick the status (if not forced), assemble stats, honour ``throw``."""
        if status is None or status is Status.MAX_ITER:
            if self.converged():
                status = Status.CONVERGED
            elif status is None and self.rows_abs and self._worse_than_start():
                # Only a solve that used its whole iteration budget is judged by where it ended; a budget
                # cut short (MAX_ITER forced, e.g. max_ode_steps) mid-path is not divergence: a
                # continuation path may climb in residual before it descends.
                status = Status.DIVERGED
            else:
                status = Status.MAX_ITER
        stats = SolverStats(
            method=method,
            status=status,
            nfe=self.counted.calls,
            n_jac=self.counted.jac_products,
            n_steps=n_steps,
            abs_residual=self.best_abs,
            rel_residual=self.best_rel,
            trace_abs=torch.stack(self.rows_abs) if self.rows_abs else torch.empty(0),
            trace_rel=torch.stack(self.rows_rel) if self.rows_rel else torch.empty(0),
            trace_nfe=torch.tensor(self.rows_nfe, dtype=torch.long),
            tol=self.options.tol,
            stop_mode=self.options.stop_mode,
            seconds=time.perf_counter() - self.start,
            path=path,
        )
        if self.options.throw and status is not Status.CONVERGED:
            raise SolverError(failure_advice(method, stats), stats)
        return self.best_z, stats

    def _worse_than_start(self) -> bool:
        first = self.key(self.rows_abs[0], self.rows_rel[0])
        last = self.key(self.rows_abs[-1], self.rows_rel[-1])
        return bool((last > first).any())


def failure_advice(method: str, stats: SolverStats) -> str:
    """A message that names the setting to change."""
    worst = float(stats.residual.max()) if stats.residual.numel() else float("nan")
    head = (
        f"{method} stopped with status '{stats.status.value}' after {stats.nfe} evaluations "
        f"(worst {stats.stop_mode} residual {worst:.3g}, tol {stats.tol:g}); "
    )
    if stats.status is Status.MAX_ITER and method == "homotopy":
        # The budget may be the ODE's or the corrector's: name both.
        tail = (
            "raise max_ode_steps or loosen rtol/atol (adaptive ode_method), raise n_steps, "
            "or raise max_iter (Newton corrector steps) or loosen tol"
        )
    elif stats.status is Status.MAX_ITER:
        tail = "raise max_iter, loosen tol, or use a faster method (anderson, broyden)"
    elif stats.status is Status.STALLED:
        tail = (
            "the residual stopped falling: the iterates oscillate or the map has no fixed point here; "
            "add damping (beta < 1), use anderson or broyden, or check that f has a fixed point"
        )
    elif stats.status is Status.DIVERGED:
        if method == "homotopy":
            tail = "try more ODE steps (n_steps), a tighter rtol/atol, or the 'newton' homotopy"
        else:
            tail = "the map is not contractive here: add damping (beta < 1), or use broyden or homotopy"
    else:
        tail = "f produced inf/nan: check the map, lower the learning rate, or add damping"
    return head + tail
