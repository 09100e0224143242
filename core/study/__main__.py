"""``python -m core.study``: train every family on each dataset for each seed, measure, write the report.

    python -m core.study --preset quick --out runs/study-quick               # ~40 min on a 2-core CPU
    python -m core.study --preset standard --out studies/standard --jobs 2   # hours: commit as runs finish
    python -m core.study --preset full --device cuda --out runs/study-full   # for a GPU
    python -m core.study --report-only --out runs/study-quick --report docs/study.md

Started again with the same settings, it skips finished runs and resumes an interrupted one from its last
checkpoint. A bad input exits with status 2 and one line saying what to change.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import data as data_lib
from ..checks import SEED, STEPS, TRAIN_LIMIT, OneLineParser, check, check_positive_int
from ..training import DEVICES, CheckpointError
from .aggregate import claims, load_study, summarize
from .plan import STUDY_PRESETS, VARIANTS, StudyPreset
from .report import write_report
from .runner import run_recorded, run_study


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m core.study",
        description="A reproduction study of the HomoODE paper's claims: NODE, ANODE, DEQ and HomoODE (learned "
        "and fixed start) at matched parameters, several seeds, measured and reported in one markdown file.",
    )
    p.add_argument("--preset", default="quick", help=f"study preset: {', '.join(STUDY_PRESETS)} (default quick)")
    p.add_argument("--datasets", nargs="+", metavar="NAME", help="datasets (default: the preset's)")
    p.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="seeds (default: 0 1 2)")
    p.add_argument("--variants", nargs="+", metavar="VARIANT", help=f"variants: {', '.join(VARIANTS)}")
    p.add_argument("--out", type=Path, help="the study folder (default runs/study-PRESET)")
    p.add_argument("--report", type=Path, help="where the markdown report goes (default OUT/study.md)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report from the run folders")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto: CUDA when present")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's; 1 per run with --jobs)")
    p.add_argument(
        "--jobs", type=int, default=1, help="runs at once, each in its own process (default 1; 2 on a 2-core CPU)"
    )
    # A child of --jobs: the one run NAME of the study recorded in --out (its settings come from there).
    p.add_argument("--run-one", metavar="NAME", help=argparse.SUPPRESS)
    p.add_argument("--head", default="", help=argparse.SUPPRESS)
    p.add_argument("--data-dir", help="folder with standard dataset files")
    p.add_argument("--steps", type=int, help="override the preset: optimisation steps per run")
    p.add_argument("--train-limit", type=int, help="override the preset: training examples used (a subset)")
    p.add_argument("--measure-examples", type=int, help="override the preset: test examples measured")
    return p


def study_from_args(args: argparse.Namespace) -> tuple[StudyPreset, list[str]]:
    """The study the command line asks for, and notes on datasets skipped (ValueError for bad input)."""
    check(
        args.preset in STUDY_PRESETS,
        f"unknown preset {args.preset!r}; expected one of {', '.join(STUDY_PRESETS)}",
    )
    study = STUDY_PRESETS[args.preset]
    changes: dict = {}
    notes = []
    if args.seeds is not None:
        for seed in args.seeds:
            SEED.check(seed, "seed")
        changes["seeds"] = tuple(args.seeds)
    if args.variants is not None:
        changes["variants"] = tuple(args.variants)
    if args.steps is not None:
        STEPS.check(args.steps, "--steps")
        changes["steps"] = args.steps
    if args.train_limit is not None:
        TRAIN_LIMIT.check(args.train_limit, "--train-limit")
        changes["train_limit"] = args.train_limit
    if args.measure_examples is not None:
        check_positive_int(args.measure_examples, "--measure-examples")
        changes["measure"] = dataclasses.replace(study.measure, examples=args.measure_examples)
    if args.threads is not None:
        check_positive_int(args.threads, "--threads")
    check_positive_int(args.jobs, "--jobs")
    if args.datasets is not None:
        changes["datasets"] = tuple(args.datasets)
    # Every setting is checked (StudyPreset validates on construction) before anything looks for data files,
    # so a bad --seeds or --variants says so whatever datasets this machine has.
    study = study.replace(**changes)
    kept = []
    for name in study.datasets:
        if data_lib.is_available(name, args.data_dir):
            kept.append(name)
        elif args.datasets is None and name in study.optional_datasets:
            notes.append(f"{name}: its files are not here, skipped (see `python -m core.data --list`)")
        else:
            raise data_lib.DatasetUnavailable(data_lib.sources.unavailable_message(name, args.data_dir))
    return study.replace(datasets=tuple(kept)), notes


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    command = " ".join(["python -m core.study", *argv])
    out = args.out or Path("runs") / f"study-{args.preset}"
    try:
        if args.run_one:
            run_recorded(out, args.run_one, args.head or args.run_one, args.device, args.threads, args.data_dir)
            return 0
        if not args.report_only:
            study, notes = study_from_args(args)
            for note in notes:
                print(note, file=sys.stderr)
            try:
                run_study(
                    study, out, device=args.device, threads=args.threads, data_dir=args.data_dir, command=command,
                    jobs=args.jobs,
                )  # fmt: skip
            except KeyboardInterrupt:
                print(f"interrupted; run the same command again to resume ({out})", file=sys.stderr)
                return 130
        path = write_report(out, args.report, command if args.report_only else None)
    except (ValueError, CheckpointError, data_lib.DatasetUnavailable) as err:  # StudyError is a ValueError
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    except OSError as err:
        parser.exit(2, f"{parser.prog}: error: cannot write {err.filename or out}: {err.strerror or err}\n")
    print(f"report: {path}")
    judged = claims(summarize(load_study(out)))
    width = max(len(c.verdict) for c in judged)
    for claim in judged:
        print(f"  {claim.verdict:>{width}}  {claim.claim}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
