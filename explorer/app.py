"""The web app: ``build_app(runs_dir, device) -> gr.Blocks``. Layout and wiring only; what each event does
lives in :mod:`explorer.controller` (testable without a browser).
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

import core
from core.data import TOY_SETS
from core.models import INPUT_KINDS

from .controller import COMPARE_SCOPES, LAB_COLUMNS, PATH_VIEWS, RUN_COLUMNS, Explorer, cut_message
from .imagetrain import DEVICES, TrainSettings, dataset_choices
from .lab import FRESH_PRESETS
from .playground import FAMILY_NAMES, HIDDEN_CHOICES, PlaygroundSettings
from .plots import CURVE_X, GRADIENT_DASH, empty_figure

#: System fonts only: the page must not fetch fonts (or anything) from the internet.
THEME_FONTS = ["system-ui", "-apple-system", "Segoe UI", "Roboto", "Helvetica", "Arial", "sans-serif"]
MONO_FONTS = ["ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace"]
CSS = """
#pg-buttons button { font-size: 1rem; }
/* Table headers break between words only ("device", not "devic e"); long run names stay whole. */
#compare-table th, #compare-table th *, #runs-table th, #runs-table th *, #lab-table th, #lab-table th * {
  white-space: nowrap; word-break: keep-all; overflow-wrap: normal;
}
#compare-table td:first-child, #runs-table td:first-child { word-break: break-all; min-width: 14em; }
#pg-status table, #train-status table { font-size: 0.85rem; }
.story { font-size: 0.95rem; }
"""
REDRAW_SECONDS = 0.2  # 5 redraws per second at most; idle runs are skipped
#: Installed once per page: a click inside a top-row (input-plane) panel of the Playground's picture writes
#: its data coordinates into the point box and presses "Place point".
PROBE_CLICK_JS = r"""() => {
  document.addEventListener('click', (e) => {
    const gd = e.target.closest && e.target.closest('#pg-flow .js-plotly-plot');
    if (!gd || !gd._fullLayout) return;
    const fl = gd._fullLayout, r = gd.getBoundingClientRect();
    const px = e.clientX - r.left, py = e.clientY - r.top;
    for (const name of Object.keys(fl)) {
      if (!/^xaxis\d*$/.test(name)) continue;
      const xa = fl[name], ya = fl['yaxis' + name.slice(5)];
      if (!ya || ya.domain[0] < 0.4) continue;  // the top row only: the input plane
      if (px < xa._offset || px > xa._offset + xa._length || py < ya._offset || py > ya._offset + ya._length) continue;
      const x = xa.p2c(px - xa._offset), y = ya.p2c(py - ya._offset);
      const box = document.querySelector('#pg-probe textarea, #pg-probe input');
      if (!box) return;
      box.value = x.toFixed(3) + ', ' + y.toFixed(3);
      box.dispatchEvent(new Event('input', {bubbles: true}));
      setTimeout(() => document.querySelector('#pg-probe-go').click(), 60);
      return;
    }
  }, true);
  return [];
}"""
#: Runs in the page before a timer's request: replaces the hidden input with the tab's visibility.
VISIBILITY_JS = "(v) => document.visibilityState"

ABOUT = """
### Three ways to get a representation out of an implicit layer

1. **Neural ODE (NODE)**: the input *is the initial point*. z(0) = x, dz/dt = F(z), the answer is z(1).
   A flow is a homeomorphism: trajectories cannot cross, so a 2-D NODE must contort itself (and spend more
   function evaluations, NFE) to pull the inner disk of *circles* out of the ring. **ANODE** adds a zero
   dimension so trajectories can pass each other.
2. **Deep equilibrium model (DEQ)**: the input is a *condition*. The answer is the fixed point
   z* = f(z*; x), found by a root solver (fixed-point iteration, Anderson mixing, Broyden) whose cost is
   the number of evaluations of f until the residual ||f(z) − z|| falls under a tolerance.
3. **HomoODE**: the input is again a condition, and the fixed point is reached by *homotopy continuation*:
   from a start point z0 shared by every input, an ODE in λ ∈ [0, 1] carries z from z0 (λ = 0) to the
   equilibrium (λ = 1). It is the bridge between the two sides: a DEQ's answer, a NODE's smooth path.

**Playground**: watch the three side by side on 2-D data (boundary, trajectories, vector field, NFE).
**Train**: train on images (bundled MNIST digits offline) with live loss, accuracy, NFE, memory and time.
**Solver lab**: take one input of a trained model and solve it with every solver; residual vs NFE on a log
axis, the path of the state in one frozen PCA basis (2-D or 3-D), and accuracy vs NFE when solver settings
change.
**Compare**: every saved run in one table (export it as CSV or JSON), their curves overlaid, accuracy vs NFE,
and training memory vs batch size measured per family and gradient method.

Everything runs on this machine; nothing is sent anywhere.
"""


def _handler(
    method: Callable[..., dict[str, Any]],
    inputs: Sequence[str],
    outputs: Sequence[str],
    select: bool = False,
    query: bool = False,
    **fixed: Any,
) -> Callable[..., list[Any]]:
    """Wrap ``method(session_key, **named inputs, **fixed) -> {output name: value}`` as a gradio handler.

    Gradio passes inputs positionally and injects ``gr.Request`` (and ``gr.SelectData``) into parameters
    annotated with them, so the wrapper gets an explicit signature. Outputs missing from the returned dict
    are left as they are (``gr.skip()``); a ``"warning"`` entry becomes a toast. ``select`` passes the
    clicked item's index as ``position``; ``query`` passes the page's query parameters as ``params``.
    """

    def handler(*args: Any) -> list[Any]:
        *values, request = args
        extra: dict[str, Any] = dict(fixed)
        if select:
            *values, event = values
            extra["position"] = event.index if isinstance(event.index, int) else -1
            if event.row_value is not None:  # a table row: its cells, robust to a re-sorted table
                extra["row"] = list(event.row_value)
        if query:
            extra["params"] = dict(request.query_params)
            extra["page_url"] = request.headers.get("referer", "")
        result = method(request.session_hash, **dict(zip(inputs, values)), **extra)
        if result.get("warning"):
            gr.Warning(cut_message(result["warning"]))
        if not outputs:
            return []
        out = [_value(name, result) for name in outputs]
        return out if len(out) > 1 else out[0]

    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    params = [inspect.Parameter(n, kind) for n in inputs]
    annotations: dict[str, Any] = {"request": gr.Request}
    if select:
        params.append(inspect.Parameter("event", kind, annotation=gr.SelectData))
        annotations["event"] = gr.SelectData
    params.append(inspect.Parameter("request", kind, annotation=gr.Request))
    handler.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    handler.__annotations__ = annotations
    handler.__name__ = getattr(method, "__name__", "handler")
    return handler


def _plot(label: str, elem_id: str, placeholder: str | None = None, height: int = 300) -> gr.Plot:
    """A plot without its label bar (the figures carry their own titles), showing ``placeholder`` until
    its first figure arrives."""
    value = empty_figure(placeholder, height) if placeholder is not None else None
    return gr.Plot(value, label=label, elem_id=elem_id, show_label=False)


def _curve_controls(tab: str) -> list[Any]:
    """Smoothing, x axis and loss axis of a tab's training curves (TensorBoard's three)."""
    with gr.Row():
        smoothing = gr.Slider(0, 0.99, value=0, step=0.01, label="smoothing", elem_id=f"{tab}-smoothing")
        x_axis = gr.Radio(list(CURVE_X), value="step", label="x axis", elem_id=f"{tab}-x-axis")
        scale = gr.Radio(["log", "linear"], value="log", label="loss axis", elem_id=f"{tab}-loss-scale")
    return [smoothing, x_axis, scale]


def _value(name: str, result: dict[str, Any]) -> Any:
    if name not in result:
        return gr.skip()
    value = result[name]
    if name in ("pg_play", "pg_pause"):
        return gr.Button(**value)
    if name == "compare_file":
        return gr.File(value=value, visible=True)
    if name.endswith("_timer"):
        return gr.Timer(active=bool(value))
    if name == "tabs":
        return gr.Tabs(selected=value)
    if name == "compare_runs":
        choices, selected = value
        return gr.CheckboxGroup(choices=choices, value=selected)
    if name.endswith("_choices"):
        # (choices) refreshes the menu; (choices, value) also selects one, in a single update.
        choices, *selected = value if isinstance(value, tuple) else (value,)
        return gr.Dropdown(choices=choices, value=selected[0]) if selected else gr.Dropdown(choices=choices)
    return value


def build_app(
    runs_dir: str | Path = "runs",
    device: str = "auto",
    max_trainings: int = 4,
    autoplay: bool = True,
    manage_all_runs: bool = True,
):
    """The explorer's gr.Blocks (launch it with ``theme=app_theme(), css=CSS``).

    Args:
        runs_dir: where image runs are saved and listed.
        device: default device of image runs: auto (CUDA when present), cpu or cuda.
        max_trainings: server-wide cap on trainings running at once.
        autoplay: start the Playground's preset when a page opens.
        manage_all_runs: any tab may rename or delete any saved run; False limits a tab to its own runs.
    """
    ex = Explorer(
        runs_dir, device=device, max_trainings=max_trainings, autoplay=autoplay, manage_all_runs=manage_all_runs
    )
    threading.Thread(target=ex.warm_up, name="explorer-warm-up", daemon=True).start()
    pg0 = PlaygroundSettings()
    tr0 = TrainSettings(device=device)
    with gr.Blocks(title="Implicit-model explorer", analytics_enabled=False) as demo:
        demo.explorer = ex  # tests and launch.py reach the state through the Blocks
        gr.Markdown(
            "## Implicit-model explorer\n"
            "<span class='story'>NODE starts **from** the input; DEQ and HomoODE are **conditioned on** it. "
            "Watch them learn the same data, then open a trained model in the Solver lab.</span>"
        )
        c: dict[str, Any] = {}  # component by output name
        with gr.Tabs() as tabs:
            c["tabs"] = tabs
            # ---------------------------------------------------------------- Playground
            with gr.Tab("Playground", id="playground") as pg_tab:
                with gr.Row():
                    with gr.Column(scale=1, min_width=250):
                        with gr.Row(elem_id="pg-buttons"):
                            c["pg_play"] = play = gr.Button(
                                "▶ Play", variant="primary", elem_id="pg-play", min_width=60
                            )
                            c["pg_pause"] = pause = gr.Button("❚❚ Pause", elem_id="pg-pause", min_width=60)
                            step = gr.Button("▶❚ Step", elem_id="pg-step", min_width=60)
                            reset = gr.Button("⟲ Reset", elem_id="pg-reset", min_width=60)
                        c["pg_dataset"] = gr.Dropdown(list(TOY_SETS), value=pg0.dataset, label="dataset")
                        c["pg_models"] = gr.CheckboxGroup(
                            [(v, k) for k, v in FAMILY_NAMES.items()], value=list(pg0.models), label="models (1-3)"
                        )
                        c["pg_lr"] = gr.Number(pg0.lr, label="learning rate (live)", elem_id="pg-lr")
                        c["pg_tol"] = gr.Number(pg0.tol, label="solver tolerance (live)", elem_id="pg-tol")
                        with gr.Row():
                            c["pg_ode"] = gr.Dropdown(list(core.ODE_METHODS), value=pg0.ode_method, label="ODE method")
                            c["pg_n_steps"] = gr.Number(pg0.n_steps, label="fixed ODE steps")
                        c["pg_solver"] = gr.Dropdown(list(core.METHODS), value=pg0.deq_solver, label="DEQ solver")
                        with gr.Row():
                            c["pg_seed"] = gr.Number(pg0.seed, label="seed")
                            c["pg_steps"] = gr.Number(pg0.steps, label="steps")
                        with gr.Accordion("data and model size", open=False, elem_id="pg-more"):
                            with gr.Row():
                                c["pg_noise"] = gr.Number(pg0.data_noise, label="noise", elem_id="pg-noise")
                                c["pg_points"] = gr.Number(pg0.points, label="training points", elem_id="pg-points")
                            with gr.Row():
                                c["pg_batch"] = gr.Number(pg0.batch_size, label="batch size", elem_id="pg-batch")
                                c["pg_hidden"] = gr.Dropdown(
                                    list(HIDDEN_CHOICES), value=pg0.hidden, label="hidden units", elem_id="pg-hidden"
                                )
                                c["pg_depth"] = gr.Dropdown(
                                    [1, 2, 3, 4], value=pg0.depth, label="hidden layers", elem_id="pg-depth"
                                )
                            c["pg_show_test"] = gr.Checkbox(
                                pg0.show_test, label="show test data (never trained on)", elem_id="pg-show-test"
                            )
                        c["pg_link"] = gr.Textbox(
                            label="link to this configuration (also in the address bar)",
                            interactive=False,
                            buttons=["copy"],
                            elem_id="pg-link",
                        )
                    with gr.Column(scale=3):
                        c["pg_message"] = gr.Markdown("", elem_id="pg-message")
                        c["pg_status"] = gr.Markdown("starting…", elem_id="pg-status")
                        c["pg_flow"] = _plot("decision boundary and trajectories", "pg-flow")
                        with gr.Row():
                            c["pg_probe"] = gr.Textbox(
                                "",
                                label="your point x, y: click a decision-boundary picture, or type it (blank "
                                "removes it); every model draws its path",
                                placeholder="e.g. 0.3, -0.2",
                                elem_id="pg-probe",
                                scale=4,
                            )
                            probe_go = gr.Button("Place point", elem_id="pg-probe-go", scale=1, min_width=100)
                        c["pg_curves"] = _plot("loss, accuracy, NFE", "pg-curves")
            # ---------------------------------------------------------------- Train
            with gr.Tab("Train", id="train") as train_tab:
                with gr.Row():
                    c["tr_dataset"] = gr.Dropdown(dataset_choices(), value=tr0.dataset, label="dataset")
                    c["tr_family"] = gr.Dropdown(
                        [(v, k) for k, v in FAMILY_NAMES.items()], value=tr0.family, label="model", elem_id="tr-family"
                    )
                    c["tr_preset"] = gr.Dropdown(
                        ex.train_presets("", tr0.family, tr0.dataset)["tr_preset_choices"][0],
                        value="auto",
                        label="preset",
                        elem_id="tr-preset",
                    )
                    c["tr_device"] = gr.Dropdown(list(DEVICES), value=tr0.device, label="device")
                with gr.Row():
                    c["tr_steps"] = gr.Number(tr0.steps, label="steps", elem_id="tr-steps")
                    c["tr_epochs"] = gr.Number(None, label="or epochs (0 or blank: use steps)", elem_id="tr-epochs")
                    c["tr_batch"] = gr.Number(tr0.batch_size, label="batch size", elem_id="tr-batch")
                    c["tr_lr"] = gr.Number(tr0.lr, label="learning rate")
                    c["tr_limit"] = gr.Number(None, label="training subset (0 or blank: all)", elem_id="tr-limit")
                with gr.Row():
                    c["tr_ode"] = gr.Dropdown(list(core.ODE_METHODS), value=tr0.ode_method, label="ODE method")
                    c["tr_n_steps"] = gr.Number(tr0.n_steps, label="fixed ODE steps")
                    c["tr_tol"] = gr.Number(tr0.tol, label="solver tolerance")
                    c["tr_solver"] = gr.Dropdown(list(core.METHODS), value=tr0.deq_solver, label="DEQ solver")
                with gr.Row():
                    tr_start = gr.Button("▶ Start new run", variant="primary", elem_id="tr-start")
                    tr_pause = gr.Button("❚❚ Pause", elem_id="tr-pause")
                    tr_resume = gr.Button("▶ Resume", elem_id="tr-resume")
                    tr_stop = gr.Button("■ Stop and save", elem_id="tr-stop")
                    tr_apply = gr.Button("Apply lr / tolerance now")
                c["train_message"] = gr.Markdown("", elem_id="train-message")
                c["train_status"] = gr.Markdown("No image run yet.", elem_id="train-status")
                c["train_curves"] = _plot("training curves", "train-curves")
                train_curve_controls = _curve_controls("train")
                with gr.Row():
                    show_gallery = gr.Button("Show test predictions")
                c["train_gallery"] = gr.Gallery(
                    label="test images: misclassified and high-NFE first (click one to open it in the Solver lab)",
                    columns=8,
                    height=260,
                    allow_preview=False,
                    elem_id="train-gallery",
                )
                with gr.Row():
                    refresh_runs = gr.Button("Refresh runs")
                c["runs_table"] = gr.Dataframe(
                    headers=RUN_COLUMNS,
                    value=ex.runs_table() or None,
                    label=f"saved runs in {ex.runs_dir}",
                    interactive=False,
                    wrap=True,
                    elem_id="runs-table",
                )
            # ---------------------------------------------------------------- Solver lab
            with gr.Tab("Solver lab", id="lab") as lab_tab:
                with gr.Row():
                    with gr.Column(scale=1, min_width=320):
                        choices = ex.lab_choices("__startup__")
                        ex.close_session("__startup__")
                        c["lab_model"] = gr.Dropdown(
                            choices,
                            value=f"fresh:{FRESH_PRESETS[0]}",
                            label="model",
                            elem_id="lab-model",
                            allow_custom_value=True,  # the choices grow as runs appear; keys are checked on use
                        )
                        c["lab_checkpoint"] = gr.Textbox(
                            label="or a checkpoint under the runs directory", placeholder="run-folder/checkpoint.pt"
                        )
                        with gr.Row():
                            c["lab_split"] = gr.Dropdown(["val", "test"], value="val", label="split")
                            c["lab_index"] = gr.Number(0, label="input index", elem_id="lab-index")
                        c["lab_picture"] = gr.Image(label="input", height=140, interactive=False)
                        c["lab_caption"] = gr.Markdown("")
                        with gr.Accordion(
                            "✏️ or draw a digit: every solver runs as you draw", open=True, elem_id="lab-draw-box"
                        ):
                            c["lab_drawing"] = gr.Sketchpad(
                                label="your digit",
                                canvas_size=(280, 280),
                                fixed_canvas=True,
                                layers=False,
                                transforms=(),
                                brush=gr.Brush(default_size=22, colors=["#000000"], color_mode="fixed"),
                                height=300,
                                elem_id="lab-drawing",
                            )
                        c["lab_tol"] = gr.Number(1e-4, label="tolerance", elem_id="lab-tol")
                        c["lab_max_iter"] = gr.Number(40, label="max iterations")
                        with gr.Row():
                            c["lab_ode"] = gr.Dropdown(list(core.ODE_METHODS), value="rk4", label="homotopy ODE")
                            c["lab_ode_steps"] = gr.Number(4, label="homotopy steps")
                        lab_go = gr.Button("Solve with every solver", variant="primary", elem_id="lab-run")
                    with gr.Column(scale=3):
                        c["lab_message"] = gr.Markdown("", elem_id="lab-message")
                        with gr.Row():
                            c["lab_residual"] = _plot(
                                "residual vs NFE", "lab-residual", "press “Solve with every solver”", 360
                            )
                            c["lab_path"] = _plot(
                                "path of the state (frozen PCA basis)", "lab-path", "the state's path appears here", 360
                            )
                        c["lab_view"] = gr.Radio(
                            list(PATH_VIEWS),
                            value="2-D",
                            label="path view (drag the 3-D view to turn it)",
                            elem_id="lab-view",
                        )
                        c["lab_position"] = gr.Slider(
                            0,
                            1,
                            value=1,
                            step=0.01,
                            label="position along every path (k / K, λ or t)",
                            elem_id="lab-position",
                        )
                        c["lab_table"] = gr.Dataframe(
                            headers=LAB_COLUMNS, label="solvers", interactive=False, elem_id="lab-table"
                        )
                        with gr.Row():
                            c["lab_kind"] = gr.Radio(
                                [("tolerance", "tol"), ("steps / iterations", "steps")], value="tol", label="sweep"
                            )
                            c["lab_samples"] = gr.Number(64, label="validation inputs")
                            lab_sweep = gr.Button("Sweep: accuracy vs NFE", elem_id="lab-sweep")
                        c["lab_sweep"] = _plot(
                            "accuracy vs mean NFE",
                            "lab-sweep-plot",
                            "a sweep draws accuracy vs NFE here (no retraining)",
                            300,
                        )
            # ---------------------------------------------------------------- Compare
            with gr.Tab("Compare", id="compare") as compare_tab:
                with gr.Row():
                    c["compare_scope"] = gr.Radio(list(COMPARE_SCOPES), value=COMPARE_SCOPES[0], label="show")
                    compare_refresh = gr.Button("Refresh", elem_id="compare-refresh")
                    compare_csv = gr.Button("Export table as CSV", elem_id="compare-csv")
                    compare_json = gr.Button("Export as JSON (with configs)", elem_id="compare-json")
                with gr.Row():
                    c["compare_filter"] = gr.Textbox(
                        "",
                        label="filter (every word must appear in the row: e.g. deq digits finished)",
                        elem_id="compare-filter",
                        scale=3,
                    )
                    c["compare_new_name"] = gr.Textbox(
                        "", label="new name for the picked run", elem_id="compare-new-name"
                    )
                    compare_rename = gr.Button("Rename", elem_id="compare-rename", scale=0, min_width=90)
                    compare_delete = gr.Button("Delete picked runs", elem_id="compare-delete", scale=0, min_width=90)
                c["compare_message"] = gr.Markdown("", elem_id="compare-message")
                c["compare_file"] = gr.File(
                    label="exported table", interactive=False, elem_id="compare-file", visible=False
                )  # shown once there is a file to download
                c["compare_table"] = gr.Dataframe(
                    headers=RUN_COLUMNS,
                    label="runs (click a row to open its model in the Solver lab; graph MB: the most memory one "
                    "training step's forward pass kept for backward, the run's own figure)",
                    interactive=False,
                    wrap=True,
                    elem_id="compare-table",
                )
                c["compare_runs"] = gr.CheckboxGroup(
                    [], label="overlay the curves of these runs", elem_id="compare-runs"
                )
                c["compare_curves"] = _plot(
                    "training curves", "compare-curves", "open this tab or press Refresh to list the saved runs", 300
                )
                compare_curve_controls = _curve_controls("compare")
                c["compare_accuracy"] = _plot(
                    "accuracy vs NFE", "compare-accuracy", "accuracy vs NFE of every run appears here", 300
                )
                gr.Markdown(
                    "#### Memory vs batch size, measured\n"
                    "One training step per family, gradient method and batch size on random inputs, here and "
                    "now. The figure is the memory the forward pass keeps for backward: it grows with the batch "
                    "(and, for direct backprop, with the ODE steps), while adjoint and implicit gradients keep "
                    "only states. Whole-process peaks per run: `python -m core.bench memory`."
                )
                with gr.Row():
                    c["memory_families"] = gr.CheckboxGroup(
                        [(v, k) for k, v in FAMILY_NAMES.items()], value=list(FAMILY_NAMES), label="families"
                    )
                    c["memory_gradients"] = gr.CheckboxGroup(
                        list(GRADIENT_DASH), value=list(GRADIENT_DASH), label="gradient methods"
                    )
                    c["memory_batches"] = gr.Textbox("8, 32, 128", label="batch sizes", elem_id="memory-batches")
                    c["memory_kind"] = gr.Dropdown(list(INPUT_KINDS), value="image28", label="inputs")
                    c["memory_steps"] = gr.Number(2, label="rk4 steps (ODE)")
                    memory_go = gr.Button("Measure", elem_id="memory-run")
                c["compare_memory"] = _plot(
                    "memory vs batch size", "compare-memory", "press “Measure” (a few seconds on a CPU)", 320
                )
            with gr.Tab("About", id="about") as about_tab:
                gr.Markdown(ABOUT)
        # Only the visible tab polls: each timer runs while its tab is selected (and the Train tab's only while
        # a run is live), and a tick from a hidden browser tab says so (page_visibility) and is dropped.
        c["pg_timer"] = pg_timer = gr.Timer(REDRAW_SECONDS)
        c["train_timer"] = gr.Timer(0.5, active=False)
        c["page_visibility"] = gr.Textbox("visible", visible=False)
        c["lab_model_choices"] = c["lab_model"]
        c["tr_preset_choices"] = c["tr_preset"]

        # ---------------------------------------------------------------- wiring
        def wire(trigger, method, inputs, outputs, api_name, **kw):
            fixed = dict(kw.pop("fixed", {}))
            select = fixed.pop("select", False)
            names = [n for n, _ in inputs]
            return trigger(
                _handler(method, names, outputs, select=select, **fixed),
                inputs=[comp for _, comp in inputs],
                outputs=[c[n] for n in outputs],
                api_name=api_name,
                **kw,
            )

        pg_out = ["pg_status", "pg_flow", "pg_curves", "pg_message", "pg_play", "pg_pause"]
        pg_settings = [
            "pg_dataset",
            "pg_models",
            "pg_ode",
            "pg_n_steps",
            "pg_tol",
            "pg_solver",
            "pg_lr",
            "pg_seed",
            "pg_steps",
            "pg_noise",
            "pg_points",
            "pg_batch",
            "pg_hidden",
            "pg_depth",
            "pg_show_test",
            "pg_link",
        ]
        demo.load(
            _handler(ex.playground_load, [], pg_out + pg_settings, query=True),
            outputs=[c[n] for n in pg_out + pg_settings],
            api_name="playground_load",
        )
        wire(
            pg_timer.tick,
            ex.playground_tick,
            [("visibility", c["page_visibility"])],
            [n for n in pg_out if n != "pg_message"],
            "playground_tick",
            show_progress="hidden",
            concurrency_limit=8,
            # A tick that arrives while the last redraw is still in flight runs right after it ("once" would
            # drop it and wait a whole extra period: 2 redraws/s instead of ~3 when a redraw takes 0.3 s).
            trigger_mode="always_last",
            js=VISIBILITY_JS,
        )
        tabs_by_id = {
            "playground": pg_tab,
            "train": train_tab,
            "lab": lab_tab,
            "compare": compare_tab,
            "about": about_tab,
        }
        for name, tab in tabs_by_id.items():
            wire(
                tab.select,
                ex.tab_selected,
                [],
                ["pg_timer", "train_timer"],
                None,
                fixed={"tab": name},
                api_visibility="private",
                show_progress="hidden",
            )

        for button, action in ((play, "play"), (pause, "pause"), (step, "step"), (reset, "reset")):
            wire(
                button.click,
                ex.playground_control,
                [],
                pg_out,
                f"playground_{action}",
                fixed={"action": action},
                show_progress="hidden",
            )
        form = [
            ("dataset", c["pg_dataset"]),
            ("models", c["pg_models"]),
            ("ode_method", c["pg_ode"]),
            ("n_steps", c["pg_n_steps"]),
            ("tol", c["pg_tol"]),
            ("deq_solver", c["pg_solver"]),
            ("lr", c["pg_lr"]),
            ("seed", c["pg_seed"]),
            ("steps", c["pg_steps"]),
            ("noise", c["pg_noise"]),
            ("points", c["pg_points"]),
            ("batch_size", c["pg_batch"]),
            ("hidden", c["pg_hidden"]),
            ("depth", c["pg_depth"]),
            ("show_test", c["pg_show_test"]),
        ]
        menus = ("pg_dataset", "pg_models", "pg_ode", "pg_solver", "pg_hidden", "pg_depth", "pg_show_test")
        numbers = ("pg_n_steps", "pg_tol", "pg_lr", "pg_seed", "pg_steps", "pg_noise", "pg_points", "pg_batch")
        triggers = [c[n].input for n in menus]
        triggers += [c[n].submit for n in numbers]
        triggers += [c[n].blur for n in numbers]
        wire(
            lambda fn, **kw: gr.on(triggers, fn, **kw),
            ex.playground_apply,
            form,
            [*pg_out, "pg_link"],
            "playground_apply",
            show_progress="hidden",
            # A click right after editing a number fires the box's blur first: "once" would drop the click's
            # own event while the blur's is pending (a ticked box the server never saw).
            trigger_mode="always_last",
        )
        for trigger in (probe_go.click, c["pg_probe"].submit):
            wire(
                trigger,
                ex.playground_probe,
                [("point", c["pg_probe"])],
                pg_out,
                "playground_probe" if trigger is probe_go.click else None,
                show_progress="hidden",
                **({} if trigger is probe_go.click else {"api_visibility": "private"}),
            )
        # A click on a decision-boundary panel places the point there (plotly's own axes convert pixels).
        demo.load(None, js=PROBE_CLICK_JS)
        # The share link mirrors into the address bar, so copying the URL shares the configuration.
        c["pg_link"].change(
            None,
            inputs=c["pg_link"],
            # Only the query goes to the address bar: the page keeps its own path (the link's base comes from
            # the referer, which a strict referrer policy cuts to the origin).
            js="(q) => { const i = q ? q.indexOf('?') : -1; if (i >= 0) { history.replaceState(null, '', q.slice(i)); }"
            " return []; }",
        )

        tr_form = [
            ("dataset", c["tr_dataset"]),
            ("family", c["tr_family"]),
            ("preset", c["tr_preset"]),
            ("steps", c["tr_steps"]),
            ("batch_size", c["tr_batch"]),
            ("lr", c["tr_lr"]),
            ("ode_method", c["tr_ode"]),
            ("n_steps", c["tr_n_steps"]),
            ("tol", c["tr_tol"]),
            ("deq_solver", c["tr_solver"]),
            ("device", c["tr_device"]),
            ("train_limit", c["tr_limit"]),
            ("epochs", c["tr_epochs"]),
        ]
        tr_out = ["train_status", "train_curves", "train_message", "train_timer", "runs_table"]
        wire(tr_start.click, ex.train_start, tr_form, tr_out, "train_start")
        # The preset menu offers only presets of the chosen model for the chosen dataset's inputs.
        for trigger in (c["tr_family"].input, c["tr_dataset"].input):
            wire(
                trigger,
                ex.train_presets,
                [("family", c["tr_family"]), ("dataset", c["tr_dataset"]), ("preset", c["tr_preset"])],
                ["tr_preset_choices"],
                None,
                api_visibility="private",
                show_progress="hidden",
            )
        for button, action in ((tr_pause, "pause"), (tr_resume, "resume"), (tr_stop, "stop")):
            wire(button.click, ex.train_control, [], tr_out, f"train_{action}", fixed={"action": action})
        wire(
            tr_apply.click, ex.train_apply, [("lr", c["tr_lr"]), ("tol", c["tr_tol"])], ["train_message"], "train_apply"
        )
        wire(
            c["train_timer"].tick,
            ex.train_tick,
            [("visibility", c["page_visibility"])],
            tr_out,
            "train_tick",
            show_progress="hidden",
            concurrency_limit=8,
            trigger_mode="always_last",
            js=VISIBILITY_JS,
        )
        wire(show_gallery.click, ex.train_gallery, [], ["train_gallery", "train_message"], "train_gallery")
        refresh_runs.click(ex.runs_table, outputs=c["runs_table"], api_name="runs_list")

        lab_in = [
            ("model_key", c["lab_model"]),
            ("checkpoint", c["lab_checkpoint"]),
            ("split", c["lab_split"]),
            ("index", c["lab_index"]),
        ]
        lab_out = ["lab_residual", "lab_path", "lab_table", "lab_position", "lab_picture", "lab_message"]
        run_lab = dict(
            inputs=lab_in
            + [
                ("tol", c["lab_tol"]),
                ("max_iter", c["lab_max_iter"]),
                ("ode_method", c["lab_ode"]),
                ("ode_steps", c["lab_ode_steps"]),
                ("view", c["lab_view"]),
            ],
        )
        wire(lab_go.click, ex.lab_run, run_lab["inputs"], lab_out, "lab_run")
        draw_inputs = [*lab_in[:2], ("drawing", c["lab_drawing"]), *run_lab["inputs"][len(lab_in) :]]
        wire(
            c["lab_drawing"].change,
            ex.lab_draw,
            draw_inputs,
            lab_out,
            "lab_draw",
            show_progress="hidden",
            trigger_mode="always_last",  # a stroke that lands mid-solve runs once the solve is done
        )
        # The slider is the public endpoint; the 2-D / 3-D switch redraws through the same logic.
        for i, trigger in enumerate((c["lab_position"].input, c["lab_view"].input)):
            wire(
                trigger,
                ex.lab_scrub,
                [("position", c["lab_position"]), ("view", c["lab_view"])],
                ["lab_path", "lab_message"],
                "lab_scrub" if i == 0 else None,
                show_progress="hidden",
                trigger_mode="always_last",
                **({} if i == 0 else {"api_visibility": "private"}),
            )
        wire(
            lab_sweep.click,
            ex.lab_sweep,
            lab_in[:2] + [("kind", c["lab_kind"]), ("samples", c["lab_samples"])],
            ["lab_sweep", "lab_message"],
            "lab_sweep",
        )
        for trigger in (c["lab_index"].submit, c["lab_split"].input, c["lab_model"].input):
            wire(
                trigger,
                ex.lab_input,
                lab_in,
                ["lab_picture", "lab_caption", "lab_message", "lab_sweep"],
                None,
                api_visibility="private",
                show_progress="hidden",
            )
        wire(
            lab_tab.select,
            ex.lab_models,
            [("model_key", c["lab_model"])],
            ["lab_model_choices"],
            "lab_models",
            show_progress="hidden",
        )
        # A gallery tile or a runs-table row opens its model in the Solver lab, then solves there.
        opens = (
            (c["train_gallery"], ex.gallery_pick, []),
            (c["compare_table"], ex.compare_pick, ["compare_message"]),
        )
        for component, pick, extra in opens:
            wire(
                component.select,
                pick,
                [],
                ["tabs", "lab_model_choices", "lab_split", "lab_index", "pg_timer", "train_timer", *extra],
                None,
                fixed={"select": True},
                api_visibility="private",
            ).then(
                _handler(ex.lab_open, [n for n, _ in run_lab["inputs"]], lab_out),
                inputs=[comp for _, comp in run_lab["inputs"]],
                outputs=[c[n] for n in lab_out],
                api_visibility="private",
            )

        for tab, controls, extra, out_names in (
            ("train", train_curve_controls, [], ["train_status", "train_curves", "train_message"]),
            ("compare", compare_curve_controls, [("scope", c["compare_scope"]), ("selected", c["compare_runs"])],
             ["compare_curves", "compare_message"]),
        ):  # fmt: skip
            inputs = [("smoothing", controls[0]), ("x_axis", controls[1]), ("loss_scale", controls[2]), *extra]
            for i, control in enumerate(controls):
                wire(
                    control.release if i == 0 else control.input,
                    ex.curves_set,
                    inputs,
                    out_names,
                    f"{tab}_curves" if i == 0 else None,
                    fixed={"tab": tab},
                    show_progress="hidden",
                    trigger_mode="always_last",
                    **({} if i == 0 else {"api_visibility": "private"}),
                )
        compare_in = [("scope", c["compare_scope"]), ("selected", c["compare_runs"]), ("text", c["compare_filter"])]
        compare_out = ["compare_table", "compare_runs", "compare_curves", "compare_accuracy", "compare_message"]
        wire(compare_refresh.click, ex.compare_refresh, compare_in, compare_out, "compare_refresh")
        for trigger in (compare_tab.select, c["compare_scope"].input, c["compare_filter"].input):
            wire(
                trigger,
                ex.compare_refresh,
                compare_in,
                compare_out,
                None,
                api_visibility="private",
                trigger_mode="always_last",
            )
        wire(
            compare_rename.click,
            ex.compare_rename,
            [*compare_in[:2], ("new_name", c["compare_new_name"]), compare_in[2]],
            compare_out,
            "compare_rename",
        )
        wire(compare_delete.click, ex.compare_delete, compare_in, compare_out, "compare_delete")
        wire(
            c["compare_runs"].input,
            ex.compare_select,
            compare_in,
            ["compare_curves", "compare_message"],
            "compare_select",
            trigger_mode="always_last",
        )
        for button, fmt in ((compare_csv, "csv"), (compare_json, "json")):
            wire(
                button.click,
                ex.compare_export,
                [("scope", c["compare_scope"]), ("text", c["compare_filter"])],
                ["compare_file", "compare_message"],
                f"compare_export_{fmt}",
                fixed={"fmt": fmt},
            )
        wire(
            memory_go.click,
            ex.compare_memory,
            [
                ("families", c["memory_families"]),
                ("gradients", c["memory_gradients"]),
                ("batch_sizes", c["memory_batches"]),
                ("kind", c["memory_kind"]),
                ("n_steps", c["memory_steps"]),
            ],
            ["compare_memory", "compare_message"],
            "compare_memory",
        )
        demo.unload(_unload(ex))
    return demo


def _unload(ex: Explorer) -> Callable[..., None]:
    def unload(request: gr.Request) -> None:
        ex.close_session(request.session_hash)

    return unload


def app_theme() -> gr.themes.Base:
    """A built-in theme with system fonts (no web fonts are fetched)."""
    return gr.themes.Default(font=THEME_FONTS, font_mono=MONO_FONTS)
