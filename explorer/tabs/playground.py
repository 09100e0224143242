"""The Playground tab: NODE, ANODE, DEQ and HomoODE learning the same 2-D data side by side, live."""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import gradio as gr
import plotly.graph_objects as go

import core
from core import FAMILY_NAMES
from core.checks import check_filled, short_repr
from core.data import TOY_SETS

from ..frames import FRAME_JS
from ..playground import (
    HIDDEN_CHOICES,
    PICTURE_MARGIN,
    PlaygroundSettings,
    PlaygroundVisual,
    status_markdown,
)
from ..plots import curves_figure, playground_figure
from ..sessions import CapacityError, Session, SessionTrainer
from .common import KEEP, USER_ERRORS, Context, Page, Result, Tab, as_int, lane_colors, plot, result

PLAYGROUND_RATE = 30.0  # steps per second: watchable, and leaves CPU for the page and other sessions
# Seconds without a visible page's tick before a Playground pauses itself: well above a tick's delay on a
# busy server (every tab's ticks share one queue group of the tick event's slots), so a watched Playground
# never flickers.
PLAYGROUND_IDLE_PAUSE = 8.0
PG_PANELS = ("loss", "accuracy", "nfe")
# The tab's timer: the status line and the curves (each gradio event costs the page ~35 ms of its own
# bookkeeping); the picture moves in between, in place, as fast as the page draws (explorer.frames), or on
# each tick for a client without the page's script (an API client). Idle runs are skipped.
REDRAW_SECONDS = 0.5
CURVES_SECONDS = 0.95  # the curves move less per redraw than the picture: about every other tick
#: Installed once per page: a click inside an input-plane panel of the Playground's picture writes
#: its data coordinates into the point box and presses "Place point".
PROBE_CLICK_JS = r"""() => {
  document.addEventListener('click', (e) => {
    const gd = e.target.closest && e.target.closest('#pg-flow .js-plotly-plot');
    if (!gd || !gd._fullLayout) return;
    const fl = gd._fullLayout, r = gd.getBoundingClientRect();
    const px = e.clientX - r.left, py = e.clientY - r.top;
    // The input planes (not the state spaces), as the figure lists them: their place depends on the layout.
    const planes = (gd.layout.meta && gd.layout.meta.input_planes) || [];
    for (const [xref, yref] of planes) {
      const xa = fl['xaxis' + xref.slice(1)], ya = fl['yaxis' + yref.slice(1)];
      if (!xa || !ya) continue;
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
# The share link mirrors into the address bar, so copying the URL shares the configuration. Only the query
# goes there: the page keeps its own path (the link's base comes from the referer, which a strict referrer
# policy cuts to the origin).
LINK_JS = (
    "(q) => { const i = q ? q.indexOf('?') : -1; if (i >= 0) { history.replaceState(null, '', q.slice(i)); }"
    " return []; }"
)


@result
class PlaygroundOut(Result):
    """The Playground's outputs; the settings fields are named as the form's (and the handlers') inputs."""

    status: str = KEEP
    flow: go.Figure = KEEP
    curves: go.Figure = KEEP
    message: str = KEEP
    play: dict[str, str] = KEEP  # the ▶ button's value and variant
    pause: dict[str, str] = KEEP
    dataset: str = KEEP
    models: list[str] = KEEP
    ode_method: str = KEEP
    n_steps: int = KEEP
    tol: float = KEEP
    deq_solver: str = KEEP
    lr: float = KEEP
    seed: int = KEEP
    steps: int = KEEP
    noise: float = KEEP
    points: int = KEEP
    batch_size: int = KEEP
    hidden: str = KEEP
    depth: int = KEEP
    show_test: bool = KEEP
    link: str = KEEP


class PlaygroundTab(Tab):
    """The Playground's handlers; ``autoplay`` starts its preset on page load (the first screen tells the story)."""

    def __init__(self, ctx: Context, autoplay: bool = True):
        super().__init__(ctx)
        self.autoplay = autoplay

    def load(self, key: str, params: dict[str, str], autoplay: bool | None = None, page_url: str = "") -> PlaygroundOut:
        """Page load: settings from the link, a fresh preset, autoplay; returns every Playground output.
        ``page_url`` (the page's address) makes the share link a whole URL."""
        settings, problems = PlaygroundSettings.from_query(params or {})
        if len(problems) > 3:
            problems = [*problems[:3], f"and {len(problems) - 3} more problems in the link"]
        session = self.session(key)
        session.page_base = _page_base(page_url)
        trainer = self._new(settings)
        with session.lock:
            previous, session.playground = session.playground, trainer
            session.playground_settings = settings
            if previous is not None:
                previous.close()
            if self.autoplay if autoplay is None else autoplay:
                try:
                    session.playground.play()
                except CapacityError as err:
                    problems.append(str(err))
        out = dataclasses.replace(self._view(key, force=True), **_settings_fields(settings, session.page_base))
        return out.warn("; ".join(problems)) if problems else out

    def _trainer(self, key: str) -> tuple[Session, SessionTrainer]:
        session = self.session(key)
        with session.lock:  # page load and a button may race to create it
            if session.playground is None:
                session.playground = self._new(PlaygroundSettings())
                session.playground_settings = PlaygroundSettings()
            return session, session.playground

    def _new(self, settings: PlaygroundSettings) -> SessionTrainer:
        """The Playground's models, on the Playgrounds' own budget, paused by themselves while their page
        is hidden (its timer stops polling: no tick for ``PLAYGROUND_IDLE_PAUSE`` seconds)."""
        return SessionTrainer(
            settings.lanes(),
            gate=self.ctx.registry.playground_gate,
            visual=PlaygroundVisual(),
            steps_per_second=PLAYGROUND_RATE,
            idle_pause=PLAYGROUND_IDLE_PAUSE,
        )

    def probe(self, key: str, point: str) -> PlaygroundOut:
        """Place (or, with "", remove) the user's own point "x, y": every model draws its path and its
        P(class 1) there, now and as it trains."""
        session, trainer = self._trainer(key)
        text = str(point or "").strip()
        with session.lock:  # not while a reset rebuilds the models
            probe = None
            if text:
                # Inside the picture (the data's range and its margin): a far point would be off screen and
                # could stiffen the shared solve of the drawn paths.
                data = trainer.trainers[0].train_x
                lo, hi = (data.min(0).values - PICTURE_MARGIN).tolist(), (data.max(0).values + PICTURE_MARGIN).tolist()
                try:
                    x, y = (float(v) for v in text.split(","))
                    if not (lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1]):
                        raise ValueError
                except ValueError:
                    return PlaygroundOut.failed(
                        f"a point is two numbers “x, y” inside the picture (x from {lo[0]:.2f} to {hi[0]:.2f}, "
                        f"y from {lo[1]:.2f} to {hi[1]:.2f}), got {short_repr(text)}"
                    )
                probe = (x, y)
            trainer.visual.probe = probe
            trainer.refresh_visual()
        return dataclasses.replace(self._view(key, force=True), message="" if probe else "point removed")

    def _view(self, key: str, force: bool = False) -> PlaygroundOut:
        """Status, picture, curves and buttons, each only when it changed since this session last drew it."""
        session = self.ctx.registry.peek(key)
        trainer = session.playground if session is not None else None
        # The timer can tick before the page's load event has built the models.
        if trainer is None:
            return PlaygroundOut()
        snap, narrow = trainer.read(), self.ctx.narrow(key)
        # Drawn again when the models moved, or when the page became narrow or wide (a phone turned).
        moved = self.ctx.changed(key, "playground", snap, force)
        turned = self.ctx.changed(key, "playground-narrow", narrow)
        if not (moved or turned):
            return PlaygroundOut()
        out = PlaygroundOut(status=status_markdown(snap, narrow=narrow))
        # While the page's script pulls frames (explorer.frames), every new picture goes there, in place: a new
        # run, a placed point, other models or a turned phone too (a frame of another shape is a whole
        # figure). A button's answer then carries no figure, and the page shows it without redrawing one.
        if not trainer.pulled:
            whole = self.ctx.frames.whole(key, session, snap, narrow)
            # Nothing to draw yet (nothing to animate either): the empty figure that says so.
            flow = go.Figure(whole) if whole is not None else playground_figure([])
            out = dataclasses.replace(out, flow=flow)
        if self.ctx.changed(key, "buttons", snap.state, force):
            # Play and Pause show the state: the highlighted one is what a click does next.
            play, pause = play_pause_buttons(snap.state)
            out = dataclasses.replace(out, play=play, pause=pause)
        # The curves move less per redraw than the picture: redraw them at most every CURVES_SECONDS while
        # running (the browser's redraw time is the limit), and always once a run stops or is forced.
        if self.ctx.due(key, "curves", CURVES_SECONDS, force or turned or snap.state != "running"):
            curves = curves_figure(snap.metrics, PG_PANELS, height=250, colors=lane_colors(trainer), narrow=narrow)
            out = dataclasses.replace(out, curves=curves)
        return out

    def tick(self, key: str, visibility: str = "visible") -> PlaygroundOut:
        """Timer: redraw when something changed since the last draw of this session. A tick from a hidden
        browser tab (browsers keep slow timers running there) neither redraws nor keeps the models playing."""
        if visibility == "hidden":
            return PlaygroundOut()
        session = self.ctx.registry.peek(key)
        if session is not None and session.playground is not None:
            session.playground.seen()
        return self._view(key)

    def control(self, key: str, action: str) -> PlaygroundOut:
        """▶ play, ⏸ pause, ⏭ step, ⟲ reset."""
        session, trainer = self._trainer(key)
        try:
            with session.lock:
                do = {"play": trainer.play, "pause": trainer.pause, "step": trainer.step_once, "reset": trainer.reset}
                if action not in do:
                    raise ValueError(f"unknown action {short_repr(action)}")
                if action == "play" and trainer.done:
                    raise ValueError("this run has reached its steps: press ⟲ Reset, or raise steps")
                do[action]()
        except USER_ERRORS as err:
            return self._view(key, force=True).warn(err)
        return dataclasses.replace(self._view(key, force=True), message="")

    def apply(self, key: str, **form: Any) -> PlaygroundOut:
        """Settings changed: lr / tol / solver apply live; dataset, models, seed or steps rebuild the models
        (and keep playing if they were). Each changed field is taken on its own: a refused one (4 models, a
        blank box) is named and put back in the form to the value in force, and never holds up the others."""
        session, trainer = self._trainer(key)
        with session.lock:
            old: PlaygroundSettings = session.playground_settings
            new, refused = apply_form(old, form)
            changes = old.live_changes(new)
            try:
                if changes is None:
                    was_running = trainer.running
                    trainer.reset(new.lanes())
                    session.playground_settings = new
                    if was_running:
                        trainer.play()
                else:
                    if changes:
                        trainer.apply(**changes)
                    session.playground_settings = new
                    if new.show_test != old.show_test:  # only the picture changes: a new one, for the frames
                        trainer.buffer.new_version()
            except USER_ERRORS as err:
                if session.playground_settings == old:  # nothing changed: every changed field goes back
                    changed = [n for n in form if _shown(old, n) != _shown(new, n)]
                    refused.update({n: str(err) for n in changed if n not in refused})
                else:  # the models are rebuilt with the new settings, but could not play on
                    refused["play"] = str(err)
            current: PlaygroundSettings = session.playground_settings
        shown = _settings_fields(current, session.page_base)
        back = {name: shown[name] for name in refused if name in form}  # the refused boxes, as in force
        if current == old:  # nothing changed: the picture and the link stay
            return PlaygroundOut(**back).warn(refusal(refused, current)) if refused else PlaygroundOut(message="")
        out = dataclasses.replace(self._view(key, force=True), link=shown["link"], message="", **back)
        if "noise" in form and shown["noise"] != form["noise"]:  # follows a new dataset's own noise
            out = dataclasses.replace(out, noise=shown["noise"])
        return out.warn(refusal(refused, current)) if refused else out


#: The Playground form's fields as its boxes name them (a refusal says which box it was).
FORM_LABELS = {
    "dataset": "dataset",
    "models": "models",
    "ode_method": "ODE method",
    "n_steps": "fixed ODE steps",
    "tol": "solver tolerance",
    "deq_solver": "DEQ solver",
    "lr": "learning rate",
    "seed": "seed",
    "steps": "steps",
    "noise": "noise",
    "points": "training points",
    "batch_size": "batch size",
    "hidden": "hidden units",
    "depth": "hidden layers",
    "show_test": "show test data",
}


def _shown(s: PlaygroundSettings, name: str) -> Any:
    """A setting as the form's value reads (:func:`_form_value`): the noise box shows the data's noise."""
    return s.data_noise if name == "noise" else getattr(s, name)


def apply_form(old: PlaygroundSettings, form: dict[str, Any]) -> tuple[PlaygroundSettings, dict[str, str]]:
    """The settings in force ``old`` with each field of the Playground's ``form`` that differs from them and is
    valid (checked one field at a time, as each would be alone); and the refused fields, each with why. A bad
    value thus never blocks a good change to another field, nor is a good one refused for a bad one's sake."""
    new, refused = old, {}
    for name, value in form.items():
        try:
            value = _form_value(name, value)
            if value == _shown(old, name):
                continue  # as in force (the noise box shows the data's noise: untouched, it is no setting)
            new = new.replace(**{name: value})  # validates
        except (ValueError, TypeError) as err:
            refused[name] = str(err)
    if new.dataset != old.dataset and "noise" not in refused and _form_value_or(form, "noise") == old.data_noise:
        new = new.replace(noise=None)  # the noise box was untouched: it follows the new dataset's own default
    return new, refused


def _form_value(name: str, value: Any) -> Any:
    """A form widget's value as the setting's type: whole floats become ints, a blank number is an error."""
    labels = {"n_steps": "ODE steps", "points": "training points", "batch_size": "batch size"}
    if name in ("n_steps", "seed", "steps", "points", "batch_size", "depth"):
        return as_int(value, labels.get(name, name))  # "... is empty" for a blank box
    if name in ("lr", "tol", "noise"):
        check_filled(value, {"lr": "learning rate", "tol": "tolerance"}.get(name, name))
    if name == "models":
        return tuple(value or ())
    return value


def _form_value_or(form: dict[str, Any], name: str) -> Any:
    try:
        return _form_value(name, form.get(name))
    except ValueError:
        return None


def refusal(refused: dict[str, str], current: PlaygroundSettings) -> str:
    """One line per refused field: which box, why, and that it shows the value in force again."""
    parts = []
    for name, why in refused.items():
        if name == "play":
            parts.append(f"the models were rebuilt but could not play: {why}")
            continue
        value = _shown(current, name)
        if name == "models":
            value = ", ".join(FAMILY_NAMES[m] for m in value)
        elif isinstance(value, float):
            value = f"{value:g}"
        parts.append(f"{FORM_LABELS.get(name, name)} not changed ({why}): back to {value}, the value in force")
    return "; ".join(parts)


def _settings_fields(s: PlaygroundSettings, page_base: str = "") -> dict[str, Any]:
    """The settings as the form shows them, and the share link."""
    same = ("dataset", "ode_method", "n_steps", "tol", "deq_solver", "lr", "seed", "steps", "points", "batch_size")
    shown = {name: getattr(s, name) for name in (*same, "hidden", "depth", "show_test")}
    return dict(shown, models=list(s.models), noise=s.data_noise, link=page_base + "?" + s.to_query())


def play_pause_buttons(state: str) -> tuple[dict[str, str], dict[str, str]]:
    """(label, variant) of ▶ and ❚❚ for a run's state: running -> "▶ Playing" quiet, "❚❚ Pause" highlighted;
    otherwise "▶ Play" highlighted and "❚❚ Paused" (or "❚❚ Pause") quiet."""
    if state == "running":
        return {"value": "▶ Playing", "variant": "secondary"}, {"value": "❚❚ Pause", "variant": "primary"}
    pause = "❚❚ Paused" if state == "paused" else "❚❚ Pause"
    return {"value": "▶ Play", "variant": "primary"}, {"value": pause, "variant": "secondary"}


def _page_base(url: str) -> str:
    """``http://host:port/path`` of the page's address (no query, nothing but http(s)), or "" when unknown."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(str(url or "")[:500])
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def build(tab: PlaygroundTab, page: Page) -> gr.Tab:
    """The Playground's layout and events."""
    s = PlaygroundSettings()
    with gr.Tab("Playground", id="playground") as pg_tab:
        # On a phone the picture comes first, under the ▶ buttons, and the settings after it (the app's CSS).
        with gr.Row(elem_id="pg-main"):
            with gr.Column(scale=1, min_width=250, elem_id="pg-controls"):
                with gr.Row(elem_id="pg-buttons"):
                    play = gr.Button("▶ Play", variant="primary", elem_id="pg-play", min_width=60)
                    pause = gr.Button("❚❚ Pause", elem_id="pg-pause", min_width=60)
                    step = gr.Button("▶❚ Step", elem_id="pg-step", min_width=60)
                    reset = gr.Button("⟲ Reset", elem_id="pg-reset", min_width=60)
                dataset = gr.Dropdown(list(TOY_SETS), value=s.dataset, label="dataset")
                models = gr.CheckboxGroup(
                    [(v, k) for k, v in FAMILY_NAMES.items()],
                    value=list(s.models),
                    label="models (1-3)",
                    elem_id="pg-models",
                )
                lr = gr.Number(s.lr, label="learning rate (live)", elem_id="pg-lr")
                tol = gr.Number(s.tol, label="solver tolerance (live)", elem_id="pg-tol")
                with gr.Row():
                    ode = gr.Dropdown(list(core.ODE_METHODS), value=s.ode_method, label="ODE method")
                    n_steps = gr.Number(s.n_steps, label="fixed ODE steps")
                solver = gr.Dropdown(list(core.METHODS), value=s.deq_solver, label="DEQ solver")
                with gr.Row():
                    seed = gr.Number(s.seed, label="seed")
                    steps = gr.Number(s.steps, label="steps")
                with gr.Accordion("data and model size", open=False, elem_id="pg-more"):
                    with gr.Row():
                        noise = gr.Number(s.data_noise, label="noise", elem_id="pg-noise")
                        points = gr.Number(s.points, label="training points", elem_id="pg-points")
                    with gr.Row():
                        batch = gr.Number(s.batch_size, label="batch size", elem_id="pg-batch")
                        hidden = gr.Dropdown(
                            list(HIDDEN_CHOICES), value=s.hidden, label="hidden units", elem_id="pg-hidden"
                        )
                        depth = gr.Dropdown([1, 2, 3, 4], value=s.depth, label="hidden layers", elem_id="pg-depth")
                    show_test = gr.Checkbox(
                        s.show_test, label="show test data (never trained on)", elem_id="pg-show-test"
                    )
                link = gr.Textbox(
                    label="link to this configuration (also in the address bar)",
                    interactive=False,
                    buttons=["copy"],
                    elem_id="pg-link",
                )
            with gr.Column(scale=3, elem_id="pg-view"):
                message = gr.Markdown("", elem_id="pg-message")
                status = gr.Markdown("starting…", elem_id="pg-status")
                flow = plot("decision boundary and trajectories", "pg-flow")
                with gr.Row():
                    point = gr.Textbox(
                        "",
                        label="your point x, y: click a decision-boundary picture, or type it (blank removes it); "
                        "every model draws its path",
                        placeholder="e.g. 0.3, -0.2",
                        elem_id="pg-probe",
                        max_lines=1,
                        scale=4,
                    )
                    probe_go = gr.Button("Place point", elem_id="pg-probe-go", scale=1, min_width=100)
                curves = plot("loss, accuracy, NFE", "pg-curves")

    # The form in the handlers' (and the API's) order; the settings outputs have the same names.
    form = dict(dataset=dataset, models=models, ode_method=ode, n_steps=n_steps, tol=tol, deq_solver=solver, lr=lr,
                seed=seed, steps=steps, noise=noise, points=points, batch_size=batch, hidden=hidden, depth=depth,
                show_test=show_test)  # fmt: skip
    view = dict(status=status, flow=flow, curves=curves, message=message, play=play, pause=pause)
    page.bind(PlaygroundOut, **view, **form, link=link)
    page.on(
        page.demo.load, tab.load, outputs=[*view.values(), *form.values(), link], query=True, api_name="playground_load"
    )
    page.poll(page.pg_timer, tab.tick, [status, flow, curves, play, pause], "playground_tick")
    for button, action in ((play, "play"), (pause, "pause"), (step, "step"), (reset, "reset")):
        page.on(
            button.click,
            partial(tab.control, action=action),
            outputs=view.values(),
            api_name=f"playground_{action}",
            show_progress="hidden",
        )
    menus = (dataset, models, ode, solver, hidden, depth, show_test)
    numbers = (n_steps, tol, lr, seed, steps, noise, points, batch)
    page.on(
        [c.input for c in menus] + [c.submit for c in numbers] + [c.blur for c in numbers],
        tab.apply,
        form,
        # The form too: a refused value is put back to the one in force (and the noise follows a new dataset).
        [*view.values(), *form.values(), link],
        api_name="playground_apply",
        show_progress="hidden",
        # A click right after editing a number fires the box's blur first: "once" would drop the click's
        # own event while the blur's is pending (a ticked box the server never saw).
        trigger_mode="always_last",
    )
    page.on(
        probe_go.click,
        tab.probe,
        {"point": point},
        view.values(),
        api_name="playground_probe",
        twins=(point.submit,),
        show_progress="hidden",
    )
    # A click on a decision-boundary panel places the point there (plotly's own axes convert pixels).
    page.demo.load(None, js=PROBE_CLICK_JS)
    # The picture animates in place: the page pulls frames at its own pace (explorer.frames).
    page.demo.load(None, js=FRAME_JS)
    link.change(None, inputs=link, js=LINK_JS)
    return pg_tab
