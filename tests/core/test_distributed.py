"""Data-parallel training under torchrun (two gloo processes on this CPU): equal to one process on the
global batch, run files written once, kill and resume with another number of ranks."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import core
from core.training import RunDir, TrainConfig, load_checkpoint

pytestmark = pytest.mark.slow

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train(out: Path, ranks: int, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [*TORCHRUN, str(ranks)] if ranks > 1 else [sys.executable]
    return subprocess.run(
        [*cmd, "-m", "core.train", *args, "--device", "cpu", "--threads", "1", "--quiet", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
    )


def step_rows(run: Path) -> list[int]:
    return [row["step"] for row in RunDir(run).events() if row["kind"] == "step"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_two_ranks_equal_one_process_on_the_global_batch(tmp_path, method):
    """HomoODE on the bundled digits with batch norm in its features and head (global-batch statistics on
    both ranks) and a learnable start point (its own optimizer, its gradient reduced too), in float64:
    after 6 steps every parameter and running statistic equals the single process's to 1e-7. With dopri5 the
    ranks share one error norm, so they take the steps one process takes on the global batch. (In float32
    the comparison would not be meaningful: a conv bias before batch norm has an exactly zero gradient,
    which rounding turns into noise that Adam, dividing by its own size, turns into full-sized steps.)"""
    args = (
        "--model", "homoode", "--dataset", "digits", "--steps", "6", "--batch-size", "15", "--train-limit", "256",
        "--eval-every", "3", "--ode-method", method, "--n-steps", "2", "--start-point", "learnable",
        "--start-every", "2", "--dropout", "0", "--lr", "3e-3", "--precision", "fp64",
    )  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    assert train(one, 1, *args).returncode == 0
    proc = train(two, 2, *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("test accuracy") == 1  # rank 0 speaks for both
    a, b = load_checkpoint(one / "checkpoint.pt"), load_checkpoint(two / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        if value.is_floating_point():
            assert torch.allclose(value, b["model"][key], atol=1e-7, rtol=0), key
    # The start point did train (on both): it is not where the model began.
    initial = core.build_model(TrainConfig.from_dict(RunDir(one).read_config()).model).state_dict()
    moved = a["model"]["block.start.conv.weight"] - initial["block.start.conv.weight"].double()
    assert float(moved.abs().max()) > 1e-4
    # The run files are written once (rank 0), with the global batch's figures; so is TensorBoard's event
    # file, where the optional package is installed (another rank's would be a second file).
    assert step_rows(two) == [1, 2, 3, 4, 5, 6]
    assert len(RunDir(two).event_files()) == (importlib.util.find_spec("tensorboard") is not None)
    one_steps = [r for r in RunDir(one).events() if r["kind"] == "step"]
    two_steps = [r for r in RunDir(two).events() if r["kind"] == "step"]
    for x, y in zip(one_steps, two_steps):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-9) and x["train_acc"] == y["train_acc"]
        assert (x["start_loss"] is None) == (y["start_loss"] is None)
    sa, sb = RunDir(one).read_summary(), RunDir(two).read_summary()
    assert sa["test_accuracy"] == sb["test_accuracy"] and sa["best_val_accuracy"] == sb["best_val_accuracy"]


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains ``text`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def kill_after_first_checkpoint(out: Path, ranks: int, *args: str) -> None:
    cmd = [*TORCHRUN, str(ranks)] if ranks > 1 else [sys.executable]
    proc = subprocess.Popen(
        [*cmd, "-m", "core.train", *args, "--device", "cpu", "--threads", "1", "--quiet", "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=ENV,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # a few more steps get recorded: the resume must drop them
    # torchrun's workers may sit in process groups of their own: kill every process of this run.
    for pid in processes_mentioning(str(out)):
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while processes_mentioning(str(out)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not processes_mentioning(str(out))
    assert (out / "checkpoint.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("ranks_after", [1, 2])
def test_a_killed_two_rank_run_resumes_with_any_number_of_ranks(tmp_path, ranks_after):
    args = ("--model", "homoode", "--dataset", "circles", "--steps", "300", "--batch-size", "32", "--eval-every", "4",
            "--ode-method", "rk4", "--n-steps", "2")  # fmt: skip
    run = tmp_path / "run"
    kill_after_first_checkpoint(run, 2, *args)
    saved = load_checkpoint(run / "checkpoint.pt")["step"]
    assert 4 <= saved < 300 and not (run / "summary.json").exists()  # killed mid-run
    cmd = [*TORCHRUN, str(ranks_after)] if ranks_after > 1 else [sys.executable]
    resume = ["-m", "core.train", "--resume", str(run), "--quiet"]
    proc = subprocess.run([*cmd, *resume], capture_output=True, text=True, env=ENV, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert step_rows(run) == list(range(1, 301))  # no step lost, none twice
    kinds = [row["kind"] for row in RunDir(run).events()]
    assert kinds.count("finished") == 1 and kinds[-1] == "finished"
    assert json.loads((run / "summary.json").read_text())["steps"] == 300
    again = subprocess.run([sys.executable, *resume], capture_output=True, text=True, env=ENV, timeout=120)
    assert again.returncode == 0 and "nothing to resume" in again.stdout
    assert [row["kind"] for row in RunDir(run).events()] == kinds  # a finished run is left as it was
