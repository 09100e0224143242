"""The Solver lab: one input of a model through every solver (or its ODE), the residuals, the path of the
state in a frozen PCA basis, and accuracy vs NFE over solver settings."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

import core
from core import FAMILY_NAMES
from core.checks import check_choice, short_repr

from .. import lab as lab_lib
from ..plots import empty_figure, path_figure, residual_figure, sweep_figure
from ..sessions import Session
from .common import KEEP, OPEN_LAB, USER_ERRORS, Choices, Context, Nav, Page, Result, Tab, alert, as_int, plot, result

PATH_VIEWS = {"2-D": 2, "3-D": 3}
DRAWING_CAPTION = (
    "**your drawing**, as the model sees it (28 × 28) · no true class · clear the canvas (the bin above it) to go back "
    "to the dataset input"
)
LAB_COLUMNS = ["solver", "status", "NFE", "Jacobian products", "residual", "seconds", "prediction"]
#: The columns a phone shows and their shares of its width (a CSS flex-basis, ``explorer.app.phone_table``): which
#: solver, how it ended, at what cost, how close, with which answer; all five on one line of a 390 px page, each
#: wide enough for its longest value at 11 px ("fixed_point", "converged", "0.00000232", "prediction").
LAB_PHONE_COLUMN_WIDTHS = {"solver": "24%", "status": "21%", "NFE": "10%", "residual": "23%", "prediction": "22%"}


@result
class LabOut(Result):
    """The Solver lab's outputs."""

    residual: go.Figure = KEEP
    path: go.Figure = KEEP
    table: list[list[Any]] = KEEP
    position: float = KEEP  # the cursor along every path
    picture: np.ndarray | None = KEEP  # the input
    message: str = KEEP
    caption: str = KEEP
    sweep: go.Figure = KEEP
    model: Choices = KEEP
    split: str = KEEP
    index: int = KEEP
    drawing: None = KEEP  # None clears the canvas


class LabTab(Tab):
    """The Solver lab's handlers."""

    def models(self, key: str, model_key: str | None = None) -> LabOut:
        """Refresh the model menu; a pick that is no longer offered (an older run of this tab was dropped)
        becomes the first choice, so the box never shows an internal key."""
        choices = model_choices(self.ctx, key)
        keys = [k for _, k in choices]
        return LabOut(model=Choices(choices, model_key if model_key in keys else keys[0]))

    def _model(self, key: str, model_key: str, checkpoint: str = "") -> lab_lib.LabModel:
        session = self.session(key)
        if checkpoint and checkpoint.strip():
            path = lab_lib.resolve_checkpoint(checkpoint, self.ctx.runs_dir)
            return self._load_run(session, path, f"file:{path}")
        kind, _, rest = (model_key or "").partition(":")
        if kind == "session":
            which, _, idx = rest.partition(":")
            try:
                i = int(idx)
                trainer = session.train_runs[i] if which == "train" else session.playground  # KeyError if gone
                lane = 0 if which == "train" else i
                if trainer is None or lane >= len(trainer.trainers):
                    raise IndexError
            except (ValueError, IndexError, KeyError):
                raise ValueError("that model is no longer in this session; pick another (or its saved run)") from None
            return lab_lib.LabModel(
                model_key, trainer.lanes[lane].name, trainer.clone_model(lane).eval(), trainer.trainers[lane].data
            )
        if kind == "run":
            path = lab_lib.resolve_checkpoint(rest, self.ctx.runs_dir)
            return self._load_run(session, path, model_key)
        if kind == "fresh":
            if rest not in lab_lib.FRESH_PRESETS:
                raise ValueError(
                    f"unknown preset {short_repr(rest)}; expected one of {', '.join(lab_lib.FRESH_PRESETS)}"
                )
            cache = session.lab.setdefault("fresh", {})
            if rest not in cache:
                cache[rest] = lab_lib.fresh_model(rest)
            model, data = cache[rest]
            return lab_lib.LabModel(model_key, f"untrained {rest}", model, data)
        raise ValueError("pick a model (a run of this session, a saved run, or an untrained preset)")

    def _load_run(self, session: Session, path: Path, model_key: str) -> lab_lib.LabModel:
        cache = session.lab.setdefault("runs", {})
        try:
            stamp = (str(path), path.stat().st_mtime)
        except OSError as err:  # deleted or renamed since it was picked: a message, not a crash
            raise ValueError(f"cannot open {short_repr(str(path))}: {err.strerror or type(err).__name__}") from None
        if cache.get("stamp") != stamp:
            device = "cpu" if self.ctx.device == "auto" else self.ctx.device
            model, data, _ = lab_lib.load_run(path, device)
            cache.update(stamp=stamp, model=model, data=data)
        return lab_lib.LabModel(model_key, path.parent.name, cache["model"], cache["data"])

    def _input(
        self, key: str, model_key: str, checkpoint: str, split: str, index: Any, drawing: Any
    ) -> tuple[lab_lib.LabModel, torch.Tensor, np.ndarray | None, str, str]:
        """The input the lab shows and solves: the drawing while the canvas holds one (as the model sees it,
        28 x 28, with no true class), else the dataset's input ``index`` of ``split``. Returns the model, the
        input (1, *input_shape), its picture, the caption under the picture and the note over the results."""
        lab = self._model(key, model_key, checkpoint)
        if lab_lib.holds_drawing(drawing):
            x = lab_lib.drawing_to_input(drawing, lab.data)
            return lab, x, lab_lib.to_picture(lab.data, x[0]), DRAWING_CAPTION, f"**{lab.label}** · your drawing"
        x, label, picture = lab_lib.pick_input(lab, as_int(index, "input index"), _split(split))
        true = lab.data.class_names[label]
        caption = f"true class: **{true}**"
        if picture is None:
            caption += f" · point ({float(x[0, 0]):.2f}, {float(x[0, 1]):.2f})"
        return lab, x, picture, caption, f"**{lab.label}** · true class **{true}**"

    def input(self, key: str, model_key: str, checkpoint: str, split: str, index: Any, drawing: Any = None) -> LabOut:
        """Preview the chosen input (image, or the point's coordinates): the drawing while the canvas holds
        one, else the dataset's."""
        try:
            lab, _, picture, caption, _ = self._input(key, model_key, checkpoint, split, index, drawing)
        except USER_ERRORS as err:
            return LabOut.failed(err, shown=lab_lib.describe_unavailable(err))
        out = LabOut(picture=picture, caption=caption, message="")  # the input is fine now
        lab_state = self.session(key).lab
        if lab_state.get("sweep_of") not in (None, lab.key):
            # The sweep on screen is of another model: clear it rather than leave it looking like this one's.
            del lab_state["sweep_of"]
            out = dataclasses.replace(
                out, sweep=empty_figure(f"press “Sweep” to see accuracy vs NFE of {lab.label}", 300)
            )
        return out

    def run(
        self,
        key: str,
        model_key: str,
        checkpoint: str,
        split: str,
        index: Any,
        tol: Any,
        max_iter: Any,
        ode_method: str,
        ode_steps: Any,
        view: str = "2-D",
        drawing: Any = None,
    ) -> LabOut:
        """Solve the input with every solver (DEQ) or integrate its ODE (NODE, ANODE, HomoODE): the drawing
        while the canvas holds one, else the dataset's input ``index`` of ``split``."""
        try:
            lab, x, picture, caption, note = self._input(key, model_key, checkpoint, split, index, drawing)
        except USER_ERRORS as err:
            return LabOut.failed(lab_lib.describe_unavailable(err))
        out = self._solve(key, lab, x, picture, note, tol, max_iter, ode_method, ode_steps, view)
        if out.picture is KEEP:  # not solved: what is on show stays
            return out
        self.session(key).lab["drawn"] = lab_lib.holds_drawing(drawing)
        return dataclasses.replace(out, caption=caption)

    def draw(
        self,
        key: str,
        model_key: str,
        checkpoint: str,
        drawing: Any,
        tol: Any,
        max_iter: Any,
        ode_method: str,
        ode_steps: Any,
        view: str = "2-D",
        split: str = "val",
        index: Any = 0,
    ) -> LabOut:
        """Your own input: a digit drawn on the page, prepared as MNIST's, through every solver (or the ODE).
        Runs again as the drawing changes, so the prediction follows the pen. A cleared canvas goes back to
        the dataset input (solved again when the results on show were the drawing's)."""
        session = self.session(key)
        if not lab_lib.holds_drawing(drawing):
            if session.lab.pop("drawn", False):
                return self.run(key, model_key, checkpoint, split, index, tol, max_iter, ode_method, ode_steps, view)
            return self.input(key, model_key, checkpoint, split, index)
        try:
            lab, x, picture, caption, note = self._input(key, model_key, checkpoint, split, index, drawing)
        except USER_ERRORS as err:
            return LabOut(message=alert(lab_lib.describe_unavailable(err)))  # no toast: this runs on every stroke
        out = self._solve(key, lab, x, picture, note, tol, max_iter, ode_method, ode_steps, view)
        if out.picture is not KEEP:  # solved: the results on show are the drawing's
            session.lab["drawn"] = True
            out = dataclasses.replace(out, caption=caption)
        return out

    def _solve(self, key, lab, x, picture, note, tol, max_iter, ode_method, ode_steps, view) -> LabOut:
        """The lab's outputs for one input ``x`` (1, *input_shape) of ``lab`` (shown as ``picture``, titled
        ``note``): residuals, paths, the solver table."""
        session = self.session(key)
        try:
            dims = _dims(view)
            max_iter, ode_steps = as_int(max_iter, "max iterations"), as_int(ode_steps, "homotopy ODE steps")
            result = lab_lib.compare_solvers(
                lab, x, tol=tol, max_iter=max_iter, ode_method=ode_method, ode_steps=ode_steps
            )
        except USER_ERRORS as err:
            return LabOut.failed(lab_lib.describe_unavailable(err))
        session.lab["result"] = result
        if result.traces:
            residual = residual_figure(result.traces, result.tol)
        else:
            residual = empty_figure(
                f"a {FAMILY_NAMES[lab.family]} has no fixed-point map f to take residuals of: its answer is the end "
                "of its ODE path (right)",
                360,
            )
        predictions = sorted({str(r["prediction"]) for r in result.rows})
        return LabOut(
            residual=residual,
            path=path_figure(result.paths, 1.0, result.inner, result.basis.explained, dims=dims),
            table=[[r[c] for c in LAB_COLUMNS] for r in result.rows],
            position=1.0,
            picture=picture,
            message=note + f" · predicted **{' / '.join(predictions)}**",
        )

    def run_opened(self, key: str, **inputs: Any) -> LabOut:
        """Run the lab after a gallery tile or a runs-table row asked to open a model there (and only then:
        a click that opened nothing leaves the lab as it was)."""
        if not self.session(key).lab.pop("open", False):
            return LabOut()
        return self.run(key, **inputs)

    def scrub(self, key: str, position: Any, view: str = "2-D") -> LabOut:
        """Move the cursor along every path (the inner time axis: k, λ or t), or switch between the 2-D
        and 3-D view, in the same frozen basis."""
        result = self.session(key).lab.get("result")
        if result is None:
            return LabOut()
        try:
            dims = _dims(view)
        except ValueError as err:
            return LabOut.failed(err)
        pos = float(position) if isinstance(position, (int, float)) and math.isfinite(position) else 1.0
        return LabOut(path=path_figure(result.paths, pos, result.inner, result.basis.explained, dims=dims))

    def sweep(
        self,
        key: str,
        model_key: str,
        checkpoint: str,
        kind: str,
        samples: Any,
        progress: Callable[[int, int], None] | None = None,
    ) -> LabOut:
        """Accuracy vs mean NFE over solver settings on validation data, without retraining;
        ``progress(done, total)`` counts the settings measured."""
        try:
            lab = self._model(key, model_key, checkpoint)
            curves = lab_lib.sweep(lab, kind, as_int(samples, "sweep samples"), progress=progress)
        except USER_ERRORS as err:
            return LabOut.failed(lab_lib.describe_unavailable(err))
        n = as_int(samples, "sweep samples")
        self.session(key).lab["sweep_of"] = lab.key
        return LabOut(
            sweep=sweep_figure(curves, title=f"sweep of {lab.label} ({n} validation inputs)"),
            message=f"sweep of **{lab.label}** on {n} validation inputs",
        )


def model_choices(ctx: Context, key: str) -> list[tuple[str, str]]:
    """(label, key) of every model the lab can open: this session's runs, saved runs, fresh presets."""
    session = ctx.session(key)
    runs = reversed(list(session.train_runs.items()))
    lanes = enumerate(session.playground.lanes) if session.playground is not None else ()
    return [
        *((f"this session: {run.lanes[0].name} (step {run.step_count})", f"session:train:{i}") for i, run in runs),
        *((f"playground: {lane.name} on {lane.config.dataset}", f"session:pg:{j}") for j, lane in lanes),
        *((f"saved run: {f.name}", f"run:{f.name}") for f in lab_lib.runs_with_checkpoints(ctx.runs_dir)[:30]),
        *(
            (
                f"untrained: {name}" + (f" ({lab_lib.FRESH_NOTES[name]})" if name in lab_lib.FRESH_NOTES else ""),
                f"fresh:{name}",
            )
            for name in lab_lib.FRESH_PRESETS
        ),
    ]


def open_lab(ctx: Context, key: str, model_key: str, index: int) -> tuple[Nav, LabOut]:
    """Switch to the lab with this model and test input (a gallery tile or a runs-table row was clicked);
    ``LabTab.run_opened``, chained after, then solves it."""
    lab = ctx.session(key).lab
    lab["open"] = True
    lab.pop("drawn", None)  # the canvas is cleared (what is solved is what is shown) and run_opened solves
    return OPEN_LAB, LabOut(model=Choices(model_choices(ctx, key), model_key), split="test", index=index, drawing=None)


def _dims(view: str) -> int:
    check_choice(view, "path view", tuple(PATH_VIEWS))
    return PATH_VIEWS[view]


def _split(split: str) -> str:
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {short_repr(split)}")
    return split


def build(tab: LabTab, page: Page) -> tuple[gr.Tab, Callable[..., None]]:
    """The Solver lab's layout and events; returns the tab and ``open_from(component, pick, *outputs)``,
    which makes a click on another tab's ``component`` open a model here (``pick`` calls ``open_lab``)."""
    with gr.Tab("Solver lab", id="lab") as lab_tab:
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                choices = model_choices(tab.ctx, "__startup__")
                tab.ctx.close_session("__startup__")
                model = gr.Dropdown(
                    choices,
                    value=f"fresh:{lab_lib.FRESH_PRESETS[0]}",
                    label="model",
                    elem_id="lab-model",
                    allow_custom_value=True,  # the choices grow as runs appear; keys are checked on use
                )
                checkpoint = gr.Textbox(
                    label="or a checkpoint under the runs directory",
                    placeholder="run-folder/checkpoint.pt",
                    max_lines=1,
                )
                with gr.Row():
                    split = gr.Dropdown(["val", "test"], value="val", label="split")
                    index = gr.Number(0, label="input index", elem_id="lab-index")
                picture = gr.Image(label="input", height=140, interactive=False, elem_id="lab-input")
                caption = gr.Markdown("", elem_id="lab-caption")
                with gr.Accordion(
                    "✏️ or draw a digit: every solver runs as you draw", open=True, elem_id="lab-draw-box"
                ):
                    drawing = gr.Sketchpad(
                        label="your digit",
                        canvas_size=(280, 280),
                        fixed_canvas=True,
                        layers=False,
                        transforms=(),
                        brush=gr.Brush(default_size=22, colors=["#000000"], color_mode="fixed"),
                        height=300,
                        elem_id="lab-drawing",
                    )
                tol = gr.Number(1e-4, label="tolerance", elem_id="lab-tol")
                max_iter = gr.Number(40, label="max iterations")
                with gr.Row():
                    ode = gr.Dropdown(list(core.ODE_METHODS), value="rk4", label="homotopy ODE")
                    ode_steps = gr.Number(4, label="homotopy steps")
                solve = gr.Button("Solve with every solver", variant="primary", elem_id="lab-run")
            with gr.Column(scale=3):
                message = gr.Markdown("", elem_id="lab-message")
                with gr.Row():
                    residual = plot("residual vs NFE", "lab-residual", "press “Solve with every solver”", 360)
                    path = plot(
                        "path of the state (frozen PCA basis)", "lab-path", "the state's path appears here", 360
                    )
                view = gr.Radio(
                    list(PATH_VIEWS), value="2-D", label="path view (drag the 3-D view to turn it)", elem_id="lab-view"
                )
                position = gr.Slider(
                    0, 1, value=1, step=0.01, label="position along every path (k / K, λ or t)", elem_id="lab-position"
                )
                table = gr.Dataframe(headers=LAB_COLUMNS, label="solvers", interactive=False, elem_id="lab-table")
                with gr.Row():
                    kind = gr.Radio([("tolerance", "tol"), ("steps / iterations", "steps")], value="tol", label="sweep")
                    samples = gr.Number(64, label="validation inputs")
                    sweep = gr.Button("Sweep: accuracy vs NFE", elem_id="lab-sweep")
                sweep_plot = plot(
                    "accuracy vs mean NFE", "lab-sweep-plot", "a sweep draws accuracy vs NFE here (no retraining)", 300
                )

    page.bind(LabOut, residual=residual, path=path, table=table, position=position, picture=picture,
              message=message, caption=caption, sweep=sweep_plot, model=model, split=split, index=index,
              drawing=drawing)  # fmt: skip
    which = {"model_key": model, "checkpoint": checkpoint}
    settings = {"tol": tol, "max_iter": max_iter, "ode_method": ode, "ode_steps": ode_steps, "view": view}
    # Every handler gets the canvas: while it holds a drawing, the drawing is the input shown and solved.
    dataset_input = {"split": split, "index": index}
    run_inputs = {**which, **dataset_input, **settings, "drawing": drawing}
    out = [residual, path, table, position, picture, caption, message]
    page.on(solve.click, tab.run, run_inputs, out, api_name="lab_run", work="solve")
    page.on(
        drawing.change,
        tab.draw,
        {**which, "drawing": drawing, **settings, **dataset_input},
        out,
        api_name="lab_draw",
        work="solve",
        show_progress="hidden",
        trigger_mode="always_last",  # a stroke that lands mid-solve runs once the solve is done
    )
    # The slider is the public endpoint; the 2-D / 3-D switch redraws through the same logic.
    page.on(
        position.input,
        tab.scrub,
        {"position": position, "view": view},
        [path, message],
        api_name="lab_scrub",
        twins=(view.input,),
        show_progress="hidden",
        trigger_mode="always_last",
    )
    # Seconds to a minute: in line with the other slow jobs, never in the way of anyone's clicks (``WORK``).
    page.on(
        sweep.click,
        tab.sweep,
        {**which, "kind": kind, "samples": samples},
        [sweep_plot, message],
        api_name="lab_sweep",
        work="slow",
        progress="settings",  # "3/12 settings": the count, not a time guessed from other sweeps
    )
    page.on(
        index.submit,
        tab.input,
        {**which, **dataset_input, "drawing": drawing},
        [picture, caption, message, sweep_plot],
        twins=(split.input, model.input),
        show_progress="hidden",
    )
    page.on(lab_tab.select, tab.models, {"model_key": model}, [model], api_name="lab_models", show_progress="hidden")

    def open_from(component: Any, pick: Callable[..., Any], *outputs: Any) -> None:
        opened = page.on(
            component.select,
            pick,
            outputs=[page.tabs, model, split, index, drawing, page.pg_timer, page.train_timer, *outputs],
            select=True,
        )
        page.on(opened.then, tab.run_opened, run_inputs, out, work="solve")

    return lab_tab, open_from
