"""Smoke test of the solver benchmark CLI: ``python -m core.bench solvers --quick --json PATH``."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ------------------------------------------------------------------------------- ODE recipes


def test_image_models_train_with_the_fast_recipe_and_the_paper_solver_is_one_flag_away():
    import core
    from core.study.plan import QUICK, model_config
    from core.train import build_parser, config_from_args

    def ode(*argv):
        return config_from_args(build_parser().parse_args(list(argv))).model.ode

    fast, paper = core.ODE_RECIPES[core.FAST_ODE_RECIPE], core.ODE_RECIPES[core.PAPER_ODE_RECIPE]
    assert (fast.method, fast.n_steps) == ("rk4", 1) and (paper.method, paper.rtol, paper.atol) == (
        "dopri5",
        1e-3,
        1e-3,
    )
    for family in ("homoode", "node", "anode"):
        assert ode("--model", family, "--dataset", "digits") == fast
        assert ode("--model", family, "--dataset", "fashion-mnist", "--ode-method", "dopri5") == dataclasses.replace(
            fast, method="dopri5"
        )  # rtol = atol = 1e-3: the paper's solver
    assert core.preset("paper-cifar10").ode.method == "dopri5"  # the official network keeps the paper's solver
    assert core.preset("points-node").ode.method == "dopri5"  # the Playground's NFE story needs adaptivity
    assert model_config("homoode-learned", "image28", 0, ode=QUICK.ode).ode.method == "dopri5"  # the study too


def test_the_train_tab_starts_with_the_fast_recipe_and_names_the_papers_solver():
    import core
    from explorer.imagetrain import TrainSettings
    from explorer.tabs.train import ode_method_choices

    ode = TrainSettings().train_config().model.ode
    assert (ode.method, ode.n_steps) == ("rk4", 1)
    labels = dict((value, label) for label, value in ode_method_choices())
    assert list(labels) == list(core.ODE_METHODS) and "the paper's" in labels["dopri5"]


def test_recipes_table_compares_each_recipe_with_the_papers_on_the_same_model():
    from core.bench.recipes import recipes_table

    def rec(recipe, seed, acc, secs, nfe):
        return dict(dataset="digits", model="homoode-fixed", recipe=recipe, seed=seed, test_accuracy=acc,
                    nfe_forward=nfe, train_seconds=secs)  # fmt: skip

    records = [rec("dopri5", 0, 0.970, 150, 25.4), rec("dopri5", 1, 0.960, 154, 26.0),
               rec("rk4x1", 0, 0.968, 23, 4), rec("rk4x1", 1, 0.962, 25, 4),
               rec("rk4x2", 0, 0.900, 36, 8), rec("rk4x2", 1, 0.902, 36, 8)]  # fmt: skip
    table = recipes_table(records)
    assert "| homoode-fixed | dopri5 | 2 | 96.50 ± 0.71 | 25.7 | 152 | – | – |" in table
    # rk4x1: 24 / 152 s; accuracy 96.50 vs 96.50 -> +0.00, within noise (√(0.42² + 0.71²))
    assert "| homoode-fixed | rk4x1 | 2 | 96.50 ± 0.42 | 4.0 | 24 | 0.16× | +0.00 (within noise) |" in table
    assert "| homoode-fixed | rk4x2 | 2 | 90.10 ± 0.14 | 8.0 | 36 | 0.24× | -6.40 (beyond noise) |" in table


@pytest.mark.slow
def test_recipes_grid_trains_a_cell_once_and_skips_it_when_run_again(tmp_path):
    argv = [sys.executable, "-m", "core.bench", "recipes", "--datasets", "digits", "--models", "homoode-fixed",
            "--recipes", "rk4x1", "--seeds", "0", "--steps", "2", "--test-limit", "20", "--eval-batches", "1",
            "--threads", "1", "--out", str(tmp_path / "grid"), "--json", str(tmp_path / "r.json")]  # fmt: skip
    first = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    cell = tmp_path / "grid" / "digits-homoode-fixed-rk4x1-s0"
    config = json.loads((cell / "config.json").read_text())["model"]["ode"]
    assert (config["method"], config["n_steps"]) == ("rk4", 1)
    record = json.loads((tmp_path / "r.json").read_text())["records"][0]
    assert record["nfe_forward"] == 4 and record["steps"] == 2 and record["test_examples"] == 20
    mtime = (cell / "summary.json").stat().st_mtime_ns
    again = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "1 cells, 1 already finished" in again.stderr
    assert (cell / "summary.json").stat().st_mtime_ns == mtime
    bad = subprocess.run([*argv[:4], "--seeds", "1", "1"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "seeds must differ" in bad.stderr
