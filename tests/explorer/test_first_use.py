"""What a new user meets: every case here failed before its fix.

Presets that disagree with the model, Playgrounds holding image-run slots, pages that poll while hidden,
long input echoed back, raw torch errors, silent rounding and silent defaults, stale messages and plots.
"""

from __future__ import annotations

import json
import os
import re
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
import torch

from core.checks import short_repr
from core.data import load_dataset
from core.training import CheckpointError, RunDir, Trainer, load_checkpoint
from explorer import imagetrain, plots
from explorer import lab as lab_lib
from explorer.app import Explorer
from explorer.imagetrain import TrainSettings, presets_for
from explorer.playground import PlaygroundSettings, status_markdown
from explorer.runs import read_metrics
from explorer.sessions import (
    Lane,
    SessionTrainer,
    TrainingGate,
    backward_cell,
    gradient_method,
)
from explorer.tabs import common
from explorer.tabs import train as train_tab
from explorer.tabs.common import KEEP, Nav
from explorer.tabs.playground import PlaygroundOut
from explorer.tabs.train import TrainOut, TrainTab
from explorer.worker import live_run_dirs

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_FORM = dict(
    dataset="digits",
    family="deq",
    preset="auto",
    steps=2,
    batch_size=8,
    lr=2e-3,
    ode_method="rk4",
    n_steps=2,
    tol=1e-3,
    deq_solver="anderson",
    device="cpu",
    train_limit=64,
    epochs=None,
)


def toy_config(family: str = "homoode", **kw):
    return PlaygroundSettings(models=(family,), **kw).train_config(family)


def close(ex: Explorer, *tabs: str) -> None:
    """Stop every trainer of these tabs and wait for its worker: a worker thread still inside torch when the
    interpreter exits aborts the process (exit 134), whatever pytest reported."""
    for tab in tabs:
        session = ex.registry.peek(tab)
        if session is not None:
            for trainer in session.trainers():
                trainer.stop(wait=True)
        ex.close_session(tab)


def wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


# ------------------------------------------------------------------ the preset and the model agree


def test_preset_menu_offers_only_presets_of_the_model_and_the_inputs():
    assert presets_for("deq", "image28") == ["image28-deq", "image28-deq-groupnorm"]
    assert presets_for("homoode", "image32") == ["image32-homoode", "paper-cifar10"]
    out = TrainTab.presets("", "deq", "digits", "image28-homoode")
    assert out.preset == (["auto", "image28-deq", "image28-deq-groupnorm"], "auto")  # the HomoODE pick is dropped
    assert TrainTab.presets("", "homoode", "cifar10", "paper-cifar10").preset[1] == "paper-cifar10"


def test_a_deq_run_never_trains_a_homoode_preset(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.train.start("t", **{**TRAIN_FORM, "preset": "image28-homoode"})
    assert "does not build a DEQ" in out.warning and ex.session("t").train is None
    assert list(tmp_path.iterdir()) == []  # nothing saved under a wrong name
    settings = TrainSettings(family="deq", preset="image28-deq")
    assert settings.train_config().model.family == "deq" and "image28-deq" in settings.display_name


# ------------------------------------------------------------------ Playgrounds and the training cap


@pytest.mark.slow
def test_open_playgrounds_do_not_block_image_runs(tmp_path):
    ex = Explorer(tmp_path, autoplay=True, max_trainings=1)
    try:
        for tab in ("a", "b", "c"):
            ex.playground.load(tab, {})
        assert ex.registry.playground_gate.running == 3 and ex.registry.gate.running == 0
        out = ex.train.start("d", **TRAIN_FORM)
        assert not out.warning and ex.session("d").train is not None
        # A second image run is refused, and told what it can do (not "pause runs in other tabs").
        out = ex.train.start("e", **TRAIN_FORM)
        assert "Playground previews do not count" in out.warning and "Train tab" in out.warning
    finally:
        close(ex, *"abcde")


@pytest.mark.slow
def test_a_new_run_says_that_it_stopped_and_saved_the_run_in_progress(tmp_path):
    """Start new run while a run trains: the old run is stopped and saved, and the message says so (it said
    only "Started ...", so a run seemed to vanish)."""
    ex = Explorer(tmp_path, autoplay=False)
    try:
        first = ex.train.start("s", **{**TRAIN_FORM, "steps": 1000})
        assert not first.warning and "The run before it" not in first.message
        old_dir = ex.session("s").run_dirs[0]
        second = ex.train.start("s", **TRAIN_FORM)
        assert re.search(r"The run before it, \*\*.+\*\*, was stopped at step [\d,]+ and saved", second.message)
        deadline = time.monotonic() + 120
        while RunDir(old_dir).state() != "stopped" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert RunDir(old_dir).state() == "stopped"  # saved with its summary, not lost
    finally:
        close(ex, "s")


def test_a_playground_nobody_looks_at_pauses_itself_and_frees_its_slot():
    gate = TrainingGate(1)
    st = SessionTrainer([Lane("A", toy_config(steps=100_000))], gate=gate, steps_per_second=50, idle_pause=0.3)
    try:
        st.play()
        assert gate.running == 1
        assert wait_for(lambda: st.state == "paused" and gate.running == 0, 5)
        assert "hidden" in st.read().message
        frozen = st.step_count
        time.sleep(0.3)
        assert st.step_count == frozen  # really paused
        st.seen()  # the page looks again: it plays on
        assert st.state == "running" and gate.running == 1
        assert wait_for(lambda: st.step_count > frozen, 5)
        # A user's pause is not undone by looking.
        st.pause()
        st.seen()
        assert st.state == "paused" and gate.running == 0
    finally:
        st.stop()


def test_a_hidden_page_tick_neither_redraws_nor_keeps_playing(tmp_path):
    ex = Explorer(tmp_path, autoplay=True)
    try:
        ex.playground.load("h", {})
        trainer = ex.session("h").playground
        trainer._last_seen -= 100  # long ago
        assert ex.playground.tick("h", visibility="hidden") == PlaygroundOut()
        assert trainer._last_seen < time.monotonic() - 50  # a hidden tick is not a look
        ex.playground.tick("h", visibility="visible")
        assert trainer._last_seen > time.monotonic() - 5
    finally:
        close(ex, "h")


# ------------------------------------------------------------------ only the visible tab polls


@pytest.mark.slow
def test_only_the_selected_tab_polls(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        assert ex.tab_selected("s", "playground") == Nav(pg_timer=True, train_timer=False)
        assert ex.tab_selected("s", "train") == Nav(pg_timer=False, train_timer=False)  # no run: nothing to poll
        ex.train.start("s", **{**TRAIN_FORM, "steps": 50})
        assert ex.tab_selected("s", "train") == Nav(pg_timer=False, train_timer=True)
        for tab in ("lab", "compare", "about"):
            assert ex.tab_selected("s", tab) == Nav(pg_timer=False, train_timer=False)
        assert ex.train.tick("s", visibility="hidden") == TrainOut()
    finally:
        close(ex, "s")


# ------------------------------------------------------------------ errors from files and paths


def test_a_very_long_checkpoint_name_is_a_message_not_a_crash(tmp_path):
    with pytest.raises(ValueError, match="5,000 characters long"):
        lab_lib.resolve_checkpoint("x" * 5000, tmp_path)
    with pytest.raises(ValueError, match="File name too long"):  # under our cap, over the file system's
        lab_lib.resolve_checkpoint("y" * 300, tmp_path)
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.lab.run("l", "fresh:image28-deq", "z" * 5000, "val", 0, 1e-4, 30, "rk4", 4)
    assert "characters long" in out.warning and len(out.message) < 300


def test_a_file_that_is_not_a_checkpoint_never_shows_torch_advice(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"lr": 1}))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run / "config.json")
    assert "weights_only" not in str(err.value) and "config.json is not a readable checkpoint" in str(err.value)
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.lab.run("l", "", "run/config.json", "val", 0, 1e-4, 30, "rk4", 4)
    assert "weights_only" not in out.warning and "not a readable checkpoint" in out.warning


# ------------------------------------------------------------------ echoed input is cut


def test_short_repr_cuts_long_values_and_keeps_short_ones():
    assert short_repr("abc") == "'abc'"
    long = short_repr("x" * 5000)
    assert len(long) < 80 and "5,002 characters" in long
    assert short_repr(12.5) == "12.5"


def test_long_values_are_not_echoed_in_full():
    _, problems = PlaygroundSettings.from_query({"dataset": "d" * 5000, "q" * 5000: "1"})
    assert len(problems) == 2 and all(len(p) < 300 for p in problems)
    with pytest.raises(ValueError) as err:
        TrainSettings(dataset="d" * 5000)
    assert len(str(err.value)) < 300
    assert len(common.alert("m" * 5000)) <= common.MAX_MESSAGE_CHARS + 3


# ------------------------------------------------------------------ one rule for numbers and blanks


def test_fractions_in_whole_number_fields_are_errors_not_rounded(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    form = dict(
        dataset="circles",
        models=["node"],
        ode_method="rk4",
        n_steps=4,
        tol=1e-3,
        deq_solver="anderson",
        lr=0.01,
        seed=0,
        steps=200,
    )
    try:
        ex.playground.load("p", {})
        for name, value in (("steps", 2.5), ("seed", 3.7)):
            out = ex.playground.apply("p", **{**form, name: value})
            assert "whole number" in out.warning, name
        out = ex.train.start("p", **{**TRAIN_FORM, "steps": 2.5})
        assert "whole number" in out.warning
    finally:
        close(ex, "p")


@pytest.mark.parametrize("field, label", [("lr", "learning rate"), ("batch_size", "batch size"), ("steps", "steps")])
def test_blank_train_fields_are_empty_not_defaults(tmp_path, field, label):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.train.start("b", **{**TRAIN_FORM, field: None})
    assert out.warning == f"{label} is empty: enter a number"
    # The optional fields may stay blank: they mean "not used".
    assert TrainSettings.from_form(**{**TRAIN_FORM, "train_limit": None, "epochs": None}).train_limit is None


@pytest.mark.slow
def test_a_run_stopped_before_validation_does_not_say_step_none(tmp_path):
    # Stopping validates the last step first (core's Trainer.end, as the CLI does), so the model it reports
    # is a validated one; before, the page said "model of step None".
    settings = TrainSettings(steps=50, batch_size=8, train_limit=32, eval_every=40, device="cpu", family="deq")
    st = SessionTrainer([Lane(settings.display_name, settings.train_config(), tmp_path)])
    st.step_once()
    st.stop()
    text = train_tab.run_status(st.read(), st)
    assert "None" not in text and "model of step 1" in text
    kinds = [row["kind"] for row in RunDir(tmp_path).events()]
    assert kinds == ["step", "eval", "checkpoint", "finished"]


def test_a_fixed_input_clears_the_old_error_and_a_new_model_clears_the_old_sweep(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        bad = ex.lab.input("l", "fresh:image28-deq", "", "val", 10**9)
        assert bad.message.startswith("⚠️")
        good = ex.lab.input("l", "fresh:image28-deq", "", "val", 3)
        assert good.message == "" and good.sweep is KEEP
        ex.lab.sweep("l", "fresh:image28-deq", "", "steps", 4)
        assert ex.lab.input("l", "fresh:image28-deq", "", "val", 4).sweep is KEEP  # same model: kept
        other = ex.lab.input("l", "fresh:image28-homoode", "", "val", 4)
        assert "image28-homoode" in other.sweep.layout.annotations[0].text
    finally:
        close(ex, "l")


# ------------------------------------------------------------------ the lab's model box


def test_the_model_box_never_keeps_a_dropped_internal_key(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.lab.models("m", "session:train:1")
    choices, value = out.model
    assert value == choices[0][1] and value != "session:train:1"
    assert ex.lab.models("m", "fresh:image28-homoode").model[1] == "fresh:image28-homoode"


# ------------------------------------------------------------------ options that cannot work


def test_cuda_is_offered_only_with_a_gpu():
    assert ("cuda" in imagetrain.DEVICES) == torch.cuda.is_available()
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="this server has no CUDA GPU"):
            TrainSettings(device="cuda")


def test_direct_backprop_reads_as_backprop_not_zero():
    node = toy_config("node")
    assert gradient_method(node.model) == "direct"
    assert gradient_method(toy_config("deq").model) == "implicit"
    assert backward_cell(0, "direct") == "backprop (no solve)" and backward_cell(7.0, "implicit") == "7"
    st = SessionTrainer([Lane("NODE", node)])
    st.step_once()
    text = status_markdown(st.read())
    assert "backprop (no solve)" in text and "| 0 |" not in text
    st.stop()


def test_direct_backprop_draws_no_backward_line(tmp_path):
    """The table once said "backprop (no solve)" while the chart drew a dotted backward line at
    0. A model without a backward solve has no backward curve, live (Playground, Train) or saved (Compare)."""
    from explorer.tabs.playground import PG_PANELS

    st = SessionTrainer([Lane("NODE", toy_config("node")), Lane("DEQ", toy_config("deq"))])
    try:
        st.step_once()
        st.step_once()
        snap = st.read()
    finally:
        st.stop()
    names = {t.name for t in plots.curves_figure(snap.metrics, PG_PANELS).data}
    assert {"NODE fwd", "DEQ fwd", "DEQ bwd"} <= names and "NODE bwd" not in names
    assert "backprop (no solve)" in status_markdown(snap)  # the table still says why
    assert snap.last["DEQ"]["nfe_backward"] > 0

    runs = tmp_path / "runs"
    for family in ("node", "deq"):
        for _ in Trainer(toy_config(family).replace(steps=2, eval_every=2), out_dir=runs / family).events():
            pass
    assert "nfe_backward" not in read_metrics(runs / "node") and len(read_metrics(runs / "deq")["nfe_backward"]) == 2
    ex = Explorer(runs, autoplay=False)
    curves = ex.compare.refresh("s", "all saved runs", None).curves
    names = {t.name for t in curves.data}
    assert {"node fwd", "deq fwd", "deq bwd"} <= names and "node bwd" not in names


# ------------------------------------------------------------------ live changes are recorded


@pytest.mark.slow
def test_a_live_lr_change_is_an_event_in_the_run_folder_and_a_mark_on_the_curve(tmp_path):
    settings = TrainSettings(steps=50, batch_size=8, train_limit=32, eval_every=40, device="cpu", family="deq")
    st = SessionTrainer([Lane(settings.display_name, settings.train_config(), tmp_path)])
    try:
        st.step_once()
        st.apply(lr=5e-4)
        st.step_once()
        st.apply(lr=1e-4)  # applied by the worker between steps
        assert wait_for(lambda: len(st.read().metrics[settings.display_name]["change_step"]) == 2)
        snap = st.read()
        metrics = snap.metrics[settings.display_name]
        assert list(metrics["change_step"]) == [1, 2] and metrics["change_text"][0] == "lr 0.002 → 0.0005"
        fig = plots.curves_figure(snap.metrics, ("loss",))
        assert [s.x0 for s in fig.layout.shapes] == [1, 2]  # where the curve changed course
    finally:
        st.stop()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    changes = [e for e in events if e["kind"] == "change"]
    assert [c["changes"]["lr"] for c in changes] == [{"old": 2e-3, "new": 5e-4}, {"old": 5e-4, "new": 1e-4}]
    assert [c["step"] for c in changes] == [1, 2]
    assert list(read_metrics(tmp_path)["change_step"]) == [1, 2]  # the Compare tab reads them back


# ------------------------------------------------------------------ per-run memory


@pytest.mark.slow
def test_two_runs_in_one_process_report_their_own_memory(tmp_path):
    small = TrainSettings(steps=5, batch_size=4, train_limit=32, device="cpu", family="homoode")
    large = TrainSettings(steps=5, batch_size=32, train_limit=64, device="cpu", family="homoode")
    lanes = [Lane("small", small.train_config()), Lane("large", large.train_config())]
    trainers = [SessionTrainer([lane]) for lane in lanes]
    try:
        for st in trainers:
            st.step_once()
        mb = [st.read().metrics[lane.name]["memory_mb"][-1] for st, lane in zip(trainers, lanes)]
    finally:
        for st in trainers:
            st.stop()
    # The process's peak is one number for both; each run's own figure grows with its batch (4 -> 32).
    assert 4 < mb[1] / mb[0] < 12, mb


# ------------------------------------------------------------------ curves: smoothing, wall time, log


def test_smoothing_is_tensorboards_debiased_ema():
    y = np.array([1.0, 3.0, np.nan, 5.0])
    out = plots.smooth(y, 0.5)
    # EMA_t = 0.5 EMA_(t-1) + 0.5 y_t, divided by 1 - 0.5^t; a NaN keeps the average.
    e1 = 0.5
    e2 = 0.5 * e1 + 1.5
    e4 = 0.5 * e2 + 2.5
    np.testing.assert_allclose(out, [e1 / 0.5, e2 / 0.75, e2 / 0.75, e4 / 0.875])
    np.testing.assert_array_equal(plots.smooth(y, 0.0), y)


def test_curve_options_smoothing_wall_time_and_linear_loss():
    runs = {
        "a": {
            "step": np.arange(1.0, 6.0),
            "loss": np.array([5.0, 4.0, 3.0, 2.0, 1.0]),
            "wall_s": np.array([0.5, 1.0, 1.5, 2.0, 2.5]),
            "val_step": np.array([4.0]),
            "val_acc": np.array([0.5]),
        }
    }
    plain = plots.curves_figure(runs, ("loss", "accuracy"))
    assert len(plain.data) == 2 and plain.layout.yaxis.type == "log"
    fig = plots.curves_figure(runs, ("loss", "accuracy"), smoothing=0.6, x_axis="wall time", log_loss=False)
    assert len(fig.data) == 3  # the raw loss stays, faint, behind the smoothed one
    assert list(fig.data[0].x) == [0.5, 1.0, 1.5, 2.0, 2.5] and fig.layout.yaxis.type != "log"
    assert list(fig.data[2].x) == [2.0]  # the validation at step 4 is placed at its wall time
    assert fig.layout.xaxis.title.text == "wall time (s)"
    with pytest.raises(ValueError, match="smoothing"):
        plots.curves_figure(runs, smoothing=1.5)


def test_curve_controls_redraw_the_tab_and_reject_bad_values(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.train.curves("c", 2.0, "step", "log")
    assert "smoothing must be" in out.warning
    out = ex.train.curves("c", 0.5, "wall time", "linear")
    assert not out.warning and ex.session("c").curves["train"] == dict(
        smoothing=0.5, x_axis="wall time", log_loss=False
    )


# ------------------------------------------------------------------ one colour per family


def test_one_colour_per_model_family_and_none_is_a_class_colour():
    colors = plots.family_colors({"r1": "deq", "r2": "homoode", "r3": "deq"})
    assert colors["r1"] == plots.FAMILY_COLORS["deq"] and colors["r2"] == plots.FAMILY_COLORS["homoode"]
    assert colors["r3"] != colors["r1"]  # a second DEQ run: the same hue, lighter
    assert not set(plots.FAMILY_COLORS.values()) & set(plots.CLASS_COLORS)


# ------------------------------------------------------------------ Playground: data and model controls


def test_playground_data_and_model_controls_reach_the_models():
    s = PlaygroundSettings(dataset="moons", noise=0.3, points=200, batch_size=32, hidden="64", depth=2)
    cfg = s.train_config("homoode")
    assert (cfg.toy_noise, cfg.toy_size, cfg.batch_size) == (0.3, 200, 32)
    assert (cfg.model.hidden, cfg.model.depth) == (64, 2)
    assert PlaygroundSettings().train_config("node").model.hidden == 64  # "auto": the preset's matched width
    assert PlaygroundSettings(dataset="spirals").data_noise == 0.05  # no noise set: the dataset's own
    for bad, message in (
        ({"noise": 2.0}, "noise must be"),
        ({"points": 5}, "training points"),
        ({"depth": 9}, "depth"),
    ):
        with pytest.raises(ValueError, match=message):
            PlaygroundSettings(**bad)
    # Only the picture changes for show_test; data and model size rebuild the models.
    assert s.live_changes(s.replace(show_test=True)) == {}
    assert s.live_changes(s.replace(points=300)) is None and s.live_changes(s.replace(hidden="auto")) is None


def test_show_test_data_draws_the_test_points(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    form = dict(dataset="moons", models=["node"], ode_method="rk4", n_steps=2, tol=1e-3, deq_solver="anderson",
                lr=0.01, seed=0, steps=50, noise=0.1, points=100, batch_size=64, hidden="auto", depth=1)  # fmt: skip
    try:
        ex.playground.load("t", {"dataset": "moons", "models": "node", "ode": "rk4", "n": "2", "points": "100"})
        ex.playground.control("t", "step")
        trainer = ex.session("t").playground.trainers[0]
        train_fig = ex.playground.apply("t", **form, show_test=False).flow
        test_fig = ex.playground.apply("t", **form, show_test=True).flow
        assert "test data" in test_fig.layout.annotations[0].text

        def xs(fig) -> list[float]:  # the data points drawn over the boundary (one trace per class)
            points = [t for t in fig.data if t.type == "scatter" and (t.name or "").startswith("class ")]
            return sorted(float(v) for t in points for v in t.x)

        assert np.allclose(xs(train_fig), sorted(trainer.train_x[:, 0].numpy()), atol=1e-6)
        assert np.allclose(xs(test_fig), sorted(trainer.test_x[:, 0].numpy()), atol=1e-6)
        # A new dataset with the noise left as it was takes that dataset's own noise.
        out = ex.playground.apply("t", **{**form, "dataset": "spirals"}, show_test=False)
        assert out.noise == 0.05
    finally:
        close(ex, "t")


# ------------------------------------------------------------------ draw your own input


def canvas_from_digit(pixels: np.ndarray, size: int = 280) -> np.ndarray:
    """A (28, 28) digit in [0, 1] as a page would send it: black ink, alpha = ink, on a transparent canvas."""
    zoom = size // 28
    ink = np.kron(pixels, np.ones((zoom, zoom)))
    canvas = np.zeros((size, size, 4), dtype=np.uint8)
    canvas[..., 3] = (ink * 255).round().astype(np.uint8)
    return canvas


def test_a_drawn_digit_is_prepared_as_mnist_digits_are():
    data = load_dataset("digits")
    for i in range(5):
        x = data.test.inputs[i]
        pixels = data.denormalize(x[None])[0, 0].numpy()
        drawn = lab_lib.drawing_to_input({"composite": canvas_from_digit(pixels)}, data)
        assert drawn.shape == (1, 1, 28, 28)
        # MNIST digits were boxed to 20 px and centred by mass: redrawing one gives it back closely.
        assert np.corrcoef(drawn.flatten().numpy(), x.flatten().numpy())[0, 1] > 0.9
    # A bar drawn anywhere lands centred, its longer side 20 px.
    canvas = np.full((280, 280, 3), 255, dtype=np.uint8)
    canvas[20:120, 200:240] = 0  # black on white, top right
    frame = data.denormalize(lab_lib.drawing_to_input(canvas, data))[0, 0]
    rows, cols = torch.nonzero(frame > 0.5, as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 in (19, 20, 21) and abs(float(rows.float().mean()) - 13.5) <= 1
    assert abs(float(cols.float().mean()) - 13.5) <= 1
    with pytest.raises(ValueError, match="draw a digit"):
        lab_lib.drawing_to_input({"composite": np.zeros((280, 280, 4), dtype=np.uint8)}, data)


def test_drawing_runs_every_solver_and_refuses_non_digit_models(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    data = load_dataset("digits")
    pixels = data.denormalize(data.test.inputs[0][None])[0, 0].numpy()
    try:
        out = ex.lab.draw("d", "fresh:image28-deq", "", {"composite": canvas_from_digit(pixels)}, 1e-4, 30, "rk4", 4)
        assert [r[0] for r in out.table] == ["fixed_point", "anderson", "broyden", "homotopy"]
        assert "your drawing" in out.message and "predicted" in out.message
        assert out.picture.shape == (112, 112)
        ex.playground.load("d", {}, autoplay=False)  # a 2-D point model cannot take a drawn digit
        out = ex.lab.draw("d", "session:pg:0", "", {"composite": canvas_from_digit(pixels)}, 1e-4, 30, "rk4", 4)
        assert "28 x 28 digit models" in out.message and out.table is KEEP
    finally:
        close(ex, "d")


# ------------------------------------------------------------------ defaults learn in about a minute


@pytest.mark.slow
@pytest.mark.parametrize("dataset, steps", [("circles", 200), ("moons", 200), ("crossing", 200), ("spirals", 600)])
def test_playground_defaults_reach_a_good_boundary_in_about_a_minute(dataset, steps):
    """The page trains the default pair (NODE, HomoODE) at about 10 steps/s on this 2-core machine
    (``python -m benchmarks.explorer``): 600 steps is about a minute. Deterministic: seeded, one thread."""
    settings = PlaygroundSettings(dataset=dataset)
    for family in settings.models:
        trainer = Trainer(settings.train_config(family))
        for _ in range(steps):
            trainer.step()
        assert trainer.validate().accuracy >= 0.9, (dataset, family)


def test_a_placed_point_is_drawn_with_its_path_and_prediction_in_every_model(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        ex.playground.load("q", {}, autoplay=False)
        out = ex.playground.probe("q", "0.2, -0.1")
        probes = [t for t in out.flow.data if t.legendgroup == "probe"]
        assert len(probes) == 3 * 2  # star, path, end star for each of the two models
        star = probes[0]
        assert (float(star.x[0]), float(star.y[0])) == pytest.approx((0.2, -0.1)) and "P(class 1)" in star.text[0]
        # Its path is the model's own: the same as solving the point alone.
        model = ex.session("q").playground.clone_model(1).eval()  # HomoODE
        pic = ex.session("q").playground.read().visuals["HomoODE"]
        with torch.no_grad():
            alone = torch.softmax(model(torch.tensor([[0.2, -0.1]])).logits, -1)[0, 1]
        assert pic["probe"]["prob"] == pytest.approx(float(alone), abs=1e-5)
        assert pic["probe"]["path"].shape == (pic["paths"].shape[0], 2)
        bad = ex.playground.probe("q", "x" * 5000)
        assert "two numbers" in bad.warning and len(bad.warning) < 200
        gone = ex.playground.probe("q", "")
        assert not [t for t in gone.flow.data if t.legendgroup == "probe"]
    finally:
        close(ex, "q")


# ------------------------------------------------------------------ review fixes


def test_the_noise_box_sent_back_untouched_does_not_rebuild_the_models(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        out = ex.playground.load("n", {}, autoplay=False)  # no noise in the link: the box shows the default
        ex.playground.control("n", "step")
        form = dict(dataset="circles", models=["node", "homoode"], ode_method="dopri5", n_steps=4, tol=1e-3,
                    deq_solver="anderson", lr=0.02, seed=0, steps=2000, noise=out.noise, points=1000,
                    batch_size=128, hidden="auto", depth=1, show_test=False)  # fmt: skip
        ex.playground.apply("n", **form)  # a live lr change, the noise box as the page shows it
        session = ex.session("n")
        assert session.playground.step_count == 1  # not reset to step 0
        assert session.playground_settings.noise is None and "noise=" not in session.playground_settings.to_query()
    finally:
        close(ex, "n")


def test_a_point_outside_the_picture_is_refused(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        ex.playground.load("o", {}, autoplay=False)
        out = ex.playground.probe("o", "50, 50")
        assert "inside the picture" in out.warning and ex.session("o").playground.visual.probe is None
    finally:
        close(ex, "o")


def test_a_malformed_drawing_is_a_message():
    data = load_dataset("digits")
    for bad in (np.zeros(5), np.zeros((3000, 10, 4)), np.zeros((10, 10, 2)), "text"):
        with pytest.raises(ValueError, match="a drawing is an image"):
            lab_lib.drawing_to_input({"composite": bad}, data)


def test_on_a_shared_server_a_tab_manages_only_its_own_runs(tmp_path):
    run = tmp_path / "someone-elses"
    run.mkdir()
    (run / "config.json").write_text("{}")
    ex = Explorer(tmp_path, autoplay=False, manage_all_runs=False)
    assert "only the runs it started" in ex.compare.delete("m", "all saved runs", ["someone-elses"]).warning
    assert "only the runs it started" in ex.compare.rename("m", "all saved runs", ["someone-elses"], "x").warning
    ex.session("m").run_dirs.append(run)  # its own: allowed (asks twice)
    assert "Press **Delete picked runs** again" in ex.compare.delete("m", "all saved runs", ["someone-elses"]).message


@pytest.mark.slow
def test_a_run_is_live_from_its_start_until_its_summary_even_after_its_tab_closed(tmp_path):
    settings = TrainSettings(steps=3, batch_size=8, train_limit=32, eval_every=40, device="cpu", family="deq")
    st = SessionTrainer([Lane(settings.display_name, settings.train_config(), tmp_path / "r")])
    assert (tmp_path / "r").resolve() in live_run_dirs()
    st.step_once()
    st.close()  # the tab closed: the worker finishes on its own
    assert wait_for(lambda: (tmp_path / "r" / "summary.json").is_file(), 30)
    assert wait_for(lambda: (tmp_path / "r").resolve() not in live_run_dirs(), 5)


def test_the_app_offers_cores_one_list_of_ode_methods_and_devices():
    import core

    assert core.ODE_METHODS == core.solvers.ODE_METHODS and "dopri8" in core.ODE_METHODS
    assert PlaygroundSettings(ode_method="dopri8").ode_config().method == "dopri8"  # the Playground had lost it
    assert TrainSettings(ode_method="dopri8").train_config().model.ode.method == "dopri8"
    assert set(imagetrain.DEVICES) <= set(core.DEVICES) and core.DEVICES == core.training.config.DEVICES


def test_a_failed_run_leaves_the_live_set_once(tmp_path):
    settings = TrainSettings(steps=3, batch_size=8, train_limit=32, eval_every=40, device="cpu", family="deq")
    folder = tmp_path / "shared"
    failing = SessionTrainer([Lane("a", settings.train_config(), folder)])
    other = SessionTrainer([Lane("b", settings.train_config(), folder)])

    def broken_step():
        raise RuntimeError("a bug")

    failing.trainers[0].step = broken_step
    failing.step_once()
    assert failing.state == "failed"
    failing.stop()  # a failed worker and the stop both end the run: it must leave the live set only once
    assert folder.resolve() in live_run_dirs()  # the other trainer still writes there
    other.stop()
    assert folder.resolve() not in live_run_dirs()


# ------------------------------------------------------------------ what is solved is what is shown


def test_while_the_canvas_holds_a_drawing_the_lab_shows_and_solves_the_drawing(tmp_path, monkeypatch):
    """A drawn 7: the header said "your drawing", but the input picture and "true class" were the dataset's,
    and "Solve with every solver" solved the dataset image."""
    from explorer.tabs.lab import open_lab

    ex = Explorer(tmp_path, autoplay=False)
    data = load_dataset("digits")
    other = next(i for i, t in enumerate(data.test.targets.tolist()) if t != int(data.val.targets[0]))
    drawing = {"composite": canvas_from_digit(data.denormalize(data.test.inputs[other][None])[0, 0].numpy())}
    blank = {"composite": np.zeros((280, 280, 4), dtype=np.uint8)}  # a cleared canvas
    drawn_x = lab_lib.drawing_to_input(drawing, data)
    drawn_picture = lab_lib.to_picture(data, drawn_x[0])
    dataset_x, label = data.val.inputs[:1], int(data.val.targets[0])
    dataset_picture = lab_lib.to_picture(data, dataset_x[0])
    solved = []
    compare = lab_lib.compare_solvers
    monkeypatch.setattr(lab_lib, "compare_solvers", lambda lab, x, **kw: solved.append(x) or compare(lab, x, **kw))
    model, settings = ("fresh:image28-deq", ""), (1e-4, 30, "rk4", 4)
    try:
        # "Solve with every solver" with the drawing on the canvas: the drawing, shown as the model sees it.
        out = ex.lab.run("l", *model, "val", 0, *settings, drawing=drawing)
        assert torch.equal(solved[-1], drawn_x) and np.array_equal(out.picture, drawn_picture)
        assert out.picture.shape == (112, 112)  # 28 x 28, enlarged
        assert "your drawing" in out.message and "true class **" not in out.message
        assert "your drawing" in out.caption and "28 × 28" in out.caption and "true class:" not in out.caption
        # A stroke: the same.
        out = ex.lab.draw("l", *model, drawing, *settings, split="val", index=0)
        assert torch.equal(solved[-1], drawn_x) and np.array_equal(out.picture, drawn_picture)
        assert "your drawing" in out.caption
        # Another index (or split, or model) while the drawing is there: the picture stays the drawing.
        out = ex.lab.input("l", *model, "val", 5, drawing)
        assert np.array_equal(out.picture, drawn_picture) and "your drawing" in out.caption
        # The canvas cleared: back to the dataset input, solved again (the results were the drawing's).
        out = ex.lab.draw("l", *model, blank, *settings, split="val", index=0)
        assert torch.equal(solved[-1], dataset_x) and np.array_equal(out.picture, dataset_picture)
        assert out.caption == f"true class: **{data.class_names[label]}**" and "true class **" in out.message
        n = len(solved)
        out = ex.lab.draw("l", *model, None, *settings, split="val", index=0)  # cleared again: nothing to redo
        assert len(solved) == n and out.table is KEEP and np.array_equal(out.picture, dataset_picture)
        out = ex.lab.run("l", *model, "val", 0, *settings, drawing=blank)
        assert torch.equal(solved[-1], dataset_x) and "true class:" in out.caption
        # A test image opened from the gallery or the runs table clears the canvas: that image is solved.
        _, opened = open_lab(ex, "l", "fresh:image28-deq", 3)
        assert opened.drawing is None and (opened.split, opened.index) == ("test", 3)
    finally:
        close(ex, "l")
