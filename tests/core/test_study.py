"""The reproduction study (``core.study``): a tiny study end to end, resuming, the aggregation against
hand-computed values, the command line's answers to bad input, and the Compare tab's view of a study."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from core import study as S
from core.study import measure, runner
from core.study.__main__ import main
from core.training import RunDir, Trainer

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Two families, two seeds, four steps on the bundled digits: one Euler step per solve keeps the whole-test-split
# evaluation (2,000 digits per run) to a second or two.
TINY = S.QUICK.replace(
    name="tiny",
    datasets=("digits",),
    seeds=(0, 1),
    variants=("node", "homoode-learned"),
    steps=4,
    batch_size=32,
    train_limit=256,
    eval_every=2,
    eval_batches=1,
    start_every=2,
    ode={"method": "euler", "n_steps": 1},
    measure=S.MeasureSettings(
        examples=32,
        batch_size=32,
        noise=(0.2,),
        fgsm=(0.1,),
        pgd=(0.1,),
        pgd_steps=1,
        tolerances=(0.1,),
        rk4_steps=(1,),
        deq_iters=(2,),
    ),
)
NAMES = ["digits-node-s0", "digits-homoode-learned-s0", "digits-node-s1", "digits-homoode-learned-s1"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study") / "tiny"
    outcomes = S.run_study(TINY, out, device="cpu", threads=1, command="pytest tiny", log=lambda m: None)
    assert [(o.name, o.action) for o in outcomes] == [(n, "trained") for n in NAMES]
    return out


@pytest.mark.slow
def test_tiny_study_writes_run_folders_and_a_report(tiny_study):
    record = json.loads((tiny_study / "study.json").read_text())
    assert record["runs"] == NAMES and record["seeds"] == [0, 1] and record["commands"] == ["pytest tiny"]
    for name in NAMES:
        files = {p.name for p in (tiny_study / name).iterdir()}
        assert {"config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "measurements.json"} <= files
        # Each run is in `tensorboard --logdir` too, where the optional package is installed (CI installs it).
        assert len(RunDir(tiny_study / name).event_files()) == (importlib.util.find_spec("tensorboard") is not None)
        m = json.loads((tiny_study / name / "measurements.json").read_text())
        assert m["examples"] == 32 and 0 <= m["clean"]["accuracy"] <= 1
        assert [b["sweep"] for b in m["budget"]] == ["tol", "steps"]
        assert [(r["strength"], "accuracy" in r) for r in m["noise"] + m["fgsm"] + m["pgd"]] == [
            (0.2, True),
            (0.1, True),
            (0.1, True),
        ]
        summary = RunDir(tiny_study / name).read_summary()
        # Measured on the model the run selected on validation.
        assert m["selected_step"] == summary["best_step"] and summary["stopped"] is False
        # Euler x 1 keeps the same graph whatever the weights: one step after training equals the training
        # maximum, both counted exactly.
        assert m["graph"] == {"bytes": summary["peak_graph_bytes"], "nfe": 1.0, "batch": 32}
    # Seeds differ in initialisation and data order: their runs are not copies of each other.
    a, b = (RunDir(tiny_study / n).read_summary()["mean_nfe_forward"] for n in NAMES[1::2])
    losses = [[e["loss"] for e in RunDir(tiny_study / n).events() if e["kind"] == "step"] for n in NAMES[::2]]
    assert losses[0] != losses[1] and a == b == 1.0  # Euler, one step: one evaluation per solve

    path = S.write_report(tiny_study)
    text = path.read_text()
    assert path == tiny_study / "study.md"
    for heading in ("## The paper's claims", "## Settings", "## digits", "### Accuracy, cost and memory",
                    "### Input perturbations", "### Solver budget changed after training",
                    "### HomoODE forward NFE along training", "## How the numbers are made"):  # fmt: skip
        assert heading in text
    table = _markdown_table(text, "### Accuracy, cost and memory")
    assert [row[0] for row in table] == ["node", "homoode-learned"]
    assert all(row[2] == "2/2" and "±" in row[3] for row in table)  # two seeds: mean ± std
    claims = _markdown_table(text, "## The paper's claims")
    assert len(claims) == 8
    assert {row[1].strip("*") for row in claims} <= {"supported", "not supported", "not measured here"}
    # HomoODE vs NODE is measured (two seeds each); the DEQ and the fixed start are not in this study.
    verdicts = {row[0]: row[1].strip("*") for row in claims}
    assert verdicts["HomoODE is more accurate than Neural ODEs (NODE, ANODE)"] != "not measured here"
    assert verdicts["A shared learnable start point accelerates HomoODE (fewer function evaluations)"] == (
        "not measured here"
    )
    figures = tiny_study / "study-figures"
    for key in ("accuracy-vs-nfe", "perturbations", "solver-budget", "start-point-nfe"):
        assert any(figures.glob(f"digits-{key}.*")) and f"digits-{key}." in text


def _markdown_table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading``."""
    lines = text[text.index(heading) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_a_second_start_skips_finished_runs(tiny_study, monkeypatch):
    stamps = {n: [(tiny_study / n / f).stat().st_mtime_ns for f in ("checkpoint.pt", "metrics.jsonl")] for n in NAMES}
    calls = []
    monkeypatch.setattr(runner, "Trainer", lambda *a, **k: calls.append("Trainer"))
    monkeypatch.setattr(runner, "load_trainer", lambda *a, **k: calls.append("load_trainer"))
    monkeypatch.setattr(runner, "measure_trainer", lambda *a, **k: calls.append("measure"))
    outcomes = S.run_study(TINY, tiny_study, device="cpu", threads=1, log=lambda m: None)
    assert [o.action for o in outcomes] == ["skipped"] * 4 and calls == []
    assert stamps == {
        n: [(tiny_study / n / f).stat().st_mtime_ns for f in ("checkpoint.pt", "metrics.jsonl")] for n in NAMES
    }


def test_a_study_with_other_settings_is_refused_before_training(tiny_study):
    with pytest.raises(S.StudyError, match="steps"):
        S.run_study(TINY.replace(steps=5), tiny_study, device="cpu", threads=1, log=lambda m: None)


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    one = TINY.replace(seeds=(3,), variants=("homoode-fixed",))
    (spec,) = S.plan_runs(one, device="cpu", threads=1)
    trainer = Trainer(spec.config, out_dir=tmp_path / spec.name)
    trainer.tick(), trainer.tick()  # step 2: validated and checkpointed
    trainer.tick()  # step 3 recorded but never checkpointed (then the process "dies"): its row must go
    assert runner.run_status(RunDir(tmp_path / spec.name)) == "partial"
    loads = []
    real = runner.load_trainer
    monkeypatch.setattr(runner, "load_trainer", lambda *a, **k: loads.append(a) or real(*a, **k))
    monkeypatch.setattr(runner, "Trainer", lambda *a, **k: pytest.fail("a partial run must not start afresh"))
    (outcome,) = S.run_study(one, tmp_path, device="cpu", threads=1, log=lambda m: None)
    assert outcome.action == "resumed" and len(loads) == 1
    run = RunDir(tmp_path / spec.name)
    steps = [e["step"] for e in run.events() if e["kind"] == "step"]
    assert steps == [1, 2, 3, 4] and run.read_summary()["steps"] == 4
    assert runner.run_status(run) == "measured"


def test_run_status_of_each_kind_of_folder(tmp_path):
    run = RunDir(tmp_path / "r")
    assert runner.run_status(run) == "new"
    run.create().write_config({"dataset": "digits"})
    assert runner.run_status(run) == "started"  # a config but no checkpoint: started afresh
    run.write_summary({"stopped": True})
    assert runner.run_status(run) == "started"  # stopped early without a checkpoint: nothing to resume
    run.write_summary({"stopped": False})
    assert runner.run_status(run) == "finished"  # to measure
    (run.path / "measurements.json").write_text(json.dumps({"format": "x"}))
    assert runner.run_status(run) == "measured"


# ----------------------------------------------------------------------------------------------- aggregation


def test_mean_std_and_the_comparison_rule_by_hand():
    m = S.mean_std([0.9, 0.8, 0.7])
    assert m.mean == pytest.approx(0.8) and m.std == pytest.approx(0.1) and m.n == 3  # sample std (n - 1)
    assert S.mean_std([0.5]) == S.MeanStd(0.5, None, 1)
    assert S.mean_std([None, float("nan")]) == S.MeanStd(None, None, 0)
    assert S.mean_std([0.9, 0.8, 0.7]).text(100) == "80.00 ± 10.00"
    a, b = S.mean_std([0.95, 0.96]), S.mean_std([0.90, 0.91])  # std 0.00707 each, combined 0.01
    c = S.compare(a, b)
    assert c.diff == pytest.approx(0.05) and c.noise == pytest.approx(0.01) and c.outcome == "higher"
    assert S.compare(b, a).outcome == "lower"
    assert S.compare(S.mean_std([0.95, 0.97]), S.mean_std([0.95, 0.96])).outcome == "within noise"
    assert S.compare(S.mean_std([0.95]), b) is None  # one seed: no rule applies


def test_selection_on_validation_is_the_first_best_validation_row():
    rows = [
        {"kind": "eval", "split": "val", "step": 10, "accuracy": 0.5},
        {"kind": "eval", "split": "val", "step": 20, "accuracy": 0.7},
        {"kind": "eval", "split": "test", "step": 25, "accuracy": 0.99},  # never a selection
        {"kind": "step", "step": 26, "accuracy": 1.0},
        {"kind": "eval", "split": "val", "step": 30, "accuracy": 0.7},  # equal: the first stays
        {"kind": "eval", "split": "val", "step": 40, "accuracy": 0.6},
    ]
    assert S.select_on_validation(rows) == (20, 0.7)
    assert S.select_on_validation([]) == (None, None)


def test_the_report_says_what_the_study_planned_and_lists_its_commands(tmp_path):
    """Once, "2 planned (1 dataset(s) × seeds 0 × variants)" named no variant count, and the
    commands ended on a lone "."."""
    run = (0.9, 10.0, 0.9, (0.8, 0.7), 5, _vals(0.9))
    _write_study(tmp_path / "s", {"digits-node-s0": run, "digits-homoode-learned-s0": run})
    lines = S.render_markdown(S.load_study(tmp_path / "s")).splitlines()
    runs_line = next(line for line in lines if line.startswith("- Runs:"))
    assert runs_line.startswith("- Runs: 2 planned (1 dataset × 2 variants × 1 seed (0)), 2 trained and measured")
    i = lines.index("- Commands, oldest first:")
    assert lines[i + 1] == "  - `by hand`" and lines[i + 2].startswith("- ")  # the next item
    assert not any(line.strip() == "." or line.rstrip().endswith("`.") for line in lines)
    # A study resumed session after session: the same command again is one line with its count.
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    record["commands"] = ["a", "b", "b", "b", "a"]
    (tmp_path / "s" / "study.json").write_text(json.dumps(record))
    lines = S.render_markdown(S.load_study(tmp_path / "s")).splitlines()
    i = lines.index("- Commands, oldest first:")
    assert lines[i + 1 : i + 4] == ["  - `a`", "  - `b` (3 times)", "  - `a`"] and lines[i + 4].startswith("- ")

    # Not a full grid (a seed more for one variant): the count per dataset, never a product that is not there.
    _write_study(tmp_path / "t", {"digits-node-s0": run, "digits-node-s1": run, "digits-homoode-learned-s0": run})
    text = S.render_markdown(S.load_study(tmp_path / "t"))
    assert "- Runs: 3 planned (digits: 3 runs of 2 variants and 2 seeds (0, 1))," in text


def _write_study(root, runs):
    """A study folder written by hand: ``runs`` maps a run name to (test acc, NFE, clean, perturbed accs,
    graph MB, validation rows)."""
    record = {
        "format": runner.FORMAT,
        "preset": TINY.to_dict(),
        "settings": TINY.settings(),
        "datasets": ["digits"],
        "seeds": [0, 1],
        "runs": list(runs),
        "commands": ["by hand"],
    }
    root.mkdir(parents=True)
    (root / "study.json").write_text(json.dumps(record))
    for name, (acc, nfe, clean, perturbed, graph_mb, vals) in runs.items():
        folder = root / name
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        best = S.select_on_validation(vals)
        summary = {"model": name.split("-")[1], "params": 100, "steps": 40, "epochs": 2.0, "stopped": False,
                   "test_accuracy": acc, "best_step": best[0], "best_val_accuracy": best[1], "mean_nfe_forward": nfe,
                   "mean_nfe_backward": 0.0, "peak_graph_bytes": 7 * 2**20, "memory_measure": "cpu_peak_rss",
                   "peak_memory_bytes": 10**9, "seconds_per_epoch": 10.0}  # fmt: skip
        (folder / "summary.json").write_text(json.dumps(summary))
        steps = [{"kind": "step", "step": k, "nfe_forward": nfe + (k > 20), "step_seconds": 0.5} for k in range(1, 41)]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in steps + vals) + "\n")
        measurements = {
            "format": "m",
            "examples": 10,
            "clean": {"accuracy": clean},
            "noise": [{"strength": 0.1, "accuracy": perturbed[0]}],
            "fgsm": [{"strength": 0.05, "accuracy": perturbed[1]}],
            "pgd": [],
            "budget": [{"sweep": "tol", "value": 0.1, "accuracy": clean - 0.1, "nfe": nfe / 2}],
            "graph": {"bytes": graph_mb * 2**20, "nfe": nfe, "batch": 32},
        }
        (folder / "measurements.json").write_text(json.dumps(measurements))


def _vals(*accs):
    return [{"kind": "eval", "split": "val", "step": 10 * (i + 1), "accuracy": a} for i, a in enumerate(accs)]


def test_aggregation_against_hand_computed_values(tmp_path):
    runs = {
        "digits-homoode-learned-s0": (0.95, 20.0, 0.9, (0.8, 0.5), 100, _vals(0.8, 0.9, 0.85)),
        "digits-homoode-learned-s1": (0.96, 22.0, 1.0, (0.9, 0.7), 100, _vals(0.91, 0.91)),
        "digits-node-s0": (0.90, 24.0, 0.8, (0.8, 0.6), 110, _vals(0.7)),
        "digits-node-s1": (0.91, 26.0, 0.9, (0.8, 0.6), 110, _vals(0.75, 0.8)),
        "digits-deq-s0": (0.955, 30.0, 0.9, (0.4, 0.2), 40, _vals(0.9)),
        "digits-deq-s1": (0.965, 30.0, 0.9, (0.5, 0.3), 40, _vals(0.95)),
        "digits-homoode-fixed-s0": (0.95, 19.0, 0.9, (0.8, 0.5), 100, _vals(0.9)),
    }
    _write_study(tmp_path / "s", runs)
    study = S.load_study(tmp_path / "s")
    table = S.summarize(study)["digits"]
    h = table["homoode-learned"]
    assert h.runs == 2 and h.planned == 2 and h.selection_agrees
    assert h.metrics["test_accuracy"].mean == pytest.approx(0.955)
    assert h.metrics["test_accuracy"].std == pytest.approx(math.sqrt(2 * 0.005**2))  # |0.95 - 0.96| / sqrt 2
    assert h.metrics["selected_val_accuracy"].mean == pytest.approx((0.9 + 0.91) / 2)  # step 20 and step 10
    assert h.metrics["seconds_per_epoch"].mean == pytest.approx(10.0)  # the summary's (resumes included)
    assert h.metrics["ms_per_step"].mean == pytest.approx(500.0)  # 10 s / epoch × 2 epochs / 40 steps
    # Graph MB: the measurement after training (exact), not the training maximum of the summary (7 MB here).
    assert h.metrics["graph_mb"].mean == pytest.approx(100) and h.metrics["cuda_peak_mb"].n == 0  # CPU: no peak
    # Drops, shares of the clean accuracy: noise seed 0 (0.9 - 0.8) / 0.9 = 1/9, seed 1 (1 - 0.9) / 1 = 0.1;
    # attacks (FGSM) seed 0 (0.9 - 0.5) / 0.9 = 4/9, seed 1 0.3.
    assert h.perturbed["noise drop"].mean == pytest.approx((1 / 9 + 0.1) / 2)
    assert h.perturbed["noise drop"].std == pytest.approx((1 / 9 - 0.1) / math.sqrt(2))
    assert h.perturbed["attack drop"].mean == pytest.approx((4 / 9 + 0.3) / 2)
    assert list(h.perturbed) == ["clean", "noise σ=0.1", "FGSM ε=0.05", "noise drop", "attack drop"]
    assert h.budget[("tol", 0.1)][0].mean == pytest.approx(0.85) and h.budget[("tol", 0.1)][1].mean == 10.5
    # Two epochs of 20 steps: fewer than 5 epochs, so tenths of the run (4 steps each); NFE + 1 after step 20.
    assert [b.mean for b in h.nfe_bins] == pytest.approx([21.0] * 5 + [22.0] * 5)
    assert h.bin_epochs == pytest.approx(0.2)
    assert table["homoode-fixed"].metrics["test_accuracy"].std is None  # one seed

    verdicts = {c.claim: c for c in S.claims(S.summarize(study))}
    more = verdicts["HomoODE is more accurate than Neural ODEs (NODE, ANODE)"]
    assert (
        more.verdict == "supported" and "digits: homoode-learned 95.50 ± 0.71 vs node 90.50 ± 0.71 %" in more.evidence
    )
    # vs DEQ: 95.5 vs 96.0, combined std 1.0: within noise -> on par (supported), but not "surpasses".
    assert verdicts["HomoODE inherits the high accuracy of DEQs (at least on par with a DEQ)"].verdict == "supported"
    assert verdicts["HomoODE surpasses existing implicit models in accuracy"].verdict == "not supported"
    # Drops: noise, homoode 10.6 ± 0.8 vs node 5.6 ± 7.9 (0 and 1/9), attacks 37.2 ± 10.2 vs 29.2 ± 5.9 (1/4, 1/3):
    # both within noise of NODE: supported. DEQ: noise 50.0 ± 7.9, attacks 72.2 ± 7.9: homoode lower beyond
    # noise in both: supported.
    stable = "HomoODE inherits the stability of Neural ODEs (input perturbations hurt it no more than a NODE)"
    assert verdicts[stable].verdict == "supported"
    assert verdicts["HomoODE is more stable than a DEQ under input perturbations"].verdict == "supported"
    # The fixed start has one seed: the start-point claim cannot be judged.
    start = verdicts["A shared learnable start point accelerates HomoODE (fewer function evaluations)"]
    assert start.verdict == "not measured here"
    # Memory: 100 MB vs DEQ 40 MB (no spread): HomoODE is not the lightest.
    assert verdicts["HomoODE needs less memory than the other implicit models"].verdict == "not supported"
    text = S.render_markdown(study)
    assert "| homoode-learned | 100 | 2/2 | 95.50 ± 0.71 |" in text


def test_a_claim_is_not_settled_while_a_dataset_or_a_pair_lacks_its_seeds(tmp_path):
    run = lambda acc, clean, noise, attack: (acc, 20.0, clean, (noise, attack), 50, _vals(0.9))  # noqa: E731
    runs = {
        "digits-homoode-learned-s0": run(0.95, 0.9, 0.8, 0.6),
        "digits-homoode-learned-s1": run(0.96, 0.9, 0.81, 0.61),
        "digits-node-s0": run(0.90, 0.9, 0.5, 0.3),
        "digits-node-s1": run(0.91, 0.9, 0.51, 0.31),
        "digits-deq-s0": run(0.90, 0.9, 0.89, 0.2),  # noise barely hurts the DEQ; the attacks hurt it most
        "digits-deq-s1": run(0.91, 0.9, 0.88, 0.21),
    }
    _write_study(tmp_path / "s", runs)
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    record["datasets"].append("fashion-mnist")
    record["runs"] += ["fashion-mnist-homoode-learned-s0", "fashion-mnist-node-s0"]  # planned, not started
    (tmp_path / "s" / "study.json").write_text(json.dumps(record))
    verdicts = {c.claim: c for c in S.claims(S.summarize(S.load_study(tmp_path / "s")))}
    more = verdicts["HomoODE is more accurate than Neural ODEs (NODE, ANODE)"]
    assert more.verdict == "supported where measured (incomplete)"
    assert "not yet two seeds each: fashion-mnist (homoode-learned vs node)" in more.evidence
    # A variant a dataset does not plan (no DEQ on fashion-mnist here) is not part of the claim there.
    par = verdicts["HomoODE inherits the high accuracy of DEQs (at least on par with a DEQ)"]
    assert par.verdict == "supported" and "fashion-mnist" not in par.evidence
    # Noise: HomoODE loses less than the DEQ? No (10.6 vs 1.7 %); attacks: yes. Judged apart: not supported,
    # where a mean over both kinds would have called HomoODE the stabler.
    deq = verdicts["HomoODE is more stable than a DEQ under input perturbations"]
    assert deq.verdict == "not supported"
    assert "digits: noise drop homoode-learned" in deq.evidence and "(higher ✗)" in deq.evidence
    assert "digits: attack drop homoode-learned" in deq.evidence and "(lower)" in deq.evidence


def test_a_run_that_stopped_early_is_binned_by_its_plan_and_the_curve_goes_on_without_it(tmp_path):
    run = (0.9, 10.0, 0.9, (0.8, 0.7), 5, _vals(0.9))
    _write_study(tmp_path / "s", {"digits-node-s0": run, "digits-node-s1": run})
    early = tmp_path / "s" / "digits-node-s1"  # planned 40 steps, stopped after 20 (as a diverged run does)
    (early / "config.json").write_text(json.dumps({"steps": 40}))
    summary = json.loads((early / "summary.json").read_text())
    (early / "summary.json").write_text(json.dumps({**summary, "steps": 20, "epochs": 1.0}))
    rows = [json.loads(line) for line in (early / "metrics.jsonl").read_text().splitlines()]
    kept = [r for r in rows if r.get("kind") != "step" or r["step"] <= 20]
    (early / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in kept) + "\n")
    node = S.summarize(S.load_study(tmp_path / "s"))["digits"]["node"]
    # 4 steps a bin for both (a tenth of the 40 planned), not 2 for the early one: the same steps line up.
    assert [b.n for b in node.nfe_bins] == [2] * 5 + [1] * 5
    assert [b.mean for b in node.nfe_bins] == pytest.approx([10.0] * 5 + [11.0] * 5)


def test_an_epoch_long_run_is_binned_by_its_planned_epochs():
    from core.study.digest import planned_steps

    run = RunDir(Path("unused"))
    with (
        mock.patch.object(RunDir, "read_config", return_value={"steps": None, "epochs": 4}),
        mock.patch.object(RunDir, "read_summary", return_value={"steps": 30, "epochs": 1.5}),  # diverged at 1.5
    ):
        assert planned_steps(run) == 80  # 4 epochs of 20 steps, not the 30 it trained
    with mock.patch.object(RunDir, "read_config", return_value={"steps": 40}):
        assert planned_steps(run) == 40


def test_a_cell_says_when_fewer_seeds_gave_it_than_the_variant_has(tmp_path):
    run = (0.9, 10.0, 0.9, (0.8, 0.7), 5, _vals(0.9))
    _write_study(tmp_path / "s", {"digits-node-s0": run, "digits-node-s1": run})
    path = tmp_path / "s" / "digits-node-s1" / "measurements.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "fgsm": [{"strength": 0.05, "error": "failed"}]}))
    text = S.render_markdown(S.load_study(tmp_path / "s"))
    row = next(line for line in text.splitlines() if line.startswith("| node | 90.00"))  # the perturbation table
    # FGSM and the attack drop from seed 0 only; (0.9 - 0.7) / 0.9 = 22.22 %; the noise drop from both.
    assert row.endswith("| 70.00 (1/2) | 11.11 ± 0.00 | 22.22 (1/2) |")


def test_a_study_still_running_counts_only_measured_runs(tmp_path):
    runs = {"digits-node-s0": (0.9, 10.0, 0.9, (0.8, 0.7), 5, _vals(0.9))}
    _write_study(tmp_path / "s", runs)
    record = json.loads((tmp_path / "s" / "study.json").read_text())
    record["runs"].append("digits-node-s1")  # planned, not started
    (tmp_path / "s" / "study.json").write_text(json.dumps(record))
    node = S.summarize(S.load_study(tmp_path / "s"))["digits"]["node"]
    assert (node.runs, node.planned) == (1, 2)
    assert "1/2" in S.render_markdown(S.load_study(tmp_path / "s"))


# ----------------------------------------------------------------------------------------------- the standard study


def test_the_adjoint_and_fast_variants_keep_their_own_integration():
    from core.study.plan import PAPER_ODE

    learned = S.model_config("homoode-learned", "image28", 0, ode=PAPER_ODE)
    adjoint = S.model_config("homoode-adjoint", "image28", 0, ode=PAPER_ODE)
    fast = S.model_config("homoode-fast", "image28", 0, ode=PAPER_ODE)
    assert (learned.ode.method, learned.ode.adjoint, learned.start) == ("dopri5", False, "learnable")
    # The adjoint variant is the paper's model in every respect but its backward.
    assert adjoint.ode.adjoint is True and adjoint.replace(ode=learned.ode) == learned
    # The fast variant's rk4 x 1 wins over the study's dopri5.
    assert (fast.ode.method, fast.ode.n_steps, fast.ode.adjoint, fast.start) == ("rk4", 1, False, "learnable")
    assert fast.replace(ode=learned.ode) == learned


def test_the_standard_preset_plans_42_runs_of_1000_steps():
    specs = S.plan_runs(S.STANDARD)
    assert len(specs) == 2 * 3 * 7 and {s.config.steps for s in specs} == {1000}
    assert [s.variant for s in specs[:7]] == [
        "node", "anode", "deq", "homoode-learned", "homoode-fixed", "homoode-adjoint", "homoode-fast",
    ]  # fmt: skip
    deq = next(s for s in specs if s.variant == "deq").config.model
    assert deq.cell == "contractive"  # the DEQ whose solves converge


def test_log_axes_tick_at_1_2_5_times_powers_of_ten():
    from core.study.report import log_ticks

    assert log_ticks(3, 30) == [2, 5, 10, 20, 50]
    assert log_ticks(4, 16) == [2, 5, 10, 20] and log_ticks(10, 10) == [10]
    assert log_ticks(0.07, 0.9) == pytest.approx([0.05, 0.1, 0.2, 0.5, 1.0])


def test_digest_bins_step_rows_per_tenth_of_the_run():
    from core.study.digest import digest_events

    events = [{"kind": "step", "step": k, "nfe_forward": k, "loss": 1.0, "step_seconds": 0.5} for k in range(1, 26)]
    events.insert(3, {"kind": "eval", "step": 3, "split": "val", "accuracy": 0.5})
    d = digest_events(events, steps=25)  # 3 steps a bin: 9 bins, the last holds step 25 alone
    assert d["bin_steps"] == 3 and d["step_rows"] == 25 and sum(b["step_seconds"] for b in d["bins"]) == 12.5
    assert [b["nfe_forward"] for b in d["bins"]] == [2, 5, 8, 11, 14, 17, 20, 23, 25]
    assert [b["steps"] for b in d["bins"]] == [3] * 8 + [1] and d["bins"][0]["nfe_backward"] is None
    assert d["evals"] == [events[3]]


def test_a_study_reads_the_same_from_its_committed_files_alone(tiny_study, tmp_path):
    """``studies/`` keeps config, summary, digest and measurements only: the report must not change."""
    import shutil

    kept = tmp_path / "tiny"
    kept.mkdir()
    shutil.copy(tiny_study / "study.json", kept)
    for name in NAMES:
        (kept / name).mkdir()
        for f in ("config.json", "summary.json", "digest.json", "measurements.json"):
            shutil.copy(tiny_study / name / f, kept / name)
    full, small = S.load_study(tiny_study), S.load_study(kept)
    assert small.runs == full.runs and all(r.done and r.nfe_bins for r in small.runs)
    tables = lambda text: [line for line in text.splitlines() if line.startswith("|")]  # noqa: E731
    assert tables(S.render_markdown(small)) == tables(S.render_markdown(full))


@pytest.mark.slow
def test_jobs_run_each_run_in_its_own_process_with_the_same_results(tiny_study, tmp_path):
    out = tmp_path / "jobs"
    outcomes = S.run_study(TINY, out, device="cpu", threads=1, log=lambda m: None, jobs=2)
    assert sorted(o.name for o in outcomes) == sorted(NAMES) and {o.action for o in outcomes} == {"trained"}
    serial, parallel = S.load_study(tiny_study), S.load_study(out)
    for a, b in zip(serial.runs, parallel.runs, strict=True):
        assert b.done and b.test_accuracy == a.test_accuracy and b.nfe_bins == a.nfe_bins  # same seeds, 1 thread
        assert a.rss_peak_mb is None and b.rss_peak_mb > 100  # only a run with a process of its own has one
    again = S.run_study(TINY, out, device="cpu", threads=1, log=lambda m: None, jobs=2)
    assert {o.action for o in again} == {"skipped"}


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_a_terminated_study_stops_the_runs_it_started(tmp_path):
    import signal
    import time

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "core.study", "--preset", "quick", "--datasets", "digits", "--seeds", "0",
           "--variants", "node", "deq", "--steps", "5000", "--out", str(out), "--jobs", "2"]  # fmt: skip
    parent = subprocess.Popen(cmd, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(_processes_mentioning(f"{out}\x00--run-one")) < 2:
            time.sleep(0.5)
        assert len(_processes_mentioning(f"{out}\x00--run-one")) == 2, "the two runs did not start"
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 130
        assert "run the same command again to resume" in parent.stderr.read()
        assert _processes_mentioning(str(out)) == []  # no run trains on unwatched
    finally:
        for pid in _processes_mentioning(str(out)):
            os.kill(pid, signal.SIGKILL)
        parent.kill()


def test_the_estimate_uses_finished_runs_and_reference_step_times(tiny_study, tmp_path):
    specs = S.plan_runs(S.STANDARD)
    seconds, left, unknown = runner.estimate_seconds(specs, tmp_path)
    per_pair = sum(runner.REFERENCE_STEP_SECONDS[v] for v in S.STANDARD.variants)
    assert (left, unknown) == (42, 0)
    assert seconds == pytest.approx(6 * per_pair * 1000 * (1 + runner.REFERENCE_OVERHEAD))
    # A third seed of the tiny study: each of its runs costs what its variant's finished runs took per step.
    specs = S.plan_runs(TINY.replace(seeds=(0, 1, 2)))
    cost = {}
    for name in NAMES:
        summary = RunDir(tiny_study / name).read_summary()
        measured = json.loads((tiny_study / name / "measurements.json").read_text())["seconds"]
        cost.setdefault(name.rsplit("-s", 1)[0], []).append((summary["seconds"] + measured) / summary["steps"])
    seconds, left, unknown = runner.estimate_seconds(specs, tiny_study)
    assert (left, unknown) == (2, 0)
    assert seconds == pytest.approx(sum(4 * sum(c) / len(c) for c in cost.values()))
    assert runner.estimate_lines(S.plan_runs(TINY), tiny_study, 2) == ["all 4 runs are done"]


def test_a_run_measured_before_the_graph_measurement_gets_it_from_its_checkpoint(tiny_study, tmp_path):
    import shutil

    shutil.copytree(tiny_study, tmp_path / "s")
    path = tmp_path / "s" / NAMES[1] / "measurements.json"
    record = json.loads(path.read_text())
    graph = record.pop("graph")
    path.write_text(json.dumps(record))
    assert S.load_study(tmp_path / "s").runs[1].graph_mb is None  # shown as missing, not taken from elsewhere
    logged = []
    assert runner.add_missing_graphs(S.plan_runs(TINY), tmp_path / "s", "cpu", 1, log=logged.append) == 1
    assert json.loads(path.read_text()) == {**record, "graph": graph} and logged == [
        "1 measured run(s) given the training-graph measurement"
    ]
    assert runner.add_missing_graphs(S.plan_runs(TINY), tmp_path / "s", "cpu", 1, log=logged.append) == 0
    # A checkpoint that cannot be read: said, and the study goes on.
    path.write_text(json.dumps(record))
    checkpoint = tmp_path / "s" / NAMES[1] / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    assert runner.add_missing_graphs(S.plan_runs(TINY), tmp_path / "s", "cpu", 1, log=logged.append) == 0
    assert "the training-graph measurement failed" in logged[-1] and "graph" not in json.loads(path.read_text())
    # Without its checkpoint (a fresh clone) the run is left as it is, and named.
    checkpoint.unlink()
    assert runner.add_missing_graphs(S.plan_runs(TINY), tmp_path / "s", "cpu", 1, log=logged.append) == 0
    assert NAMES[1] in logged[-1] and "graph" not in json.loads(path.read_text())


def test_a_graph_measurement_that_fails_is_recorded_not_raised():
    from types import SimpleNamespace

    from core.solvers import SolverError

    def diverged(step):
        raise SolverError("the solver produced NaN", None)

    trainer = SimpleNamespace(graph_bytes=diverged, config=SimpleNamespace(batch_size=64))
    assert measure.graph_measurement(trainer) == {"error": "SolverError: the solver produced NaN", "batch": 64}


def test_the_estimate_prefers_the_runs_of_the_same_dataset(tiny_study, tmp_path):
    """A dataset with a larger test split costs more per run: its own finished runs say so, not another's."""
    import shutil

    two = TINY.replace(datasets=("digits", "fashion-mnist"), seeds=(0, 1))
    shutil.copytree(tiny_study, tmp_path / "s")
    digits = runner.remaining_seconds(S.plan_runs(two), tmp_path / "s")
    assert set(digits) == {n.replace("digits", "fashion-mnist") for n in NAMES}  # from digits' runs meanwhile
    shutil.copytree(tmp_path / "s" / "digits-node-s0", tmp_path / "s" / "fashion-mnist-node-s0")
    summary = RunDir(tmp_path / "s" / "fashion-mnist-node-s0").read_summary()
    summary["seconds"] *= 3
    (tmp_path / "s" / "fashion-mnist-node-s0" / "summary.json").write_text(json.dumps(summary))
    left = runner.remaining_seconds(S.plan_runs(two), tmp_path / "s")
    measured = json.loads((tmp_path / "s" / "fashion-mnist-node-s0" / "measurements.json").read_text())["seconds"]
    assert left["fashion-mnist-node-s1"] == pytest.approx(summary["seconds"] + measured)  # its own dataset's run
    assert left["fashion-mnist-homoode-learned-s0"] == digits["fashion-mnist-homoode-learned-s0"]  # none yet


def test_several_jobs_start_the_longest_runs_first_and_the_estimate_is_their_makespan(tiny_study, tmp_path):
    order = [s.variant for s in runner.longest_first(S.plan_runs(S.STANDARD), tmp_path)]
    by_cost = sorted(S.STANDARD.variants, key=lambda v: -runner.REFERENCE_STEP_SECONDS[v])
    assert order == [v for v in by_cost for _ in range(6)]  # 2 datasets x 3 seeds each, ties in plan order
    assert order[0] == "homoode-adjoint" and order[-1] == "homoode-fast"
    assert runner.longest_first(S.plan_runs(TINY), tiny_study) == []  # all done
    # Longest first on 2 slots: 3 | 3, then 2 -> 5 | 3, 2 -> 5 | 5, 2 -> 7: 7, where total / jobs says 6.
    assert runner.makespan([3, 3, 2, 2, 2], 2) == 7 and runner.makespan([3, 3, 2, 2, 2], 1) == 12
    assert runner.makespan([10, 1, 1], 2) == 10 and runner.makespan([], 2) == 0
    left = runner.remaining_seconds(S.plan_runs(S.STANDARD), tmp_path)
    wall = runner.makespan(sorted(left.values(), reverse=True), 2)
    line = runner.estimate_lines(S.plan_runs(S.STANDARD), tmp_path, 2)[0]
    assert f"about {sum(left.values()) / 3600:.1f} h of compute, about {wall / 3600:.1f} h with 2 job(s)" in line


def test_the_published_reports_match_their_committed_runs():
    """docs/study.md and docs/study-quick.md are generated from studies/standard and studies/quick: their
    tables must be what those files give today (so the published numbers cannot drift from the data)."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for folder, doc in (("studies/standard", "docs/study.md"), ("studies/quick", "docs/study-quick.md")):
        assert (root / folder / "study.json").is_file(), f"{folder} is not committed"
        tables = lambda text: [line for line in text.splitlines() if line.startswith("|")]  # noqa: E731
        published = tables((root / doc).read_text())
        assert published, f"{doc} has no tables"
        assert tables(S.render_markdown(S.load_study(root / folder))) == published, (
            f"{doc} differs from what {folder} gives: run `python -m core.study --report-only --out {folder} "
            f"--report {doc}`"
        )


# ----------------------------------------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--datasets", "digitz"], "unknown dataset 'digitz' (did you mean 'digits'?)"),
        (["--datasets", "circles"], "the study compares image models"),
        (["--seeds"], "expected at least one argument"),
        (["--seeds", "1", "1"], "seeds must differ"),
        (["--seeds", "-1"], "seed must be a whole number"),
        (["--preset", "huge"], "unknown preset 'huge'"),
        (["--variants", "odenet"], "variant must be one of"),
        (["--steps", "0"], "--steps must be a whole number"),
        (["--jobs", "0"], "--jobs must be an integer >= 1, got 0"),
    ],
)
def test_bad_command_lines_exit_with_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()  # nothing started


def test_report_only_needs_a_study(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--report-only", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "holds no study" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_report_only_rewrites_the_report_from_the_folders(tiny_study, tmp_path, capsys):
    report = tmp_path / "docs" / "study.md"
    assert main(["--report-only", "--out", str(tiny_study), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert f"report: {report}" in out and "HomoODE is more accurate" in out
    text = report.read_text()
    assert "](study-figures/digits-accuracy-vs-nfe." in text  # figures beside the report, linked relatively
    assert any((tmp_path / "docs" / "study-figures").glob("digits-perturbations.*"))


def test_core_study_does_not_import_the_ui():
    ui = "{'gradio', 'plotly', 'explorer'}"
    probe = f"import sys, core.study; print(sorted({{m.split('.')[0] for m in sys.modules}} & {ui}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]"


# ----------------------------------------------------------------------------------------------- explorer


def test_compare_tab_opens_a_study_folder_with_cores_tables(tiny_study):
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from explorer.app import Explorer

    ex = Explorer(tiny_study.parent, autoplay=False)
    assert ex.compare.studies("s1").studies == (["tiny"], None)
    out = ex.compare.open_study("s1", "tiny")
    assert out.study_report == S.render_markdown(S.load_study(tiny_study))  # core's report, not a copy
    names, first = out.study_figures
    assert first == "digits-accuracy-vs-nfe" and "digits-start-point-nfe" in names
    assert {t.name for t in out.study_plot.data} == {"node", "homoode-learned"}
    budget = ex.compare.study_figure("s1", "tiny", "digits-solver-budget").study_plot
    assert budget.layout.xaxis.type == "log"
    assert "there is no study" in ex.compare.open_study("s1", "../etc").warning
    assert "figure must be one of" in ex.compare.study_figure("s1", "tiny", "nope").warning


def test_a_diverged_run_is_ended_measured_and_counted(tmp_path, monkeypatch):
    from core.training import Divergence

    one = TINY.replace(seeds=(5,), variants=("node",))
    real_step = Trainer.step

    def step(self):
        if self.step_count == 3:
            raise Divergence("the loss became nan at step 3", "lower the learning rate")
        return real_step(self)

    monkeypatch.setattr(Trainer, "step", step)
    (outcome,) = S.run_study(one, tmp_path, device="cpu", threads=1, log=lambda m: None)
    assert outcome.diverged and outcome.action == "trained"
    run = RunDir(tmp_path / "digits-node-s5")
    assert run.read_summary()["stopped"] is True and run.read_summary()["steps"] == 3
    assert json.loads((run.path / "measurements.json").read_text())["diverged"]["step"] == 3
    assert runner.run_status(run) == "measured"  # not trained again: it would diverge again
    node = S.summarize(S.load_study(tmp_path))["digits"]["node"]
    assert (node.runs, node.diverged) == (1, 1)
    assert "1/1 (1 diverged)" in S.render_markdown(S.load_study(tmp_path))


def test_presets_plan_every_variant_and_seed_and_survive_json():
    quick = S.plan_runs(S.QUICK)
    assert len(quick) == 2 * 3 * 5 and len({r.name for r in quick}) == 30
    assert {r.config.model.seed for r in quick} == {0, 1, 2}  # a seed initialises the model too
    learned, fixed = (r.config.model for r in quick[3:5])
    assert (learned.start, fixed.start) == ("learnable", "fixed") and learned.replace(start="fixed") == fixed
    full = S.plan_runs(S.FULL)
    assert [r.name for r in full if r.variant == "paper-cifar10"] == [f"cifar10-paper-cifar10-s{s}" for s in (0, 1, 2)]
    assert all(r.config.augment == (r.dataset == "cifar10") for r in full)
    for preset in (S.QUICK, S.FULL):
        assert S.StudyPreset.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset
    with pytest.raises(ValueError, match="n_steps"):
        S.QUICK.replace(ode={"n_steps": 0})
