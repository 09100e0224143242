"""A reproduction study of the HomoODE paper's claims: every family at matched parameters, several seeds,
one command, one report.

    python -m core.study --preset quick --out runs/study-quick          # train, measure, report (resumable)
    python -m core.study --report-only --out runs/study-quick --report docs/study.md

In Python::

    from core.study import QUICK, run_study, write_report
    run_study(QUICK.replace(seeds=(0, 1)), "runs/s")
    write_report("runs/s")

Modules: ``plan`` (presets, variants, the runs to do), ``runner`` (train / resume / skip, and the
measurements file of each run folder), ``measure`` (perturbations, attacks, solver budgets after training),
``aggregate`` (mean ± std over seeds, selection on validation, the claims and their rule), ``report``
(markdown and figures).
"""

from .aggregate import (
    RULE,
    Claim,
    MeanStd,
    RunResult,
    Study,
    VariantSummary,
    claims,
    compare,
    is_study,
    load_study,
    mean_std,
    relative_drop,
    select_on_validation,
    summarize,
)
from .measure import measure_run, measure_trainer
from .plan import (
    BASE_VARIANTS,
    FULL,
    PAPER_HOMOODE,
    QUICK,
    STANDARD,
    STUDY_PRESETS,
    VARIANTS,
    MeasureSettings,
    RunSpec,
    StudyPreset,
    model_config,
    plan_runs,
)
from .report import FigureSpec, Series, build_figure, figure_specs, render_markdown, write_report
from .runner import MEASUREMENTS, STUDY_FILE, RunOutcome, StudyError, run_status, run_study

__all__ = [
    "BASE_VARIANTS",
    "FULL",
    "MEASUREMENTS",
    "PAPER_HOMOODE",
    "QUICK",
    "RULE",
    "STANDARD",
    "STUDY_FILE",
    "STUDY_PRESETS",
    "VARIANTS",
    "Claim",
    "FigureSpec",
    "MeanStd",
    "MeasureSettings",
    "RunOutcome",
    "RunResult",
    "RunSpec",
    "Series",
    "Study",
    "StudyError",
    "StudyPreset",
    "VariantSummary",
    "build_figure",
    "claims",
    "compare",
    "figure_specs",
    "is_study",
    "load_study",
    "mean_std",
    "measure_run",
    "measure_trainer",
    "model_config",
    "plan_runs",
    "relative_drop",
    "render_markdown",
    "run_status",
    "run_study",
    "select_on_validation",
    "summarize",
    "write_report",
]
