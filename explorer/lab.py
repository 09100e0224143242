"""The Solver lab's logic: find a trained model, solve one input's equilibrium with every solver, and sweep
solver settings on validation data (accuracy vs NFE) without retraining.

Every function works on a private copy of a model, so a run that is still training is never disturbed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import core
from core import checks
from core.checks import short_repr
from core.data import DataBundle, DatasetUnavailable, load_dataset
from core.models import BUDGET_SWEEPS, Budget, accuracy_and_nfe, budget_curve, budgets
from core.solvers import PCABasis, fit_pca
from core.training import CheckpointError, RunDir, TrainConfig, load_trainer

from .plots import ResidualTrace

#: Untrained presets offered when no run exists yet (labelled as such on the page).
FRESH_PRESETS = ("image28-deq", "image28-deq-groupnorm", "image28-homoode", "image28-node")
#: What the menu says beside a preset whose name does not tell the story (short: a menu cuts long labels).
FRESH_NOTES = {
    "image28-deq": "contractive: all converge",
    "image28-deq-groupnorm": "not contractive: homotopy helps",
}
#: Solvers compared on a DEQ, in display order.
LAB_SOLVERS = ("fixed_point", "anderson", "broyden", "homotopy")
PATH_STATES = 48


@dataclass
class LabModel:
    """A model ready for analysis: its own copy, in eval mode, with the data it was trained on."""

    key: str
    label: str
    model: nn.Module
    data: DataBundle

    @property
    def family(self) -> str:
        return self.model.config.family


def runs_with_checkpoints(runs_dir: Path) -> list[Path]:
    """Run folders under ``runs_dir`` holding a checkpoint of their own, newest first (by the checkpoint's
    time: the run trained most recently comes first)."""
    found = [
        run.checkpoint for run in RunDir.list(runs_dir) if run.checkpoint.is_file() and not run.checkpoint.is_symlink()
    ]
    return [p.parent for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


MAX_PATH_CHARS = 1024


def resolve_checkpoint(path_text: str, runs_dir: Path) -> Path:
    """A checkpoint path typed by the user, restricted to the runs directory (the page may be reachable
    by others: it must not open arbitrary files).

    The check is on the final path, resolved after a folder's ``checkpoint.pt`` is appended: a link
    (the folder's or the file's) that leads out of the runs directory is refused. Every problem with the
    path (too long, a link loop, a NUL character) is a ValueError saying so.
    """
    text = (path_text or "").strip()
    if not text:
        raise ValueError("enter the path of a checkpoint file (a run folder or its checkpoint.pt)")
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(
            f"that path is {len(text):,} characters long; a checkpoint path here is at most {MAX_PATH_CHARS}"
        )
    if "\0" in text:
        raise ValueError(f"{short_repr(text)} is not a path: it holds a NUL character")
    try:
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = runs_dir / path
        if path.is_dir():
            path = RunDir(path).checkpoint
        path = path.resolve()
        root = runs_dir.resolve()
        if root not in path.parents:
            raise ValueError(f"only checkpoints under the runs directory {root} can be opened here")
        if not path.is_file():
            raise ValueError(f"no checkpoint file at {short_repr(str(path), 200)}")
    except RuntimeError:  # Path.resolve's symlink loop (an OSError from Python 3.13 on)
        raise ValueError(f"cannot open {short_repr(text)}: it is a loop of symbolic links") from None
    except OSError as err:  # a name too long for the file system, a loop, no permission, ...
        raise ValueError(f"cannot open {short_repr(text)}: {err.strerror or type(err).__name__}") from None
    return path


def load_run(path: Path, device: str = "cpu") -> tuple[nn.Module, DataBundle, TrainConfig]:
    """Model (eval mode), data and config of a saved checkpoint; CheckpointError for a file that is not one.

    The saved config is rebuilt on this machine's device and without its thread setting (a run recorded
    with ``--threads`` must not change this server's torch threads).
    """
    trainer = load_trainer(path, threads=None, device=device)  # never downloads (load_trainer)
    return trainer.model.eval(), trainer.data, trainer.config


def fresh_model(preset_name: str) -> tuple[nn.Module, DataBundle]:
    """An untrained preset on the bundled digits (so the lab works on a machine with no runs yet)."""
    model = core.build_model(core.preset(preset_name)).eval()
    return model, load_dataset("digits")


def pick_input(lab: LabModel, index: int, split: str = "val") -> tuple[torch.Tensor, int, np.ndarray | None]:
    """(1, *input_shape) input, its label and a displayable picture (uint8 HxW[x3], None for points)."""
    ds = lab.data.val if split == "val" else lab.data.test
    n = len(ds.targets)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < n:
        raise ValueError(
            f"input index must be a whole number from 0 to {n - 1} ({split} split), got {short_repr(index)}"
        )
    x = ds.inputs[index : index + 1]
    return x, int(ds.targets[index]), to_picture(lab.data, x[0])


MAX_CANVAS_SIDE = 2000  # pixels: the page's sketchpad is 280; larger arrays only cost memory


INK = 0.1  # a pixel with more ink than this is part of the drawing


def _ink(drawing: Any) -> np.ndarray | None:
    """The ink of each pixel of a sketch (H, W) in [0, 1]: dark strokes on a light or transparent canvas,
    ink = alpha * (1 - luminance). None when there is no canvas; ValueError when the value is not an image."""
    canvas = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if canvas is None:
        return None
    try:
        canvas = np.asarray(canvas)
    except (TypeError, ValueError):
        canvas = np.zeros(0)
    shape_ok = canvas.ndim == 2 or (canvas.ndim == 3 and canvas.shape[-1] in (3, 4))
    if not shape_ok or not 1 <= min(canvas.shape[:2]) or max(canvas.shape[:2]) > MAX_CANVAS_SIDE:
        raise ValueError(
            f"a drawing is an image of at most {MAX_CANVAS_SIDE} x {MAX_CANVAS_SIDE} pixels (grey, RGB or RGBA), "
            f"got an array of shape {short_repr(tuple(canvas.shape))}"
        )
    try:
        img = canvas.astype(np.float64) / 255.0
    except (TypeError, ValueError):
        raise ValueError(f"a drawing is an image of numbers, got values of type {canvas.dtype}") from None
    if img.ndim == 2:
        return 1 - img
    alpha = img[..., 3] if img.shape[-1] == 4 else 1.0
    return alpha * (1 - img[..., :3] @ np.array([0.299, 0.587, 0.114]))


def drawing_to_input(drawing: Any, data: DataBundle) -> torch.Tensor:
    """A sketch from the page -> a (1, 1, 28, 28) normalised digit, prepared as MNIST's were.

    Ink is dark strokes on a light or transparent canvas: ink = alpha * (1 - luminance). As in MNIST, the
    ink's bounding box is scaled (anti-aliased) so its longer side is 20 pixels and placed in a 28 x 28
    frame with its centre of mass at the centre; then normalised with the dataset's mean and std.

    Args:
        drawing: (H, W, 4) RGBA or (H, W, 3) RGB or (H, W) grey uint8 canvas, or gradio's editor value
            (a dict whose ``composite`` is that canvas).
        data: the model's data (its input kind must be image28).

    Raises:
        ValueError: not a 28 x 28 digit model, or nothing drawn.
    """
    if data.input_kind != "image28":
        raise ValueError(
            "drawing works with 28 x 28 digit models: pick a run on digits / MNIST / Fashion-MNIST or an "
            "untrained image28 preset, or clear the canvas to solve a dataset input"
        )
    ink = _ink(drawing)
    if ink is None:
        raise ValueError("draw a digit in the box first")
    rows, cols = np.nonzero(ink > INK)
    if len(rows) == 0:
        raise ValueError("draw a digit in the box first (the canvas is empty)")
    box = torch.from_numpy(ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]).float()
    scale = 20.0 / max(box.shape)
    size = (max(1, round(box.shape[0] * scale)), max(1, round(box.shape[1] * scale)))
    small = nn.functional.interpolate(box[None, None], size=size, mode="bilinear", antialias=True)[0, 0]
    small = small.clamp(0, 1)
    frame = torch.zeros(28, 28)
    weights = small.sum()
    cy = float((small.sum(1) * torch.arange(size[0])).sum() / weights)
    cx = float((small.sum(0) * torch.arange(size[1])).sum() / weights)
    top = min(max(round(14 - cy), 0), 28 - size[0])
    left = min(max(round(14 - cx), 0), 28 - size[1])
    frame[top : top + size[0], left : left + size[1]] = small
    mean, std = data.mean[0], data.std[0]
    return ((frame - mean) / std)[None, None]


def holds_drawing(drawing: Any) -> bool:
    """True while the sketchpad holds a drawing (ink anywhere on its canvas): the lab then shows and solves
    the drawing, not the dataset input. False for no value, an empty or a cleared canvas. A value that is no
    canvas at all counts as a drawing, so that :func:`drawing_to_input` says what is wrong with it."""
    try:
        ink = _ink(drawing)
    except ValueError:
        return True
    return ink is not None and bool((ink > INK).any())


def to_picture(data: DataBundle, x: torch.Tensor, zoom: int = 4) -> np.ndarray | None:
    """A normalised (C, H, W) image back to uint8 pixels (zoom*H, zoom*W[, 3]), enlarged by pixel
    repetition so that a 28x28 digit stays crisp on the page; None for points."""
    if data.input_kind == "points":
        return None
    img = data.denormalize(x[None].float())[0].clamp(0, 1).mul(255).round().byte()
    img = img.permute(1, 2, 0).numpy()
    img = img.repeat(zoom, axis=0).repeat(zoom, axis=1)
    return img[..., 0] if img.shape[-1] == 1 else img


# ----------------------------------------------------------------------------------------------
# One input through every solver


@dataclass
class LabResult:
    """What the lab draws for one input."""

    traces: list[ResidualTrace]
    paths: dict[str, np.ndarray]  # name -> (T, 3) in the frozen PCA basis (first 3 principal axes)
    inner: dict[str, np.ndarray]  # name -> (T,) inner time: k, λ or t
    basis: PCABasis
    rows: list[dict[str, Any]]  # the table: solver, status, NFE, residual, seconds, prediction
    tol: float | None


def _validate_solver_settings(tol: Any, max_iter: Any, ode_steps: Any) -> None:
    checks.TOL.check(tol, "tolerance")
    checks.MAX_ITER.check(max_iter, "max iterations")
    checks.ODE_STEPS.check(ode_steps, "homotopy ODE steps")


def solver_options(method: str, tol: float, max_iter: int, ode_method: str, ode_steps: int) -> dict[str, Any]:
    """The keyword options of ``core.solve`` for one lab solver."""
    opts: dict[str, Any] = {"tol": tol, "max_iter": max_iter}
    if method == "homotopy":
        # GMRES to 1e-3 (not 1e-6) is ~2.5x cheaper here and the Newton corrector still reaches tol.
        opts.update(ode_method=ode_method, n_steps=ode_steps, krylov_tol=1e-3)
    return opts


@torch.no_grad()
def compare_solvers(
    lab: LabModel,
    x: torch.Tensor,
    tol: float = 1e-4,
    max_iter: int = 40,
    ode_method: str = "rk4",
    ode_steps: int = 4,
) -> LabResult:
    """Solve z = cell(z, features(x)) from z = 0 with every solver (DEQ), or integrate the ODE (others).

    Records the residual ||f(z) - z|| / ||f(z)|| against NFE for each solver and the states it visited,
    and fits one PCA basis on all of them so every path is drawn in the same coordinates.
    """
    _validate_solver_settings(tol, max_iter, ode_steps)
    model = lab.model
    x = x.to(next(model.parameters()).device)
    traces: list[ResidualTrace] = []
    states: dict[str, np.ndarray] = {}
    inner: dict[str, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    if lab.family == "deq":
        cell, z0 = model.fixed_point_map(x)
        for method in LAB_SOLVERS:
            visited: list[torch.Tensor] = []

            def f(z: torch.Tensor, visited: list[torch.Tensor] = visited) -> torch.Tensor:
                visited.append(z.detach().reshape(z.shape[0], -1)[0].cpu())
                return cell(z)

            t0 = time.perf_counter()
            z, stats = core.solve(f, z0, method=method, **solver_options(method, tol, max_iter, ode_method, ode_steps))
            seconds = time.perf_counter() - t0
            trace = stats.trace_rel[:, 0].numpy() if stats.trace_rel.numel() else np.zeros(0)
            cost = f"{stats.n_jac:,} J·v · {seconds:.2f} s" if stats.n_jac else f"{seconds:.2f} s"
            traces.append(
                ResidualTrace(method, stats.trace_nfe.numpy().astype(np.float32), trace, stats.status.value, cost)
            )
            if stats.path is not None:
                states[method] = stats.path.states[:, 0].reshape(stats.path.states.shape[0], -1).cpu().numpy()
                inner[method] = stats.path.lambdas.cpu().numpy()
            else:
                visited_arr = torch.stack(visited).numpy() if visited else np.zeros((0, z.numel()))
                states[method] = visited_arr
                inner[method] = np.arange(len(visited_arr), dtype=np.float32)
            logits = model.head(z)
            rows.append(
                {
                    "solver": method,
                    "status": stats.status.value,
                    "NFE": stats.nfe,
                    "Jacobian products": stats.n_jac,
                    "residual": float(f"{float(stats.rel_residual.max()):.3g}"),
                    "seconds": round(seconds, 3),
                    "prediction": lab.data.class_names[int(logits.argmax(1)[0])],
                }
            )
        result_tol: float | None = tol
    else:
        t0 = time.perf_counter()
        out = model(x, trajectory=PATH_STATES)
        seconds = time.perf_counter() - t0
        name = f"{lab.family} ODE ({model.config.ode.method})"
        traj = out.stats.trajectory[:, 0]
        states[name] = traj.reshape(traj.shape[0], -1).cpu().numpy()
        inner[name] = out.stats.times.cpu().numpy()
        rows.append(
            {
                "solver": name,
                "status": "integrated",
                "NFE": out.stats.nfe,
                "Jacobian products": 0,
                "residual": float("nan"),
                "seconds": round(seconds, 3),
                "prediction": lab.data.class_names[int(out.logits.argmax(1)[0])],
            }
        )
        result_tol = None
    nonempty = [s for s in states.values() if len(s)]
    basis = fit_pca(np.concatenate(nonempty), dims=3) if nonempty else fit_pca(np.zeros((1, 3)), dims=3)
    paths = {k: basis.project(v) for k, v in states.items() if len(v)}
    return LabResult(traces=traces, paths=paths, inner=inner, basis=basis, rows=rows, tol=result_tol)


# ----------------------------------------------------------------------------------------------
# Sweeps: accuracy vs NFE without retraining

# Few points per curve: every point is a full pass over the sweep's batch.
DEQ_TOLS = (3e-1, 1e-1, 1e-2, 1e-3)
DEQ_ITERS = (1, 2, 4, 8, 16)
ODE_TOLS = (1e-1, 1e-2, 1e-3, 1e-4)
ODE_STEPS = (1, 2, 4, 8)


def sweep_plan(family: str, kind: str) -> list[Budget]:
    """The budgets of a sweep: DEQ solvers over tolerances (or iteration caps); ODE models over fixed-step counts
    (rk4, euler) or dopri5 tolerances."""
    if kind not in BUDGET_SWEEPS:
        raise ValueError(f"sweep kind must be 'tol' or 'steps', got {short_repr(kind)}")
    if family == "deq":
        values = DEQ_TOLS if kind == "tol" else DEQ_ITERS
        return budgets(kind, values, ("fixed_point", "anderson", "broyden"), max_iter=50)
    if kind == "steps":
        return budgets(kind, ODE_STEPS, ("euler", "rk4"))
    return budgets(kind, ODE_TOLS, ("dopri5",))


def sweep(
    lab: LabModel,
    kind: str = "tol",
    n_samples: int = 64,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """Accuracy and mean forward NFE on the first ``n_samples`` validation inputs at each budget of
    ``sweep_plan``, as curves: {solver: (nfe, accuracy, labels)}; the model's own settings are untouched (a copy
    is changed). A budget that cannot integrate the model is left out. ``progress(done, total)`` is called
    before the first budget and after each."""
    n_val = len(lab.data.val.targets)
    if not isinstance(n_samples, int) or isinstance(n_samples, bool) or not 1 <= n_samples <= n_val:
        raise ValueError(f"sweep samples must be a whole number from 1 to {n_val}, got {short_repr(n_samples)}")
    model = copy.deepcopy(lab.model).eval()
    device = next(model.parameters()).device
    x = lab.data.val.inputs[:n_samples].to(device)
    y = lab.data.val.targets[:n_samples].to(device)
    plan = sweep_plan(lab.family, kind)
    points = budget_curve(model, plan, lambda: accuracy_and_nfe(model, x, y, batch_size), progress)
    curves: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for point, got in points:
        if "error" not in got:
            xs, ys, labels = curves.setdefault(point.curve, ([], [], []))
            xs.append(got["nfe"])
            ys.append(got["accuracy"])
            labels.append(point.label(lab.family))
    return {k: (np.asarray(a), np.asarray(b), c) for k, (a, b, c) in curves.items()}


# ----------------------------------------------------------------------------------------------
# Test-image gallery


@torch.no_grad()
def prediction_gallery(
    model: nn.Module, data: DataBundle, n_candidates: int = 48, n_show: int = 24
) -> list[dict[str, Any]]:
    """Predictions on the first test images, misclassified first, then by NFE (each image solved alone,
    so its NFE is its own). Returns dicts with index, picture, label, prediction, nfe, correct."""
    model = model.eval()
    device = next(model.parameters()).device
    ds = data.test
    items = []
    for i in range(min(n_candidates, len(ds.targets))):
        x = ds.inputs[i : i + 1].to(device)
        out = model(x)
        pred = int(out.logits.argmax(1)[0])
        label = int(ds.targets[i])
        items.append(
            {
                "index": i,
                "picture": to_picture(data, ds.inputs[i]),
                "label": data.class_names[label],
                "prediction": data.class_names[pred],
                "nfe": int(out.stats.nfe),
                "correct": pred == label,
            }
        )
    items.sort(key=lambda it: (it["correct"], -it["nfe"], it["index"]))
    return items[:n_show]


def describe_unavailable(err: Exception) -> str:
    """A one-paragraph message for a dataset or checkpoint that cannot be used."""
    if isinstance(err, DatasetUnavailable):
        return f"dataset not available here: {err}"
    if isinstance(err, CheckpointError):
        return f"not a usable checkpoint: {err}"
    return str(err)
