"""The Train tab: a saved image run with live loss, accuracy, NFE, memory and time, and its test predictions."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import threading
from functools import partial
from typing import Any

import gradio as gr
import plotly.graph_objects as go

import core
from core import FAMILY_NAMES
from core.checks import short_repr
from core.data import dataset_info

from .. import lab as lab_lib
from ..imagetrain import DEVICES, TrainSettings, dataset_choices, live_changes, new_run_dir, presets_for
from ..pagebuffer import Snapshot
from ..plots import curves_figure, empty_figure
from ..runs import RUN_COLUMNS, read_runs, run_rows
from ..sessions import CapacityError, Lane, SessionTrainer, backward_cell
from .common import (
    KEEP,
    RUN_COLUMN_WIDTHS,
    USER_ERRORS,
    Choices,
    CurvesTab,
    Nav,
    Page,
    Result,
    curve_controls,
    lane_colors,
    plot,
    result,
)
from .lab import LabOut, open_lab

TRAIN_PANELS = ("loss", "accuracy", "nfe", "memory", "time")
POLL_SECONDS = 0.5  # the tab's timer, while a run there is live


@result
class TrainOut(Result):
    """The Train tab's outputs."""

    status: str = KEEP
    curves: go.Figure = KEEP
    message: str = KEEP
    timer: bool = KEEP  # poll the run (until its summary is written)
    runs: list[list[Any]] = KEEP  # the saved runs table
    preset: Choices = KEEP
    gallery: list[tuple[Any, str]] = KEEP


class TrainTab(CurvesTab):
    """The Train tab's handlers."""

    name, Out = "train", TrainOut

    def start(self, key: str, **form: Any) -> TrainOut:
        """Validate the form, start a saved run (the session's previous run is stopped and kept)."""
        session = self.session(key)
        try:
            settings = TrainSettings.from_form(**form)
            config = settings.train_config()
        except (ValueError, TypeError) as err:
            return TrainOut.failed(err)
        with session.lock:
            previous = session.train
            # A run still in progress is stopped (and saved) by a new one: the message says so, with its step.
            replaced = previous is not None and previous.state in ("running", "paused")
            if previous is not None and previous.running:
                previous.pause()  # frees its slot under the cap; stopped (and saved) below
            out_dir = new_run_dir(self.ctx.runs_dir, settings, key)
            try:
                trainer = SessionTrainer([Lane(settings.display_name, config, out_dir)], gate=self.ctx.registry.gate)
                trainer.play()
            except USER_ERRORS as err:
                shutil.rmtree(out_dir, ignore_errors=True)  # the new run's folder: nothing was trained into it
                if previous is not None and previous.state == "paused":
                    with contextlib.suppress(CapacityError):
                        previous.play()
                return TrainOut.failed(lab_lib.describe_unavailable(err))
            if previous is not None:
                threading.Thread(target=previous.stop, daemon=True).start()  # finishing takes a while
            session.train = trainer
            session.add_run(trainer)
            session.run_dirs.append(out_dir)
        message = f"Started **{settings.display_name}**; saving to `{out_dir}`."
        if replaced:
            message += (
                f" The run before it, **{previous.lanes[0].name}**, was stopped at step {previous.step_count:,} "
                "and saved (open it in Compare)."
            )
        return dataclasses.replace(self._view(key, force=True), message=message, timer=True)

    @staticmethod
    def presets(key: str, family: str, dataset: str, preset: str = "auto") -> TrainOut:
        """The preset menu for this model and dataset: 'auto' and the presets that build that family for the
        dataset's inputs, keeping the current pick when it still fits (else 'auto')."""
        try:
            kind = dataset_info(dataset).input_kind
        except ValueError:
            return TrainOut()
        fitting = ["auto", *presets_for(family, kind)]
        return TrainOut(preset=Choices(fitting, preset if preset in fitting else "auto"))

    def control(self, key: str, action: str) -> TrainOut:
        """⏸ pause, ▶ resume, ⏹ stop the session's current image run."""
        trainer = self.session(key).train
        if trainer is None:
            return TrainOut.failed("no image run in this session yet: press ▶ Start")
        try:
            if action == "pause":
                trainer.pause()
            elif action == "resume":
                trainer.play()
            elif action == "stop":
                # Finishing measures test accuracy and saves: do it off the request thread.
                trainer.pause()
                threading.Thread(target=trainer.stop, daemon=True).start()
            else:
                raise ValueError(f"unknown action {short_repr(action)}")
        except USER_ERRORS as err:
            return TrainOut.failed(err)
        out = dataclasses.replace(self._view(key, force=True), message="")
        # After a resume or a stop, poll until the run's summary is written.
        return dataclasses.replace(out, timer=True) if action in ("resume", "stop") else out

    def apply(self, key: str, lr: Any, tol: Any) -> TrainOut:
        """Change the running image run's learning rate and solver tolerance without a restart."""
        trainer = self.session(key).train
        if trainer is None:
            return TrainOut.failed("no image run to change: press ▶ Start first")
        try:
            # Start's own check of each value (the same ranges and words), then core's check of the change.
            trainer.apply(**live_changes(trainer.trainers[0].config.model, lr, tol))
        except USER_ERRORS as err:
            return TrainOut.failed(err)
        return TrainOut(message=f"applied lr {lr:g}, tolerance {tol:g} from the next step")

    def _view(self, key: str, force: bool = False) -> TrainOut:
        """Status and curves when they changed since this session last drew them; once the run has settled,
        the timer stops and the runs table is read again."""
        trainer = self.session(key).train
        if trainer is None:
            return (
                TrainOut(status="No image run yet.", curves=empty_figure("press ▶ Start", 260)) if force else TrainOut()
            )
        snap = trainer.read()
        # Drawn again when the run moved, or when the page became narrow or wide (a phone turned).
        moved = self.ctx.changed(key, "train", snap, force)
        turned = self.ctx.changed(key, "train-narrow", self.ctx.narrow(key))
        if not (moved or turned):
            return TrainOut()
        curves = curves_figure(snap.metrics, TRAIN_PANELS, colors=lane_colors(trainer), **self.curve_options(key))
        out = TrainOut(status=run_status(snap, trainer), curves=curves)
        if settled(snap):  # summary written, nothing more will change: stop polling
            out = dataclasses.replace(out, timer=False, runs=self.runs_table())
        return out

    def tick(self, key: str, visibility: str = "visible") -> TrainOut:
        return TrainOut() if visibility == "hidden" else self._view(key)

    def redraw_curves(self, key: str) -> TrainOut:
        return self._view(key, force=True)

    def runs_table(self) -> list[list[Any]]:
        return run_rows(read_runs(self.ctx.runs_dir))

    def gallery(self, key: str) -> TrainOut:
        """Test images of the current run with predictions, misclassified and high-NFE first."""
        trainer = self.session(key).train
        if trainer is None:
            return TrainOut.failed("train a model first (▶ Start), then show its predictions")
        model = trainer.clone_model(0)
        items = lab_lib.prediction_gallery(model, trainer.trainers[0].data)
        gallery = []
        for it in items:
            mark = "✗" if not it["correct"] else "✓"
            gallery.append(
                (it["picture"], f"#{it['index']} {mark} pred {it['prediction']} (true {it['label']}), NFE {it['nfe']}")
            )
        self.session(key).lab["gallery"] = [it["index"] for it in items]
        return TrainOut(
            gallery=gallery, message="Misclassified first, then by NFE. Click an image to open it in the Solver lab."
        )

    def gallery_pick(self, key: str, position: int) -> tuple[Nav, LabOut] | tuple[()]:
        """A gallery tile was clicked: open that test image in the Solver lab with the current run."""
        session = self.session(key)
        indices = session.lab.get("gallery") or []
        if session.train is None or not 0 <= position < len(indices):
            return ()
        return open_lab(self.ctx, key, f"session:train:{next(reversed(session.train_runs))}", indices[position])


def settled(snap: Snapshot) -> bool:
    """Nothing more will change: every lane's summary is written, or the worker failed."""
    return bool(snap.finished and len(snap.finished) == len(snap.metrics)) or snap.state == "failed"


def run_status(snap: Snapshot, trainer: SessionTrainer) -> str:
    """The run's state, step, last losses and compute, its result once done, and any error with advice."""
    name = trainer.lanes[0].name
    head = f"**{name}** · **{snap.state}** · step **{snap.step}** / {snap.total_steps}"
    if snap.state == "running" and snap.steps_per_second:
        head += f" · {snap.steps_per_second:.1f} steps/s"
    last = snap.last.get(name)
    lines = [head]
    if last:
        val = last.get("val_acc")
        lines.append(
            f"loss {last['loss']:.4f} · train acc {100 * last['train_acc']:.1f} % · val acc "
            f"{'–' if val is None else f'{100 * val:.1f} %'} · NFE fwd {last['nfe_forward']:.0f} / bwd "
            f"{backward_cell(last['nfe_backward'], snap.gradients.get(name, ''))} · {last['step_ms']:.0f} ms/step · "
            f"{last['memory_mb']:.1f} MB kept for backward"
        )
        if last.get("unconverged_steps"):
            lines.append(
                f"⚠️ {last['unconverged_steps']:.0f} of {snap.step} steps: the DEQ's solve missed its tolerance, so "
                "their gradients are approximate. **Advice:** raise the iteration cap or loosen the tolerance."
            )
    fin = snap.finished.get(name)
    if fin:
        acc, best = fin.get("test_accuracy"), fin.get("best_step")
        if acc is None:
            which = "no step was trained"
        elif best is None:
            which = f"the last model, step {fin.get('steps', snap.step)}: it stopped before its first validation"
        else:
            which = f"model of step {best}, chosen on validation"
        lines.append(
            f"**done**: test accuracy {'n/a' if acc is None else f'{100 * acc:.2f} %'} ({which}); saved in "
            f"`{trainer.lanes[0].out_dir}`"
        )
    for message, advice in snap.errors.values():
        lines.append(f"⚠️ **diverged**: {message}. **Advice:** {advice}. The last good checkpoint is kept.")
    if snap.message:
        lines.append(f"⚠️ {snap.message}")
    return "  \n".join(lines)


def ode_method_choices() -> list[tuple[str, str]]:
    """(label, method) pairs of the ODE menu; the paper's solver is named as such."""
    paper = core.ODE_RECIPES[core.PAPER_ODE_RECIPE]
    named = f"{paper.method} (adaptive: the paper's solver)"
    return [(named if m == paper.method else m, m) for m in core.ODE_METHODS]


def build(tab: TrainTab, page: Page) -> tuple[gr.Tab, gr.Gallery]:
    """The Train tab's layout and events; returns the tab and its gallery (whose tiles open the lab)."""
    s = TrainSettings(device=tab.ctx.device)
    with gr.Tab("Train", id="train") as train_tab:
        with gr.Row():
            dataset = gr.Dropdown(dataset_choices(), value=s.dataset, label="dataset")
            family = gr.Dropdown(
                [(v, k) for k, v in FAMILY_NAMES.items()], value=s.family, label="model", elem_id="tr-family"
            )
            preset = gr.Dropdown(
                tab.presets("", s.family, s.dataset).preset.choices, value="auto", label="preset", elem_id="tr-preset"
            )
            device = gr.Dropdown(list(DEVICES), value=s.device, label="device")
        with gr.Row():
            steps = gr.Number(s.steps, label="steps", elem_id="tr-steps")
            epochs = gr.Number(None, label="or epochs (0 or blank: use steps)", elem_id="tr-epochs")
            batch = gr.Number(s.batch_size, label="batch size", elem_id="tr-batch")
            lr = gr.Number(s.lr, label="learning rate")
            limit = gr.Number(None, label="training subset (0 or blank: all)", elem_id="tr-limit")
        with gr.Row():
            ode = gr.Dropdown(
                ode_method_choices(),
                value=s.ode_method,
                label="ODE method",
                info="rk4: fixed NFE (4 per step), fast. dopri5: adaptive, the paper's; only an adaptive method "
                "shows the learned start point's saving in NFE",
                elem_id="tr-ode",
            )
            n_steps = gr.Number(s.n_steps, label="fixed ODE steps")
            tol = gr.Number(s.tol, label="solver tolerance")
            solver = gr.Dropdown(list(core.METHODS), value=s.deq_solver, label="DEQ solver")
        with gr.Row(elem_id="tr-buttons"):  # each label on one line (CSS), each button as wide as it needs
            start = gr.Button("▶ Start new run", variant="primary", elem_id="tr-start")
            pause = gr.Button("❚❚ Pause", elem_id="tr-pause")
            resume = gr.Button("▶ Resume", elem_id="tr-resume")
            stop = gr.Button("■ Stop and save", elem_id="tr-stop")
            apply = gr.Button("Apply lr / tolerance now", elem_id="tr-apply")
        message = gr.Markdown("", elem_id="train-message")
        status = gr.Markdown("No image run yet.", elem_id="train-status")
        curves = plot("training curves", "train-curves")
        curve_controls(page, tab, [status, curves, message])
        with gr.Row():
            show_gallery = gr.Button("Show test predictions")
        gallery = gr.Gallery(
            label="test images: misclassified and high-NFE first (click one to open it in the Solver lab)",
            columns=8,
            height=260,
            allow_preview=False,
            elem_id="train-gallery",
        )
        with gr.Row():
            refresh = gr.Button("Refresh runs")
        runs = gr.Dataframe(
            headers=RUN_COLUMNS,
            value=tab.runs_table() or None,
            label=f"saved runs in {tab.ctx.runs_dir}",
            interactive=False,
            wrap=True,
            column_widths=RUN_COLUMN_WIDTHS,
            elem_id="runs-table",
        )

    page.bind(TrainOut, status=status, curves=curves, message=message, timer=page.train_timer, runs=runs,
              preset=preset, gallery=gallery)  # fmt: skip
    form = dict(dataset=dataset, family=family, preset=preset, steps=steps, batch_size=batch, lr=lr,
                ode_method=ode, n_steps=n_steps, tol=tol, deq_solver=solver, device=device, train_limit=limit,
                epochs=epochs)  # fmt: skip
    view = [status, curves, message, page.train_timer, runs]
    page.on(start.click, tab.start, form, view, api_name="train_start")
    # The preset menu offers only presets of the chosen model for the chosen dataset's inputs.
    page.on(
        family.input,
        tab.presets,
        {"family": family, "dataset": dataset, "preset": preset},
        [preset],
        twins=(dataset.input,),
        show_progress="hidden",
    )
    for button, action in ((pause, "pause"), (resume, "resume"), (stop, "stop")):
        page.on(button.click, partial(tab.control, action=action), outputs=view, api_name=f"train_{action}")
    page.on(apply.click, tab.apply, {"lr": lr, "tol": tol}, [message], api_name="train_apply")
    page.poll(page.train_timer, tab.tick, view, "train_tick")
    page.on(show_gallery.click, tab.gallery, outputs=[gallery, message], api_name="train_gallery", work="solve")
    refresh.click(tab.runs_table, outputs=runs, api_name="runs_list")
    return train_tab, gallery
