"""TensorBoard: every run the trainer records (CLI, app, study) is also an event file in
its run folder, holding the numbers of its ``metrics.jsonl``; without the optional package nothing changes."""

from __future__ import annotations

import gc
import sys

import numpy as np
import pytest
import torch

from core.models import preset
from core.train import main as cli_main
from core.training import RunDir, TrainConfig, Trainer, resume
from explorer.sessions import Lane, SessionTrainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# A DEQ on circles: residuals, a backward solve, validation; a few steps take well under a second.
ARGS = ["--model", "deq", "--dataset", "circles", "--batch-size", "32", "--device", "cpu", "--quiet"]

# What TensorBoard must show of each metrics.jsonl row: (row kind, row key, tag). Written out here, not taken
# from the code under test.
EXPECTED = [
    ("step", "loss", "train/loss"),
    ("step", "train_acc", "train/accuracy"),
    ("step", "lr", "train/lr"),
    ("step", "nfe_forward", "nfe/forward"),
    ("step", "nfe_backward", "nfe/backward"),
    ("step", "residual", "solver/residual"),
    ("step", "backward_residual", "solver/backward_residual"),
    ("step", "peak_memory_bytes", "memory/peak_bytes"),
    ("step", "graph_bytes", "memory/graph_bytes"),
    ("step", "step_seconds", "time/step_seconds"),
    ("step", "wall_seconds", "time/wall_seconds"),
    ("eval", "loss", "val/loss"),
    ("eval", "accuracy", "val/accuracy"),
    ("eval", "nfe_forward", "val/nfe_forward"),
    ("finished", "test_accuracy", "test/accuracy"),
    ("finished", "test_loss", "test/loss"),
    ("finished", "best_val_accuracy", "val/best_accuracy"),
]


def event_files(folder):
    """TensorBoard's event files in a folder (named so by its SummaryWriter)."""
    return sorted(folder.glob("events.out.tfevents.*"))


def read_back(folder):
    """The run folder's event files as TensorBoard reads them."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def series(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def expected_series(run: RunDir, kind: str, key: str):
    """(step, value) of ``key`` in every ``kind`` row of metrics.jsonl, as TensorBoard stores it (float32)."""
    return [
        (row["step"], float(np.float32(row[key])))
        for row in run.events()
        if row["kind"] == kind and row.get(key) is not None
    ]


def assert_same_numbers(run: RunDir) -> None:
    acc = read_back(run.path)
    tags = set(acc.Tags()["scalars"])
    for kind, key, tag in EXPECTED:
        want = expected_series(run, kind, key)
        assert want, (kind, key)  # the run recorded it: the comparison below is not empty
        assert tag in tags, tag
        assert series(acc, tag) == want, tag


def test_a_cli_run_is_an_event_file_with_the_numbers_of_metrics_jsonl_and_its_settings(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "runs" / "deq"
    assert cli_main([*ARGS, "--steps", "5", "--eval-every", "2", "--lr", "0.002", "--out", str(out)]) == 0
    run = RunDir(out)
    assert len(event_files(out)) == 1  # in the run folder itself
    assert_same_numbers(run)

    # The run's settings as hparams: numbers as numbers, names as text, nested settings by dotted name.
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = read_back(out).PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    hp = start.hparams
    assert hp["lr"].number_value == pytest.approx(0.002) and hp["steps"].number_value == 5
    assert hp["batch_size"].number_value == 32 and hp["dataset"].string_value == "circles"
    assert hp["model.family"].string_value == "deq"
    assert hp["model.deq.solver"].string_value == run.read_config()["model"]["deq"]["solver"]

    # `tensorboard --logdir runs` finds the run under its folder's name.
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path / "runs"))
    assert list(multiplexer.Runs()) == ["deq"]


def test_overwrite_starts_the_event_file_afresh(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "r"
    assert cli_main([*ARGS, "--steps", "4", "--eval-every", "2", "--out", str(out)]) == 0
    assert (
        cli_main([*ARGS, "--steps", "3", "--eval-every", "2", "--out", str(out), "--overwrite", "--lr", "0.002"]) == 0
    )
    run = RunDir(out)
    assert len(event_files(run.path)) == 1
    assert [s for s, _ in series(read_back(out), "train/loss")] == [1, 2, 3]  # one run's rows, not two mixed
    assert series(read_back(out), "train/lr")[0][1] == pytest.approx(0.002)


def test_an_app_run_with_a_live_change_is_in_tensorboard_too(tmp_path):
    pytest.importorskip("tensorboard")
    config = TrainConfig(
        model=preset("points-deq"), dataset="circles", steps=4, eval_every=2, batch_size=32, device="cpu"
    )
    app = SessionTrainer([Lane("DEQ", config, tmp_path / "app")])
    try:
        app.step_once()
        app.step_once()
        app.apply(lr=5e-4)
        app.step_once()
        app.step_once()
        assert app.done
    finally:
        app.stop(wait=True)
    run = RunDir(tmp_path / "app")
    assert_same_numbers(run)
    # The live change: the lr curve follows it, and the change itself is a text entry at its step.
    acc = read_back(run.path)
    assert acc.Tags()["tensors"] == ["changes/text_summary"]
    (change,) = acc.Tensors("changes/text_summary")
    assert change.step == 2 and "lr: 0.001 → 0.0005" in change.tensor_proto.string_val[0].decode()


def test_a_resumed_run_shows_each_step_once(tmp_path):
    """A run killed after its checkpoint at step 2 (rows of step 3 written) resumes from step 2: the rows of
    step 3 go from metrics.jsonl, and from TensorBoard with them."""
    pytest.importorskip("tensorboard")
    out = tmp_path / "r"
    config = TrainConfig(
        model=preset("points-node"), dataset="moons", steps=5, eval_every=2, batch_size=32, device="cpu"
    )
    trainer = Trainer(config, out_dir=out)
    while trainer.step_count < 3:
        trainer.tick()
    assert [r["step"] for r in RunDir(out).events() if r["kind"] == "step"] == [1, 2, 3]
    del trainer  # killed after step 3: never ended
    gc.collect()
    events = list(resume(out))
    assert events[-1].kind == "finished"
    run = RunDir(out)
    assert [r["step"] for r in run.events() if r["kind"] == "step"] == [1, 2, 3, 4, 5]
    assert len(event_files(run.path)) == 1
    acc = read_back(out)
    assert [s for s, _ in series(acc, "train/loss")] == [1, 2, 3, 4, 5]
    assert series(acc, "train/loss") == expected_series(run, "step", "loss")


def test_without_tensorboard_training_works_and_writes_no_event_file(tmp_path, monkeypatch):
    # As if the optional package were not installed: importing it fails.
    for name in [
        m for m in sys.modules if m == "tensorboard" or m.startswith(("tensorboard.", "torch.utils.tensorboard"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ImportError):
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401

    out = tmp_path / "r"
    assert cli_main([*ARGS, "--steps", "4", "--eval-every", "2", "--out", str(out)]) == 0
    run = RunDir(out)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.jsonl", "summary.json"]
    assert event_files(run.path) == []
    assert [r["kind"] for r in run.events()].count("step") == 4 and run.read_summary()["steps"] == 4
    assert torch.isfinite(torch.tensor([r["loss"] for r in run.events() if r["kind"] == "step"])).all()
