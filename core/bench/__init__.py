"""Side-by-side benchmarks that write a JSON file and print a markdown table.

    python -m core.bench solvers --json solvers.json     # every root solver on a seeded problem set
    python -m core.bench models --dataset digits --budget-seconds 180 --json models.json
    python -m core.bench memory --json memory.json       # training memory vs batch size and NFE
    python -m core.bench recipes --out runs/recipes      # every ODE family x solver recipe x seed x dataset
    python -m core.bench throughput --json tp.json       # images/s per family and paper-cifar10, peak memory

Each subcommand module offers ``SUBCOMMANDS``: functions that add an argparse subparser setting
``func`` (run, returns the exit status), ``check`` (validate, returns an error message or None) and
``parser``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import models, recipes, solvers, throughput
from .models import MEMORY_VARIANTS, memory_probe
from .solvers import machine_info

__all__ = ["MEMORY_VARIANTS", "build_parser", "machine_info", "main", "memory_probe"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (*solvers.SUBCOMMANDS, *models.SUBCOMMANDS, *recipes.SUBCOMMANDS, *throughput.SUBCOMMANDS):
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command_line = " ".join(["python -m core.bench", *argv])
    message = args.check(args) if getattr(args, "check", None) is not None else None
    if message:
        args.parser.error(message)
    return args.func(args)
