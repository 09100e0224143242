"""Run folders and the files people hand the tools: what a run measured is said, a finished run is never
overwritten or mixed with another, a torn line loses no event, a checkpoint never says where data comes
from, links never lead out of the runs folder, and a hostile file or path is a clear message."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import torch

import core.training.loop as loop
from core.data import load_dataset
from core.train import main as cli_main
from core.training import CheckpointError, RunDir, TrainConfig, load_checkpoint, load_trainer
from core.training.checkpoint import FORMAT
from explorer import imagetrain
from explorer import lab as lab_lib
from explorer.app import Explorer
from explorer.imagetrain import TrainSettings, new_run_dir
from explorer.runs import RunRecord, export_runs, read_runs
from explorer.tabs.lab import model_choices

torch.set_num_threads(1)

# A DEQ on circles: a few steps take well under a second on a CPU.
ARGS = ["--model", "deq", "--dataset", "circles", "--batch-size", "32", "--device", "cpu", "--quiet"]


def train(out: Path, *extra: str) -> int:
    return cli_main([*ARGS, "--steps", "4", "--eval-every", "2", "--out", str(out), *extra])


def kinds(run: RunDir) -> list[tuple[str, int]]:
    return [(row["kind"], row["step"]) for row in run.events()]


# ------------------------------------------------------------------ --train-limit limits training only


def test_train_limit_shrinks_only_the_training_split():
    digits = load_dataset("digits", train_limit=300)
    assert digits.sizes == {"train": 300, "val": 1000, "test": 2000}
    assert torch.bincount(digits.train.targets, minlength=10).min() >= 20  # a stratified subset
    moons = load_dataset("moons", toy_size=600, train_limit=101)
    assert moons.sizes == {"train": 101, "val": 120, "test": 600}
    with pytest.raises(ValueError, match="train_limit"):
        load_dataset("digits", train_limit=0)


def test_the_summary_records_every_limit_on_what_was_measured(tmp_path):
    assert train(tmp_path / "r", "--train-limit", "50", "--eval-batches", "1") == 0
    summary = RunDir(tmp_path / "r").read_summary()
    assert summary["train_limit"] == 50 and summary["eval_batches"] == 1 and summary["time_budget"] is None
    # circles: 1,000 train and test points, val 20 % of that; val read in one batch of 32.
    assert (summary["train_examples"], summary["val_examples"], summary["test_examples"]) == (50, 200, 1000)
    assert summary["val_examples_measured"] == 32 and summary["test_limit"] is None
    assert train(tmp_path / "t", "--test-limit", "100") == 0
    limited = RunDir(tmp_path / "t").read_summary()
    assert (limited["test_limit"], limited["test_examples"], limited["train_examples"]) == (100, 100, 1000)
    assert train(tmp_path / "full") == 0
    full = RunDir(tmp_path / "full").read_summary()
    assert (full["train_limit"], full["eval_batches"], full["train_examples"]) == (None, None, 1000)
    assert full["val_examples_measured"] == full["val_examples"] == 200


# ------------------------------------------------------------------ --out never overwrites a run


def test_out_refuses_a_folder_that_is_not_empty_unless_told(tmp_path, capsys):
    out = tmp_path / "r"
    assert train(out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    run_files = {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt"}
    # ... and TensorBoard's event file, where the optional package is installed.
    assert set(before) - {p.name for p in RunDir(out).event_files()} == run_files
    with pytest.raises(SystemExit) as exit_info:
        train(out, "--lr", "0.002")
    assert exit_info.value.code == 2 and "already holds a run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not a byte changed

    # Not a run (a run killed before its config.json, or anything else): refused too.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit):
        train(other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]

    # --overwrite starts afresh: one run's rows, not two mixed.
    assert train(out, "--overwrite", "--lr", "0.002") == 0
    assert RunDir(out).read_config()["lr"] == 0.002
    assert [s for k, s in kinds(RunDir(out)) if k == "step"] == [1, 2, 3, 4]
    assert [k for k, _ in kinds(RunDir(out))].count("finished") == 1
    assert train(tmp_path / "empty-is-fine") == 0


def test_the_app_always_trains_into_a_new_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(imagetrain.time, "strftime", lambda fmt: "20240101-000000")
    settings = TrainSettings()
    first = new_run_dir(tmp_path, settings, "session")
    (first / "config.json").write_text("{}")
    second = new_run_dir(tmp_path, settings, "session")
    assert second != first and second.name == f"{first.name}-2" and list(second.iterdir()) == []
    assert (first / "config.json").read_text() == "{}"
    # Two starts racing in the same second: each gets its own folder, none raises.
    import threading

    made: list = []
    threads = [threading.Thread(target=lambda: made.append(new_run_dir(tmp_path, settings, "s"))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 8 and len(set(made)) == 8 and all(p.is_dir() for p in made)


# ------------------------------------------------------------------ a torn last line loses no event


def test_an_append_after_a_torn_line_starts_on_a_new_line(tmp_path):
    run = RunDir(tmp_path / "r").create()
    run.append({"kind": "step", "step": 1})
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "step", "step": 2, "lo')  # killed mid-write
    run.append({"kind": "step", "step": 2})
    run.append({"kind": "eval", "step": 2})
    assert kinds(run) == [("step", 1), ("step", 2), ("eval", 2)]
    assert run.last_event_kind() == "eval"
    # A complete last row without its newline (killed between the two) is kept, not glued to the next.
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "step", "step": 3}')
    run.append({"kind": "step", "step": 4})
    assert kinds(run)[-2:] == [("step", 3), ("step", 4)]


def test_a_resume_after_a_torn_line_keeps_every_complete_event(tmp_path):
    out = tmp_path / "r"
    trainer = loop.Trainer(_config(), out_dir=out)
    trainer.tick()
    trainer.tick()  # step 2: validated and checkpointed; then the process "dies"
    with open(out / "metrics.jsonl", "a") as fh:
        fh.write('{"kind": "step", "step": 3, "lo')
    assert cli_main(["--resume", str(out), "--quiet"]) == 0
    rows = kinds(RunDir(out))
    assert [s for k, s in rows if k == "step"] == [1, 2, 3, 4]
    assert [s for k, s in rows if k == "eval"] == [2, 4]
    assert rows[-1] == ("finished", 4) and [k for k, _ in rows].count("finished") == 1


def _config(**changes) -> TrainConfig:
    from core.models import preset

    model = preset("points-deq")
    return TrainConfig(model=model, dataset="circles", batch_size=32, steps=4, eval_every=2, device="cpu", **changes)


# ------------------------------------------------------------------ a checkpoint never says where data comes from


def test_resume_never_takes_download_or_data_dir_from_the_run(tmp_path, monkeypatch):
    outside = tmp_path / "outside" / "data"
    out = tmp_path / "r"
    trainer = loop.Trainer(_config(download=True, data_dir=str(outside)), out_dir=out)
    trainer.tick()
    trainer.tick()  # a checkpoint whose config says download=True, data_dir=outside
    assert json.loads(load_checkpoint(out / "checkpoint.pt")["config"])["download"] is True
    assert RunDir(out).read_config()["data_dir"] == str(outside)

    calls = []
    real = loop.data_lib.load_dataset

    def recording(name, **options):
        calls.append({"download": options["download"], "data_dir": options["data_dir"]})
        return real(name, **options)

    monkeypatch.setattr(loop.data_lib, "load_dataset", recording)
    assert load_trainer(out / "checkpoint.pt").config.download is False
    assert calls[-1] == {"download": False, "data_dir": None}
    mine = tmp_path / "mine"
    assert cli_main(["--resume", str(out), "--quiet", "--data-dir", str(mine)]) == 0  # the command line's say
    assert calls[-1] == {"download": False, "data_dir": str(mine)}
    assert RunDir(out).read_config()["download"] is False and RunDir(out).read_config()["data_dir"] == str(mine)
    assert not outside.exists() and not mine.exists()  # nothing was created


def test_resume_by_the_library_uses_the_defaults_too(tmp_path, monkeypatch):
    out = tmp_path / "r"
    trainer = loop.Trainer(_config(download=True, data_dir=str(tmp_path / "elsewhere")), out_dir=out)
    trainer.tick()
    trainer.tick()
    seen = []
    real = loop.data_lib.load_dataset
    monkeypatch.setattr(
        loop.data_lib, "load_dataset", lambda name, **o: seen.append((o["download"], o["data_dir"])) or real(name, **o)
    )
    events = list(loop.resume(out))
    assert events[-1].kind == "finished" and seen == [(False, None)]


# ------------------------------------------------------------------ links never lead out of the runs folder


@pytest.fixture
def planted(tmp_path):
    """runs/ with a real run ``good``, a link ``link`` to a run outside, and a run ``x`` whose checkpoint.pt
    and config.json are links to files outside."""
    root = tmp_path / "runs"
    assert train(root / "good") == 0
    secret = tmp_path / "secret"
    assert train(secret, "--lr", "0.00123") == 0
    (root / "link").symlink_to(secret)
    x = RunDir(root / "x").create()
    x.write_config(RunDir(root / "good").read_config())
    x.checkpoint.symlink_to(secret / "checkpoint.pt")
    y = RunDir(root / "y").create()
    (y.path / "config.json").symlink_to(secret / "config.json")
    return root, secret


def test_run_dir_never_follows_a_link_out(planted):
    root, secret = planted
    assert sorted(r.name for r in RunDir.list(root)) == ["good", "x"]  # not link, not y (its config is a link)
    with pytest.raises(ValueError, match="no run"):
        RunDir.find(root, "link")
    with pytest.raises(ValueError, match="not a run folder"):
        RunDir.find(root, "y")
    assert RunDir(root / "y").read_config() == {}
    with pytest.raises(CheckpointError, match="symbolic link"):
        RunDir(root / "x").checkpoint_file()
    assert RunDir(root / "good").checkpoint_file() == root / "good" / "checkpoint.pt"


def test_resume_refuses_a_linked_checkpoint(planted, capsys):
    root, secret = planted
    before = (secret / "metrics.jsonl").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--resume", str(root / "x"), "--quiet"])
    assert exit_info.value.code == 2 and "symbolic link" in capsys.readouterr().err
    assert (secret / "metrics.jsonl").read_bytes() == before


def test_the_runs_table_export_and_lab_stay_inside_the_runs_folder(planted, tmp_path):
    root, secret = planted
    records = read_runs(root)
    assert sorted(r.name for r in records) == ["good", "x"]
    exported = export_runs(records, "json", tmp_path / "export").read_text()
    assert "0.00123" not in exported and str(secret) not in exported  # the outside run's lr and path
    assert [p.name for p in lab_lib.runs_with_checkpoints(root)] == ["good"]
    ex = Explorer(root, autoplay=False)
    assert [k for _, k in model_choices(ex, "s") if k.startswith("run:")] == ["run:good"]
    for text in ("x", "x/checkpoint.pt", "link", "link/checkpoint.pt", str(secret / "checkpoint.pt")):
        with pytest.raises(ValueError, match="only checkpoints under the runs directory"):
            lab_lib.resolve_checkpoint(text, root)
        out = ex.lab.run("s", "fresh:image28-deq", text, "val", 0, 1e-4, 30, "rk4", 4)
        assert "only checkpoints under the runs directory" in out.warning
    out = ex.lab.run("s", "run:link", "", "val", 0, 1e-4, 30, "rk4", 4)
    assert "only checkpoints under the runs directory" in out.warning
    assert lab_lib.resolve_checkpoint("good", root) == (root / "good" / "checkpoint.pt").resolve()


# ------------------------------------------------------------------ hostile cells, paths and files


def test_the_csv_export_quotes_every_formula_start(tmp_path):
    names = ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1+1", "\r=1+1", "plain"]
    records = [RunRecord(name, tmp_path, {"lr": -0.5}, {}) for name in names]
    with open(export_runs(records, "csv", tmp_path), newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["run"] for r in rows] == ["'=1+1", "'+1", "'-1", "'@SUM(A1)", "'\t=1+1", "'\r=1+1", "plain"]
    assert {r["lr"] for r in rows} == {"-0.5"}  # a number is never quoted


def test_a_link_loop_or_a_huge_path_is_a_warning_in_the_lab(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "loop").symlink_to(root / "loop")
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    for text, needle in [
        ("loop", "loop of symbolic links"),
        ("a/checkpoint.pt", "loop of symbolic links"),
        ("q" * 5000, "5,000 characters long"),
        ("e" * 300, "File name too long"),  # under our cap, over the file system's
        ("x\0y", "NUL character"),
    ]:
        with pytest.raises(ValueError, match=needle):
            lab_lib.resolve_checkpoint(text, root)
    ex = Explorer(root, autoplay=False)
    for model_key, text in [("fresh:image28-deq", "loop"), ("run:a", ""), ("run:" + "q" * 5000, "")]:
        out = ex.lab.run("s", model_key, text, "val", 0, 1e-4, 30, "rk4", 4)
        assert out.warning and len(out.message) < 300
        assert ex.lab.sweep("s", model_key, text, "tol", 8).warning
        assert ex.lab.input("s", model_key, text, "val", 0).warning
        assert "⚠️" in ex.lab.draw("s", model_key, text, None, 1e-4, 30, "rk4", 4).message
    assert RunDir.list(root) == [] and lab_lib.runs_with_checkpoints(root) == []


class Payload:
    """An object whose unpickling would touch a file: the stand-in for code hidden in a checkpoint."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_malicious_checkpoint_is_refused_without_unsafe_advice(tmp_path):
    marker = tmp_path / "ran"
    run = RunDir(tmp_path / "runs" / "evil").create()
    run.write_config({})
    torch.save({"format": FORMAT, "model": Payload(marker)}, run.checkpoint)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run.checkpoint)
    text = str(err.value)
    assert "not a checkpoint this tool wrote" in text and "cannot be loaded safely" in text
    assert "weights_only" not in text and "re-run" not in text.lower() and "Unsupported global" not in text
    assert not marker.exists()  # nothing in the file ran
    ex = Explorer(tmp_path / "runs", autoplay=False)
    for model_key, path in [("run:evil", ""), ("fresh:image28-deq", "evil/checkpoint.pt")]:
        out = ex.lab.run("s", model_key, path, "val", 0, 1e-4, 30, "rk4", 4)
        assert "cannot be loaded safely" in out.warning and "weights_only" not in out.warning + out.message
    assert not marker.exists()
    assert os.path.getsize(run.checkpoint) > 0
