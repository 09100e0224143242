"""The Playground's logic: settings (validated, shareable as a query string), the models they build, and the
picture the worker computes for the page (decision boundary, trajectories, vector field).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import numpy as np
import torch

import core
from core import FAMILY_NAMES, checks
from core.checks import short_repr
from core.data import TOY_SETS
from core.solvers import fit_pca
from core.training import TrainConfig, Trainer

from .pagebuffer import Snapshot
from .plots import FlowView
from .sessions import Lane, backward_cell

MAX_MODELS = 3  # side by side; more would not fit the page nor 2 CPU cores
MAX_PLAYGROUND_STEPS = 100_000  # a toy run: at the animation's 30 steps a second, about an hour

#: query-string key -> settings field (short keys keep shared links readable)
QUERY_KEYS = {
    "dataset": "dataset",
    "models": "models",
    "ode": "ode_method",
    "n": "n_steps",
    "tol": "tol",
    "solver": "deq_solver",
    "lr": "lr",
    "seed": "seed",
    "steps": "steps",
    "noise": "noise",
    "points": "points",
    "batch": "batch_size",
    "width": "hidden",
    "depth": "depth",
    "test": "show_test",
}
#: Choices of the hidden-units menu; "auto" keeps each family's preset width (matched parameter counts).
HIDDEN_CHOICES = ("auto", "8", "16", "32", "64", "128")
MAX_POINTS_PER_SPLIT = 5000


#: The Playground's own ranges (the rest are core's, :data:`core.checks.SETTINGS`).
PLAYGROUND_RANGES = {
    "steps": checks.Range(1, MAX_PLAYGROUND_STEPS, integer=True),
    "points": checks.Range(20, MAX_POINTS_PER_SPLIT, integer=True),
    "depth": checks.Range(1, 4, integer=True),
    "noise": checks.Range(0, 1),
}


@dataclass(frozen=True)
class PlaygroundSettings:
    """Everything the Playground's controls set; validated on construction.

    ``lr``, ``tol``, ``ode_method``, ``n_steps`` and ``deq_solver`` change a running model in place and
    ``show_test`` only the picture; the others (dataset, models, seed, steps, data noise and size, batch,
    width, depth) need a reset. ``noise`` None is the dataset's own default; ``hidden`` "auto" is each
    family's preset width (the presets match parameter counts), a number sets every model's.

    The test split is generated apart from the training points (the same size), so its accuracy stays
    comparable when the number of training points changes: there is no fixed pool to split by a ratio.
    """

    dataset: str = "circles"
    models: tuple[str, ...] = ("node", "homoode")
    ode_method: str = "dopri5"
    n_steps: int = 4
    tol: float = 1e-3
    deq_solver: str = "anderson"
    lr: float = 0.01
    seed: int = 0
    steps: int = 2000
    noise: float | None = None
    points: int = 1000
    batch_size: int = 128
    hidden: str = "auto"
    depth: int = 1
    show_test: bool = False

    def __post_init__(self) -> None:
        if self.dataset not in TOY_SETS:
            raise ValueError(f"dataset must be one of {', '.join(TOY_SETS)}, got {short_repr(self.dataset)}")
        models = tuple(self.models)
        object.__setattr__(self, "models", models)
        if not 1 <= len(models) <= MAX_MODELS:
            raise ValueError(f"pick 1 to {MAX_MODELS} models, got {len(models)}")
        bad = [m for m in models if m not in FAMILY_NAMES]
        if bad or len(set(models)) != len(models):
            raise ValueError(f"models must be distinct names from {', '.join(FAMILY_NAMES)}, got {', '.join(models)}")
        checks.check_choice(self.ode_method, "ODE method", core.ODE_METHODS)
        for name in ("n_steps", "tol", "lr", "seed", "batch_size"):
            checks.check_setting(name, getattr(self, name))
        checks.check_choice(self.deq_solver, "DEQ solver", core.METHODS)
        PLAYGROUND_RANGES["steps"].check(self.steps, "steps")
        if self.noise is not None:  # None: the dataset's own noise
            PLAYGROUND_RANGES["noise"].check(self.noise, "noise")
        PLAYGROUND_RANGES["points"].check(self.points, "training points")
        if self.hidden not in HIDDEN_CHOICES:
            raise ValueError(f"hidden units must be one of {', '.join(HIDDEN_CHOICES)}, got {short_repr(self.hidden)}")
        PLAYGROUND_RANGES["depth"].check(self.depth, "depth")
        if not isinstance(self.show_test, bool):
            raise ValueError(f"show test data must be true or false, got {short_repr(self.show_test)}")

    @property
    def data_noise(self) -> float:
        """The noise the data is generated with: the setting, else the dataset's default."""
        return TOY_SETS[self.dataset][0] if self.noise is None else float(self.noise)

    def replace(self, **changes: Any) -> PlaygroundSettings:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ query string

    def to_query(self) -> str:
        """``dataset=circles&models=node,homoode&...``: the whole configuration, seed included."""
        values = {key: getattr(self, name) for key, name in QUERY_KEYS.items()}
        values["models"] = ",".join(self.models)
        values["tol"] = f"{self.tol:g}"
        values["lr"] = f"{self.lr:g}"
        if self.noise is None:
            del values["noise"]  # the dataset's own default: it follows the dataset in a shared link too
        else:
            values["noise"] = f"{self.noise:g}"
        values["test"] = int(self.show_test)
        return urlencode(values, safe=",")

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> tuple[PlaygroundSettings, list[str]]:
        """Settings from a page's query parameters; each bad or unknown value is reported and replaced by
        its default, so a mangled link still opens a working page."""
        problems: list[str] = []
        values: dict[str, Any] = {}
        defaults = cls()
        for key, raw in params.items():
            if key not in QUERY_KEYS:
                if key not in ("__theme", "view"):  # gradio's own parameters
                    problems.append(f"unknown link parameter {short_repr(key)} ignored")
                continue
            name = QUERY_KEYS[key]
            try:
                values[name] = _parse(name, raw)
                cls(**{**dataclasses.asdict(defaults), name: values[name]})  # validate this one alone
            except (ValueError, TypeError) as err:
                values.pop(name, None)
                problems.append(f"link parameter {short_repr(key, 30)}={short_repr(raw)}: {err}; using the default")
        try:
            return cls(**values), problems
        except ValueError as err:  # a combination that is invalid though each value is fine
            return defaults, [*problems, f"{err}; using the defaults"]

    # ------------------------------------------------------------------ models

    def ode_config(self) -> core.ODEConfig:
        return core.ODEConfig(method=self.ode_method, rtol=self.tol, atol=self.tol, n_steps=self.n_steps)

    def deq_config(self) -> core.DEQConfig:
        return core.DEQConfig().with_forward(self.deq_solver, tol=self.tol)

    def train_config(self, family: str) -> TrainConfig:
        model = core.preset(f"points-{family}")
        width = {} if self.hidden == "auto" else {"hidden": int(self.hidden)}
        model = model.replace(ode=self.ode_config(), deq=self.deq_config(), seed=self.seed, depth=self.depth, **width)
        # Toy models are tiny: the CPU beats a GPU's launch overhead, and the page stays device-independent.
        return TrainConfig(
            model=model,
            dataset=self.dataset,
            steps=self.steps,
            batch_size=min(self.batch_size, self.points),  # more than the points is the whole set: full batch
            lr=self.lr,
            seed=self.seed,
            eval_every=50,
            device="cpu",
            toy_size=self.points,
            toy_noise=self.data_noise,
        )

    def lanes(self) -> list[Lane]:
        return [Lane(FAMILY_NAMES[f], self.train_config(f)) for f in self.models]

    def live_changes(self, new: PlaygroundSettings) -> dict[str, Any] | None:
        """What ``Trainer.apply`` must change to go from self to ``new``; None when a reset is needed."""
        rebuild = ("dataset", "models", "seed", "steps", "noise", "points", "batch_size", "hidden", "depth")
        if any(getattr(new, k) != getattr(self, k) for k in rebuild):
            return None
        changes: dict[str, Any] = {}
        if new.lr != self.lr:
            changes["lr"] = new.lr
        if (new.ode_method, new.n_steps, new.tol) != (self.ode_method, self.n_steps, self.tol):
            changes["ode"] = new.ode_config()
        if (new.deq_solver, new.tol) != (self.deq_solver, self.tol):
            changes["deq"] = new.deq_config()
        return changes


def _parse(name: str, raw: str) -> Any:
    raw = str(raw).strip()
    if name == "models":
        return tuple(m.strip().lower() for m in raw.split(",") if m.strip())
    if name in ("n_steps", "seed", "steps", "points", "batch_size", "depth", "tol", "lr", "noise"):
        # Text that is no number stays text: the setting's own check then refuses it in the words the form's
        # box gets ("learning rate must be a number from 1e-08 to 10, got 'abc'").
        value = checks.to_number(raw)
        whole = name not in ("tol", "lr", "noise") and isinstance(value, float) and value.is_integer()
        return int(value) if whole else value
    if name == "show_test":
        if raw.lower() not in ("0", "1", "true", "false"):
            raise ValueError(f"{short_repr(raw)} is not 0 or 1")
        return raw.lower() in ("1", "true")
    return raw


# ----------------------------------------------------------------------------------------------
# The picture (computed in the training worker, which owns the model)

GRID = 41
PICTURE_MARGIN = 0.3  # the input-plane picture spans the training data's range and this margin
N_PATHS = 48
PATH_STATES = 16
FIELD_GRID = 13
MAX_POINTS = 160  # data points drawn per model: each is an SVG node restyled on every redraw


@torch.no_grad()
def flow_visual(trainer: Trainer, probe: tuple[float, float] | None = None) -> dict[str, Any]:
    """Decision boundary on a grid, trajectories of a fixed set of inputs, and (NODE) the vector field;
    with a ``probe`` point (x, y), its path in the same state view and the model's P(class 1) there.

    Returns numpy arrays only, so the page can draw it without touching the model.
    """
    model = trainer.model
    was_training = model.training
    model.eval()
    try:
        x_train, y_train = trainer.train_x, trainer.train_y
        lo, hi = x_train.min(0).values - PICTURE_MARGIN, x_train.max(0).values + PICTURE_MARGIN
        gx = torch.linspace(float(lo[0]), float(hi[0]), GRID)
        gy = torch.linspace(float(lo[1]), float(hi[1]), GRID)
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).reshape(-1, 2)
        xs, ys = x_train[:N_PATHS], y_train[:N_PATHS]
        if probe is not None:  # one more input, solved with the others (the same NFE and basis)
            xs = torch.cat([xs, torch.tensor([probe], dtype=xs.dtype)])
        # One solve for the paths' inputs and the grid: a picture per frame of an animation costs half of
        # two solves (these tiny batches cost per call, not per point).
        out = model(torch.cat([xs, grid]).to(trainer.device), trajectory=PATH_STATES)
        prob = torch.softmax(out.logits[len(xs) :], -1)[:, 1].reshape(GRID, GRID)
        states = out.stats.trajectory[:, : len(xs)].float().cpu().numpy()  # (T, M[+1], D)
        probe_prob = float(torch.softmax(out.logits[len(xs) - 1], -1)[1]) if probe is not None else None
        family = model.config.family
        field = state_prob = None
        if family in ("node", "anode"):
            paths = states[..., :2]  # the input plane (ANODE: its first two of 2 + augment_dim coordinates)
            axes = ("z₁", "z₂") if family == "node" else ("z₁", "z₂ (augmented z₃ hidden)")
        else:
            # The basis of the fixed inputs only: placing a point must not turn the view.
            basis = fit_pca(states[:, : len(ys)].reshape(-1, states.shape[-1]))
            paths = basis.project(states)
            axes = ("PC1", "PC2")
        if family == "node":
            # In a 2-D NODE the state plane is the input plane: draw F(z) and the head's decision over it.
            plo = np.minimum(paths.reshape(-1, 2).min(0), [float(lo[0]), float(lo[1])])
            phi = np.maximum(paths.reshape(-1, 2).max(0), [float(hi[0]), float(hi[1])])
            fx = torch.linspace(float(plo[0]), float(phi[0]), FIELD_GRID)
            fy = torch.linspace(float(plo[1]), float(phi[1]), FIELD_GRID)
            fgrid = torch.stack(torch.meshgrid(fx, fy, indexing="xy"), -1).reshape(-1, 2).to(trainer.device)
            uv = model.vector_field(fgrid).float().cpu().numpy()
            g = fgrid.cpu().numpy()
            field = (g[:, 0], g[:, 1], uv[:, 0], uv[:, 1])
            hx = torch.linspace(float(plo[0]), float(phi[0]), GRID)
            hy = torch.linspace(float(plo[1]), float(phi[1]), GRID)
            hgrid = torch.stack(torch.meshgrid(hx, hy, indexing="xy"), -1).reshape(-1, 2).to(trainer.device)
            hp = torch.softmax(model.head(hgrid), -1)[:, 1].reshape(GRID, GRID).cpu().numpy()
            state_prob = (hx.numpy(), hy.numpy(), hp)
        keep = slice(0, MAX_POINTS)
        probe_view = None
        if probe is not None:
            probe_view = {"xy": np.asarray(probe, dtype=np.float32), "path": paths[:, -1], "prob": probe_prob}
            paths = paths[:, :-1]
        return {
            "grid_x": gx.numpy(),
            "grid_y": gy.numpy(),
            "prob": prob.cpu().numpy(),
            "points": x_train[keep].numpy(),
            "labels": y_train[keep].numpy(),
            "test_points": trainer.test_x[keep].numpy(),
            "test_labels": trainer.test_y[keep].numpy(),
            "paths": paths,
            "path_labels": ys.numpy(),
            "axes": axes,
            "field": field,
            "state_prob": state_prob,
            "nfe": out.stats.nfe,
            "probe": probe_view,
        }
    finally:
        model.train(was_training)


class PlaygroundVisual:
    """The Playground's picture function for a SessionTrainer: :func:`flow_visual` with the point the user
    placed (``probe``, (x, y) or None), which the page may change at any time."""

    def __init__(self) -> None:
        self.probe: tuple[float, float] | None = None

    def __call__(self, trainer: Trainer) -> dict[str, Any]:
        return flow_visual(trainer, probe=self.probe)


def flow_views(snapshot: Snapshot, show_test: bool = False) -> list[FlowView]:
    """The Playground's panels from a trainer snapshot (no torch); ``show_test`` draws the test points
    (never trained on) instead of the training points over each decision boundary."""
    views = []
    for name, pic in snapshot.visuals.items():
        if not pic or "error" in pic:
            continue
        last = snapshot.last.get(name, {})
        acc = last.get("val_acc")
        # No step counter (the status line above has it): a title that changes every frame would be drawn
        # again every frame, a fifth of the browser's time per frame.
        title = f"<b>{name}</b>"
        if acc is not None:
            title += f" · val acc {100 * acc:.0f} %"
        if name in snapshot.errors:
            title += " · <span style='color:#c00'>diverged</span>"
        test = show_test and "test_points" in pic
        if test:
            title += " · test data"
        views.append(
            FlowView(
                title=title,
                grid_x=pic["grid_x"],
                grid_y=pic["grid_y"],
                prob=pic["prob"],
                points=pic["test_points" if test else "points"],
                labels=pic["test_labels" if test else "labels"],
                paths=pic["paths"],
                path_labels=pic["path_labels"],
                state_axes=pic["axes"],
                field=pic["field"],
                state_prob=pic["state_prob"],
                probe=pic.get("probe"),
            )
        )
    return views


def status_markdown(snapshot: Snapshot, narrow: bool = False) -> str:
    """One line of state plus a table of live numbers per model (loss, accuracy, NFE, time); ``narrow`` (a
    phone): a card of two short lines per model instead, which a narrow page never breaks inside a number."""
    state = snapshot.state
    head = f"**{state}** · step **{snapshot.step}** / {snapshot.total_steps}"
    if state == "running" and snapshot.steps_per_second:
        head += f" · {snapshot.steps_per_second:.0f} steps/s"
    lines = [head, ""]
    if not narrow:
        lines += [
            "| model | loss | train acc | val acc | NFE fwd | NFE bwd | step ms |",
            "|---|---|---|---|---|---|---|",
        ]
    for name in snapshot.metrics:
        last = snapshot.last.get(name)
        if not last:
            lines.append(f"- **{name}**: no step yet" if narrow else f"| {name} | – | – | – | – | – | – |")
            continue
        val = last.get("val_acc")
        val = "–" if val is None else f"{100 * val:.0f} %"
        backward = backward_cell(last["nfe_backward"], snapshot.gradients.get(name, ""))
        if narrow:
            lines.append(
                f"- **{name}**: loss {last['loss']:.4f} · acc {100 * last['train_acc']:.0f} % train, {val} val  \n"
                f"  NFE {last['nfe_forward']:.0f} fwd, {backward}{'' if backward[0].isalpha() else ' bwd'} · "
                f"{last['step_ms']:.1f} ms/step"
            )
            continue
        lines.append(
            f"| {name} | {last['loss']:.4f} | {100 * last['train_acc']:.0f} % | {val} | {last['nfe_forward']:.0f} | "
            f"{backward} | {last['step_ms']:.1f} |"
        )
    for name, (message, advice) in snapshot.errors.items():
        lines += ["", f"⚠️ **{name} diverged**: {message}. **Advice:** {advice}. ▶ retries from the last good step."]
    if snapshot.message:
        lines += ["", f"⚠️ {snapshot.message}"]
    return "\n".join(lines)
