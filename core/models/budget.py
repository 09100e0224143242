"""A trained model at another solver budget: accuracy and mean forward NFE, without retraining.

A budget is one setting of the solver a model uses at test time: the DEQ's forward solver with a tolerance
(and an iteration cap beside it) or with an iteration cap alone (tolerance 1e-8, so the cap binds), or an ODE
model's method with a tolerance (adaptive methods: rtol = atol) or a number of fixed steps. The Solver lab's
sweep and the study's budget measurements are both this module: a list of :class:`Budget` and
:func:`budget_curve`, each point measured by :func:`accuracy_and_nfe`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..solvers import SolverError
from .blocks import ODEStepLimitError
from .config import DEQ_MAX_ITER, ModelConfig

#: The sweeps: a tolerance, or a count (the DEQ's iteration cap, an ODE method's fixed steps).
BUDGET_SWEEPS = ("tol", "steps")
#: The DEQ's tolerance when its iteration cap is the budget: small enough never to stop it first.
CAP_ONLY_TOL = 1e-8


@dataclass(frozen=True)
class Budget:
    """One solver budget: ``curve`` (the DEQ's forward solver, or the ODE method) at ``value`` of ``sweep``
    ("tol": a tolerance; "steps": the DEQ's iteration cap or the ODE's fixed steps). ``max_iter`` is the DEQ's
    iteration cap beside a tolerance."""

    curve: str
    sweep: str
    value: float
    max_iter: int = DEQ_MAX_ITER

    def __post_init__(self) -> None:
        if self.sweep not in BUDGET_SWEEPS:
            raise ValueError(f"a budget's sweep must be one of {', '.join(BUDGET_SWEEPS)}, got {self.sweep!r}")

    def label(self, family: str) -> str:
        """How a chart names the point: the tolerance, "N it" (DEQ) or the number of steps."""
        if self.sweep == "tol":
            return f"{self.value:g}"
        return f"{int(self.value)} it" if family == "deq" else f"{int(self.value)}"

    def config(self, trained: ModelConfig) -> ModelConfig:
        """``trained`` with this budget (its other settings kept; ValueError for a bad one)."""
        if trained.family == "deq":
            if self.sweep == "tol":
                options = {"tol": self.value, "max_iter": self.max_iter}
            else:
                options = {"tol": CAP_ONLY_TOL, "max_iter": int(self.value)}
            return trained.replace(deq=trained.deq.with_forward(self.curve, **options))
        if self.sweep == "tol":
            return trained.with_solver_settings(tol=self.value, ode_method=self.curve)
        return trained.with_solver_settings(ode_method=self.curve, n_steps=int(self.value))


def budgets(sweep: str, values: Sequence[float], curves: Sequence[str], max_iter: int = DEQ_MAX_ITER) -> list[Budget]:
    """Every ``curve`` (DEQ solvers for a DEQ, ODE methods otherwise) at every value of ``sweep``, curve by
    curve."""
    return [Budget(curve, sweep, value, max_iter) for curve in curves for value in values]


def _batches(x: torch.Tensor, y: torch.Tensor, size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(y), size):
        yield x[start : start + size], y[start : start + size]


def accuracy_and_nfe(
    forward: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    perturb: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None,
) -> dict[str, Any]:
    """{"accuracy", "nfe" (mean forward NFE a batch), "seconds"} of ``forward`` (a model, or a model under
    autocast) on ``x`` (N, ...) with labels ``y`` (N,), ``batch_size`` at a time; each batch perturbed first by
    ``perturb(x, y, k)`` (k: the batch's index, for seeding). {"error": first line} when a solve failed (an
    ODE that hit its step cap, a solver error): the budget cannot integrate the model."""
    correct, nfe, batches = 0, 0.0, 0
    t0 = time.perf_counter()
    try:
        for k, (xb, yb) in enumerate(_batches(x, y, batch_size)):
            if perturb is not None:
                xb = perturb(xb, yb, k)
            with torch.no_grad():
                out = forward(xb)
            correct += int((out.logits.argmax(1) == yb).sum())
            nfe += float(out.stats.nfe)
            batches += 1
    except (ODEStepLimitError, SolverError) as err:
        return {"error": str(err).splitlines()[0][:300]}
    return {"accuracy": correct / len(y), "nfe": nfe / max(batches, 1), "seconds": time.perf_counter() - t0}


def solver_settings(model: nn.Module) -> ModelConfig:
    """``model``'s config with the solver settings it solves with now (an ImplicitClassifier's block may have
    been given others since it was built: ``set_ode`` / ``set_solver``)."""
    config: ModelConfig = model.config
    now = model.block.config
    return config.replace(deq=now) if config.family == "deq" else config.replace(ode=now)


def set_solver_settings(model: nn.Module, config: ModelConfig) -> None:
    """Give ``model`` (an ImplicitClassifier) the solver settings of ``config``: its DEQ solver, or its ODE."""
    if config.family == "deq":
        model.set_solver(config.deq)
    else:
        model.set_ode(config.ode)


def budget_curve(
    model: nn.Module,
    points: Sequence[Budget],
    measure: Callable[[], dict[str, Any]],
    progress: Callable[[int, int], None] | None = None,
) -> list[tuple[Budget, dict[str, Any]]]:
    """(budget, ``measure()``) for each budget in ``points``, ``model`` set to it first (from the settings it
    has now); the model gets those settings back at the end, whatever happened. ``progress(done, total)`` is
    called before the first budget and after each."""
    before = solver_settings(model)
    report = progress or (lambda done, total: None)
    report(0, len(points))
    out: list[tuple[Budget, dict[str, Any]]] = []
    try:
        for done, point in enumerate(points, 1):
            set_solver_settings(model, point.config(before))
            out.append((point, measure()))
            report(done, len(points))
    finally:
        set_solver_settings(model, before)
    return out
