"""Smoke test of the solver benchmark CLI: ``python -m core.bench solvers --quick --json PATH``."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("problem", "family", "method", "converged", "status", "nfe", "seconds", "abs_residual", "rel_residual")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "solvers.json"
    # One thread: the quick set is tiny, and on a shared 2-core machine OpenMP spinning makes 2 threads slower.
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "core.bench", "solvers", "--quick", "--threads", "1", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_quick_records_have_required_fields(quick_run):
    payload, stdout = quick_run
    import core

    records = payload["records"]
    problems = {r["problem"] for r in records}
    assert {r["family"] for r in records} == {"closed_form", "contractive_conv", "non_contractive"}
    # Exactly one record per (problem, method), every method of the registry.
    assert sorted((r["problem"], r["method"]) for r in records) == sorted(
        (p, m) for p in problems for m in core.METHODS
    )
    for r in records:
        for key in REQUIRED:
            assert key in r, (key, r)
        assert r["status"] in {status.value for status in core.Status}, r
        assert r["converged"] == (r["status"] == "converged")
        assert isinstance(r["nfe"], int) and r["nfe"] >= 1
        assert r["seconds"] >= 0
        # The reported residual is that of the returned z: recomputing it must agree.
        assert math.isclose(r["rel_residual"], r["rel_residual_check"], rel_tol=1e-2, abs_tol=1e-6), r
    assert [t["result"] for t in payload["targets"]]  # the summary is there
    assert "| problem |" in stdout and "Targets:" in stdout


def test_quick_closed_form_roots(quick_run):
    payload, _ = quick_run
    closed = [r for r in payload["records"] if r["family"] == "closed_form"]
    assert {r["problem"] for r in closed} == {"cos", "babylon_sqrt2", "linear_contractive_n16"}
    for r in closed:
        if r["method"] in ("anderson", "broyden", "homotopy"):
            assert r["converged"], r
            assert r["rel_residual"] <= 1e-4
            # rel residual 1e-4 with |f'| <= 0.9 at the root bounds the error by ~1e-3.
            assert r["root_error"] < 1e-3, r


def test_non_contractive_quick_problems_are_in_range(quick_run):
    payload, _ = quick_run
    for p in payload["problems"]:
        if p["family"] == "non_contractive":
            assert 1.5 <= p["spectral_radius_min"] <= p["spectral_radius"] <= 3.0, p


def test_problem_filter_without_match_fails(capsys):
    from core import bench

    assert bench.main(["solvers", "--quick", "--problems", "no_such_problem"]) == 2
    assert "cos" in capsys.readouterr().err


def test_throughput_records_images_per_second_on_the_cpu(tmp_path):
    out = tmp_path / "tp.json"
    proc = subprocess.run(
        [sys.executable, "-m", "core.bench", "throughput", "--models", "node", "deq", "--batches", "4", "max",
         "--steps", "1", "--warmup", "0", "--device", "cpu", "--threads", "1", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(out.read_text())
    assert payload["benchmark"] == "throughput" and payload["precision"] == "fp32"
    records = payload["records"]
    assert [(r["model"], r["batch"]) for r in records] == [("node", 4), ("deq", 4)]  # 'max' is CUDA-only
    for r in records:
        assert r["train_images_per_s"] > 0 and r["eval_images_per_s"] > 0 and r["nfe_forward"] >= 1
        assert r["params"] > 0 and r["peak_memory_bytes"] > 0 and r["device"] == "cpu"
    assert "| node | 4 | fp32 |" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "core.bench", "throughput", "--batches", "0"], cwd=ROOT, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--batches takes whole numbers" in bad.stderr
