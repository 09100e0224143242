"""One vocabulary: every range and list a user picks from is defined once in core, and means the same in
every front end."""

from __future__ import annotations

import pytest

import core
from core import checks
from core.models import DEQ_MAX_ITER, DEQConfig
from core.train import DEFAULTS, build_parser, config_from_args
from explorer import lab
from explorer.imagetrain import TrainSettings
from explorer.playground import PlaygroundSettings

TOL_MESSAGE = "tolerance must be a number from 1e-08 to 0.5"


@pytest.mark.parametrize("tol", [0.0, 5e-9, 0.6, float("nan"), True, "1e-3"])
def test_a_tolerance_has_one_range_in_every_tab(tol):
    with pytest.raises(ValueError, match=TOL_MESSAGE):
        PlaygroundSettings(tol=tol)
    with pytest.raises(ValueError, match=TOL_MESSAGE):
        TrainSettings(tol=tol)
    with pytest.raises(ValueError, match=TOL_MESSAGE):
        lab.compare_solvers(None, None, tol=tol)  # checked before anything is touched


def test_a_tolerance_in_range_reaches_the_model_unchanged():
    # Before, the Train tab raised a DEQ's tolerance to 1e-6 without saying so.
    for tol in (1e-8, 1e-7, 0.5):
        deq = TrainSettings(family="deq", tol=tol).model_config().deq
        assert deq.solver_options == {"tol": tol, "max_iter": DEQ_MAX_ITER}
        assert PlaygroundSettings(tol=tol).deq_config().solver_options == {"tol": tol, "max_iter": DEQ_MAX_ITER}
        assert PlaygroundSettings(tol=tol).ode_config().rtol == tol


def test_ranges_state_themselves():
    assert (1e-3 in checks.TOL, 0.7 in checks.TOL, 3.0 in checks.MAX_ITER, 3.5 in checks.MAX_ITER) == (
        True,
        False,
        True,
        False,
    )
    assert checks.TOL.text() == "1e-08 to 0.5"
    with pytest.raises(ValueError, match="seed must be a whole number from 0 to 2,147,483,647, got -1"):
        checks.SEED.check(-1, "seed")


def test_changing_the_solver_keeps_the_common_options_only():
    base = DEQConfig(solver="anderson", solver_options={"tol": 1e-5, "max_iter": 12, "window": 3})
    assert base.with_forward("broyden").solver_options == {"tol": 1e-5, "max_iter": 12}
    assert base.with_forward(tol=1e-3).solver_options == {"tol": 1e-3, "max_iter": 12, "window": 3}
    with pytest.raises(ValueError, match="window"):
        base.with_forward("fixed_point", window=3)
    # The CLI goes through it too: --solver keeps the preset's tolerance and iteration cap.
    args = build_parser().parse_args(["--model", "deq", "--dataset", "digits", "--solver", "broyden"])
    deq = config_from_args(args).model.deq
    assert deq.solver == "broyden" and deq.solver_options == core.preset("image28-deq").deq.solver_options


def test_cli_defaults_are_the_configs():
    args = build_parser().parse_args([])
    for name in ("batch_size", "lr", "lr_min", "weight_decay", "eval_every", "start_lr", "start_every", "seed"):
        assert getattr(args, name) == getattr(DEFAULTS, name), name
    assert args.device == DEFAULTS.device and tuple(build_parser()._option_string_actions["--device"].choices) == (
        core.DEVICES
    )


@pytest.mark.parametrize(
    "flag, field, text",
    [
        ("--lr", "lr", "abc"),
        ("--lr", "lr", "1e9"),
        ("--lr", "lr", ""),
        ("--tol", "tol", "2"),
        ("--rtol", "tol", "0"),
        ("--steps", "steps", "0"),
        ("--steps", "steps", "2.5"),
        ("--batch-size", "batch_size", "x"),
        ("--n-steps", "n_steps", "999"),
        ("--seed", "seed", "-1"),
        ("--train-limit", "train_limit", "0"),
        ("--epochs", "epochs", "1e6"),
    ],
)
def test_the_cli_says_what_the_train_tab_says(flag, field, text, capsys):
    """One setting, one rule, one wording: the CLI's flag and the Train form's box refuse a value alike."""
    from explorer.imagetrain import check_field

    with pytest.raises(ValueError) as app:
        check_field(field, checks.to_number(text))
    with pytest.raises(SystemExit) as cli:
        build_parser().parse_args([f"{flag}={text}"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert cli.value.code == 2 and err.endswith(f"argument {flag}: {app.value}")


def test_the_cli_takes_numbers_as_their_settings_types():
    args = build_parser().parse_args(["--steps", "100.0", "--lr", "3e-3", "--max-iter", "40", "--tol", "1e-4"])
    assert (args.steps, args.lr, args.max_iter, args.tol) == (100, 0.003, 40, 1e-4)
    assert isinstance(args.steps, int) and isinstance(args.max_iter, int)


def test_one_tolerance_means_the_odes_rtol_atol_and_the_deqs_tol():
    base = core.preset("image28-deq")
    changed = base.with_solver_settings(tol=1e-3, ode_method="rk4", n_steps=3, deq_solver="broyden")
    assert (changed.ode.rtol, changed.ode.atol, changed.ode.method, changed.ode.n_steps) == (1e-3, 1e-3, "rk4", 3)
    assert changed.deq.solver == "broyden" and changed.deq.solver_options == {"tol": 1e-3, "max_iter": DEQ_MAX_ITER}
    assert base.with_solver_settings() == base  # None keeps every setting
    # The Train tab's form, its live change and the CLI name the same thing.
    from explorer.imagetrain import live_changes

    assert live_changes(base, 0.01, 1e-3)["deq"] == base.with_solver_settings(tol=1e-3).deq
    homo = core.preset("image28-homoode")
    assert live_changes(homo, 0.01, 1e-3)["ode"] == homo.with_solver_settings(tol=1e-3).ode
    assert core.preset_name("deq", "image28") == "image28-deq" and core.preset_name("homoode", "points") in core.PRESETS
