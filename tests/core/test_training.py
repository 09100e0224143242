"""Training: real-data learning, the event stream, stop, divergence, checkpoints, resume, the CLI."""

from __future__ import annotations

import gc
import json
import math
import subprocess
import sys
import time
import weakref

import pytest
import torch

from core.models import ODEConfig, preset
from core.training import (
    ChangeEvent,
    CheckpointError,
    CheckpointEvent,
    ErrorEvent,
    EvalEvent,
    FinishedEvent,
    SavedTensorMeter,
    StepEvent,
    TrainConfig,
    Trainer,
    load_checkpoint,
    load_trainer,
    train,
)

torch.set_num_threads(2)

FAST_ODE = ODEConfig(method="rk4", n_steps=2)


def points_config(family: str = "homoode", **changes) -> TrainConfig:
    model = preset(f"points-{family}").replace(ode=FAST_ODE)
    base = dict(model=model, dataset="circles", batch_size=64, steps=8, eval_every=4, lr=1e-2, device="cpu")
    return TrainConfig(**{**base, **changes})


@pytest.mark.slow
def test_real_digits_training_lowers_loss_and_beats_chance():
    model = preset("image28-homoode").replace(ode=FAST_ODE, width=16, head_dim=32)
    cfg = TrainConfig(
        model=model, dataset="digits", steps=100, batch_size=64, lr=3e-3, train_limit=3000, eval_every=50, device="cpu"
    )
    events = list(train(cfg))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) == 100
    first = sum(e.loss for e in steps[:10]) / 10
    last = sum(e.loss for e in steps[-10:]) / 10
    assert last < 0.5 * first
    final = events[-1]
    assert isinstance(final, FinishedEvent) and not final.stopped
    assert final.test_accuracy > 0.75  # chance is 0.10
    assert final.mean_nfe_forward == 8  # rk4, 2 steps: 4 evaluations each


def test_event_stream_order_and_fields(tmp_path):
    events = list(train(points_config(), out_dir=tmp_path))
    kinds = [e.kind for e in events]
    assert kinds == ["step"] * 4 + ["eval", "checkpoint"] + ["step"] * 4 + ["eval", "checkpoint", "finished"]
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, 9))
    for e in steps:
        assert e.nfe_forward == 8 and e.nfe_backward == 0
        assert e.loss > 0 and 0 <= e.train_acc <= 1 and e.peak_memory_bytes > 0 and e.step_seconds > 0
        assert e.graph_bytes > 0
    lrs = [e.lr for e in steps]
    assert lrs[0] == pytest.approx(1e-2) and all(a > b for a, b in zip(lrs, lrs[1:]))  # cosine decay per step
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert evals[0].is_best and 0 <= evals[0].accuracy <= 1
    final = events[-1]
    assert final.step == 8 and final.test_accuracy is not None and final.params > 0
    assert final.peak_graph_bytes == max(e.graph_bytes for e in steps)
    assert (tmp_path / "config.json").is_file() and (tmp_path / "checkpoint.pt").is_file()
    json.dumps([e.to_dict() for e in events])  # every event is JSON-ready


def test_deq_steps_report_residual_and_backward_nfe():
    events = list(train(points_config("deq", steps=2, eval_every=2)))
    step = next(e for e in events if isinstance(e, StepEvent))
    assert step.residual is not None and step.residual <= 1e-4
    assert step.nfe_backward > 0 and step.graph_bytes > 0


@pytest.mark.slow
def test_every_step_says_whether_its_deq_solves_converged(tmp_path):
    # Converged: the residuals are under tol and the flag says so; the ODE families have no flag.
    events = list(train(points_config("deq", steps=2, eval_every=2)))
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert all(e.solves_converged is True and e.backward_residual <= 1e-4 for e in steps)
    node = [e for e in train(points_config("node", steps=1, eval_every=1)) if isinstance(e, StepEvent)]
    assert node[0].solves_converged is None and node[0].backward_residual is None
    # Two iterations cannot reach 1e-8: every step is flagged, counted in the summary, and the CLI warns once.
    out = tmp_path / "r"
    res = _cli(
        "--model",
        "deq",
        "--dataset",
        "circles",
        "--steps",
        "3",
        "--max-iter",
        "2",
        "--tol",
        "1e-8",
        "--out",
        str(out),
        "--quiet",
    )
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("did not reach its tolerance") == 1 and "--max-iter" in res.stderr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    flagged = [r for r in rows if r["kind"] == "step"]
    assert [r["solves_converged"] for r in flagged] == [False, False, False]
    assert all(r["residual"] > 1e-8 for r in flagged)
    assert json.loads((out / "summary.json").read_text())["unconverged_steps"] == 3


def test_stop_between_steps_leaves_a_consistent_model(tmp_path):
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > 3

    events = list(train(points_config(steps=50), out_dir=tmp_path, should_stop=should_stop))
    assert events[-1].kind == "finished" and events[-1].stopped and events[-1].step == 3
    # The same 3 steps by hand give the same parameters.
    manual = Trainer(points_config(steps=50))
    for _ in range(3):
        manual.step()
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    assert saved["step"] == 3
    for k, v in manual.model.state_dict().items():
        assert torch.equal(v, saved["model"][k]), k


def test_divergence_gives_advice_and_keeps_last_good_checkpoint(tmp_path):
    trainer = Trainer(points_config(steps=20, eval_every=2), out_dir=tmp_path)
    original_forward = trainer.model.forward

    def poisoned(x, trajectory=0):
        out = original_forward(x, trajectory)
        if trainer.step_count == 4:
            out.logits.data.fill_(float("nan"))
        return out

    trainer.model.forward = poisoned
    events = list(trainer.events())
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.step == 4
    assert "learning rate" in error.advice
    assert error.checkpoint == str(tmp_path / "checkpoint.pt")
    kept = load_checkpoint(error.checkpoint)
    assert kept["step"] == 4
    # The failed step was rolled back: the model is exactly the one checkpointed after step 4.
    assert trainer.step_count == 4
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, kept["model"][k]), k


def test_checkpoint_round_trip_gives_identical_logits(tmp_path):
    trainer = Trainer(points_config(steps=4), out_dir=tmp_path)
    for _ in range(3):
        trainer.step()
    path = trainer.save()
    restored = load_trainer(path)
    x = trainer.val_x[:32]
    trainer.model.eval()
    restored.model.eval()
    with torch.no_grad():
        assert torch.equal(trainer.model(x).logits, restored.model(x).logits)
    assert restored.step_count == 3


def test_resume_continues_exactly(tmp_path):
    straight = Trainer(points_config(steps=6, model=preset("points-homoode").replace(ode=FAST_ODE, start="learnable")))
    for _ in range(6):
        straight.step()
    cfg = points_config(steps=6, model=preset("points-homoode").replace(ode=FAST_ODE, start="learnable"))
    first = Trainer(cfg, out_dir=tmp_path)
    first_steps = [first.step() for _ in range(3)]
    first.save()
    resumed = load_trainer(tmp_path / "checkpoint.pt", out_dir=tmp_path)
    events = list(resumed.events())
    assert [e.step for e in events if isinstance(e, StepEvent)] == [4, 5, 6]
    # The wall clock goes on from where the first process saved: curves against wall time do not double back.
    walls = [e.wall_seconds for e in first_steps] + [e.wall_seconds for e in events if isinstance(e, StepEvent)]
    assert all(b > a for a, b in zip(walls, walls[1:])), walls
    for k, v in straight.model.state_dict().items():
        assert torch.allclose(v, resumed.model.state_dict()[k], atol=1e-7, rtol=0), k
    # The run's own peak covers the steps before the resume too (it is in the checkpoint).
    assert events[-1].peak_graph_bytes == straight.peak_graph_bytes > 0


def test_bad_checkpoints_give_clear_errors(tmp_path):
    trainer = Trainer(points_config(steps=2), out_dir=tmp_path)
    trainer.step()
    path = tmp_path / "checkpoint.pt"
    trainer.save()
    data = path.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.ones(3)}, foreign)
    with pytest.raises(CheckpointError, match="not a checkpoint of this project"):
        load_checkpoint(foreign)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    # The right format with weights of another shape: a CheckpointError, not load_state_dict's RuntimeError.
    state = torch.load(path, weights_only=True)
    name = next(k for k, v in state["model"].items() if v.dim() == 2)
    state["model"][name] = torch.zeros(1, 1)
    edited = tmp_path / "edited.pt"
    torch.save(state, edited)
    with pytest.raises(CheckpointError, match="weights do not fit the model"):
        load_trainer(edited)


def test_bad_training_config():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        points_config(batch_size=0)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        points_config(lr=-1.0)
    with pytest.raises(ValueError, match="device must be one of"):
        points_config(device="tpu")
    with pytest.raises(ValueError, match="pick a matching preset"):
        Trainer(points_config(model=preset("image28-homoode")))


def _cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "core.train", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_help_documents_every_option():
    result = _cli("--help")
    assert result.returncode == 0
    for flag in ("--model", "--dataset", "--epochs", "--steps", "--out", "--device", "--resume", "--lr", "--adjoint"):
        assert flag in result.stdout


@pytest.mark.slow
def test_cli_tiny_run_writes_its_files_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["--model", "anode", "--dataset", "circles", "--steps", "4", "--eval-every", "2", "--out", str(out)]
    result = _cli(*args, "--ode-method", "rk4", "--n-steps", "2", "--quiet", "--device", "cpu", "--threads", "1")
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["family"] == "anode" and config["dataset"] == "circles"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in lines if r["kind"] == "step"] == ["step"] * 4 and lines[-1]["kind"] == "finished"
    graph = [r["graph_bytes"] for r in lines if r["kind"] == "step"]
    assert all(isinstance(b, int) and b > 0 for b in graph)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["params"] > 0 and 0 <= summary["test_accuracy"] <= 1
    assert summary["peak_graph_bytes"] == max(graph) == lines[-1]["peak_graph_bytes"]
    # Resuming a finished run adds no step but finishes again, with the run's own peak from the checkpoint.
    again = _cli("--resume", str(out), "--quiet")
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "summary.json").read_text())["peak_graph_bytes"] == max(graph)


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--lr", "-1"], "argument --lr: learning rate must be a number from 1e-08 to 10, got -1"),
        (["--dataset", "mnits"], "unknown dataset 'mnits'"),
        (["--model", "resnet"], "invalid choice"),
        (["--steps", "x"], "argument --steps: steps must be a whole number from 1 to 1,000,000, got 'x'"),
        (["--resume", "/nonexistent/run"], "there is no run folder at /nonexistent/run"),
        (["--model", "deq", "--jac-reg", "-1"], "jac_reg must be a number from 0"),
    ],
)
def test_cli_bad_arguments_give_one_line_errors(args, needle):
    result = _cli(*args, "--quiet")
    assert result.returncode == 2
    assert needle in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_jac_reg_reaches_the_deq_config_and_keeps_the_preset_solver():
    from core.train import build_parser, config_from_args

    config = config_from_args(build_parser().parse_args(["--model", "deq", "--dataset", "digits", "--jac-reg", "2.5"]))
    deq = config.model.deq
    assert deq.jac_reg == 2.5 and deq.solver_options == preset("image28-deq").deq.solver_options
    plain = config_from_args(build_parser().parse_args(["--model", "deq", "--dataset", "digits"]))
    assert plain.model.deq.jac_reg == 0.0


def test_settings_change_without_reset():
    trainer = Trainer(points_config(steps=10))
    trainer.step()
    change = trainer.apply(lr=1e-3, ode=ODEConfig(method="rk4", n_steps=3))
    assert change.step == 1 and change.changes == {
        "ode.n_steps": {"old": 2, "new": 3},
        "lr": {"old": 1e-2, "new": 1e-3},
    }
    event = trainer.step()
    assert event.nfe_forward == 12  # rk4, 3 steps
    assert event.lr < 1e-3 and event.lr > 9e-4  # the new base rate, one step down its cosine
    assert trainer.config.lr == 1e-3 and trainer.config.model.ode.n_steps == 3
    with pytest.raises(ValueError, match="cannot change batch_size"):
        trainer.apply(batch_size=3)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        trainer.apply(lr=-1.0)
    assert trainer.config.lr == 1e-3  # a rejected change leaves the trainer as it was


def test_time_budget_ends_the_run_and_decays_the_rate():
    events = list(train(points_config(steps=None, epochs=100_000, time_budget=1.5, eval_every=1000)))
    final = events[-1]
    assert isinstance(final, FinishedEvent) and not final.stopped
    assert 1.5 <= final.seconds < 10
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert len(steps) > 5
    assert steps[-1].lr < 0.2 * steps[0].lr  # most of the cosine was spent
    assert events[-2].kind == "eval" and events[-2].step == final.step  # the last step was validated


@pytest.mark.slow
def test_a_resumed_time_budget_goes_on_with_its_clock_and_its_schedule(tmp_path):
    """A time-budgeted run interrupted after a checkpoint and resumed continues its cosine from the
    time saved in the checkpoint and stops at its budget, not at the budget plus the time before the crash.
    The bounds hold on a busy machine: they compare clocks, never a step's speed."""
    budget = 4.0
    cfg = points_config(steps=None, epochs=100_000, time_budget=budget, eval_every=5)
    first = Trainer(cfg, out_dir=tmp_path)
    last_step = None
    for event in first.events():  # abandoned after the first checkpoint past a quarter of the budget: a crash
        if isinstance(event, StepEvent):
            last_step = event
        elif isinstance(event, CheckpointEvent) and last_step.wall_seconds >= budget / 4:
            break
    saved = load_checkpoint(tmp_path / "checkpoint.pt")
    spent = saved["wall_seconds"]
    assert saved["step"] == last_step.step and budget / 4 <= spent < budget
    resumed = load_trainer(tmp_path / "checkpoint.pt", out_dir=tmp_path)
    events = list(resumed.events())
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert steps[0].step == last_step.step + 1
    # The rate continues the cosine from the time spent, not from lr again.
    assert resumed.lr_at((spent + 1.0) / budget) <= steps[0].lr <= last_step.lr < 0.9 * cfg.lr
    # The budget counts the time before the resume: the last step began before the budget ran out (not
    # before budget + spent), on the run's clock that the rows' wall_seconds and the final event share.
    assert steps[-1].wall_seconds - steps[-1].step_seconds < budget + 0.25
    final = events[-1]
    assert isinstance(final, FinishedEvent) and not final.stopped
    assert max(budget, steps[-1].wall_seconds) <= final.seconds <= resumed.elapsed
    # The summary's times are the whole run's: train_seconds is the sum of every kept step row's time.
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    step_rows = [r for r in rows if r["kind"] == "step"]
    assert [r["step"] for r in step_rows] == list(range(1, final.step + 1))
    assert summary["train_seconds"] == pytest.approx(sum(r["step_seconds"] for r in step_rows), rel=1e-9)
    assert summary["seconds"] == final.seconds
    # Resuming the ended run trains no further step: its budget is spent.
    again = list(load_trainer(tmp_path / "checkpoint.pt", out_dir=tmp_path).events())
    assert not [e for e in again if isinstance(e, StepEvent)] and not again[-1].stopped


def test_a_budget_that_runs_out_right_after_a_checkpoint_leaves_an_ended_run(tmp_path):
    """The budget runs out after a step that was validated and checkpointed: the end saves again, so the
    checkpoint's clock says the budget is spent and resuming the ended run trains nothing (CI once saw one
    more step: the last save had come a few ms before the budget ran out)."""
    cfg = points_config(steps=None, epochs=100_000, time_budget=3600.0, eval_every=2)
    trainer = Trainer(cfg, out_dir=tmp_path)
    trainer.started = time.perf_counter()
    trainer.tick(), trainer.tick()  # step 2: validated and checkpointed, long before the budget
    assert trainer.validated_at == 2 and load_checkpoint(tmp_path / "checkpoint.pt")["wall_seconds"] < 60
    trainer.wall_offset += 3600.0  # ... and now the budget is spent
    assert trainer.out_of_time
    trainer.end()
    assert load_checkpoint(tmp_path / "checkpoint.pt")["wall_seconds"] >= 3600.0
    again = list(load_trainer(tmp_path / "checkpoint.pt", out_dir=tmp_path).events())
    assert not [e for e in again if isinstance(e, StepEvent)]


def test_a_paused_run_waits_between_steps_with_its_clock_stopped(tmp_path, monkeypatch):
    """should_pause holds the run between steps; the wait counts in no step's time and not on the run's clock
    (a study paused for a benchmark once recorded a 15-minute step)."""
    import core.training.loop as loop

    monkeypatch.setattr(loop, "PAUSE_POLL_SECONDS", 0.05)
    trainer = Trainer(points_config(steps=4, eval_every=100), out_dir=tmp_path)
    pause_from = {}

    def paused() -> bool:  # a pause of 1 s once step 2 is done
        if trainer.step_count == 2:
            pause_from.setdefault("t", time.perf_counter())
            return time.perf_counter() - pause_from["t"] < 1.0
        return False

    started = time.perf_counter()
    steps = [e for e in trainer.events(should_pause=paused) if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == [1, 2, 3, 4] and time.perf_counter() - started >= 1.0
    assert max(e.step_seconds for e in steps) < 0.9
    assert steps[-1].wall_seconds < time.perf_counter() - started - 0.9  # the run's clock skipped the wait


def test_json_safe_turns_every_non_finite_float_into_null():
    from core.training import StepEvent, json_safe

    value = {"a": float("nan"), "b": [1.5, float("inf"), {"c": -float("inf")}], "d": 2, "e": "x"}
    assert json_safe(value) == {"a": None, "b": [1.5, None, {"c": None}], "d": 2, "e": "x"}
    event = StepEvent(
        step=1, epoch=0, loss=float("nan"), train_acc=0.5, nfe_forward=3, nfe_backward=0, residual=None,
        start_loss=None, lr=1e-3, peak_memory_bytes=1, graph_bytes=1, step_seconds=0.1, wall_seconds=float("inf"),
    )  # fmt: skip
    line = json.dumps(event.to_dict(), allow_nan=False)
    assert json.loads(line)["loss"] is None and json.loads(line)["wall_seconds"] is None


def test_saved_tensor_meter_counts_each_saved_storage_once():
    x = torch.randn(8, 4, requires_grad=True)  # float32: 8 * 4 * 4 = 128 bytes
    w = torch.randn(8, 4)
    with SavedTensorMeter() as meter:
        y = (x * w).sum()  # mul saves w (the gradient of x needs it), not x; sum saves no tensor
    assert meter.nbytes == 128 and meter.storages == 1
    y.backward()
    assert meter.nbytes == 128  # read at exit: backward freeing the graph afterwards changes nothing
    w.requires_grad_()
    with meter:  # a new count
        y = (x * w).sum()  # both saved
    assert meter.nbytes == 256 and meter.storages == 2
    with meter:
        y = (x * x).sum()  # x saved twice: one storage
    assert meter.nbytes == 128
    with meter:
        y = (x[:, :2] * w[:, 2:]).sum()  # views count as their whole storage
    assert meter.nbytes == 256
    with meter, torch.no_grad():
        y = (x * w).sum()
    assert meter.nbytes == 0
    (x * w).sum()  # outside the context: not counted
    assert meter.nbytes == 0


def test_saved_tensor_meter_counts_only_what_backward_will_need():
    # A branch dropped inside the context (a rejected adaptive step, a result nobody kept) frees what it
    # saved: backward will not need it, so it is not counted (an address-keyed count kept it).
    x = torch.randn(8, 4, requires_grad=True)
    w = torch.randn(8, 4)
    with SavedTensorMeter() as meter:
        y = (x * w).sum()  # saves w: 128 bytes, kept
        (x.exp() * 2).sum()  # saves exp's output (128 bytes), dropped at once
        assert meter.nbytes == 128  # read inside: the saved tensors alive now
        z = torch.tanh(x)  # saves its output: 128 bytes, kept
    assert meter.nbytes == 256 and meter.storages == 2
    del z
    assert meter.nbytes == 256  # the figure of the exit
    y.backward()


def test_saved_tensor_meter_never_keeps_a_graph_alive():
    # A tensor that saves itself for backward (tanh's output) and is never differentiated: with the meter's
    # hook handing the saved tensor back as itself, its node and the tensor held each other in C++ and were
    # never freed (every training step leaked its graph's side branches: +90 MB per image28-node step).
    x = torch.randn(3, 4, requires_grad=True)
    with SavedTensorMeter() as meter:
        a = torch.tanh(x)
    ref = weakref.ref(a)
    del a
    gc.collect()
    assert ref() is None and meter.nbytes == 3 * 4 * 4


def test_graph_bytes_measure_a_training_step_without_training():
    model = preset("points-homoode").replace(ode=ODEConfig(method="dopri5", rtol=1e-3, atol=1e-3))
    trainer = Trainer(points_config(model=model, batch_size=32))
    params = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.model.eval()
    nbytes, nfe = trainer.graph_bytes(step=0)
    assert not trainer.model.training and trainer.step_count == 0  # its mode put back, nothing trained
    assert all(torch.equal(a, b) for a, b in zip(params, trainer.model.parameters(), strict=True))
    assert trainer.graph_bytes(step=0) == (nbytes, nfe)  # exact: the same figure every time
    trainer.model.train()
    event = trainer.step()  # the first step: the same batch and weights, counted by the same meter
    assert (event.graph_bytes, event.nfe_forward) == (nbytes, nfe) and nbytes > 0


def test_graph_bytes_put_back_batch_norm_statistics_and_the_random_stream():
    # BatchNorm in its features; dropout draws its mask from the global generator in training mode.
    model = preset("image28-homoode").replace(ode=FAST_ODE, width=8, head_dim=16, dropout=0.1)
    trainer = Trainer(TrainConfig(model=model, dataset="digits", steps=2, batch_size=8, train_limit=64, device="cpu"))
    buffers = {k: v.clone() for k, v in trainer.model.state_dict().items() if "running" in k or "batches" in k}
    assert buffers and trainer.model.training
    rng = torch.get_rng_state()
    nbytes, nfe = trainer.graph_bytes(step=1)
    assert nbytes > 0 and nfe == 8  # rk4 x 2
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in buffers.items()) and trainer.model.training
    assert torch.equal(torch.get_rng_state(), rng)  # the training's random stream is not moved


def test_graph_bytes_grow_with_batch_and_rk4_steps_and_adjoint_keeps_them_small():
    def graph_bytes(batch: int, n_steps: int, adjoint: bool = False) -> int:
        model = preset("points-homoode").replace(ode=ODEConfig(method="rk4", n_steps=n_steps, adjoint=adjoint))
        event = Trainer(points_config(model=model, batch_size=batch)).step()
        assert event.nfe_backward == (4 * n_steps if adjoint else 0)
        return event.graph_bytes

    assert graph_bytes(8, 2) == graph_bytes(8, 2)  # deterministic
    assert 2.5 <= graph_bytes(32, 2) / graph_bytes(8, 2) <= 4.5
    direct = graph_bytes(32, 8)
    assert 2.5 <= direct / graph_bytes(32, 2) <= 4.5
    assert graph_bytes(32, 8, adjoint=True) < 0.2 * direct


def test_apply_returns_change_events_with_old_and_new_values():
    from core.models import DEQConfig

    trainer = Trainer(points_config(steps=10))
    lr_min = trainer.config.lr_min

    def cosine(base: float, step: int) -> float:  # the schedule, written out: lr_min + (lr - lr_min) c(k / T)
        return lr_min + (base - lr_min) * (1 + math.cos(math.pi * step / 10)) / 2

    assert trainer.step().lr == cosine(1e-2, 0)
    first = trainer.apply(lr=5e-3)
    # The rate is a function of progress: a new base keeps the run's place on the cosine, at once.
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(cosine(5e-3, 1), rel=1e-12)
    assert trainer.step().lr == pytest.approx(cosine(5e-3, 1), rel=1e-12)
    second = trainer.apply(lr=1e-3, grad_clip=1.0)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(cosine(1e-3, 2), rel=1e-12)
    assert isinstance(first, ChangeEvent) and first.kind == "change"
    assert (first.step, first.changes) == (1, {"lr": {"old": 1e-2, "new": 5e-3}})
    assert second.step == 2
    assert second.changes == {"lr": {"old": 5e-3, "new": 1e-3}, "grad_clip": {"old": None, "new": 1.0}}
    assert trainer.step().lr == pytest.approx(cosine(1e-3, 2), rel=1e-12)  # the next step runs at that rate
    line = json.dumps(second.to_dict(), allow_nan=False)
    assert json.loads(line) == {"kind": "change", "step": 2, "epoch": 0, "changes": second.changes}
    assert trainer.apply(lr=1e-3).changes == {}  # nothing changed
    nested = trainer.apply(ode=ODEConfig(method="dopri5", rtol=1e-4, n_steps=2))
    assert nested.changes == {"ode.method": {"old": "rk4", "new": "dopri5"}, "ode.rtol": {"old": 1e-3, "new": 1e-4}}

    deq = Trainer(points_config("deq", steps=4))
    tighter = DEQConfig(**{**vars(deq.config.model.deq), "solver_options": {"tol": 1e-5, "max_iter": 30}})
    assert deq.apply(deq=tighter).changes == {"deq.solver_options.tol": {"old": 1e-4, "new": 1e-5}}


def test_toy_size_and_noise_reach_the_generated_data():
    config = TrainConfig(
        model=preset("points-node"), dataset="moons", steps=1, toy_size=120, toy_noise=0.0, device="cpu", batch_size=64
    )
    trainer = Trainer(config)
    assert len(trainer.test_y) == 120 and "noise 0.0" in trainer.data.source
    with pytest.raises(ValueError, match="toy_noise must be a number >= 0"):
        config.replace(toy_noise=-1.0)
    assert (
        TrainConfig.from_dict({k: v for k, v in config.to_dict().items() if not k.startswith("toy")}).toy_size == 1000
    )


def test_a_failed_write_leaves_the_old_file_and_no_temporary_one(tmp_path):
    from core.training import atomic_write_json, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1})
    before = path.read_bytes()
    with pytest.raises(Exception):  # noqa: B017 - torch raises its own pickling error type
        save_checkpoint(path, {"step": 2, "bad": lambda: None})  # a lambda cannot be saved
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    atomic_write_json(tmp_path / "a.json", {"x": float("nan")})  # the benchmarks' records go through it too
    assert (tmp_path / "a.json").read_text().strip().endswith("}") and oct((tmp_path / "a.json").stat().st_mode)[
        -3:
    ] == "644"


@pytest.mark.parametrize("family", ["node", "anode", "deq", "homoode"])
def test_mixed_precision_trains_close_to_fp32(family):
    """bf16 autocast (and fp16 with loss scaling) on the CPU: the same run's losses stay within 1 % of fp32's
    over six steps (bf16 keeps 8 bits of mantissa, about 0.4 % per rounding; the state and the solvers
    stay fp32, so the errors do not compound through the solver)."""
    losses = {}
    for precision in ("fp32", "bf16", "fp16"):
        trainer = Trainer(points_config(family, steps=6, precision=precision))
        events = [trainer.step() for _ in range(6)]
        losses[precision] = [e.loss for e in events]
        if family == "deq":
            assert all(e.residual is not None and math.isfinite(e.residual) for e in events)
    for precision in ("bf16", "fp16"):
        for low, full in zip(losses[precision], losses["fp32"]):
            assert abs(low - full) <= 0.01 * full, (precision, losses)
    assert losses["bf16"] != losses["fp32"]  # autocast really ran in low precision


def test_mixed_precision_keeps_the_implicit_state_in_fp32():
    model = preset("image28-homoode").replace(ode=FAST_ODE, width=8, head_dim=16)
    cfg = TrainConfig(model=model, dataset="digits", steps=2, batch_size=8, train_limit=64, device="cpu")
    trainer = Trainer(cfg.replace(precision="bf16"))
    x = trainer.train_x[:4]
    with trainer.autocast():
        out = trainer.model(x, trajectory=3)
    assert out.stats.trajectory.dtype == torch.float32  # the ODE state: fp32 under autocast
    assert out.logits.dtype == torch.bfloat16  # the head's linear layer ran in bf16
    assert trainer.step().loss > 0
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16"):
        cfg.replace(precision="fp8")


def test_channels_last_trains_the_same_model_and_compile_falls_back_with_a_warning(monkeypatch):
    model = preset("image28-homoode").replace(ode=FAST_ODE, width=8, head_dim=16)
    cfg = TrainConfig(model=model, dataset="digits", steps=3, batch_size=8, train_limit=64, device="cpu")
    plain = [Trainer(cfg).step().loss for _ in range(1)]
    last = Trainer(cfg.replace(channels_last=True))
    assert last.model.features.net[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert last.step().loss == pytest.approx(plain[0], rel=1e-5)  # the same arithmetic, another layout
    with pytest.warns(UserWarning, match="applies to image models"):
        Trainer(points_config(channels_last=True))

    def broken(self, *args, **kwargs):  # a machine where torch.compile cannot build its kernels
        def fail(*a, **k):
            raise RuntimeError("no working C++ compiler")

        self._compiled_call_impl = fail

    monkeypatch.setattr(torch.nn.Module, "compile", broken)
    with pytest.warns(UserWarning, match="--compile: torch.compile failed here .*no working C.. compiler"):
        fallback = Trainer(cfg.replace(compile=True))
    assert fallback.step().loss == pytest.approx(plain[0], rel=1e-5)  # trained eagerly


@pytest.mark.slow
def test_cli_guards_the_run_folder(tmp_path):
    run = tmp_path / "run"
    args = ["--model", "deq", "--dataset", "circles", "--steps", "2", "--device", "cpu", "--quiet", "--out", str(run)]
    assert _cli(*args).returncode == 0
    rows = (run / "metrics.jsonl").read_text()
    again = _cli(*args)  # a second run into the same folder would mix its rows with the first one's
    assert again.returncode == 2 and "already holds a run" in again.stderr and "--overwrite" in again.stderr
    assert (run / "metrics.jsonl").read_text() == rows
    (run / ".checkpoint.pt.x1.tmp").write_bytes(b"half")  # what a kill during a checkpoint write leaves
    assert _cli(*args, "--overwrite").returncode == 0
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()].count(1) == 1
    assert not list(run.glob(".*.tmp"))
    file = tmp_path / "file"
    file.write_text("x")
    for out, needle in [(file, "is a file, not a folder"), ("/proc/no/run", "cannot write the run folder")]:
        proc = _cli(*args[:-1], str(out))
        assert proc.returncode == 2 and needle in proc.stderr and "Traceback" not in proc.stderr
    died = tmp_path / "died"
    died.mkdir()
    (died / "config.json").write_text("{}")
    proc = _cli("--resume", str(died))
    assert proc.returncode == 2 and "stopped before its first checkpoint" in proc.stderr


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--seed", str(2**70)], "seed must be a whole number from 0 to 2,147,483,647"),
        (["--grad-clip", "nan"], "grad_clip must be a positive number"),
        (["--batch-size", "1000000000"], "batch size must be a whole number from 1 to 4096"),
        (["--batch-size", "2000"], "larger than the training split (1,000 examples)"),
    ],
)
def test_cli_refuses_bad_numbers_in_one_line(flags, needle):
    proc = _cli("--model", "deq", "--dataset", "circles", "--steps", "1", "--device", "cpu", *flags)
    assert proc.returncode == 2 and needle in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_running_out_of_memory_is_one_line_of_advice_and_keeps_the_checkpoint(tmp_path):
    trainer = Trainer(points_config(steps=6, eval_every=2), out_dir=tmp_path)
    forward = trainer.model.forward

    def hungry(x, trajectory=0):
        if trainer.step_count == 3:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes")
        return forward(x, trajectory)

    trainer.model.forward = hungry
    events = list(trainer.events())
    error = events[-1]
    assert isinstance(error, ErrorEvent) and error.step == 3
    assert error.message.startswith("out of memory at step 3 (batch 64)") and "--batch-size" in error.advice
    assert error.checkpoint == str(tmp_path / "checkpoint.pt") and load_checkpoint(error.checkpoint)["step"] == 2
    trainer.model.forward = forward
    assert trainer.step().step == 4  # the run goes on once memory allows


@pytest.mark.slow
@pytest.mark.parametrize("family", ["homoode", "deq"])
def test_the_same_seed_trains_the_same_model_bit_for_bit(family):
    """What lets a study re-run a run whose timing was disturbed and keep everything but its clock: the data
    order, the initialisation, an adaptive solver's step choices (dopri5) and a DEQ's Anderson solves all
    follow from the seed."""
    model = preset(f"image28-{family}").replace(width=8, head_dim=16)
    if family == "homoode":
        model = model.replace(ode=ODEConfig(method="dopri5", rtol=1e-3, atol=1e-3), start="learnable")
    cfg = TrainConfig(model=model, dataset="digits", steps=3, batch_size=8, train_limit=64, device="cpu", seed=3)

    def trained(config):
        trainer = Trainer(config)
        steps = [trainer.step() for _ in range(3)]
        return [(s.loss, s.nfe_forward, s.nfe_backward) for s in steps], trainer.model.state_dict()

    (first, weights), (again, weights_again) = trained(cfg), trained(cfg)
    assert first == again
    assert all(torch.equal(v, weights_again[k]) for k, v in weights.items())
    other, _ = trained(cfg.replace(seed=4))
    assert [loss for loss, _, _ in other] != [loss for loss, _, _ in first]
