"""Measurements of a trained run, after training: accuracy under input perturbations and under a changed
solver budget, on the model the run selected on validation.

    record = measure_run("runs/study/digits-deq-s0", MeasureSettings())

Everything is measured in eval mode on the first ``settings.examples`` test examples of the run's own test
split (a stratified sample), rebuilt from the run's checkpoint with :func:`core.training.load_trainer`.
The record is written by the caller (``measurements.json`` in the run folder).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import Budget, ODEConfig, ODEStepLimitError, accuracy_and_nfe, budget_curve
from ..solvers import SolverError
from ..training import RunDir, Trainer, load_trainer
from .plan import MeasureSettings

#: The format tag of ``measurements.json``.
FORMAT = "implicit-explorer-study-measurements/1"


class _Images:
    """Conversions between the model's normalised inputs and pixels in [0, 1]."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...], like: torch.Tensor):
        shape = (1, len(mean), 1, 1)
        self.mean = torch.tensor(mean, dtype=like.dtype, device=like.device).view(shape)
        self.std = torch.tensor(std, dtype=like.dtype, device=like.device).view(shape)

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean

    def inputs(self, p: torch.Tensor) -> torch.Tensor:
        return (p.clamp(0, 1) - self.mean) / self.std


class _Evaluator:
    """Accuracy and mean forward NFE of a model on (possibly perturbed) inputs, batch by batch."""

    def __init__(self, trainer: Trainer, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.trainer, self.model = trainer, trainer.model
        self.x, self.y, self.batch_size = x, y, batch_size

    def forward(self, x: torch.Tensor) -> Any:
        with self.trainer.autocast():
            return self.model(x)

    def accuracy(self, perturb: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None = None) -> dict:
        """{"accuracy", "nfe", "seconds"} on the measured examples, each batch perturbed by ``perturb(x, y, k)``
        first (k: the batch's index, for seeding); {"error": ...} when a solver failed."""
        return accuracy_and_nfe(self.forward, self.x, self.y, self.batch_size, perturb)

    def input_gradient(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """d(cross-entropy summed over the batch)/dx, through the model's own backward (DEQ: implicit)."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self.forward(x)
            loss = nn.functional.cross_entropy(out.logits.float(), y, reduction="sum")
            (grad,) = torch.autograd.grad(loss, x)
        return grad


def _fgsm(ev: _Evaluator, img: _Images, eps: float):
    """x' = clip(x + eps sign(∇x L)) in pixels (Goodfellow et al. 2015)."""

    def perturb(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        grad = ev.input_gradient(x, y)
        return img.inputs(img.pixels(x) + eps * grad.sign())

    return perturb


def _pgd(ev: _Evaluator, img: _Images, eps: float, steps: int, seed: int):
    """Projected gradient ascent in the L∞ ball of radius eps around x (Madry et al. 2018): a uniform random
    start, ``steps`` signed steps of 2.5 eps / steps, each projected back onto the ball and onto [0, 1]."""
    alpha = 2.5 * eps / steps

    def perturb(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k)
        p0 = img.pixels(x)
        start = (torch.rand(p0.shape, generator=gen, dtype=p0.dtype) * 2 - 1).to(p0.device) * eps
        p = (p0 + start).clamp(0, 1)
        for _ in range(steps):
            grad = ev.input_gradient(img.inputs(p), y)
            p = p + alpha * grad.sign()
            p = torch.min(torch.max(p, p0 - eps), p0 + eps).clamp(0, 1)
        return img.inputs(p)

    return perturb


def _noise(img: _Images, sigma: float, seed: int):
    def perturb(x: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + k)
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
        return img.inputs(img.pixels(x) + sigma * noise)

    return perturb


def budget_settings(family: str, settings: MeasureSettings) -> list[Budget]:
    """Every solver budget tried after training: ``tol`` (dopri5 rtol = atol, or the DEQ's Anderson tolerance
    with its cap raised to ``tol_max_iter``) and ``steps`` (rk4 steps, or the DEQ's Anderson iteration cap)."""
    if family == "deq":
        tol = [Budget("anderson", "tol", t, settings.tol_max_iter) for t in settings.tolerances]
        return tol + [Budget("anderson", "steps", n) for n in settings.deq_iters]
    return [Budget("dopri5", "tol", t) for t in settings.tolerances] + [
        Budget("rk4", "steps", n) for n in settings.rk4_steps
    ]


def _is_trained(family: str, ode: ODEConfig, point: Budget) -> bool:
    """True for the ODE setting the model was trained with (measured already, as the clean accuracy)."""
    same = ode.method == point.curve and ode.rtol == ode.atol == point.value
    return family != "deq" and point.sweep == "tol" and same


def measure_trainer(trainer: Trainer, settings: MeasureSettings, seed: int) -> dict[str, Any]:
    """The measurements of ``trainer``'s selected model (its ``best_state``, else its current one)."""
    t0 = time.perf_counter()
    model = trainer.model
    selected = _select(trainer)
    model.eval()
    n = min(settings.examples, len(trainer.test_y))
    x = trainer.test_x[:n].to(trainer.device)
    y = trainer.test_y[:n].to(trainer.device)
    img = _Images(trainer.data.mean, trainer.data.std, x)
    ev = _Evaluator(trainer, x, y, settings.batch_size)
    family = trainer.config.model.family

    record: dict[str, Any] = {
        "format": FORMAT,
        "selected_step": selected,
        "selected_val_accuracy": trainer.best_val,
        "examples": n,
        "settings": dataclasses.asdict(settings),
        "clean": ev.accuracy(),
        "noise": [{"strength": s, **ev.accuracy(_noise(img, s, seed))} for s in settings.noise],
        "fgsm": [{"strength": e, **ev.accuracy(_fgsm(ev, img, e))} for e in settings.fgsm],
        "pgd": [
            {"strength": e, "steps": settings.pgd_steps, **ev.accuracy(_pgd(ev, img, e, settings.pgd_steps, seed))}
            for e in settings.pgd
        ],
    }
    # The trained setting itself (dopri5 at the tolerance it was trained with) was measured above, as "clean".
    trained_ode: ODEConfig = model.config.ode
    points = budget_settings(family, settings)
    measured = dict(budget_curve(model, [p for p in points if not _is_trained(family, trained_ode, p)], ev.accuracy))
    record["budget"] = [{"sweep": p.sweep, "value": p.value, **measured.get(p, record["clean"])} for p in points]
    record["graph"] = graph_measurement(trainer)
    record["seconds"] = time.perf_counter() - t0
    return record


def graph_measurement(trainer: Trainer) -> dict[str, Any]:
    """{"bytes", "nfe", "batch"}: what one training step's forward pass keeps for backward with the weights
    the trainer holds (the selected model, in :func:`measure_trainer`), on the batch of its first training
    step. Exact (the saved tensors alive when the forward pass ends), unlike a count made while training
    with a meter that also counted storages freed before the forward pass ended."""
    batch = trainer.config.batch_size
    try:
        nbytes, nfe = trainer.graph_bytes(step=0)
    except (ODEStepLimitError, SolverError, MemoryError) as err:  # a diverged run's weights, a full device
        return {"error": f"{type(err).__name__}: {err}"[:300], "batch": batch}
    except RuntimeError as err:
        if "out of memory" not in str(err).lower():
            raise
        return {"error": f"out of memory: {str(err).splitlines()[0][:200]}", "batch": batch}
    return {"bytes": nbytes, "nfe": nfe, "batch": batch}


def add_graph_measurement(
    run: str | Path | RunDir, device: str = "auto", threads: int | None = None, data_dir: str | None = None
) -> dict[str, Any]:
    """:func:`graph_measurement` of the model ``run`` selected on validation, rebuilt from its checkpoint
    (for a run measured before the record had it). Returns it; the caller writes it."""
    trainer = _rebuild(run, device, threads, data_dir)
    _select(trainer)
    return graph_measurement(trainer)


def _select(trainer: Trainer) -> int:
    """Load the model ``trainer`` selected on validation (its ``best_state``, else keep the current one) and
    return the step it comes from."""
    if trainer.best_state is None:
        return trainer.step_count
    trainer.model.load_state_dict(trainer.best_state)
    return trainer.best_step


def _rebuild(run: str | Path | RunDir, device: str, threads: int | None, data_dir: str | None) -> Trainer:
    """The trainer of ``run`` rebuilt from its checkpoint on ``device`` (nothing written to its folder; never
    downloads)."""
    run = run if isinstance(run, RunDir) else RunDir(run)
    overrides: dict[str, Any] = {"device": device, "threads": threads}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    return load_trainer(run.checkpoint_file(), out_dir=None, **overrides)


def measure_run(
    run: str | Path | RunDir,
    settings: MeasureSettings,
    device: str = "auto",
    threads: int | None = None,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Rebuild ``run`` from its checkpoint (on ``device``; nothing is written to the folder) and measure the
    model it selected on validation. Returns the record (see :func:`measure_trainer`)."""
    trainer = _rebuild(run, device, threads, data_dir)
    return measure_trainer(trainer, settings, trainer.config.seed)
