"""Input checks and the ranges of every user-facing setting: defined once, used by core's option classes,
the CLI and the app (which builds its sliders, boxes and messages from these ranges).

Every check raises ``ValueError`` with a message that names the setting, the valid values and what was
given (cut by :func:`short_repr`, so a 5,000-character paste cannot fill the page).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NoReturn


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to about ``limit`` characters: error messages echo what the user typed, and a
    5,000-character value must not fill the page (or a terminal) and push the advice off screen."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 20]}…{text[-8:]} ({len(text):,} characters)"


def is_blank(value: Any) -> bool:
    """Nothing entered: None (an empty number box) or a string of only spaces."""
    return value is None or (isinstance(value, str) and not value.strip())


def check_filled(value: Any, name: str) -> None:
    """ValueError ``"<name> is empty: enter a number"`` for a blank value (:func:`is_blank`): the one message
    for an empty box, wherever the setting is typed (never "got None")."""
    check(not is_blank(value), f"{name} is empty: enter a number")


def fail(message: str) -> NoReturn:
    """Raise ValueError(message): a bad input, said in words a person can act on."""
    raise ValueError(message)


def check(cond: bool, message: str) -> None:
    """Raise ValueError(message) unless ``cond``; never ``assert`` (stripped by ``python -O``)."""
    if not cond:
        fail(message)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> None:
    check(
        isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
        f"{name} must be an integer >= {minimum}, got {short_repr(value)}",
    )


def check_positive_number(value: Any, name: str) -> None:
    """A finite number above 0 (not a bool)."""
    check(is_number(value) and value > 0, f"{name} must be a positive number, got {short_repr(value)}")


def check_in_range(value: Any, name: str, low: float, high: float, low_open: bool = False) -> None:
    ok = is_number(value) and (value > low if low_open else value >= low) and value <= high
    bracket = "(" if low_open else "["
    check(ok, f"{name} must be in {bracket}{low}, {high}], got {short_repr(value)}")


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> None:
    check(value in choices, f"{name} must be one of {', '.join(map(repr, choices))}, got {short_repr(value)}")


def from_fields(cls: type, data: dict[str, Any]) -> Any:
    """``cls(**data)`` for a config dataclass read from a file; an unknown key raises ValueError naming the
    valid ones (a misspelt setting must not be dropped silently)."""
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - valid)
    check(not unknown, f"unknown {cls.__name__} field(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}")
    return cls(**data)


@dataclass(frozen=True)
class Range:
    """The values a setting may take: a number (a whole one with ``integer``) from ``low`` to ``high``.

    Example:
        >>> TOL.check(1e-3, "tolerance")
        >>> TOL.check(2.0, "tolerance")
        Traceback (most recent call last):
        ValueError: tolerance must be a number from 1e-08 to 0.5, got 2.0
    """

    low: float
    high: float
    integer: bool = False

    def __contains__(self, value: Any) -> bool:
        ok = is_number(value) and self.low <= value <= self.high
        return ok and (not self.integer or float(value).is_integer())

    def check(self, value: Any, name: str) -> None:
        """ValueError naming ``name`` and the range unless ``value`` is in it; a blank value is
        ``"<name> is empty: enter a number"`` (:func:`check_filled`)."""
        check_filled(value, name)
        kind = "a whole number" if self.integer else "a number"
        check(value in self, f"{name} must be {kind} from {self.text()}, got {short_repr(value)}")

    def text(self) -> str:
        """``"1e-08 to 0.5"``, ``"0 to 2,147,483,647"``: how messages and the page state the range."""
        return f"{_show(self.low)} to {_show(self.high)}"


def to_number(value: Any) -> Any:
    """Text that spells a number ("0.01", " 1e-3 ", "200") as that number (an int when it has no fraction
    and was written without a point or exponent); anything else is returned as it was, for a check to name."""
    if not isinstance(value, str) or is_blank(value):
        return value
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


def _show(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() and abs(v) >= 1e4 else f"{v:g}"


def check_number(value: Any, name: str, low: float, high: float, integer: bool = False) -> None:
    """A finite number (a whole one with ``integer``) from ``low`` to ``high``, else ValueError naming the
    range: ``Range(low, high, integer).check(value, name)`` for a one-off range."""
    Range(low, high, integer).check(value, name)


# ----------------------------------------------------------------------------------------------
# The ranges a user may pick from in the app (its boxes, sliders and messages are built from these).
# The library itself accepts more (e.g. a tolerance of 1e-12 in float64 tests); these are the values
# that make sense to offer a person training on a CPU or one GPU.

#: A solver tolerance, the same in every tab: the DEQ root solvers' relative residual
#: ||f(z) - z|| / ||f(z)|| and the adaptive ODE methods' rtol (= atol). Below about 1e-6, float32
#: arithmetic rarely gets there: the solver then runs to its iteration cap (shown as not converged).
TOL = Range(1e-8, 0.5)
#: A root solver's iteration cap.
MAX_ITER = Range(1, 500, integer=True)
#: Steps of a fixed-step ODE method (euler, midpoint, rk4) over [0, 1], in training and in the lab.
ODE_STEPS = Range(1, 200, integer=True)
#: Adam's learning rate.
LR = Range(1e-8, 10)
#: Samples per optimisation step.
BATCH_SIZE = Range(1, 4096, integer=True)
#: Optimisation steps of a run.
STEPS = Range(1, 1_000_000, integer=True)
#: Validate every this many steps.
EVAL_EVERY = Range(1, 1_000_000, integer=True)
#: Passes over the training split (instead of a step count).
EPOCHS = Range(1, 1000, integer=True)
#: Training examples used (a subset of the split).
TRAIN_LIMIT = Range(1, 10_000_000, integer=True)
#: A run's seed (data order, split, initialisation).
SEED = Range(0, 2**31 - 1, integer=True)

#: Each number a person sets for a training run: the one name every message gives it (the app's boxes, its
#: live changes and links, the CLI's flags) and its range. One setting, one rule, one wording, wherever it
#: is typed: :func:`check_setting`.
SETTINGS: dict[str, tuple[str, Range]] = {
    "steps": ("steps", STEPS),
    "batch_size": ("batch size", BATCH_SIZE),
    "lr": ("learning rate", LR),
    "n_steps": ("ODE steps", ODE_STEPS),
    "tol": ("tolerance", TOL),
    "max_iter": ("iteration cap", MAX_ITER),
    "eval_every": ("validate every", EVAL_EVERY),
    "train_limit": ("training subset", TRAIN_LIMIT),
    "epochs": ("epochs", EPOCHS),
    "seed": ("seed", SEED),
}


def check_setting(name: str, value: Any) -> None:
    """Check one setting of :data:`SETTINGS` with its range, named as everywhere; a blank value is
    "<name> is empty: enter a number"."""
    label, allowed = SETTINGS[name]
    allowed.check(value, label)


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose input errors are one line, ``prog: error: what to change`` (exit status 2),
    like every other input error of the command lines (no usage block in front of it)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def setting_arg(name: str):
    """An argparse ``type`` for setting ``name``: the text as a number, checked by :func:`check_setting`, so
    ``--lr abc`` says what the app says ("learning rate must be a number from 1e-08 to 10, got 'abc'")."""

    def parse(text: str) -> Any:
        value = to_number(text)
        try:
            check_setting(name, value)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return int(value) if SETTINGS[name][1].integer else float(value)

    parse.__name__ = SETTINGS[name][0]  # argparse names the type in its own messages
    return parse
