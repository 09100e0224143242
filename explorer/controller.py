"""What each page event does, without gradio: the app's handlers call these methods with the session key
and plain values, and get back a dict of named outputs (absent = leave that output as it is).

A bad value never raises out of here: it comes back as ``{"warning": message}`` (shown as a toast and in
the tab's message area) and the session keeps its previous, working state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import shutil
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np

import core
from core.data import DatasetUnavailable, dataset_info
from core.checks import check_choice, short_repr
from core.training import CheckpointError

from . import lab as lab_lib
from .imagetrain import TrainSettings, check_number, new_run_dir, presets_for
from .playground import (
    FAMILY_NAMES,
    PICTURE_MARGIN,
    PlaygroundSettings,
    PlaygroundVisual,
    flow_views,
    status_markdown,
)
from .plots import (
    CURVE_X,
    RunPoint,
    curves_figure,
    empty_figure,
    family_colors,
    memory_figure,
    path_figure,
    playground_figure,
    residual_figure,
    runs_accuracy_figure,
    sweep_figure,
)
from .runs import (
    RUN_COLUMNS,
    RunRecord,
    delete_run,
    export_runs,
    filter_runs,
    read_metrics,
    read_runs,
    rename_run,
    run_folder,
    run_rows,
)
from .sessions import (
    CapacityError,
    Lane,
    Session,
    SessionRegistry,
    SessionTrainer,
    Snapshot,
    backward_cell,
    live_run_dirs,
)

PATH_VIEWS = {"2-D": 2, "3-D": 3}
COMPARE_SCOPES = ("all saved runs", "this tab's runs")
COMPARE_PANELS = ("loss", "accuracy", "nfe", "memory", "time")
MAX_OVERLAID = 8  # curves of more runs than colours are unreadable
DELETE_CONFIRM_SECONDS = 15  # a second press of Delete within this time deletes
# One probe keeps its whole forward graph: image32 NODE, direct backprop, rk4 x 8 at batch 128 saves ~0.6 GB.
MAX_MEMORY_BATCH = 128
MAX_MEMORY_STEPS = 8
_NO_RUNS = "No saved runs yet: start one in the **Train** tab (or with `python -m core.train --out runs/NAME`)."

#: Exceptions that mean "the user asked for something that cannot be done", shown as a message.
USER_ERRORS = (ValueError, DatasetUnavailable, CheckpointError, CapacityError)

PLAYGROUND_RATE = 30.0  # steps per second: watchable, and leaves CPU for the page and other sessions
# Seconds without a visible page's tick before a Playground pauses itself: well above a tick's delay on a
# busy server (ticks of every tab queue behind one concurrency limit), so a watched Playground never flickers.
PLAYGROUND_IDLE_PAUSE = 8.0
PG_PANELS = ("loss", "accuracy", "nfe")
CURVES_SECONDS = 0.45  # Playground curves redraw about twice a second; the picture every tick
TRAIN_PANELS = ("loss", "accuracy", "nfe", "memory", "time")


MAX_MESSAGE_CHARS = 600  # a message is a line or two; echoed input is cut before it gets here (short_repr)


def _msg(text: str) -> str:
    return f"⚠️ {cut_message(text)}" if text else ""


def cut_message(text: str) -> str:
    """The last guard against a message that would fill the page (one that quotes a long value in full)."""
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


def _signature(snap: Snapshot) -> tuple:
    """Changes whenever the picture would: used to skip redraws of an idle run."""
    rows = tuple((len(m["step"]), len(m.get("change_step", ()))) for m in snap.metrics.values())
    return (snap.state, snap.step, rows, snap.version, tuple(snap.errors), snap.message, tuple(snap.finished))


class Explorer:
    """The app's state (sessions, runs directory, device) and its event logic.

    Args:
        runs_dir: where image runs are saved and listed.
        device: default device of image runs (auto, cpu, cuda); toy runs stay on the CPU.
        max_trainings: server-wide cap on trainings running at once.
        autoplay: start the Playground's preset on page load (the first screen tells the story).
        manage_all_runs: any tab may rename or delete any saved run (a private server); False (a server
            others can reach) limits a tab to the runs it started.
    """

    def __init__(
        self,
        runs_dir: str | Path,
        device: str = "auto",
        max_trainings: int = 4,
        autoplay: bool = True,
        manage_all_runs: bool = True,
    ):
        check_choice(device, "device", core.DEVICES)
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.registry = SessionRegistry(max_trainings=max_trainings)
        self.autoplay = autoplay
        self.manage_all_runs = manage_all_runs  # False on a shared server: a tab renames/deletes only its own runs
        self._drawn: dict[tuple[str, str], Any] = {}  # (session, view) -> signature (or time) last drawn
        self._drawn_lock = threading.Lock()
        self._exports: Path | None = None  # made on the first export; removed with the Explorer

    def warm_up(self) -> None:
        """Build and draw the first screen once, off the request path: the first load in a fresh process
        pays ~2 s of one-time torch and plotly set-up, which would delay the first animation."""
        key = "__warm_up__"
        try:
            self.playground_load(key, {}, autoplay=False)
            self.playground_control(key, "step")
        except Exception:  # warming up is an optimisation; the real load reports real problems
            pass
        finally:
            self.close_session(key)

    def session(self, key: str | None) -> Session:
        return self.registry.get(key)

    def close_session(self, key: str | None) -> None:
        self.registry.close(key)
        if self._exports is not None:
            shutil.rmtree(self._export_dir(key), ignore_errors=True)
        with self._drawn_lock:
            for k in [k for k in self._drawn if k[0] == key]:
                del self._drawn[k]

    def _changed(self, key: str, view: str, snap: Snapshot, force: bool) -> bool:
        sig = _signature(snap)
        with self._drawn_lock:
            if not force and self._drawn.get((key, view)) == sig:
                return False
            self._drawn[(key, view)] = sig
        return True

    # ------------------------------------------------------------------ Playground

    def playground_load(
        self, key: str, params: dict[str, str], autoplay: bool | None = None, page_url: str = ""
    ) -> dict[str, Any]:
        """Page load: settings from the link, a fresh preset, autoplay; returns every Playground output.
        ``page_url`` (the page's address) makes the share link a whole URL."""
        settings, problems = PlaygroundSettings.from_query(params or {})
        if len(problems) > 3:
            problems = [*problems[:3], f"and {len(problems) - 3} more problems in the link"]
        session = self.session(key)
        session.page_base = _page_base(page_url)
        trainer = self._new_playground(settings)
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
        out = self._playground_outputs(key, force=True)
        out.update(self._settings_outputs(settings, session.page_base))
        if problems:
            out["warning"] = "; ".join(problems)
            out["pg_message"] = _msg(out["warning"])
        return out

    @staticmethod
    def _settings_outputs(s: PlaygroundSettings, page_base: str = "") -> dict[str, Any]:
        return {
            "pg_dataset": s.dataset,
            "pg_models": list(s.models),
            "pg_ode": s.ode_method,
            "pg_n_steps": s.n_steps,
            "pg_tol": s.tol,
            "pg_solver": s.deq_solver,
            "pg_lr": s.lr,
            "pg_seed": s.seed,
            "pg_steps": s.steps,
            "pg_noise": s.data_noise,
            "pg_points": s.points,
            "pg_batch": s.batch_size,
            "pg_hidden": s.hidden,
            "pg_depth": s.depth,
            "pg_show_test": s.show_test,
            "pg_link": page_base + "?" + s.to_query(),
        }

    def _trainer(self, key: str) -> tuple[Session, SessionTrainer]:
        session = self.session(key)
        with session.lock:  # page load and a button may race to create it
            if session.playground is None:
                session.playground = self._new_playground(PlaygroundSettings())
                session.playground_settings = PlaygroundSettings()
            return session, session.playground

    def _new_playground(self, settings: PlaygroundSettings) -> SessionTrainer:
        """The Playground's models, on the Playgrounds' own budget, paused by themselves while their page
        is hidden (its timer stops polling: no tick for ``PLAYGROUND_IDLE_PAUSE`` seconds)."""
        return SessionTrainer(
            settings.lanes(),
            gate=self.registry.playground_gate,
            visual=PlaygroundVisual(),
            steps_per_second=PLAYGROUND_RATE,
            idle_pause=PLAYGROUND_IDLE_PAUSE,
        )

    def playground_probe(self, key: str, point: str) -> dict[str, Any]:
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
                    message = (
                        f"a point is two numbers “x, y” inside the picture (x from {lo[0]:.2f} to {hi[0]:.2f}, "
                        f"y from {lo[1]:.2f} to {hi[1]:.2f}), got {short_repr(text)}"
                    )
                    return {"warning": message, "pg_message": _msg(message)}
                probe = (x, y)
            trainer.visual.probe = probe
            trainer.refresh_visual()
        out = self._playground_outputs(key, force=True)
        out["pg_message"] = "" if probe else "point removed"
        return out

    def _playground_outputs(self, key: str, force: bool = False) -> dict[str, Any]:
        session = self.registry.peek(key)
        trainer = session.playground if session is not None else None
        if trainer is None:  # the timer can tick before the page's load event has built the models
            return {}
        snap = trainer.read()
        if not self._changed(key, "playground", snap, force):
            return {}
        show_test = bool(session.playground_settings and session.playground_settings.show_test)
        out = {"pg_status": status_markdown(snap), "pg_flow": playground_figure(flow_views(snap, show_test))}
        with self._drawn_lock:
            buttons_changed = force or self._drawn.get((key, "buttons")) != snap.state
            self._drawn[(key, "buttons")] = snap.state
        if buttons_changed:  # Play and Pause show the state: the highlighted one is what a click does next
            out["pg_play"], out["pg_pause"] = play_pause_buttons(snap.state)
        # The curves move less per redraw than the picture: redraw them at most every CURVES_SECONDS while
        # running (the browser's redraw time is the limit), and always once a run stops or is forced.
        now = time.monotonic()
        with self._drawn_lock:
            due = (
                force or snap.state != "running" or now - self._drawn.get((key, "curves"), -math.inf) >= CURVES_SECONDS
            )
            if due:
                self._drawn[(key, "curves")] = now
        if due:
            out["pg_curves"] = curves_figure(snap.metrics, PG_PANELS, height=250, colors=_lane_colors(trainer))
        return out

    def playground_tick(self, key: str, visibility: str = "visible") -> dict[str, Any]:
        """Timer: redraw when something changed since the last draw of this session. A tick from a hidden
        browser tab (browsers keep slow timers running there) neither redraws nor keeps the models playing."""
        if visibility == "hidden":
            return {}
        session = self.registry.peek(key)
        if session is not None and session.playground is not None:
            session.playground.seen()
        return self._playground_outputs(key)

    def playground_control(self, key: str, action: str) -> dict[str, Any]:
        """▶ play, ⏸ pause, ⏭ step, ⟲ reset."""
        session, trainer = self._trainer(key)
        try:
            with session.lock:
                if action == "play":
                    if trainer.done:
                        raise ValueError("this run has reached its steps: press ⟲ Reset, or raise steps")
                    trainer.play()
                elif action == "pause":
                    trainer.pause()
                elif action == "step":
                    trainer.step_once()
                elif action == "reset":
                    trainer.reset()
                else:
                    raise ValueError(f"unknown action {short_repr(action)}")
        except USER_ERRORS as err:
            out = self._playground_outputs(key, force=True)
            out.update(warning=str(err), pg_message=_msg(str(err)))
            return out
        out = self._playground_outputs(key, force=True)
        out["pg_message"] = ""
        return out

    def playground_apply(self, key: str, **form: Any) -> dict[str, Any]:
        """Settings changed: lr / tol / solver apply live; dataset, models, seed or steps rebuild the models
        (and keep playing if they were)."""
        session, trainer = self._trainer(key)
        try:
            new = _playground_from_form(form)
        except (ValueError, TypeError) as err:
            return {"warning": str(err), "pg_message": _msg(str(err))}
        with session.lock:
            old: PlaygroundSettings = session.playground_settings
            if new.noise == old.data_noise and (old.noise is None or new.dataset != old.dataset):
                # The box shows the dataset's default noise: sent back untouched it is no setting (no rebuild),
                # and with a new dataset it follows that dataset's own default.
                new = new.replace(noise=None)
            changes = old.live_changes(new)
            try:
                if changes is None:
                    was_running = trainer.running
                    trainer.reset(new.lanes())
                    if was_running:
                        trainer.play()
                elif changes:
                    trainer.apply(**changes)
            except USER_ERRORS as err:
                return {"warning": str(err), "pg_message": _msg(str(err))}
            session.playground_settings = new
        out = self._playground_outputs(key, force=True)
        out.update(pg_link=session.page_base + "?" + new.to_query(), pg_message="", pg_noise=new.data_noise)
        return out

    # ------------------------------------------------------------------ Train (images)

    def train_start(self, key: str, **form: Any) -> dict[str, Any]:
        """Validate the form, start a saved run (the session's previous run is stopped and kept)."""
        session = self.session(key)
        try:
            settings = TrainSettings.from_form(**form)
            config = settings.train_config()
        except (ValueError, TypeError) as err:
            return {"warning": str(err), "train_message": _msg(str(err))}
        with session.lock:
            previous = session.train
            if previous is not None and previous.running:
                previous.pause()  # frees its slot under the cap; stopped (and saved) below
            out_dir = new_run_dir(self.runs_dir, settings, key)
            try:
                trainer = SessionTrainer([Lane(settings.display_name, config, out_dir)], gate=self.registry.gate)
                trainer.play()
            except USER_ERRORS as err:
                with contextlib.suppress(OSError):
                    for f in out_dir.iterdir():
                        f.unlink()
                    out_dir.rmdir()
                if previous is not None and previous.state == "paused":
                    with contextlib.suppress(CapacityError):
                        previous.play()
                text = lab_lib.describe_unavailable(err)
                return {"warning": text, "train_message": _msg(text)}
            if previous is not None:
                threading.Thread(target=previous.stop, daemon=True).start()  # finishing takes a while
            session.train = trainer
            session.add_run(trainer)
            session.run_dirs.append(out_dir)
        out = self._train_outputs(key, force=True)
        out.update(train_message=f"Started **{settings.display_name}**; saving to `{out_dir}`.", train_timer=True)
        return out

    @staticmethod
    def train_presets(key: str, family: str, dataset: str, preset: str = "auto") -> dict[str, Any]:
        """The preset menu for this model and dataset: 'auto' and the presets that build that family for the
        dataset's inputs, keeping the current pick when it still fits (else 'auto')."""
        try:
            kind = dataset_info(dataset).input_kind
        except ValueError:
            return {}
        fitting = ["auto", *presets_for(family, kind)]
        return {"tr_preset_choices": (fitting, preset if preset in fitting else "auto")}

    def train_control(self, key: str, action: str) -> dict[str, Any]:
        """⏸ pause, ▶ resume, ⏹ stop the session's current image run."""
        session = self.session(key)
        trainer = session.train
        if trainer is None:
            text = "no image run in this session yet: press ▶ Start"
            return {"warning": text, "train_message": _msg(text)}
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
            return {"warning": str(err), "train_message": _msg(str(err))}
        out = self._train_outputs(key, force=True)
        out["train_message"] = ""
        if action == "resume" or action == "stop":
            out["train_timer"] = True  # poll until the run's summary is written
        return out

    def train_apply(self, key: str, lr: Any, tol: Any) -> dict[str, Any]:
        """Change the running image run's learning rate and solver tolerance without a restart."""
        session = self.session(key)
        trainer = session.train
        if trainer is None:
            text = "no image run to change: press ▶ Start first"
            return {"warning": text, "train_message": _msg(text)}
        try:
            if not isinstance(tol, (int, float)) or not math.isfinite(tol) or not 0 < tol < 1:
                raise ValueError(f"tolerance must be a number in (0, 1), got {short_repr(tol)}")
            model = trainer.trainers[0].config.model
            changes: dict[str, Any] = {"lr": lr}
            if model.family == "deq":
                options = {**model.deq.solver_options, "tol": tol}
                changes["deq"] = dataclasses.replace(model.deq, solver_options=options)
            else:
                changes["ode"] = dataclasses.replace(model.ode, rtol=tol, atol=tol)
            trainer.apply(**changes)
        except USER_ERRORS as err:
            return {"warning": str(err), "train_message": _msg(str(err))}
        return {"train_message": f"applied lr {lr:g}, tolerance {tol:g} from the next step"}

    def _train_outputs(self, key: str, force: bool = False) -> dict[str, Any]:
        trainer = self.session(key).train
        if trainer is None:
            if not force:
                return {}
            return {"train_status": "No image run yet.", "train_curves": empty_figure("press ▶ Start", 260)}
        snap = trainer.read()
        if not self._changed(key, "train", snap, force):
            return {}
        out = {
            "train_status": _train_status(snap, trainer),
            "train_curves": curves_figure(
                snap.metrics, TRAIN_PANELS, colors=_lane_colors(trainer), **self._curve_options(key, "train")
            ),
        }
        if _settled(snap):
            out["train_timer"] = False  # summary written, nothing more will change: stop polling
            out["runs_table"] = self.runs_table()
        return out

    def train_tick(self, key: str, visibility: str = "visible") -> dict[str, Any]:
        return {} if visibility == "hidden" else self._train_outputs(key)

    def tab_selected(self, key: str, tab: str) -> dict[str, Any]:
        """Only the visible tab polls: the Playground's timer runs on its tab (elsewhere its models pause by
        themselves), the Train tab's while a run there is live; the others draw on demand."""
        session = self.registry.peek(key)
        run = session.train if session is not None else None
        live = run is not None and not _settled(run.read())
        return {"pg_timer": tab == "playground", "train_timer": tab == "train" and live}

    def runs_table(self) -> list[list[Any]]:
        return run_rows(read_runs(self.runs_dir))

    def train_gallery(self, key: str) -> dict[str, Any]:
        """Test images of the current run with predictions, misclassified and high-NFE first."""
        trainer = self.session(key).train
        if trainer is None:
            text = "train a model first (▶ Start), then show its predictions"
            return {"warning": text, "train_message": _msg(text)}
        model = trainer.clone_model(0)
        items = lab_lib.prediction_gallery(model, trainer.trainers[0].data)
        gallery = []
        for it in items:
            mark = "✗" if not it["correct"] else "✓"
            gallery.append(
                (it["picture"], f"#{it['index']} {mark} pred {it['prediction']} (true {it['label']}), NFE {it['nfe']}")
            )
        self.session(key).lab["gallery"] = [it["index"] for it in items]
        return {
            "train_gallery": gallery,
            "train_message": "Misclassified first, then by NFE. Click an image to open it in the Solver lab.",
        }

    @staticmethod
    def _open_lab_tab() -> dict[str, Any]:
        """Switch to the Solver lab from code (which fires no tab-select event): stop the other tabs' timers."""
        return {"tabs": "lab", "pg_timer": False, "train_timer": False}

    def gallery_pick(self, key: str, position: int) -> dict[str, Any]:
        """A gallery tile was clicked: open that test image in the Solver lab with the current run."""
        session = self.session(key)
        indices = session.lab.get("gallery") or []
        if session.train is None or not 0 <= position < len(indices):
            return {}
        model_key = f"session:train:{next(reversed(session.train_runs))}"
        session.lab["open"] = True
        return {
            "lab_model_choices": (self.lab_choices(key), model_key),
            "lab_split": "test",
            "lab_index": indices[position],
            **self._open_lab_tab(),
        }

    # ------------------------------------------------------------------ Solver lab

    def lab_choices(self, key: str) -> list[tuple[str, str]]:
        """(label, key) of every model the lab can open: this session's runs, saved runs, fresh presets."""
        session = self.session(key)
        choices: list[tuple[str, str]] = []
        for i, run in reversed(list(session.train_runs.items())):
            choices.append((f"this session: {run.lanes[0].name} (step {run.step_count})", f"session:train:{i}"))
        if session.playground is not None:
            for j, lane in enumerate(session.playground.lanes):
                choices.append((f"playground: {lane.name} on {lane.config.dataset}", f"session:pg:{j}"))
        for folder in lab_lib.runs_with_checkpoints(self.runs_dir)[:30]:
            choices.append((f"saved run: {folder.name}", f"run:{folder.name}"))
        for name in lab_lib.FRESH_PRESETS:
            choices.append((f"untrained: {name}", f"fresh:{name}"))
        return choices

    def lab_models(self, key: str, model_key: str | None = None) -> dict[str, Any]:
        """Refresh the model menu; a pick that is no longer offered (an older run of this tab was dropped)
        becomes the first choice, so the box never shows an internal key."""
        choices = self.lab_choices(key)
        keys = [k for _, k in choices]
        return {"lab_model_choices": (choices, model_key if model_key in keys else keys[0])}

    def _lab_model(self, key: str, model_key: str, checkpoint: str = "") -> lab_lib.LabModel:
        session = self.session(key)
        if checkpoint and checkpoint.strip():
            path = lab_lib.resolve_checkpoint(checkpoint, self.runs_dir)
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
            path = lab_lib.resolve_checkpoint(rest, self.runs_dir)
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
        stamp = (str(path), path.stat().st_mtime)
        if cache.get("stamp") != stamp:
            device = "cpu" if self.device == "auto" else self.device
            model, data, _ = lab_lib.load_run(path, device)
            cache.update(stamp=stamp, model=model, data=data)
        return lab_lib.LabModel(model_key, path.parent.name, cache["model"], cache["data"])

    def lab_input(self, key: str, model_key: str, checkpoint: str, split: str, index: Any) -> dict[str, Any]:
        """Preview the chosen input (image, or the point's coordinates)."""
        try:
            lab = self._lab_model(key, model_key, checkpoint)
            x, label, picture = lab_lib.pick_input(lab, _as_int(index, "input index"), _split(split))
        except USER_ERRORS as err:
            return {"warning": str(err), "lab_message": _msg(lab_lib.describe_unavailable(err))}
        caption = f"true class: **{lab.data.class_names[label]}**"
        if picture is None:
            caption += f" · point ({float(x[0, 0]):.2f}, {float(x[0, 1]):.2f})"
        out = {"lab_picture": picture, "lab_caption": caption, "lab_message": ""}  # the input is fine now
        lab_state = self.session(key).lab
        if lab_state.get("sweep_of") not in (None, lab.key):
            # The sweep on screen is of another model: clear it rather than leave it looking like this one's.
            del lab_state["sweep_of"]
            out["lab_sweep"] = empty_figure(f"press “Sweep” to see accuracy vs NFE of {lab.label}", 300)
        return out

    def lab_run(
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
    ) -> dict[str, Any]:
        """Solve the chosen input with every solver (DEQ) or integrate its ODE (NODE, ANODE, HomoODE)."""
        try:
            lab = self._lab_model(key, model_key, checkpoint)
            x, label, picture = lab_lib.pick_input(lab, _as_int(index, "input index"), _split(split))
        except USER_ERRORS as err:
            text = lab_lib.describe_unavailable(err)
            return {"warning": text, "lab_message": _msg(text)}
        note = f"**{lab.label}** · true class **{lab.data.class_names[label]}**"
        return self._lab_solve(key, lab, x, picture, note, tol, max_iter, ode_method, ode_steps, view)

    def lab_draw(
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
    ) -> dict[str, Any]:
        """Your own input: a digit drawn on the page, prepared as MNIST's, through every solver (or the ODE).
        Runs again as the drawing changes, so the prediction follows the pen."""
        try:
            lab = self._lab_model(key, model_key, checkpoint)
            x = lab_lib.drawing_to_input(drawing, lab.data)
        except USER_ERRORS as err:
            text = lab_lib.describe_unavailable(err)
            return {"lab_message": _msg(text)}  # no toast: this runs on every stroke
        picture = lab_lib.to_picture(lab.data, x[0])
        note = f"**{lab.label}** · your drawing"
        return self._lab_solve(key, lab, x, picture, note, tol, max_iter, ode_method, ode_steps, view)

    def _lab_solve(
        self,
        key: str,
        lab: lab_lib.LabModel,
        x: Any,
        picture: Any,
        note: str,
        tol: Any,
        max_iter: Any,
        ode_method: str,
        ode_steps: Any,
        view: str,
    ) -> dict[str, Any]:
        """The lab's outputs for one input ``x`` (1, *input_shape): residuals, paths, the solver table."""
        session = self.session(key)
        try:
            dims = _dims(view)
            result = lab_lib.compare_solvers(
                lab,
                x,
                tol=tol,
                max_iter=_as_int(max_iter, "max iterations"),
                ode_method=ode_method,
                ode_steps=_as_int(ode_steps, "homotopy ODE steps"),
            )
        except USER_ERRORS as err:
            text = lab_lib.describe_unavailable(err)
            return {"warning": text, "lab_message": _msg(text)}
        session.lab["result"] = result
        if result.traces:
            residual = residual_figure(result.traces, result.tol)
        else:
            residual = empty_figure(
                f"a {FAMILY_NAMES[lab.family]} has no fixed-point map f to take residuals of: its answer is the end "
                "of its ODE path (right)",
                360,
            )
        rows = [[r[c] for c in LAB_COLUMNS] for r in result.rows]
        predictions = sorted({str(r["prediction"]) for r in result.rows})
        note += f" · predicted **{' / '.join(predictions)}**"
        return {
            "lab_residual": residual,
            "lab_path": path_figure(result.paths, 1.0, result.inner, result.basis.explained, dims=dims),
            "lab_table": rows,
            "lab_position": 1.0,
            "lab_picture": picture,
            "lab_message": note,
        }

    def lab_open(self, key: str, **inputs: Any) -> dict[str, Any]:
        """Run the lab after a gallery tile or a runs-table row asked to open a model there (and only then:
        a click that opened nothing leaves the lab as it was)."""
        if not self.session(key).lab.pop("open", False):
            return {}
        return self.lab_run(key, **inputs)

    def lab_scrub(self, key: str, position: Any, view: str = "2-D") -> dict[str, Any]:
        """Move the cursor along every path (the inner time axis: k, λ or t), or switch between the 2-D
        and 3-D view, in the same frozen basis."""
        result = self.session(key).lab.get("result")
        if result is None:
            return {}
        try:
            dims = _dims(view)
        except ValueError as err:
            return {"warning": str(err), "lab_message": _msg(str(err))}
        pos = float(position) if isinstance(position, (int, float)) and math.isfinite(position) else 1.0
        return {"lab_path": path_figure(result.paths, pos, result.inner, result.basis.explained, dims=dims)}

    def lab_sweep(self, key: str, model_key: str, checkpoint: str, kind: str, samples: Any) -> dict[str, Any]:
        """Accuracy vs mean NFE over solver settings on validation data, without retraining."""
        try:
            lab = self._lab_model(key, model_key, checkpoint)
            curves = lab_lib.sweep(lab, kind, _as_int(samples, "sweep samples"))
        except USER_ERRORS as err:
            text = lab_lib.describe_unavailable(err)
            return {"warning": text, "lab_message": _msg(text)}
        n = _as_int(samples, "sweep samples")
        self.session(key).lab["sweep_of"] = lab.key
        return {
            "lab_sweep": sweep_figure(curves, title=f"sweep of {lab.label} ({n} validation inputs)"),
            "lab_message": f"sweep of **{lab.label}** on {n} validation inputs",
        }

    # ------------------------------------------------------------------ Compare

    def _compare_records(self, key: str, scope: str, text: str = "") -> list[RunRecord]:
        check_choice(scope, "show", COMPARE_SCOPES)
        only = set(self.session(key).run_dirs) if scope == "this tab's runs" else None
        return filter_runs(read_runs(self.runs_dir, only=only), text)

    def _export_dir(self, key: str | None) -> Path:
        """This tab's download folder inside the Explorer's temporary folder (made on first use)."""
        if self._exports is None:
            self._exports = Path(tempfile.mkdtemp(prefix="explorer-exports-"))
            weakref.finalize(self, shutil.rmtree, str(self._exports), True)
        return self._exports / (re.sub(r"[^A-Za-z0-9]", "", key or "") or "local")

    def compare_refresh(
        self, key: str, scope: str, selected: list[str] | None = None, text: str = ""
    ) -> dict[str, Any]:
        """Re-read the runs directory: the table (only rows containing every word of ``text``), the run
        picker (keeping what is still there, else the three newest), the overlaid curves of the picked runs
        and every run's accuracy vs NFE."""
        try:
            records = self._compare_records(key, scope, text)
        except ValueError as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        names = [r.name for r in records]
        keep = [n for n in (selected or []) if n in names] or names[:3]
        points = [p for p in (_run_point(r) for r in records) if p is not None]
        return {
            "compare_table": run_rows(records),
            "compare_runs": (names, keep),
            "compare_curves": self._compare_curves(records, keep, self._curve_options(key, "compare")),
            "compare_accuracy": runs_accuracy_figure(points),
            "compare_message": f"{len(records)} run(s) in `{self.runs_dir}`"
            + (f" matching {short_repr(str(text).strip(), 40)}" if str(text or "").strip() else "")
            if records
            else (_NO_RUNS if not str(text or "").strip() else "no run matches the filter"),
        }

    # ------------------------------------------------------------------ rename / delete (runs dir only)

    def _check_may_manage(self, key: str, folders: list[Path]) -> None:
        """On a shared server (``manage_all_runs`` False) only the runs this tab started may change."""
        if self.manage_all_runs:
            return
        own = {p.resolve() for p in self.session(key).run_dirs}
        others = [f.name for f in folders if f.resolve() not in own]
        if others:
            raise ValueError(
                f"this server is shared: a tab may rename or delete only the runs it started, not {', '.join(others)}"
            )

    def _one_picked(self, selected: list[str] | None, action: str) -> str:
        picked = list(selected or [])
        if len(picked) != 1:
            raise ValueError(f"pick exactly one run to {action} (in “overlay the curves of these runs”)")
        return picked[0]

    def compare_rename(
        self, key: str, scope: str, selected: list[str] | None, new_name: str, text: str = ""
    ) -> dict[str, Any]:
        """Rename the one picked run (a folder directly in the runs directory; never one still training)."""
        try:
            name = self._one_picked(selected, "rename")
            folder = run_folder(self.runs_dir, name)
            self._check_may_manage(key, [folder])
            if folder.resolve() in live_run_dirs():
                raise ValueError(f"run {short_repr(name)} is still training: stop it first")
            target = rename_run(self.runs_dir, name, new_name)
        except (ValueError, OSError) as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        for session_key in self.registry.keys():  # tabs that started it still list it as theirs
            session = self.registry.peek(session_key)
            if session is not None:
                session.run_dirs = [target if p.resolve() == folder.resolve() else p for p in session.run_dirs]
        out = self.compare_refresh(key, scope, [target.name], text)
        out["compare_message"] = f"renamed {name} to **{target.name}**"
        return out

    def compare_delete(self, key: str, scope: str, selected: list[str] | None, text: str = "") -> dict[str, Any]:
        """Delete the picked runs: the first press names them, a second press within
        ``DELETE_CONFIRM_SECONDS`` (same runs picked) deletes them. Never a run still training."""
        session = self.session(key)
        picked = sorted(selected or [])
        try:
            if not picked:
                raise ValueError("pick the runs to delete (in “overlay the curves of these runs”)")
            folders = [run_folder(self.runs_dir, name) for name in picked]
            self._check_may_manage(key, folders)
            live = live_run_dirs()
            busy = [f.name for f in folders if f.resolve() in live]
            if busy:
                raise ValueError(f"still training: {', '.join(busy)}; stop it first")
        except ValueError as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        pending = session.lab.get("delete")
        if pending is None or pending[0] != picked or time.monotonic() - pending[1] > DELETE_CONFIRM_SECONDS:
            session.lab["delete"] = (picked, time.monotonic())
            return {
                "compare_message": f"⚠️ press **Delete** again within {DELETE_CONFIRM_SECONDS} s to delete "
                f"{len(picked)} run(s) and their files: {', '.join(picked)}"
            }
        session.lab.pop("delete", None)
        failed = []
        for name in picked:
            try:
                delete_run(self.runs_dir, name)
            except (ValueError, OSError) as err:
                failed.append(f"{name} ({err})")
        out = self.compare_refresh(key, scope, [], text)
        out["compare_message"] = f"deleted {len(picked) - len(failed)} run(s)" + (
            f"; could not delete {', '.join(failed)}" if failed else ""
        )
        return out

    def compare_select(self, key: str, scope: str, selected: list[str] | None) -> dict[str, Any]:
        """The run picker changed: redraw the overlaid curves only."""
        try:
            records = self._compare_records(key, scope)
        except ValueError as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        picked = list(selected or [])
        out: dict[str, Any] = {
            "compare_curves": self._compare_curves(records, picked, self._curve_options(key, "compare"))
        }
        if len(picked) > MAX_OVERLAID:
            out["compare_message"] = f"showing the curves of the first {MAX_OVERLAID} of {len(picked)} picked runs"
        return out

    def compare_pick(self, key: str, position: int = -1, row: list[Any] | None = None) -> dict[str, Any]:
        """A row of the runs table was clicked: open that run's model in the Solver lab (first test image)."""
        name = row[0] if row else None
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            return {}  # not a run folder's name (the table only shows names; nothing else is opened)
        if not (self.runs_dir / name / "checkpoint.pt").is_file():
            text = f"run {short_repr(name)} has no checkpoint yet (it is saved when the run ends or is stopped)"
            return {"warning": text, "compare_message": _msg(text)}
        self.session(key).lab["open"] = True
        return {
            "lab_model_choices": (self.lab_choices(key), f"run:{name}"),
            "lab_split": "test",
            "lab_index": 0,
            **self._open_lab_tab(),
            "compare_message": "",
        }

    @staticmethod
    def _compare_curves(records: list[RunRecord], selected: list[str], options: dict[str, Any]) -> Any:
        chosen = [r for r in records if r.name in set(selected)][:MAX_OVERLAID]
        if not chosen:
            return empty_figure("pick runs above to overlay their training curves", 300)
        colors = family_colors({r.name: r.family for r in chosen})
        return curves_figure({r.name: read_metrics(r.folder) for r in chosen}, COMPARE_PANELS, colors=colors, **options)

    # ------------------------------------------------------------------ curve options (Train, Compare)

    def _curve_options(self, key: str, tab: str) -> dict[str, Any]:
        return dict(self.session(key).curves.get(tab, {}))

    def curves_set(
        self, key: str, tab: str, smoothing: Any, x_axis: str, loss_scale: str, scope: str = "", selected=None
    ) -> dict[str, Any]:
        """Smoothing, x axis (step or wall time) and the loss axis (log or linear) of a tab's curves; redraws
        them. The options stay with the tab (the Train tab's live redraws use them too)."""
        message = "train_message" if tab == "train" else "compare_message"
        try:
            check_choice(tab, "tab", ("train", "compare"))
            check_number(smoothing, "smoothing", 0, 0.99)
            check_choice(x_axis, "x axis", tuple(CURVE_X))
            check_choice(loss_scale, "loss axis", ("log", "linear"))
        except ValueError as err:
            return {"warning": str(err), message: _msg(str(err))}
        self.session(key).curves[tab] = dict(smoothing=float(smoothing), x_axis=x_axis, log_loss=loss_scale == "log")
        if tab == "train":
            return {**self._train_outputs(key, force=True), "train_message": ""}
        return {**self.compare_select(key, scope or COMPARE_SCOPES[0], selected), "compare_message": ""}

    def compare_export(self, key: str, scope: str, fmt: str, text: str = "") -> dict[str, Any]:
        """Write the runs table (as filtered) as CSV or JSON for download."""
        try:
            path = export_runs(self._compare_records(key, scope, text), fmt, self._export_dir(key))
        except (ValueError, OSError) as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        return {"compare_file": str(path), "compare_message": f"exported {path.name}: download it below the buttons"}

    def compare_memory(
        self,
        key: str,
        families: list[str] | None,
        gradients: list[str] | None,
        batch_sizes: str,
        kind: str,
        n_steps: Any,
    ) -> dict[str, Any]:
        """One training step per (family, gradient method, batch size) on random inputs of ``kind``,
        measuring the bytes the forward graph keeps for backward (deterministic, unlike RSS, and the part
        that grows with the batch). Runs on the CPU so it never disturbs a GPU run's peak counter, and takes
        a slot of the server's training cap while it runs (it is a training step, many times over)."""
        from core.bench.models import MEMORY_VARIANTS, memory_probe

        try:
            plan = _memory_plan(MEMORY_VARIANTS, families, gradients, batch_sizes, kind, n_steps)
        except ValueError as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        token = object()
        try:
            self.registry.gate.acquire(token)
            records = [memory_probe(f, g, b, n, kind, "cpu") for f, g, b, n in plan]
        except CapacityError as err:
            return {"warning": str(err), "compare_message": _msg(str(err))}
        except RuntimeError as err:  # out of memory, most likely
            text = f"the measurement failed ({err}); try smaller batch sizes or fewer steps"
            return {"warning": text, "compare_message": _msg(text)}
        finally:
            self.registry.gate.release(token)
        ode = any(f != "deq" for f, *_ in plan)
        return {
            "compare_memory": memory_figure(records),
            "compare_message": f"measured {len(records)} training steps on the CPU ({kind} inputs"
            + (f"; ODE models: rk4 × {plan[0][3]} steps)" if ode else ")"),
        }


LAB_COLUMNS = ["solver", "status", "NFE", "Jacobian products", "residual", "seconds", "prediction"]


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a whole number, got {short_repr(value)}")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be a whole number, got {short_repr(value)}")
    return int(value)


def _dims(view: str) -> int:
    check_choice(view, "path view", tuple(PATH_VIEWS))
    return PATH_VIEWS[view]


def _run_point(record: RunRecord) -> RunPoint | None:
    """A run on the accuracy-vs-NFE chart: test accuracy when it has ended, else its best validation
    accuracy so far; mean NFE from its summary, else from its steps so far. None when it has neither."""
    s = record.summary
    acc, on = s.get("test_accuracy"), "test"
    fwd, bwd = s.get("mean_nfe_forward"), s.get("mean_nfe_backward")
    if acc is None or fwd is None:
        m = read_metrics(record.folder)
        if acc is None and len(m["val_acc"]) and np.isfinite(m["val_acc"]).any():
            acc, on = float(np.nanmax(m["val_acc"])), "val"
        if fwd is None and len(m["nfe_forward"]):
            fwd, bwd = float(np.nanmean(m["nfe_forward"])), float(np.nanmean(m["nfe_backward"]))
    if acc is None or fwd is None:
        return None
    return RunPoint(record.name, record.family or "?", float(fwd), float(bwd or 0.0), float(acc), on)


def _memory_plan(
    variants: tuple[tuple[str, str], ...],
    families: list[str] | None,
    gradients: list[str] | None,
    batch_sizes: str,
    kind: str,
    n_steps: Any,
) -> list[tuple[str, str, int, int]]:
    """(family, gradient, batch, rk4 steps) of each measurement; a clear error for any bad field."""
    from core.models import INPUT_KINDS

    families, gradients = list(families or []), list(gradients or [])
    if not families:
        raise ValueError("pick at least one model family to measure")
    if not gradients:
        raise ValueError("pick at least one gradient method to measure")
    for family in families:
        check_choice(family, "family", tuple(dict.fromkeys(f for f, _ in variants)))
    for gradient in gradients:
        check_choice(gradient, "gradient method", tuple(dict.fromkeys(g for _, g in variants)))
    check_choice(kind, "input kind", INPUT_KINDS)
    check_number(n_steps, "rk4 steps", 1, MAX_MEMORY_STEPS, integer=True)
    steps = int(n_steps)
    try:
        batches = sorted({int(b) for b in str(batch_sizes).replace(",", " ").split()})
    except ValueError:
        raise ValueError(
            f"batch sizes must be whole numbers separated by commas, e.g. 8, 32, 128; got {short_repr(batch_sizes)}"
        ) from None
    if not batches or not all(1 <= b <= MAX_MEMORY_BATCH for b in batches) or len(batches) > 8:
        raise ValueError(
            f"give 1 to 8 batch sizes from 1 to {MAX_MEMORY_BATCH}, e.g. 8, 32, 128; got {short_repr(batch_sizes)}"
        )
    plan = [(f, g, b, steps) for f, g in variants if f in families and g in gradients for b in batches]
    if not plan:
        raise ValueError(
            "no family uses the chosen gradient methods: NODE, ANODE and HomoODE take direct or adjoint, DEQ "
            "implicit or phantom"
        )
    return plan


def _split(split: str) -> str:
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {short_repr(split)}")
    return split


def _playground_from_form(form: dict[str, Any]) -> PlaygroundSettings:
    """The Playground's widgets -> settings; whole floats become ints, a blank number is an error."""
    values = dict(form)
    labels = {"n_steps": "ODE steps", "points": "training points", "batch_size": "batch size"}
    for name in ("n_steps", "seed", "steps", "points", "batch_size", "depth"):
        if name not in values:
            continue
        label = labels.get(name, name)
        if values[name] is None:
            raise ValueError(f"{label} is empty: enter a number")
        values[name] = _as_int(values[name], label)
    for name, label in (("lr", "learning rate"), ("tol", "tolerance"), ("noise", "noise")):
        if name in values and values[name] is None:
            raise ValueError(f"{label} is empty: enter a number")
    values["models"] = tuple(values.get("models") or ())
    return PlaygroundSettings(**values)


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


def _lane_colors(trainer: SessionTrainer) -> dict[str, str]:
    """Each lane in its model family's colour (the same colour in every plot of the app)."""
    return family_colors({lane.name: lane.config.model.family for lane in trainer.lanes})


def _settled(snap: Snapshot) -> bool:
    """Nothing more will change: every lane's summary is written, or the worker failed."""
    return bool(snap.finished and len(snap.finished) == len(snap.metrics)) or snap.state == "failed"


def _train_status(snap: Snapshot, trainer: SessionTrainer) -> str:
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


__all__ = ["LAB_COLUMNS", "RUN_COLUMNS", "Explorer"]
