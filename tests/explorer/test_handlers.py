"""Explorer logic without a browser: figure builders, the session trainer, settings and the query string,
and the page's event logic (the tab handlers of ``explorer.tabs``, composed by ``explorer.app.Explorer``)."""

from __future__ import annotations

import dataclasses
import json
import os
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import numpy as np
import pytest
import torch

import core
from core import checks
from core.solvers import fit_pca
from core.training import Divergence, TrainConfig
from explorer import lab as lab_lib
from explorer import plots
from explorer.app import Explorer
from explorer.imagetrain import TrainSettings
from explorer.playground import PlaygroundSettings, flow_views, flow_visual, status_markdown
from explorer.runs import RUN_COLUMNS, read_metrics, read_runs, run_rows
from explorer.sessions import CapacityError, Lane, SessionRegistry, SessionTrainer, TrainingGate
from explorer.tabs import playground as playground_tab
from explorer.tabs.common import KEEP, Page
from explorer.tabs.lab import LabOut
from explorer.tabs.playground import PlaygroundOut

# A redraw happens several times a second: keep every figure's JSON small.
FIGURE_BUDGET = 150_000

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_config(family: str = "homoode", **kw) -> TrainConfig:
    return PlaygroundSettings(models=(family,), **kw).train_config(family)


def size(fig) -> int:
    return len(fig.to_json())


# ----------------------------------------------------------------------------------------------- plots


def test_join_polylines_separates_paths_with_nan():
    paths = np.arange(3 * 2 * 2, dtype=np.float64).reshape(3, 2, 2)  # T=3 states, M=2 paths
    x, y = plots.join_polylines(paths)
    assert x.dtype == np.float32 and len(x) == 2 * 4
    assert np.isnan(x[3]) and np.isnan(x[7]) and not np.isnan(x[:3]).any()
    np.testing.assert_array_equal(x[:3], paths[:, 0, 0])


def test_arrow_segments_shape():
    x, y = plots.arrow_segments(np.zeros(5), np.zeros(5), np.ones(5), np.zeros(5), scale=0.5)
    assert len(x) == 5 * 7 and np.isnan(x[3::7]).all()
    assert x[1] == pytest.approx(0.5)  # the tip


def test_playground_figure_traces_and_size():
    trainer = SessionTrainer(
        [Lane("NODE", toy_config("node")), Lane("HomoODE", toy_config("homoode"))], visual=flow_visual
    )
    views = flow_views(trainer.read())
    assert [v.title.split("</b>")[0] for v in views] == ["<b>NODE", "<b>HomoODE"]
    fig = plots.playground_figure(views)
    types = [t.type for t in fig.data]
    # NODE: heatmap + 2 point sets, state heatmap, arrows, 2 trajectory sets, end points = 8;
    # HomoODE: heatmap + 2 point sets, 2 trajectory sets, end points = 6.
    assert len(fig.data) == 14
    assert types.count("heatmap") == 3
    assert size(fig) < FIGURE_BUDGET
    # Trajectories are one NaN-separated trace per class, not one trace per path (SVG at this size).
    traj = [t for t in fig.data if (t.name or "").startswith("trajectory")]
    assert all(t.type == "scatter" for t in traj) and len(traj) == 4
    assert np.isnan(np.asarray(traj[0].x, dtype=float)).sum() >= 10
    # Many trajectories switch to WebGL, still one trace per class.
    many = plots.FlowView(
        "m",
        views[1].grid_x,
        views[1].grid_y,
        views[1].prob,
        views[1].points,
        views[1].labels,
        paths=np.zeros((16, 800, 2)),
        path_labels=np.arange(800) % 2,
    )
    traj = [t for t in plots.playground_figure([many]).data if (t.name or "").startswith("trajectory")]
    assert [t.type for t in traj] == ["scattergl", "scattergl"]
    assert fig.layout.template.layout.to_plotly_json() == {}  # template "none": no 10 kB default template


def test_curves_figure_log_loss_and_decimation():
    n = 5000
    runs = {
        "A": {
            "step": np.arange(n),
            "loss": np.linspace(2, 0.01, n),
            "train_acc": np.linspace(0, 1, n),
            "val_step": np.array([100, 200]),
            "val_acc": np.array([0.5, 0.7]),
            "nfe_forward": np.full(n, 20),
            "nfe_backward": np.zeros(n),
            "memory_mb": np.full(n, 500),
            "step_ms": np.full(n, 9),
        },
    }
    fig = plots.curves_figure(runs)
    assert fig.layout.yaxis.type == "log"  # loss panel
    assert max(len(t.x) for t in fig.data) <= plots.MAX_CURVE_POINTS
    assert fig.data[0].x[-1] == n - 1  # the newest step is always drawn
    assert size(fig) < 60_000
    assert "no steps yet" in plots.curves_figure({}).layout.annotations[0].text
    with pytest.raises(ValueError, match="unknown panel"):
        plots.curves_figure(runs, panels=("losss",))


def test_residual_figure_log_axis_tolerance_and_stops():
    traces = [
        plots.ResidualTrace("fixed_point", np.arange(1, 11), np.logspace(0, -3, 10), "max_iter"),
        plots.ResidualTrace("anderson", np.arange(1, 6), np.logspace(0, -6, 5), "converged"),
        plots.ResidualTrace("broyden", np.arange(1, 4), np.array([1.0, 10.0, np.inf]), "diverged"),
    ]
    fig = plots.residual_figure(traces, tol=1e-4)
    assert fig.layout.yaxis.type == "log"
    assert len(fig.data) == 4  # one line per solver + the stop markers
    stops = fig.data[-1]
    assert list(stops.marker.symbol) == ["square", "circle", "x"]
    assert any(s.y0 == 1e-4 for s in fig.layout.shapes)  # the tolerance line
    assert np.isfinite(np.asarray(fig.data[2].y, dtype=float)).all()  # inf clipped into the log range
    assert size(fig) < 20_000


def test_pca_is_frozen_and_paths_share_it():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 50))
    b = a[:10] * 2
    basis = fit_pca(np.concatenate([a, b]))
    assert basis.components.shape == (2, 50) and 0 < basis.explained.sum() <= 1 + 1e-9
    pa, pb = basis.project(a), basis.project(b)
    assert pa.shape == (30, 2) and pa.dtype == np.float32
    # Same basis for both: projecting the same state gives the same point.
    np.testing.assert_allclose(basis.project(a[:1]), pa[:1])
    fig = plots.path_figure({"a": pa, "b": pb}, position=0.5, labels={"a": np.arange(30)})
    assert len(fig.data) == 3
    cursor = fig.data[-1]
    assert cursor.x[0] == pytest.approx(pa[round(0.5 * 29), 0])
    assert fit_pca(np.ones((4, 3))).explained.tolist() == [0.0, 0.0]  # no variance: no crash


def test_sweep_figure():
    fig = plots.sweep_figure({"anderson": (np.array([3, 8, 20]), np.array([0.5, 0.8, 0.9]), ["0.1", "0.01", "1e-3"])})
    assert len(fig.data) == 1 and list(fig.data[0].y) == pytest.approx([50, 80, 90])


# ----------------------------------------------------------------------------------------------- trainer


def test_pause_freezes_and_step_advances_exactly_one():
    st = SessionTrainer([Lane("HomoODE", toy_config())], steps_per_second=200)
    assert st.step_once() == 1 and st.state == "paused"
    assert st.step_once() == 2
    st.play()
    time.sleep(0.4)
    st.pause()
    frozen = st.step_count
    assert frozen > 2
    rows = len(st.read().metrics["HomoODE"]["step"])
    time.sleep(0.4)
    assert st.step_count == frozen and len(st.read().metrics["HomoODE"]["step"]) == rows
    assert st.step_once() == frozen + 1
    st.close()


def test_reset_rebuilds_fresh_weights():
    st = SessionTrainer([Lane("NODE", toy_config("node"))])
    first = [p.detach().clone() for p in st.trainers[0].model.parameters()]
    for _ in range(3):
        st.step_once()
    assert any(not torch.equal(a, b) for a, b in zip(first, st.trainers[0].model.parameters()))
    st.reset()
    assert st.step_count == 0 and st.state == "ready" and len(st.read().metrics["NODE"]["step"]) == 0
    assert all(torch.equal(a, b) for a, b in zip(first, st.trainers[0].model.parameters()))


def test_live_lr_and_tolerance_change_without_reset():
    st = SessionTrainer([Lane("DEQ", toy_config("deq")), Lane("HomoODE", toy_config("homoode"))])
    st.step_once()
    new = PlaygroundSettings(models=("deq", "homoode"), lr=0.05, tol=1e-2)
    changes = PlaygroundSettings(models=("deq", "homoode")).live_changes(new)
    assert set(changes) == {"lr", "ode", "deq"}
    st.apply(**changes)
    st.step_once()
    assert st.step_count == 2  # no reset
    lrs = st.read().metrics["HomoODE"]["lr"]
    assert lrs[-1] == pytest.approx(0.05, rel=1e-3) and lrs[0] == pytest.approx(0.01, rel=1e-3)
    deq, homo = st.trainers
    assert deq.model.block.config.solver_options["tol"] == 1e-2  # DEQ got the solver change, not the ODE one
    assert homo.model.block.config.rtol == 1e-2
    with pytest.raises(ValueError, match="lr must be a positive number"):
        st.apply(lr=-1.0)
    with pytest.raises(ValueError, match="cannot change"):
        st.apply(batch_size=3)


def test_divergence_pauses_with_advice_and_play_retries():
    st = SessionTrainer([Lane("HomoODE", toy_config())])
    real_step = st.trainers[0].step
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 2:
            raise Divergence("the loss became nan at step 1", "lower the learning rate (lr)")
        return real_step()

    st.trainers[0].step = flaky
    st.play()
    for _ in range(100):
        if st.state == "diverged":
            break
        time.sleep(0.02)
    snap = st.read()
    assert snap.state == "diverged" and snap.step == 1
    assert snap.errors["HomoODE"] == ("the loss became nan at step 1", "lower the learning rate (lr)")
    assert "**Advice:** lower the learning rate (lr)" in status_markdown(snap)  # the page shows the advice
    st.step_once()  # the rolled-back lane gets another try
    assert st.step_count == 2 and not st.read().errors
    st.close()


def test_capacity_gate_refuses_with_a_clear_message():
    gate = TrainingGate(1)
    a = SessionTrainer([Lane("A", toy_config())], gate=gate, steps_per_second=20)
    b = SessionTrainer([Lane("B", toy_config())], gate=gate)
    a.play()
    with pytest.raises(CapacityError, match="already runs 1 training"):
        b.play()
    a.pause()  # a paused run holds no slot
    b.play()
    b.close()
    a.close()
    assert gate.running == 0


def test_saved_run_writes_config_metrics_checkpoint_summary(tmp_path):
    settings = TrainSettings(steps=3, batch_size=16, train_limit=64, eval_every=2, device="cpu", family="deq")
    out = tmp_path / "run1"
    out.mkdir()
    # The whole 2,000-digit test split would take ~15 s on two cores; a stratified 64 keeps the test quick.
    st = SessionTrainer([Lane("DEQ", settings.train_config().replace(test_limit=64), out)])
    for _ in range(3):
        st.step_once()
    assert st.done
    for _ in range(200):  # finishing (test accuracy) happens in the worker after the last step
        if st.read().finished:
            break
        time.sleep(0.05)
    assert {p.name for p in out.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt", "summary.json"}
    kinds = [json.loads(line)["kind"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("step") == 3 and "eval" in kinds and kinds[-1] == "finished"
    row = dict(zip(RUN_COLUMNS, run_rows(read_runs(tmp_path))[0]))
    assert row["run"] == "run1" and row["model"] == "deq" and row["state"] == "finished" and row["steps"] == 3
    assert row["params"] == sum(p.numel() for p in st.trainers[0].model.parameters())
    curves = read_metrics(out)
    np.testing.assert_array_equal(curves["step"], [1, 2, 3])
    assert len(curves["val_step"]) >= 1 and np.all((curves["val_acc"] >= 0) & (curves["val_acc"] <= 1))
    model, data, config = lab_lib.load_run(out / "checkpoint.pt")
    assert config.model.family == "deq" and data.name == "digits"


def test_registry_is_lazy_and_unload_stops_training():
    reg = SessionRegistry(max_trainings=2)
    s = reg.get("abc")
    assert "abc" in reg and reg.get("abc") is s
    s.playground = SessionTrainer([Lane("A", toy_config())], gate=reg.gate, steps_per_second=50)
    s.playground.play()
    reg.close("abc")
    assert "abc" not in reg and reg.gate.running == 0
    time.sleep(0.2)
    n = s.playground.step_count
    time.sleep(0.3)
    assert s.playground.step_count == n  # a closed tab stops its work


def test_closing_the_server_waits_for_every_worker():
    # A worker thread still inside torch when the interpreter exits aborts the process (exit code 134).
    reg = SessionRegistry(max_trainings=2)
    trainers = [SessionTrainer([Lane("A", toy_config())], gate=reg.gate) for _ in range(2)]
    for key, trainer in zip("ab", trainers):
        reg.get(key).playground = trainer
        trainer.play()
    assert all(t._thread.is_alive() for t in trainers)
    reg.close_all()
    assert not any(t._thread and t._thread.is_alive() for t in trainers) and len(reg) == 0


# ----------------------------------------------------------------------------------------------- settings


def test_query_string_round_trip():
    s = PlaygroundSettings(
        dataset="spirals",
        models=("anode", "deq"),
        ode_method="rk4",
        n_steps=6,
        tol=3e-4,
        deq_solver="broyden",
        lr=0.02,
        seed=7,
        steps=900,
    )
    rich = s.replace(noise=0.25, points=300, batch_size=32, hidden="64", depth=2, show_test=True)
    assert PlaygroundSettings.from_query(dict(p.split("=") for p in rich.to_query().split("&"))) == (rich, [])
    query = s.to_query()
    params = dict(pair.split("=") for pair in query.split("&"))
    back, problems = PlaygroundSettings.from_query(params)
    assert back == s and problems == []
    assert "seed=7" in query and "models=anode,deq" in query


def test_bad_link_values_fall_back_to_defaults_with_a_message():
    s, problems = PlaygroundSettings.from_query({"lr": "-1", "models": "node,foo", "dataset": "moons", "x": "1"})
    assert s.dataset == "moons" and s.lr == PlaygroundSettings().lr and s.models == PlaygroundSettings().models
    assert len(problems) == 3
    assert any("learning rate" in p for p in problems) and any("'x'" in p for p in problems)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"batch_size": 0}, "batch size must be a whole number from 1"),
        ({"tol": -1e-3}, "tolerance must be a number"),
        ({"lr": float("nan")}, "learning rate must be a number"),
        ({"dataset": "circles"}, "dataset must be one of"),
        ({"preset": "image32-deq"}, "preset 'image32-deq' does not build a HomoODE for digits"),
        # The model and the preset must not disagree: a DEQ run must never train a HomoODE preset.
        ({"family": "deq", "preset": "image28-homoode"}, "does not build a DEQ for digits .* image28-deq"),
        ({"family": "node", "preset": "paper-cifar10"}, "does not build a NODE"),
    ],
)
def test_train_settings_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainSettings(**changes).train_config()


def test_train_settings_build_the_cli_config():
    config = TrainSettings(family="anode", n_steps=3, tol=1e-2).train_config()
    assert config.model == core.preset("image28-anode").replace(
        ode=core.ODEConfig(method="rk4", rtol=1e-2, atol=1e-2, n_steps=3), deq=config.model.deq
    )
    assert TrainSettings.from_form(steps=10.0, train_limit=0, batch_size=8.0).train_limit is None
    by_epochs = TrainSettings.from_form(steps=10, epochs=2.0, batch_size=50, train_limit=500).train_config()
    assert by_epochs.steps is None and by_epochs.epochs == 2
    assert TrainSettings.from_form(steps=10, epochs=None).train_config().steps == 10
    assert TrainSettings.from_form(steps=10, epochs=0).epochs is None  # 0 or blank: use steps
    with pytest.raises(ValueError, match="epochs must be a whole number from 1 to 1000"):
        TrainSettings.from_form(epochs=2.5)


# ------------------------------------------------------------------------------------------- tab handlers


@pytest.fixture
def explorer(tmp_path):
    ex = Explorer(tmp_path / "runs", device="cpu", autoplay=False)
    yield ex
    ex.registry.close_all()


def test_handlers_playground_load_apply_and_bad_value(explorer):
    out = explorer.playground.load("s1", {"dataset": "moons", "seed": "3"})
    assert out.dataset == "moons" and out.seed == 3 and out.link.startswith("?dataset=moons")
    assert "ready" in out.status and len(out.flow.data) > 0
    assert "ready" in explorer.playground.tick("s1").status  # the first tick after an answer draws again
    assert explorer.playground.tick("s1") == PlaygroundOut()  # nothing changed: no redraw
    form = dict(
        dataset="moons",
        models=["node", "homoode"],
        ode_method="rk4",
        n_steps=4,
        tol=1e-3,
        deq_solver="anderson",
        lr=0.05,
        seed=3,
        steps=2000,
    )
    out = explorer.playground.apply("s1", **form)
    assert "lr=0.05" in out.link and not out.warning
    bad = explorer.playground.apply("s1", **{**form, "lr": -1})
    assert "learning rate must be" in bad.warning and bad.link is KEEP
    assert explorer.session("s1").playground_settings.lr == 0.05  # the session keeps its working settings
    step = explorer.playground.control("s1", "step")
    assert "step **1**" in step.status


def test_handlers_redraws_curves_less_often_than_the_picture(explorer, monkeypatch):
    monkeypatch.setattr(playground_tab, "CURVES_SECONDS", 3600.0)
    explorer.playground.load("s1", {"dataset": "moons", "models": "node"})
    assert explorer.playground.control("s1", "play").curves is not KEEP  # a button always redraws everything
    trainer = explorer.session("s1").playground
    for _ in range(200):
        time.sleep(0.02)
        tick = explorer.playground.tick("s1")
        if tick != PlaygroundOut():
            break
    assert tick.flow is not KEEP and tick.status is not KEEP and tick.curves is KEEP  # running: picture only
    trainer.pause()
    last = explorer.playground.tick("s1")
    assert last.curves is not KEEP  # stopped: the curves catch up with the last step
    assert explorer.playground.tick("s1") == PlaygroundOut()


def test_a_tick_that_lands_after_a_click_cannot_leave_its_older_state_on_the_page(explorer):
    """Ticks and clicks run side by side: a tick computed before ❚❚ can reach the page after ❚❚'s answer (seen
    in a browser test on a loaded machine: the status said "running" for good). The next tick draws again."""
    explorer.playground.load("s1", {"dataset": "moons", "models": "node"})
    explorer.playground.control("s1", "play")
    trainer = explorer.session("s1").playground
    for _ in range(200):  # a tick that saw the run move
        time.sleep(0.02)
        stale = explorer.playground.tick("s1")
        if stale != PlaygroundOut():
            break
    assert "running" in stale.status
    assert "paused" in explorer.playground.control("s1", "pause").status
    # The page now shows the stale tick's "running" (it landed last); the next tick puts it right.
    after = explorer.playground.tick("s1")
    assert "paused" in after.status and after.pause == {"value": "❚❚ Paused", "variant": "secondary"}
    assert explorer.playground.tick("s1") == PlaygroundOut()
    assert trainer.state == "paused"


def test_handlers_gallery_pick_selects_the_run_in_the_lab(explorer):
    session = explorer.session("s1")
    for _ in range(5):  # only the newest 3 stay in memory; ids keep counting
        session.train = SessionTrainer([Lane("DEQ", toy_config("deq"))])
        session.add_run(session.train)
    assert list(session.train_runs) == [2, 3, 4]
    session.lab["gallery"] = [7, 3]
    nav, lab = explorer.train.gallery_pick("s1", 1)
    choices, selected = lab.model
    assert selected == "session:train:4" and selected in [k for _, k in choices]
    assert "session:train:0" not in [k for _, k in choices]
    assert (
        "no longer in this session"
        in explorer.lab.run("s1", "session:train:0", "", "val", 0, 1e-4, 9, "rk4", 4).warning
    )
    assert (lab.split, lab.index, nav.tab) == ("test", 3, "lab")
    assert explorer.train.gallery_pick("s1", 5) == ()


def test_handlers_lab_compares_every_solver(explorer):
    out = explorer.lab.run("s1", "fresh:image28-deq", "", "val", 0, 1e-4, 30, "rk4", 4)
    assert not out.warning
    names = [t.name for t in out.residual.data[:-1]]
    assert [n.split(" ")[0] for n in names] == list(lab_lib.LAB_SOLVERS)
    assert [r[0] for r in out.table] == list(lab_lib.LAB_SOLVERS)
    assert len(out.path.data) == 5
    scrub = explorer.lab.scrub("s1", 0.0)
    assert len(scrub.path.data) == 5
    sweep = explorer.lab.sweep("s1", "fresh:image28-deq", "", "tol", 8)
    assert len(sweep.sweep.data) == 3  # fixed_point, anderson, broyden


def test_a_sweep_counts_its_settings_and_the_page_shows_the_count(explorer, tmp_path):
    """The progress overlay once said "0.2 s" for a 9 s sweep (gradio's guess from earlier calls).
    The sweep and the memory measurement count their work, and the page shows "done/total" from that count."""
    calls = []
    out = explorer.lab.sweep("s1", "fresh:image28-deq", "", "steps", 4, progress=lambda d, t: calls.append((d, t)))
    n = len(lab_lib.sweep_plan("deq", "steps"))
    assert not out.warning and n == 15 and calls == [(k, n) for k in range(n + 1)]
    calls.clear()
    memory = explorer.compare.memory(
        "s1", ["node"], ["direct"], "2, 4", "points", 1, progress=lambda d, t: calls.append((d, t))
    )
    assert not memory.warning and calls == [(0, 2), (1, 2), (2, 2)]

    # Wired: gradio gives those endpoints a progress tracker, and the count reaches it as (done, total).
    from explorer.app import build_app

    fns = {fn.api_name: fn for fn in build_app(tmp_path / "app-runs", device="cpu", autoplay=False).fns.values()}
    assert fns["lab_sweep"].tracks_progress and fns["compare_memory"].tracks_progress
    assert not fns["lab_run"].tracks_progress  # a job that cannot count shows no count

    class Tracker:
        seen: list = []

        def __call__(self, progress, desc=None, total=None, unit="steps"):
            self.seen.append((progress, unit))

    fn = fns["lab_sweep"].fn
    plot, message = fn("fresh:image28-deq", "", "tol", 4, gr.Request(session_hash="s2"), Tracker())
    tol = len(lab_lib.sweep_plan("deq", "tol"))
    assert Tracker.seen == [((k, tol), "settings") for k in range(tol + 1)]
    assert "sweep of" in message


def test_handlers_lab_ode_model_and_bad_inputs(explorer, tmp_path):
    out = explorer.lab.run("s1", "fresh:image28-homoode", "", "val", 5, 1e-4, 30, "rk4", 4)
    assert out.table[0][1] == "integrated" and len(out.path.data) == 2
    assert "no fixed-point map" in out.residual.layout.annotations[0].text
    bad = explorer.lab.run("s1", "fresh:image28-deq", "", "val", 10**6, 1e-4, 30, "rk4", 4)
    assert "input index must be" in bad.warning
    bad = explorer.lab.run("s1", "fresh:image28-deq", "", "val", 0, -1.0, 30, "rk4", 4)
    assert "tolerance must be" in bad.warning
    bad = explorer.lab.run("s1", "fresh:image28-deq", str(tmp_path / "elsewhere.pt"), "val", 0, 1e-4, 30, "rk4", 4)
    assert "only checkpoints under the runs directory" in bad.warning
    junk = explorer.runs_dir / "junk"
    junk.mkdir()
    (junk / "checkpoint.pt").write_bytes(b"not a checkpoint")
    bad = explorer.lab.run("s1", "run:junk", "", "val", 0, 1e-4, 30, "rk4", 4)
    assert "not a usable checkpoint" in bad.message
    bad = explorer.lab.run("s1", "fresh:image28-homoode", "", "val", 5, 1e-4, 30, "rk4", 4, view="4-D")
    assert "path view must be one of" in bad.warning
    three = explorer.lab.run("s1", "fresh:image28-homoode", "", "val", 5, 1e-4, 30, "rk4", 4, view="3-D")
    assert {t.type for t in three.path.data} == {"scatter3d"}
    flat = explorer.lab.scrub("s1", 0.5, view="2-D").path  # the same result, redrawn in 2-D
    assert {t.type for t in flat.data} == {"scatter"} and len(flat.data) == len(three.path.data)
    assert "path view must be one of" in explorer.lab.scrub("s1", 0.5, view="4-D").warning


def test_handlers_train_rejects_bad_values(explorer):
    form = dict(
        dataset="digits",
        family="homoode",
        preset="auto",
        steps=10,
        batch_size=0,
        lr=1e-3,
        ode_method="rk4",
        n_steps=2,
        tol=1e-3,
        deq_solver="anderson",
        device="cpu",
        train_limit=64,
    )
    out = explorer.train.start("s1", **form)
    assert "batch size must be" in out.warning and explorer.session("s1").train is None
    out = explorer.train.start("s1", **{**form, "batch_size": 8, "dataset": "cifar10", "preset": "image28-deq"})
    assert "preset 'image28-deq' does not build a HomoODE for cifar10" in out.warning
    assert "no image run" in explorer.train.control("s1", "pause").warning


def test_a_misspelt_output_or_input_is_an_error_not_ignored(explorer):
    with pytest.raises(TypeError, match="stauts"):
        PlaygroundOut(stauts="step 1")
    with pytest.raises(TypeError):
        LabOut("a figure")  # outputs are named, never positional
    with pytest.raises(dataclasses.FrozenInstanceError):
        PlaygroundOut().status = "changed"
    with gr.Blocks() as demo, gr.Tabs() as tabs, gr.Tab("t"):
        page = Page(demo, tabs, 1.0, 1.0)
        box = gr.Markdown()
        with pytest.raises(TypeError, match="PlaygroundOut has no output stauts"):
            page.bind(PlaygroundOut, stauts=box)
        with pytest.raises(TypeError, match="pointt"):  # the handler has no such input
            page.on(box.change, explorer.playground.probe, {"pointt": box}, [box])


def test_updates_map_fields_to_their_components_and_keep_the_rest():
    with gr.Blocks() as demo, gr.Tabs() as tabs, gr.Tab("t"):
        page = Page(demo, tabs, 1.0, 1.0)
        status, message, play = gr.Markdown(), gr.Markdown(), gr.Button()
        page.bind(PlaygroundOut, status=status, message=message, play=play)
    out = PlaygroundOut(status="step 3", play={"value": "▶ Play", "variant": "primary"})
    updates = page.updates(out, [play, message, status])
    assert updates[2] == "step 3" and isinstance(updates[0], gr.Button) and updates[0].variant == "primary"
    assert updates[1] == gr.skip()  # KEEP: left as it is
    assert page.updates(PlaygroundOut(flow="not wired here"), [status]) == [gr.skip()]


def test_launch_flags_and_loopback_warning():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("launch", Path(__file__).resolve().parents[2] / "launch.py")
    launch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(launch)
    args = launch.build_parser().parse_args([])
    assert (args.host, args.port, args.device, args.runs_dir) == ("127.0.0.1", 7860, "auto", "runs")
    assert launch.is_loopback("127.0.0.1") and launch.is_loopback("localhost") and launch.is_loopback("::1")
    assert not launch.is_loopback("0.0.0.0") and not launch.is_loopback("192.168.1.5")
    assert launch.main(["--port", "0"]) == 2  # refused before anything starts


def test_launch_stops_cleanly_on_sigterm(tmp_path):
    """`kill` (SIGTERM) ends the server as Ctrl+C does: trainings closed, exit status 0 (not killed by -15)."""
    import signal
    import socket
    import subprocess
    import sys
    from pathlib import Path

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, str(root / "launch.py"), "--port", str(port), "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        for line in proc.stdout:  # until it says it is ready (or exits)
            lines.append(line)
            if line.startswith("Press Ctrl+C"):
                break
        assert any(line.startswith("Explorer running on http://127.0.0.1:") for line in lines), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "stopping" in rest, (proc.returncode, rest)


def test_the_train_tab_says_when_deq_steps_missed_their_tolerance():
    from explorer.tabs import train as train_tab

    # Two Anderson iterations cannot reach 1e-8: both steps are flagged, and the status says so with advice.
    model = core.preset("points-deq")
    model = model.replace(deq=model.deq.with_forward("anderson", tol=1e-8, max_iter=2))
    bad = TrainConfig(model=model, dataset="circles", steps=2, batch_size=32, eval_every=2, device="cpu")
    st = SessionTrainer([Lane("DEQ", bad)])
    try:
        st.step_once()
        st.step_once()
        for _ in range(100):
            snap = st.read()
            if snap.step == 2:
                break
            time.sleep(0.05)
        text = train_tab.run_status(snap, st)
        assert "2 of 2 steps" in text and "missed its tolerance" in text
        good = SessionTrainer([Lane("DEQ", toy_config("deq"))])
        try:
            good.step_once()
            for _ in range(100):
                if good.read().step == 1:
                    break
                time.sleep(0.05)
            assert "missed its tolerance" not in train_tab.run_status(good.read(), good)
        finally:
            good.stop()
            good.join()
    finally:
        st.stop()
        st.join()


# ------------------------------------------------------------------ one setting, one rule

TRAIN_FORM = dict(dataset="digits", family="deq", preset="auto", steps=50, batch_size=8, lr=2e-3, ode_method="rk4",
                  n_steps=2, tol=1e-3, deq_solver="anderson", device="cpu", train_limit=32, epochs=None)  # fmt: skip


@pytest.mark.parametrize(
    "lr, tol, message",
    [
        (1e9, 1e-3, "learning rate must be a number from 1e-08 to 10, got 1000000000.0"),
        (2e-3, 0.7, "tolerance must be a number from 1e-08 to 0.5, got 0.7"),
        (None, 1e-3, "learning rate is empty: enter a number"),
        (2e-3, None, "tolerance is empty: enter a number"),
    ],
)
def test_apply_now_checks_lr_and_tolerance_as_start_does(tmp_path, lr, tol, message):
    """Train's "Apply lr / tolerance now" took lr = 1e9 (Start refuses > 10; the run then blew up), said
    "(0, 1)" for a tolerance where Start says 1e-08 to 0.5, and "got None" for a blank box."""
    ex = Explorer(tmp_path, autoplay=False)
    # Start refuses the values, in these words.
    assert ex.train.start("a", **{**TRAIN_FORM, "lr": lr, "tol": tol}).warning == message
    assert ex.session("a").train is None and list(tmp_path.iterdir()) == []
    settings = TrainSettings.from_form(**TRAIN_FORM)
    st = SessionTrainer([Lane(settings.display_name, settings.train_config(), tmp_path / "run")])
    ex.session("a").train = st  # a run of this tab (not playing: nothing to wait for)
    try:
        assert ex.train.apply("a", lr, tol).warning == message  # Apply: the same check, the same words
        config = st.trainers[0].config
        assert config.lr == 2e-3 and config.model.deq.solver_options["tol"] == 1e-3  # nothing changed
        out = ex.train.apply("a", 5.0, 0.5)  # the top of each range is allowed, as at Start
        assert not out.warning and "applied lr 5" in out.message
        config = st.trainers[0].config
        assert config.lr == 5.0 and config.model.deq.solver_options["tol"] == 0.5
    finally:
        st.stop()
        ex.close_session("a")


def test_a_blank_lab_box_is_empty_never_none(explorer):
    out = explorer.lab.run("s1", "fresh:image28-deq", "", "val", 0, None, 30, "rk4", 4)
    assert out.warning == "tolerance is empty: enter a number"
    out = explorer.lab.run("s1", "fresh:image28-deq", "", "val", None, 1e-4, 30, "rk4", 4)
    assert out.warning == "input index is empty: enter a number"
    out = explorer.lab.input("s1", "fresh:image28-deq", "", "val", None)
    assert out.warning == "input index is empty: enter a number"
    assert "got None" not in explorer.lab.run("s1", "fresh:image28-deq", "", "val", 0, 1e-4, None, "rk4", 4).warning


@pytest.mark.parametrize(
    "key, raw, message",
    [
        ("lr", "abc", "learning rate must be a number from 1e-08 to 10, got 'abc'"),
        ("tol", "x", "tolerance must be a number from 1e-08 to 0.5, got 'x'"),
        ("lr", "", "learning rate is empty: enter a number"),
        ("seed", "one", "seed must be a whole number from 0 to 2,147,483,647, got 'one'"),
        ("noise", "lots", "noise must be a number from 0 to 1, got 'lots'"),
    ],
)
def test_a_link_value_gets_the_settings_own_words(key, raw, message):
    """`?lr=abc` showed Python's "could not convert string to float"; now the words the form's box gets."""
    settings, problems = PlaygroundSettings.from_query({key: raw})
    assert problems == [f"link parameter {key!r}={raw!r}: {message}; using the default"]
    assert settings == PlaygroundSettings()
    # A link's number is read as the form's box: what spells a number is one, the rest is named as typed.
    assert PlaygroundSettings.from_query({"lr": " 0.05 ", "seed": "7.0"}) == (PlaygroundSettings(lr=0.05, seed=7), [])


def test_core_checks_say_empty_for_a_blank_and_read_typed_numbers():
    assert [checks.to_number(t) for t in ("0.01", " 7 ", "1e-3", "abc", "", "nan")] == [0.01, 7, 1e-3, "abc", "", "nan"]
    for blank in (None, "", "   "):
        with pytest.raises(ValueError, match="^steps is empty: enter a number$"):
            checks.STEPS.check(blank, "steps")


# ------------------------------------------------------------------ the form says what is in force


def test_a_refused_playground_change_is_put_back_and_named(explorer):
    """A 4th model ticked: "pick 1 to 3 models" and all four stayed ticked; every later change (noise, points,
    ...) was refused with the same models message while its box kept the new value."""
    explorer.playground.load("p", {"models": "node,anode,homoode"}, autoplay=False)
    session = explorer.session("p")
    form = dict(dataset="circles", models=["node", "anode", "homoode"], ode_method="dopri5", n_steps=4, tol=1e-3,
                deq_solver="anderson", lr=0.01, seed=0, steps=2000, noise=session.playground_settings.data_noise,
                points=1000, batch_size=128, hidden="auto", depth=1, show_test=False)  # fmt: skip
    four = ["node", "anode", "homoode", "deq"]
    out = explorer.playground.apply("p", **{**form, "models": four})
    assert out.warning.startswith("models not changed (pick 1 to 3 models, got 4)")
    assert out.models == ["node", "anode", "homoode"]  # the form is put back to the models in force
    assert out.link is KEEP and session.playground_settings.models == ("node", "anode", "homoode")
    # A valid change to another box is made, even with the refused value still in the form (its put-back on
    # its way), and the refusal names only the box that is wrong.
    out = explorer.playground.apply("p", **{**form, "models": four, "noise": 0.2})
    assert session.playground_settings.noise == 0.2 and "noise=0.2" in out.link
    assert out.warning.startswith("models not changed") and "noise" not in out.warning
    assert out.models == ["node", "anode", "homoode"] and out.noise is KEEP
    form["noise"] = 0.2
    # Each refusal names the box just changed, and puts that box back.
    out = explorer.playground.apply("p", **{**form, "points": 5})
    assert out.warning.startswith("training points not changed (training points must be a whole number from 20")
    assert out.points == 1000 and out.models is KEEP and session.playground_settings.points == 1000
    out = explorer.playground.apply("p", **{**form, "batch_size": None})
    assert out.warning == (
        "batch size not changed (batch size is empty: enter a number): back to 128, the value in force"
    )
    assert out.batch_size == 128
    out = explorer.playground.apply("p", **{**form, "lr": 0.05})
    assert not out.warning and session.playground_settings.lr == 0.05 and "lr=0.05" in out.link
