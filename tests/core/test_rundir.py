"""The run folder (``core.training.RunDir``) and the one training loop behind the CLI and the app."""

from __future__ import annotations

import json
import os

import pytest
import torch

from core.train import main as cli_main
from core.training import CheckpointError, RunDir, TrainConfig, load_trainer
from explorer.sessions import Lane, SessionTrainer

torch.set_num_threads(2)

CLI_ARGS = ["--model", "deq", "--dataset", "circles", "--steps", "5", "--eval-every", "2", "--batch-size", "32"]


def rows_by_kind(run: RunDir) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in run.events():
        out.setdefault(row["kind"], []).append(row)
    return out


def test_a_run_from_the_app_writes_the_rows_the_cli_writes(tmp_path):
    """Same settings, two front ends, one loop: the same files, the same events with the same keys, and
    (seeded, same arithmetic) the same numbers."""
    cli_dir, app_dir = tmp_path / "cli", tmp_path / "app"
    assert cli_main([*CLI_ARGS, "--device", "cpu", "--quiet", "--out", str(cli_dir)]) == 0
    cli = RunDir(cli_dir)
    config = TrainConfig.from_dict(cli.read_config())

    app = SessionTrainer([Lane("DEQ", config, app_dir)])
    try:
        for _ in range(5):
            app.step_once()
        assert app.done
    finally:
        app.stop(wait=True)
    ran = RunDir(app_dir)

    def files(folder):  # a TensorBoard event file (where tensorboard is installed) is named by time and process
        return sorted(
            "events.out.tfevents.*" if p.name.startswith("events.out.tfevents.") else p.name for p in folder.iterdir()
        )

    assert files(cli_dir) == files(app_dir)
    assert ran.read_config() == cli.read_config()
    cli_rows, app_rows = rows_by_kind(cli), rows_by_kind(ran)
    assert [r["kind"] for r in ran.events()] == [r["kind"] for r in cli.events()]
    assert [r["kind"] for r in cli.events()] == [
        *["step", "step", "eval", "checkpoint"] * 2,
        *["step", "eval", "checkpoint", "finished"],
    ]
    for kind, rows in cli_rows.items():
        for a, b in zip(rows, app_rows[kind]):
            assert a.keys() == b.keys(), kind
    for a, b in zip(cli_rows["step"], app_rows["step"]):
        assert (a["step"], a["loss"], a["nfe_forward"], a["lr"]) == (b["step"], b["loss"], b["nfe_forward"], b["lr"])
    assert [r["accuracy"] for r in cli_rows["eval"]] == [r["accuracy"] for r in app_rows["eval"]]
    assert ran.read_summary().keys() == cli.read_summary().keys()
    assert ran.read_summary()["test_accuracy"] == cli.read_summary()["test_accuracy"]
    assert ran.read_summary()["stopped"] is cli.read_summary()["stopped"] is False


def test_live_changes_are_recorded_by_the_trainer_in_both_files(tmp_path):
    config = TrainConfig.from_dict(
        json.loads(json.dumps({**_points_config().to_dict(), "steps": 4}))  # a round trip, as the app reads it
    )
    app = SessionTrainer([Lane("DEQ", config, tmp_path)])
    try:
        app.step_once()
        app.apply(lr=5e-4)
        app.step_once()
    finally:
        app.stop(wait=True)
    run = RunDir(tmp_path)
    changes = rows_by_kind(run)["change"]
    assert [(c["step"], c["changes"]) for c in changes] == [(1, {"lr": {"old": 1e-2, "new": 5e-4}})]
    assert run.read_config()["lr"] == 5e-4  # the settings in force, which a resume continues with
    summary = run.read_summary()
    assert summary["stopped"] is True and summary["steps"] == 2
    # Stopping validated and checkpointed the last step, as the CLI's stop does.
    assert [r["kind"] for r in run.events()][-3:] == ["eval", "checkpoint", "finished"]
    assert load_trainer(run.checkpoint_file()).config.lr == 5e-4


def _points_config() -> TrainConfig:
    from core.models import ODEConfig, preset

    model = preset("points-deq").replace(ode=ODEConfig(method="rk4", n_steps=2))
    return TrainConfig(model=model, dataset="circles", batch_size=32, steps=4, eval_every=2, lr=1e-2, device="cpu")


def test_reading_skips_a_torn_line_and_never_raises(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.read_config() == {} and run.read_summary() == {} and list(run.events()) == []
    assert run.last_event_kind() is None and run.started() == 0.0
    run.create().write_config({"lr": 0.1})
    run.append({"kind": "step", "step": 1, "loss": float("nan")})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "eval", "ste')  # a crash mid-line
    assert list(run.events()) == [{"kind": "step", "step": 1, "loss": None}]  # NaN written as null
    assert run.last_event_kind() == "step"
    (run.path / "summary.json").write_text("[1, 2]")  # JSON, but not a summary
    assert run.read_summary() == {}
    assert run.read_config() == {"lr": 0.1}


def test_find_and_list_stay_inside_the_runs_folder(tmp_path):
    root = tmp_path / "runs"
    older, newer = RunDir(root / "a").create(), RunDir(root / "b").create()
    older.write_config({})
    newer.write_config({})
    os.utime(older.path / "config.json", (1, 1))
    (root / "not-a-run").mkdir()
    outside = RunDir(tmp_path / "elsewhere").create()
    outside.write_config({})
    (root / "link").symlink_to(outside.path)
    assert [r.name for r in RunDir.list(root) if r.name != "link"] == ["b", "a"]
    assert [r.name for r in RunDir.list(root, only={older.path})] == ["a"]
    assert RunDir.find(root, "a").path == older.path
    for name, needle in [("../elsewhere", "not a run's name"), ("link", "no run"), ("not-a-run", "no config.json")]:
        with pytest.raises(ValueError, match=needle):
            RunDir.find(root, name)
    assert RunDir.list(tmp_path / "missing") == []


def test_a_checkpoint_is_opened_only_where_the_run_wrote_it(tmp_path):
    with pytest.raises(CheckpointError, match="there is no run folder at .*check the path"):
        RunDir(tmp_path / "typo").checkpoint_file()
    run = RunDir(tmp_path / "r").create()
    with pytest.raises(CheckpointError, match="has not saved one"):
        run.checkpoint_file()
    (tmp_path / "other.pt").write_bytes(b"x")
    run.checkpoint.symlink_to(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="symbolic link"):
        run.checkpoint_file()
    with pytest.raises(SystemExit) as exit_info:  # the CLI's --resume goes through it
        cli_main(["--resume", str(run.path)])
    assert exit_info.value.code == 2


def test_the_state_of_a_run_folder_is_read_one_way(tmp_path):
    run = RunDir(tmp_path / "r")
    assert run.state() == "empty"  # not even a folder
    run.create()
    run.write_config({"model": {}})
    assert run.state() == "in progress"  # running, or killed: the same files
    run.append({"kind": "step", "step": 1})
    run.append({"kind": "error", "step": 2, "message": "diverged"})
    assert run.state() == "failed"
    run.write_summary({"stopped": True})
    assert run.state() == "stopped"
    run.write_summary({"stopped": False})
    assert run.state() == "finished"
