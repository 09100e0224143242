"""What a new user meets (issue 8): every case here failed before its fix.

Presets that disagree with the model, Playgrounds holding image-run slots, pages that poll while hidden,
long input echoed back, raw torch errors, silent rounding and silent defaults, stale messages and plots.
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest
import torch

from core.solvers.base import short_repr
from core.training import CheckpointError, load_checkpoint
from explorer import controller, imagetrain
from explorer import lab as lab_lib
from explorer.controller import Explorer
from explorer.imagetrain import TrainSettings, presets_for
from explorer.playground import PlaygroundSettings, status_markdown
from explorer.sessions import Lane, SessionTrainer, TrainingGate, backward_cell, gradient_method

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


# ------------------------------------------------------------------ 2. the preset and the model agree


def test_preset_menu_offers_only_presets_of_the_model_and_the_inputs():
    assert presets_for("deq", "image28") == ["image28-deq"]
    assert presets_for("homoode", "image32") == ["image32-homoode", "paper-cifar10"]
    out = Explorer.train_presets("", "deq", "digits", "image28-homoode")
    assert out["tr_preset_choices"] == (["auto", "image28-deq"], "auto")  # the HomoODE pick is dropped
    assert Explorer.train_presets("", "homoode", "cifar10", "paper-cifar10")["tr_preset_choices"][1] == "paper-cifar10"


def test_a_deq_run_never_trains_a_homoode_preset(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.train_start("t", **{**TRAIN_FORM, "preset": "image28-homoode"})
    assert "does not build a DEQ" in out["warning"] and ex.session("t").train is None
    assert list(tmp_path.iterdir()) == []  # nothing saved under a wrong name
    settings = TrainSettings(family="deq", preset="image28-deq")
    assert settings.train_config().model.family == "deq" and "image28-deq" in settings.display_name


# ------------------------------------------------------------------ 3. Playgrounds and the training cap


def test_open_playgrounds_do_not_block_image_runs(tmp_path):
    ex = Explorer(tmp_path, autoplay=True, max_trainings=1)
    try:
        for tab in ("a", "b", "c"):
            ex.playground_load(tab, {})
        assert ex.registry.playground_gate.running == 3 and ex.registry.gate.running == 0
        out = ex.train_start("d", **TRAIN_FORM)
        assert "warning" not in out and ex.session("d").train is not None
        # A second image run is refused, and told what it can do (not "pause runs in other tabs").
        out = ex.train_start("e", **TRAIN_FORM)
        assert "Playground previews do not count" in out["warning"] and "Train tab" in out["warning"]
    finally:
        close(ex, *"abcde")


def test_a_playground_nobody_looks_at_pauses_itself_and_frees_its_slot():
    gate = TrainingGate(1)
    st = SessionTrainer([Lane("A", toy_config(steps=100_000))], gate=gate, steps_per_second=50, idle_pause=0.3)
    try:
        st.play()
        assert gate.running == 1
        assert wait_for(lambda: st.state == "paused", 5)
        assert gate.running == 0 and "hidden" in st.read().message
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
        ex.playground_load("h", {})
        trainer = ex.session("h").playground
        trainer._last_seen -= 100  # long ago
        assert ex.playground_tick("h", visibility="hidden") == {}
        assert trainer._last_seen < time.monotonic() - 50  # a hidden tick is not a look
        ex.playground_tick("h", visibility="visible")
        assert trainer._last_seen > time.monotonic() - 5
    finally:
        close(ex, "h")


# ------------------------------------------------------------------ 10. only the visible tab polls


def test_only_the_selected_tab_polls(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        assert ex.tab_selected("s", "playground") == {"pg_timer": True, "train_timer": False}
        assert ex.tab_selected("s", "train") == {"pg_timer": False, "train_timer": False}  # no run: nothing to poll
        ex.train_start("s", **{**TRAIN_FORM, "steps": 50})
        assert ex.tab_selected("s", "train") == {"pg_timer": False, "train_timer": True}
        for tab in ("lab", "compare", "about"):
            assert ex.tab_selected("s", tab) == {"pg_timer": False, "train_timer": False}
        assert ex.train_tick("s", visibility="hidden") == {}
    finally:
        close(ex, "s")


# ------------------------------------------------------------------ 6. errors from files and paths


def test_a_very_long_checkpoint_name_is_a_message_not_a_crash(tmp_path):
    with pytest.raises(ValueError, match="5,000 characters long"):
        lab_lib.resolve_checkpoint("x" * 5000, tmp_path)
    with pytest.raises(ValueError, match="File name too long"):  # under our cap, over the file system's
        lab_lib.resolve_checkpoint("y" * 300, tmp_path)
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.lab_run("l", "fresh:image28-deq", "z" * 5000, "val", 0, 1e-4, 30, "rk4", 4)
    assert "characters long" in out["warning"] and len(out["lab_message"]) < 300


def test_a_file_that_is_not_a_checkpoint_never_shows_torch_advice(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"lr": 1}))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run / "config.json")
    assert "weights_only" not in str(err.value) and "config.json is not a readable checkpoint" in str(err.value)
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.lab_run("l", "", "run/config.json", "val", 0, 1e-4, 30, "rk4", 4)
    assert "weights_only" not in out["warning"] and "not a readable checkpoint" in out["warning"]


# ------------------------------------------------------------------ 7. echoed input is cut


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
    assert len(controller._msg("m" * 5000)) <= controller.MAX_MESSAGE_CHARS + 3


# ------------------------------------------------------------------ 8. one rule for numbers and blanks


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
        ex.playground_load("p", {})
        for name, value in (("steps", 2.5), ("seed", 3.7)):
            out = ex.playground_apply("p", **{**form, name: value})
            assert "whole number" in out["warning"], name
        out = ex.train_start("p", **{**TRAIN_FORM, "steps": 2.5})
        assert "whole number" in out["warning"]
    finally:
        close(ex, "p")


@pytest.mark.parametrize("field, label", [("lr", "learning rate"), ("batch_size", "batch size"), ("steps", "steps")])
def test_blank_train_fields_are_empty_not_defaults(tmp_path, field, label):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.train_start("b", **{**TRAIN_FORM, field: None})
    assert out["warning"] == f"{label} is empty: enter a number"
    # The optional fields may stay blank: they mean "not used".
    assert TrainSettings.from_form(**{**TRAIN_FORM, "train_limit": None, "epochs": None}).train_limit is None


def test_a_run_stopped_before_validation_does_not_say_step_none(tmp_path):
    settings = TrainSettings(steps=50, batch_size=8, train_limit=32, eval_every=40, device="cpu", family="deq")
    st = SessionTrainer([Lane(settings.display_name, settings.train_config(), tmp_path)])
    st.step_once()
    st.stop()
    text = controller._train_status(st.read(), st)
    assert "None" not in text and "before its first validation" in text


def test_a_fixed_input_clears_the_old_error_and_a_new_model_clears_the_old_sweep(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    try:
        bad = ex.lab_input("l", "fresh:image28-deq", "", "val", 10**9)
        assert bad["lab_message"].startswith("⚠️")
        good = ex.lab_input("l", "fresh:image28-deq", "", "val", 3)
        assert good["lab_message"] == "" and "lab_sweep" not in good
        ex.lab_sweep("l", "fresh:image28-deq", "", "steps", 4)
        assert "lab_sweep" not in ex.lab_input("l", "fresh:image28-deq", "", "val", 4)  # same model: kept
        other = ex.lab_input("l", "fresh:image28-homoode", "", "val", 4)
        assert "image28-homoode" in other["lab_sweep"].layout.annotations[0].text
    finally:
        close(ex, "l")


# ------------------------------------------------------------------ 9. the lab's model box


def test_the_model_box_never_keeps_a_dropped_internal_key(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.lab_models("m", "session:train:1")
    choices, value = out["lab_model_choices"]
    assert value == choices[0][1] and value != "session:train:1"
    assert ex.lab_models("m", "fresh:image28-homoode")["lab_model_choices"][1] == "fresh:image28-homoode"


# ------------------------------------------------------------------ 12. options that cannot work


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
