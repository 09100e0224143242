"""The Compare tab: runs read back from their folders, the table and its export, the overlaid curves,
accuracy vs NFE, and memory vs batch size measured per family and gradient method."""

from __future__ import annotations

import csv
import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest

import core
from core.solvers import fit_pca
from explorer import plots
from explorer.app import Explorer
from explorer.runs import RUN_COLUMNS, export_runs, read_metrics, read_runs, run_rows
from explorer.tabs.common import KEEP
from explorer.tabs.compare import CompareOut
from explorer.tabs.lab import LabOut

MODEL = core.preset("points-homoode").to_dict()

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_run(root, name, family="homoode", summary=None, events=(), extra_lines=()):
    folder = root / name
    folder.mkdir(parents=True)
    model = {**MODEL, "family": family} if family != "homoode" else MODEL
    config = {"model": model, "dataset": "circles", "device": "cpu", "lr": 0.01, "batch_size": 64}
    (folder / "config.json").write_text(json.dumps(config))
    lines = [json.dumps(e) for e in events] + list(extra_lines)
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if summary is not None:
        (folder / "summary.json").write_text(json.dumps(summary))
    return folder


def step(k, loss, nfe=10, nfe_b=0, mem=2**20):
    return {
        "kind": "step",
        "step": k,
        "epoch": 0,
        "loss": loss,
        "train_acc": 0.5,
        "nfe_forward": nfe,
        "nfe_backward": nfe_b,
        "residual": None,
        "start_loss": None,
        "lr": 1e-3,
        "peak_memory_bytes": 7 * mem,  # the process's: never shown as the run's
        "graph_bytes": mem,
        "step_seconds": 0.01 * k,
        "wall_seconds": k,
    }


def val(k, acc, split="val"):
    return {
        "kind": "eval",
        "step": k,
        "epoch": 0,
        "split": split,
        "loss": 1.0,
        "accuracy": acc,
        "nfe_forward": 9.0,
        "is_best": True,
        "seconds": 0.1,
    }


SUMMARY = {
    "params": 1234,
    "steps": 3,
    "test_accuracy": 0.91234,
    "best_val_accuracy": 0.9,
    "mean_nfe_forward": 12.34,
    "mean_nfe_backward": 5.0,
    "peak_memory_bytes": 30 * 2**20,
    "peak_graph_bytes": 3 * 2**20,
    "seconds": 7.25,
    "device": "cpu",
    "stopped": False,
}


@pytest.fixture
def runs(tmp_path):
    """Two runs: one finished, one in progress that was resumed (step 2 logged twice) and crashed mid-line."""
    write_run(tmp_path, "20260101-000000-a", summary=SUMMARY, events=[step(1, 2.0), step(2, 1.0), val(2, 0.8)])
    write_run(
        tmp_path,
        "20260102-000000-b",
        family="node",
        events=[
            step(1, 3.0, nfe=20, mem=2 * 2**20),
            step(2, 9.9),
            val(2, 0.5),
            step(2, 2.0, nfe=30),
            val(2, 0.6),
            {"kind": "change", "step": 2, "epoch": 0, "changes": {"lr": {"old": 0.002, "new": 0.0005}}},
            {"kind": "change", "step": 2, "epoch": 0, "changes": {}},  # a change that changed nothing
            val(2, 0.99, split="test"),
            step(3, 1.5, nfe=40),
        ],
        extra_lines=['{"kind": "step", "step": 4, "lo'],
    )
    (tmp_path / "not-a-run").mkdir()
    return tmp_path


def test_read_runs_table_cells(runs):
    records = read_runs(runs)
    assert [r.name for r in records] == ["20260102-000000-b", "20260101-000000-a"]  # newest first
    done = dict(zip(RUN_COLUMNS, run_rows(records)[1]))
    assert done == {
        "run": "20260101-000000-a",
        "model": "homoode",
        "dataset": "circles",
        "params": 1234,
        "steps": 3,
        "test acc %": 91.23,
        "best val %": 90.0,
        "NFE fwd": 12.3,
        "NFE bwd": 5.0,
        "graph MB": 3.0,
        "s": 7.2,
        "device": "cpu",
        "lr": 0.01,
        "batch": 64,
        "solver": "dopri5",  # the preset's ODE method (adaptive: its tolerance follows)
        "tol": 1e-3,
        "state": "finished",
    }
    live = dict(zip(RUN_COLUMNS, run_rows(records)[0]))
    assert live["state"] == "in progress" and live["test acc %"] is None
    # No summary yet: the parameter count comes from building the model of its config.
    config = core.ModelConfig.from_dict({**MODEL, "family": "node"})
    assert live["params"] == sum(p.numel() for p in core.build_model(config).parameters())


def test_read_metrics_keeps_the_last_record_of_a_step_and_skips_a_torn_line(runs):
    m = read_metrics(runs / "20260102-000000-b")
    np.testing.assert_array_equal(m["step"], [1, 2, 3])
    np.testing.assert_array_equal(m["loss"], [3.0, 2.0, 1.5])
    np.testing.assert_array_equal(m["nfe_forward"], [20, 30, 40])
    np.testing.assert_array_equal(m["memory_mb"], [2.0, 1.0, 1.0])
    np.testing.assert_allclose(m["step_ms"], [10.0, 20.0, 30.0])
    np.testing.assert_array_equal(m["val_step"], [2])
    np.testing.assert_array_equal(m["val_acc"], [0.6])  # the test-split eval is not a validation point
    np.testing.assert_array_equal(m["wall_s"], [1, 2, 3])
    np.testing.assert_array_equal(m["change_step"], [2])  # a live lr change, where it happened
    assert m["change_text"] == ["lr 0.002 → 0.0005"]
    assert read_metrics(runs / "not-a-run")["step"].shape == (0,)


def test_a_step_reads_the_same_live_and_from_its_run_folder():
    """One table turns a step into curves, for the live page (core's event) and a saved run (its JSON)."""
    from core.training import StepEvent
    from explorer.runs import STEP_CURVES, step_curves

    event = StepEvent(
        step=7, epoch=0, loss=0.25, train_acc=0.5, nfe_forward=12, nfe_backward=9, residual=None, start_loss=None,
        lr=1e-3, peak_memory_bytes=1, graph_bytes=3 * 2**20, step_seconds=0.02, wall_seconds=float("inf"),
    )  # fmt: skip
    live, saved = step_curves(event), step_curves(json.loads(json.dumps(event.to_dict())))
    assert set(live) == set(STEP_CURVES) and live.keys() == saved.keys()
    np.testing.assert_allclose([live[k] for k in live], [saved[k] for k in live])  # NaN where NaN
    assert live["memory_mb"] == 3.0 and live["step_ms"] == 20.0 and live["lr"] == 1e-3 and np.isnan(live["wall_s"])


def test_bad_values_in_run_files_become_blank_cells(tmp_path, tmp_path_factory):
    bad_summary = {**SUMMARY, "test_accuracy": float("nan"), "seconds": float("inf"), "steps": "three"}
    write_run(
        tmp_path, "20260101-000000-nan", summary=bad_summary, events=[step(1, 1.0), {**step(2, 1.0), "loss": "x"}]
    )
    write_run(tmp_path, "20260102-000000-failed", events=[step(1, 1.0), {"kind": "error", "step": 1, "epoch": 0}])
    write_run(tmp_path, "=1+1", family="node", events=[step(1, 1.0)])
    (tmp_path / "20260104-000000-foreign").mkdir()
    (tmp_path / "20260104-000000-foreign" / "config.json").write_text(json.dumps({"model": {"family": "deq"}}))
    records = {r.name: r for r in read_runs(tmp_path)}
    nan = dict(zip(RUN_COLUMNS, records["20260101-000000-nan"].row()))
    assert nan["test acc %"] is None and nan["s"] is None and nan["steps"] is None and nan["NFE fwd"] == 12.3
    np.testing.assert_array_equal(read_metrics(tmp_path / "20260101-000000-nan")["loss"], [1.0, np.nan])
    assert records["20260102-000000-failed"].state == "failed"
    assert records["20260104-000000-foreign"].params is None  # a partial config is not counted as the defaults
    # A config from before a solver setting existed (here DEQ's jac_reg) still gets its parameter count.
    older = core.preset("image28-deq").to_dict()
    del older["deq"]["jac_reg"]
    (tmp_path / "older").mkdir()
    (tmp_path / "older" / "config.json").write_text(json.dumps({"model": older, "dataset": "digits"}))
    counted = {r.name: r for r in read_runs(tmp_path)}["older"].params
    assert counted == sum(p.numel() for p in core.build_model(core.preset("image28-deq")).parameters())
    dest = tmp_path_factory.mktemp("export")
    exported = json.loads(export_runs(list(records.values()), "json", dest).read_text())  # NaN -> null
    assert {e["run"]: e for e in exported}["20260101-000000-nan"]["summary"]["test_accuracy"] is None
    with open(export_runs(list(records.values()), "csv", dest), newline="") as fh:
        names = [row[0] for row in csv.reader(fh)]
    assert "'=1+1" in names and "=1+1" not in names  # a spreadsheet would run it as a formula
    ex = Explorer(tmp_path, autoplay=False)
    assert len(ex.compare.refresh("k", "all saved runs", None).table) == 5


def test_export_csv_and_json_round_trip(runs, tmp_path_factory):
    records = read_runs(runs)
    dest = tmp_path_factory.mktemp("export")
    path = export_runs(records, "csv", dest)
    with open(path, newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == RUN_COLUMNS
    assert table[2] == ["" if v is None else str(v) for v in run_rows(records)[1]]
    data = json.loads(export_runs(records, "json", dest).read_text())
    assert data[1]["summary"] == SUMMARY and data[1]["config"]["model"]["family"] == "homoode"
    assert sorted(p.name for p in dest.iterdir()) == ["runs.csv", "runs.json"]  # no temporary files left
    with pytest.raises(ValueError, match="csv, json"):
        export_runs(records, "xlsx", dest)
    with pytest.raises(ValueError, match="no saved runs"):
        export_runs([], "csv", dest)


def test_compare_refresh_select_and_accuracy_points(runs):
    ex = Explorer(runs, autoplay=False)
    out = ex.compare.refresh("s1", "all saved runs", ["gone", "20260101-000000-a"])
    names, picked = out.runs
    assert names == ["20260102-000000-b", "20260101-000000-a"] and picked == ["20260101-000000-a"]
    assert {t.name for t in out.curves.data} >= {"20260101-000000-a"}
    assert all(t.legendgroup == "20260101-000000-a" for t in out.curves.data)
    acc = {t.name: t for t in out.accuracy.data if t.xaxis == "x"}
    # Finished run: test accuracy, summary NFE, filled marker. Running one: best validation so far, open marker.
    assert acc["homoode"].y[0] == pytest.approx(91.234, rel=1e-6) and acc["homoode"].x[0] == pytest.approx(12.34)
    assert acc["homoode"].marker.symbol == ("circle",)
    assert acc["node"].y[0] == pytest.approx(60.0) and acc["node"].x[0] == pytest.approx(30.0)
    assert acc["node"].marker.symbol == ("circle-open",)
    out = ex.compare.refresh("s1", "all saved runs", None)
    assert out.runs == (names, KEEP)  # nothing ticked: the picks stay the user's
    assert {t.legendgroup for t in out.curves.data} == set(names)  # the curves of the newest (up to 3)
    both = ex.compare.select("s1", "all saved runs", names).curves
    assert {t.legendgroup for t in both.data} == set(names)
    # This tab started neither run: it says so, and how many there are in all (it once said "No saved
    # runs yet" while two were listed under "all saved runs").
    mine = ex.compare.refresh("s1", "this tab's runs", None)
    assert mine.table == [] and mine.message.startswith("This tab has no saved runs yet (2 saved runs in ")
    assert "all saved runs" in mine.message and "No saved runs yet" not in mine.message
    assert "2 saved runs in" in ex.compare.export("s1", "this tab's runs", "csv").warning
    ex.session("s1").run_dirs.append(runs / "20260101-000000-a")
    assert [r[0] for r in ex.compare.refresh("s1", "this tab's runs", None).table] == ["20260101-000000-a"]
    assert "show must be" in ex.compare.refresh("s1", "everything", None).warning
    export = ex.compare.export("s1", "all saved runs", "csv")
    assert open(export.file).read().startswith("run,model,dataset,params")
    assert "no saved runs" in ex.compare.export("s2", "this tab's runs", "csv").warning


def test_memory_measure_grows_with_batch_and_adjoint_saves_less(tmp_path):
    ex = Explorer(tmp_path, autoplay=False)
    from core.bench import memory_probe

    out = ex.compare.memory("m", ["node", "deq"], ["direct", "adjoint", "implicit"], "4, 16", "points", 8)
    by = {
        (f, g, b): memory_probe(f, g, b, 8, "points", "cpu")
        for f, g in (("node", "direct"), ("node", "adjoint"), ("deq", "implicit"))
        for b in (4, 16)
    }
    for f, g in (("node", "direct"), ("node", "adjoint"), ("deq", "implicit")):
        small, big = by[(f, g, 4)]["graph_bytes"], by[(f, g, 16)]["graph_bytes"]
        assert small < big <= 4 * small  # activations scale with the batch; weights saved once do not
    # rk4 x 8 steps: direct backprop keeps every stage, the adjoint only the solution states.
    assert by[("node", "adjoint", 16)]["graph_bytes"] < 0.5 * by[("node", "direct", 16)]["graph_bytes"]
    assert by[("node", "direct", 16)]["nfe_forward"] == 32
    fig = out.memory
    assert len(fig.data) == 3 and fig.layout.xaxis.type == "log" and list(fig.layout.xaxis.tickvals) == [4, 16]
    direct = next(t for t in fig.data if t.name == "node · direct")
    np.testing.assert_allclose(direct.y, [by[("node", "direct", b)]["graph_bytes"] / 2**20 for b in (4, 16)], rtol=1e-6)
    assert "8 steps" in out.message and ex.registry.gate.running == 0  # the slot is given back
    deq_only = ex.compare.memory("m", ["deq"], ["implicit"], "4", "points", 8).message
    assert "rk4" not in deq_only


def test_memory_measure_takes_a_training_slot(tmp_path):
    ex = Explorer(tmp_path, autoplay=False, max_trainings=1)
    holder = object()
    ex.registry.gate.acquire(holder)
    out = ex.compare.memory("m", ["node"], ["direct"], "4", "points", 1)
    assert "already trains 1 image model" in out.warning and out.memory is KEEP
    ex.registry.gate.release(holder)
    assert ex.compare.memory("m", ["node"], ["direct"], "4", "points", 1).memory is not KEEP


@pytest.mark.parametrize(
    "args, message",
    [
        (([], ["direct"], "8", "points", 2), "at least one model family"),
        ((["node"], [], "8", "points", 2), "at least one gradient"),
        ((["node"], ["implicit"], "8", "points", 2), "no family uses"),
        ((["node"], ["direct"], "8, many", "points", 2), "whole numbers separated by commas"),
        ((["node"], ["direct"], "0", "points", 2), "1 to 8 batch sizes"),
        ((["node"], ["direct"], "1 2 3 4 5 6 7 8 9", "points", 2), "1 to 8 batch sizes"),
        ((["node"], ["direct"], "8", "image99", 2), "input kind must be"),
        ((["node"], ["direct"], "8", "points", 0), "rk4 steps must be a whole number from 1 to 8"),
        ((["node"], ["direct"], "8", "points", 9), "rk4 steps must be a whole number from 1 to 8"),
        ((["node"], ["direct"], "8", "points", 2.5), "rk4 steps must be a whole number from 1 to 8"),
        ((["node"], ["direct"], "256", "points", 2), "1 to 8 batch sizes from 1 to 128"),
        ((["node", "resnet"], ["direct"], "8", "points", 2), "family must be one of"),
        ((["node"], ["backprop"], "8", "points", 2), "gradient method must be one of"),
        ((["node"], ["direct"], "8", "points", None), "rk4 steps is empty: enter a number"),
    ],
)
def test_memory_measure_rejects_bad_input(tmp_path, args, message):
    ex = Explorer(tmp_path, autoplay=False)
    out = ex.compare.memory("m", *args)
    assert message in out.warning and message in out.message and out.memory is KEEP
    assert ex.registry.gate.running == 0


def test_path_figure_3d_uses_the_third_principal_axis():
    rng = np.random.default_rng(0)
    states = rng.normal(size=(40, 6)) * np.array([5.0, 3.0, 2.0, 0.1, 0.1, 0.1])
    basis = fit_pca(states, dims=3)
    paths = {"a": basis.project(states[:20]), "b": basis.project(states[20:])}
    assert paths["a"].shape == (20, 3)
    fig3 = plots.path_figure(paths, 0.5, explained=basis.explained, dims=3)
    assert [t.type for t in fig3.data] == ["scatter3d"] * 3
    np.testing.assert_allclose(fig3.data[0].z, paths["a"][:, 2])
    assert fig3.layout.scene.zaxis.title.text.startswith("PC3 (")
    np.testing.assert_allclose(fig3.data[2].z, [paths["a"][10, 2], paths["b"][10, 2]], rtol=1e-6)  # the cursor
    fig2 = plots.path_figure(paths, 0.5, explained=basis.explained, dims=2)
    assert [t.type for t in fig2.data] == ["scatter"] * 3 and fig2.layout.xaxis.title.text.startswith("PC1 (")
    with pytest.raises(ValueError, match="dims must be 2 or 3"):
        plots.path_figure(paths, dims=4)
    with pytest.raises(ValueError, match="shape"):
        plots.path_figure({"flat": np.zeros((5, 2))}, dims=3)


def test_compare_figures_without_data_say_what_to_do():
    assert "Measure" in plots.memory_figure([]).layout.annotations[0].text
    assert "Train tab" in plots.runs_accuracy_figure([]).layout.annotations[0].text
    nan_point = plots.RunPoint("r", "deq", float("nan"), 0.0, 0.5, "val")
    assert len(plots.runs_accuracy_figure([nan_point]).data) == 0


def test_clicking_a_run_opens_it_in_the_solver_lab_once(runs):
    ex = Explorer(runs, autoplay=False)
    row = run_rows(read_runs(runs))[1]  # the finished run
    out = ex.compare.pick("s1", row=row)
    assert isinstance(out, CompareOut) and "no checkpoint yet" in out.warning  # a message only: no tab switch
    (runs / row[0] / "checkpoint.pt").write_bytes(b"")  # only its presence matters to the click
    nav, lab, message = ex.compare.pick("s1", row=row)
    assert nav.tab == "lab" and lab.model[1] == f"run:{row[0]}" and lab.split == "test" and message.message == ""
    # The lab then runs once for the click (here on an untrained preset), and not again without one.
    form = dict(model_key="fresh:image28-node", checkpoint="", split="val", index=0, tol=1e-4, max_iter=20)
    form.update(ode_method="rk4", ode_steps=2)
    assert ex.lab.run_opened("s1", **form).table is not KEEP
    assert ex.lab.run_opened("s1", **form) == LabOut()
    for bad in (["../etc"], ["."], [""], [None], None):
        assert ex.compare.pick("s1", row=bad) == ()


# ----------------------------------------------------------------------------------------------- manage runs


def test_filter_keeps_rows_with_every_word(runs):
    records = read_runs(runs)
    ex = Explorer(runs, autoplay=False)
    assert [r[0] for r in ex.compare.refresh("f", "all saved runs", None, "node").table] == ["20260102-000000-b"]
    out = ex.compare.refresh("f", "all saved runs", None, "homoode finished")
    assert [r[0] for r in out.table] == ["20260101-000000-a"] and "matching" in out.message
    assert ex.compare.refresh("f", "all saved runs", None, "nothing-like-this").table == []
    assert len(ex.compare.refresh("f", "all saved runs", None, "  ").table) == len(records)


def test_rename_stays_inside_the_runs_directory(runs, tmp_path_factory):
    ex = Explorer(runs, autoplay=False)
    out = ex.compare.rename("r", "all saved runs", ["20260101-000000-a"], "best-homoode")
    assert "renamed" in out.message and (runs / "best-homoode" / "config.json").is_file()
    assert not (runs / "20260101-000000-a").exists()
    for picked, new, message in (
        (["best-homoode"], "../escaped", "new name must be"),
        (["best-homoode"], "a/b", "new name must be"),
        (["best-homoode"], ".hidden", "new name must be"),
        (["best-homoode"], "20260102-000000-b", "already a run"),
        (["../outside"], "x", "is not a run's name"),
        (["best-homoode", "20260102-000000-b"], "x", "pick exactly one run"),
        (["not-a-run"], "x", "is not a run folder"),
    ):
        out = ex.compare.rename("r", "all saved runs", picked, new)
        assert message in out.warning, (picked, new, out)
    # A link inside the runs directory to a folder outside it is not a run to rename or delete.
    outside = tmp_path_factory.mktemp("outside")
    write_run(outside, "victim")
    (runs / "linked").symlink_to(outside / "victim")
    assert "there is no run" in ex.compare.rename("r", "all saved runs", ["linked"], "y").warning
    assert "there is no run" in ex.compare.delete("r", "all saved runs", ["linked"]).warning
    assert (outside / "victim" / "config.json").is_file()


@pytest.mark.slow
def test_delete_asks_twice_and_never_a_run_still_training(runs):
    ex = Explorer(runs, autoplay=False)
    first = ex.compare.delete("d", "all saved runs", ["20260101-000000-a"])
    assert "Press **Delete picked runs** again" in first.message and (runs / "20260101-000000-a").is_dir()
    # Another selection restarts the question.
    ex.compare.delete("d", "all saved runs", ["20260102-000000-b"])
    assert (runs / "20260102-000000-b").is_dir()
    ex.compare.delete("d", "all saved runs", ["20260101-000000-a"])
    done = ex.compare.delete("d", "all saved runs", ["20260101-000000-a"])
    assert "deleted 1 run" in done.message and not (runs / "20260101-000000-a").exists()
    assert [r[0] for r in done.table] == ["20260102-000000-b"]
    # A run that a tab is still training is refused.
    form = dict(dataset="digits", family="deq", preset="auto", steps=500, batch_size=8, lr=2e-3, ode_method="rk4",
                n_steps=2, tol=1e-3, deq_solver="anderson", device="cpu", train_limit=64, epochs=None)  # fmt: skip
    ex.train.start("d", **form)
    live = ex.session("d").run_dirs[-1].name
    try:
        assert "still training" in ex.compare.delete("d", "all saved runs", [live]).warning
        assert "still training" in ex.compare.rename("d", "all saved runs", [live], "z").warning
    finally:
        ex.session("d").train.stop(wait=True)
        ex.close_session("d")


def test_accuracy_points_carry_their_run_names():
    points = [plots.RunPoint("20260101-000000-homoode-digits-ab12", "homoode", 20.0, 0.0, 0.97, "test")]
    fig = plots.runs_accuracy_figure(points)
    assert list(fig.data[0].texttemplate) == ["homoode-digits-ab…"] and "text" in fig.data[0].mode


# ------------------------------------------------------------------ the ticks are the user's


def test_a_refresh_lists_the_runs_but_never_ticks_or_unticks_one(runs):
    """A refresh (opening the tab, the filter, the scope, Refresh) sends the picker its choices and never its
    value: a tick made while it is on its way survives, and nothing is ticked for the user (it pre-ticked the
    three newest runs, which a "Delete picked runs" then deleted)."""
    write_run(runs, "20260103-000000-c", events=[step(1, 1.0)])
    ex = Explorer(runs, autoplay=False)
    names = ["20260103-000000-c", "20260102-000000-b", "20260101-000000-a"]
    out = ex.compare.refresh("t", "all saved runs", [])
    assert out.runs == (names, KEEP)  # the three newest are listed, not ticked
    assert {t.legendgroup for t in out.curves.data} == set(names)  # their curves are shown meanwhile
    assert "3 newest" in out.message
    out = ex.compare.refresh("t", "all saved runs", ["20260101-000000-a"])
    assert out.runs == (names, KEEP)
    assert {t.legendgroup for t in out.curves.data} == {"20260101-000000-a"}
    # A ticked run whose row the filter hides stays in the picker, ticked, and says so.
    out = ex.compare.refresh("t", "all saved runs", ["20260101-000000-a"], "node")
    assert [r[0] for r in out.table] == ["20260102-000000-b"]
    assert out.runs == (["20260102-000000-b", "20260101-000000-a"], KEEP)
    assert "ticked, though not in the table: 20260101-000000-a" in out.message
    assert {
        t.legendgroup for t in ex.compare.select("t", "all saved runs", ["20260101-000000-a"], "node").curves.data
    } == {"20260101-000000-a"}
    # Only a run that is gone leaves the picks (the picker cannot hold a choice it does not list).
    (runs / "20260103-000000-c" / "config.json").unlink()
    out = ex.compare.refresh("t", "all saved runs", ["20260103-000000-c", "20260101-000000-a"])
    assert out.runs == (names[1:], ["20260101-000000-a"])


def test_choices_alone_leave_the_pickers_value_to_the_user():
    import gradio as gr

    from explorer.tabs.common import Choices, _update

    update = _update(gr.CheckboxGroup(), Choices(["a", "b"], KEEP))
    assert update.choices == [("a", "a"), ("b", "b")]
    assert "value" not in update._constructor_args[0]  # what gradio sends: the choices, not a value
    update = _update(gr.CheckboxGroup(), Choices(["a", "b"], ["b"]))
    assert update._constructor_args[0]["value"] == ["b"]


def test_delete_lists_and_deletes_exactly_the_ticked_runs(runs):
    write_run(runs, "20260103-000000-c", events=[step(1, 1.0)])
    ex = Explorer(runs, autoplay=False)
    ex.compare.refresh("d", "all saved runs", [])  # opening the tab ticks nothing
    first = ex.compare.delete("d", "all saved runs", ["20260101-000000-a"])
    assert "**20260101-000000-a**" in first.message and "exactly these" in first.message
    assert first.runs is KEEP and (runs / "20260101-000000-a").is_dir()
    done = ex.compare.delete("d", "all saved runs", ["20260101-000000-a"])
    assert "deleted 1 run(s): 20260101-000000-a" in done.message
    assert sorted(p.name for p in runs.iterdir() if (p / "config.json").exists()) == [
        "20260102-000000-b",
        "20260103-000000-c",
    ]
    assert done.runs == (["20260103-000000-c", "20260102-000000-b"], [])  # the deleted run left the picks
