"""A training killed with SIGKILL at random moments, again and again, still ends as the uninterrupted run:
every step recorded once and in order, the same final parameters."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.training import RunDir, load_checkpoint

pytestmark = pytest.mark.slow

ARGS = ["--model", "homoode", "--dataset", "circles", "--steps", "40", "--batch-size", "32", "--eval-every", "3",
        "--ode-method", "rk4", "--n-steps", "2", "--device", "cpu", "--threads", "1", "--quiet"]  # fmt: skip
KILLS = 20


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "core.train", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_twenty_kills_resume_to_the_uninterrupted_run(tmp_path):
    ref, run = tmp_path / "ref", tmp_path / "run"
    assert subprocess.run([sys.executable, "-m", "core.train", *ARGS, "--out", str(ref)]).returncode == 0
    rng = random.Random(0)
    kills = 0
    # The first process starts the run; each later one resumes it, or starts it again when it died before its
    # first checkpoint (which --resume then says).
    proc = start(*ARGS, "--out", str(run))
    while True:
        if kills < KILLS:
            time.sleep(rng.uniform(0.3, 2.5))  # the import and data load take ~1.5 s: some kills land early
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait()
        if proc.returncode == 0 and kills >= KILLS:
            break
        if (run / "checkpoint.pt").is_file() or (run / "summary.json").is_file():
            proc = start("--resume", str(run), "--quiet")
        else:
            proc = start(*ARGS, "--out", str(run), "--overwrite")
    assert kills == KILLS
    if not (run / "summary.json").is_file():  # the last process may have been the one killed
        assert subprocess.run([sys.executable, "-m", "core.train", "--resume", str(run), "--quiet"]).returncode == 0

    rows = list(RunDir(run).events())
    steps = [r["step"] for r in rows if r["kind"] == "step"]
    assert steps == list(range(1, 41))  # gap-free, duplicate-free, in order
    evals = [r["step"] for r in rows if r["kind"] == "eval"]
    assert evals == sorted(set(evals)) and evals == [r["step"] for r in RunDir(ref).events() if r["kind"] == "eval"]
    assert [r["kind"] for r in rows].count("finished") == 1 and rows[-1]["kind"] == "finished"
    assert not list(run.glob(".*.tmp"))
    a, b = load_checkpoint(ref / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-6, rtol=0), key
    ref_summary, run_summary = (json.loads((p / "summary.json").read_text()) for p in (ref, run))
    assert run_summary["test_accuracy"] == ref_summary["test_accuracy"] and run_summary["steps"] == 40
    assert os.path.getsize(run / "metrics.jsonl") > 0 and Path(run / "config.json").is_file()
