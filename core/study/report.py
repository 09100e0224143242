"""The study's report: markdown tables, the claims, and figures, generated from the run folders alone.

    write_report("runs/study-quick")                       # runs/study-quick/study.md + study-figures/
    write_report("runs/study-quick", "docs/study.md")      # docs/study.md + docs/study-figures/

Figures are described as data (:class:`FigureSpec`) by :func:`figure_specs`; :func:`build_figure` turns one
into a plotly figure (the explorer's Compare tab draws the same specs). plotly is imported only there, when
a figure is drawn: ``import core`` (and ``core.study``) never loads it. A figure file is a PNG when kaleido
(plotly's static export) is installed, else an HTML page beside the report (one shared plotly.min.js).
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import itertools
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .aggregate import (
    DROP_KINDS,
    MAIN_METRICS,
    NOT_MEASURED,
    RULE,
    MeanStd,
    Study,
    VariantSummary,
    claims,
    load_study,
    summarize,
)
from .plan import StudyPreset

#: Colours of the variants (the explorer's family colours; the learned start a lighter green).
VARIANT_COLORS = {
    "node": "#6A3D9A",
    "anode": "#CC79A7",
    "deq": "#000000",
    "homoode-learned": "#009E73",
    "homoode-fixed": "#56B4E9",
    "homoode-adjoint": "#D55E00",
    "homoode-fast": "#0072B2",
    "paper-cifar10": "#E69F00",
}


@dataclass(frozen=True)
class Series:
    """One trace: y (± error) against x (numbers, or category labels)."""

    name: str
    x: list[Any]
    y: list[float | None]
    error: list[float | None] | None = None
    x_error: list[float | None] | None = None
    color: str | None = None
    dash: str = "solid"
    mode: str = "lines+markers"


@dataclass(frozen=True)
class FigureSpec:
    """A figure as data: what :func:`build_figure` draws and the report links."""

    key: str  # file stem, unique in a study
    title: str
    x_title: str
    y_title: str
    series: list[Series] = field(default_factory=list)
    log_x: bool = False


def _ms(values: list[MeanStd], scale: float = 1.0) -> tuple[list[float | None], list[float | None]]:
    means = [None if v.mean is None else v.mean * scale for v in values]
    stds = [None if v.std is None else v.std * scale for v in values]
    return means, stds


def figure_specs(study: Study, table: dict[str, dict[str, VariantSummary]] | None = None) -> list[FigureSpec]:
    """The study's figures: per dataset, accuracy vs NFE, accuracy under perturbations, accuracy vs NFE as the
    solver budget changes after training, and HomoODE's NFE along training with a fixed and a learned start."""
    table = summarize(study) if table is None else table
    specs = []
    for dataset, variants in table.items():
        measured = {v: s for v, s in variants.items() if s.runs}
        if not measured:
            continue
        series = []
        for v, s in measured.items():
            (acc,), (acc_sd,) = _ms([s.metrics["test_accuracy"]], 100)
            (nfe,), (nfe_sd,) = _ms([s.metrics["nfe_forward"]])
            series.append(Series(v, [nfe], [acc], [acc_sd], [nfe_sd], VARIANT_COLORS.get(v), mode="markers"))
        specs.append(
            FigureSpec(
                f"{dataset}-accuracy-vs-nfe",
                f"{dataset}: test accuracy vs forward NFE per training step (mean ± std over seeds)",
                "forward NFE per training step",
                "test accuracy (%)",
                series,
            )
        )
        series = []
        for v, s in measured.items():
            labels = [k for k in s.perturbed if k not in DROP_KINDS]  # the drops are shares, not accuracies
            means, stds = _ms([s.perturbed[k] for k in labels], 100)
            series.append(Series(v, labels, means, stds, color=VARIANT_COLORS.get(v)))
        specs.append(
            FigureSpec(
                f"{dataset}-perturbations",
                f"{dataset}: accuracy under input perturbations (pixel units; mean ± std over seeds)",
                "perturbation",
                "accuracy (%)",
                series,
            )
        )
        series = []
        for v, s in measured.items():
            for sweep, dash in (("tol", "solid"), ("steps", "dash")):
                keys = [k for k in s.budget if k[0] == sweep]
                if not keys:
                    continue
                acc, sd = _ms([s.budget[k][0] for k in keys], 100)
                nfe, nfe_sd = _ms([s.budget[k][1] for k in keys])
                label = f"{v} ({'tolerance' if sweep == 'tol' else 'fixed budget'})"
                series.append(Series(label, nfe, acc, sd, nfe_sd, VARIANT_COLORS.get(v), dash))
        specs.append(
            FigureSpec(
                f"{dataset}-solver-budget",
                f"{dataset}: accuracy vs NFE as the solver budget changes after training",
                "forward NFE per batch (log)",
                "accuracy (%)",
                series,
                log_x=True,
            )
        )
        series = []
        for v in ("homoode-fixed", "homoode-learned"):
            s = measured.get(v)
            if s is None or not s.nfe_bins or not s.bin_epochs:
                continue
            means, stds = _ms(s.nfe_bins)
            x = [round((i + 1) * s.bin_epochs, 3) for i in range(len(means))]
            series.append(Series(v, x, means, stds, color=VARIANT_COLORS.get(v)))
        if series:
            specs.append(
                FigureSpec(
                    f"{dataset}-start-point-nfe",
                    f"{dataset}: HomoODE forward NFE along training, fixed vs learned start (mean ± std)",
                    "epoch",
                    "forward NFE per training step",
                    series,
                )
            )
    return specs


def build_figure(spec: FigureSpec, height: int = 380) -> Any:
    """The plotly figure of ``spec`` (imports plotly here, only when a figure is drawn)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in spec.series:
        kw: dict[str, Any] = {}
        if s.error is not None and any(e is not None for e in s.error):
            kw["error_y"] = dict(type="data", array=[e or 0.0 for e in s.error], visible=True, thickness=1)
        if s.x_error is not None and any(e is not None for e in s.x_error):
            kw["error_x"] = dict(type="data", array=[e or 0.0 for e in s.x_error], visible=True, thickness=1)
        line = dict(color=s.color, dash=s.dash) if s.color else dict(dash=s.dash)
        marker = dict(color=s.color, size=9) if s.color else dict(size=9)
        fig.add_trace(go.Scatter(x=s.x, y=s.y, name=s.name, mode=s.mode, line=line, marker=marker, **kw))
    fig.update_layout(
        title=dict(text=spec.title, font=dict(size=14)),
        height=height,
        template="plotly_white",
        margin=dict(l=60, r=20, t=60, b=50),
        legend=dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top"),
    )
    fig.update_xaxes(title_text=spec.x_title, type="log" if spec.log_x else None)
    if spec.log_x:
        xs = [x for s in spec.series for x in s.x if isinstance(x, (int, float)) and x > 0]
        if xs:  # 1-2-5 ticks, not plotly's default of every digit (3 4 5 6 7 8 9 10 2 3) on a short log axis
            ticks = log_ticks(min(xs), max(xs))
            fig.update_xaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    fig.update_yaxes(title_text=spec.y_title)
    return fig


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values 1, 2, 5 x 10^k from the last one at or below ``low`` to the first at or above ``high``."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    values = [m * 10.0**k for k in range(first, last + 1) for m in (1, 2, 5)]
    start = max(i for i, v in enumerate(values) if v <= low * (1 + 1e-9))
    end = min(i for i, v in enumerate(values) if v >= high * (1 - 1e-9))
    return values[start : end + 1]


def write_figures(specs: list[FigureSpec], folder: Path) -> tuple[dict[str, Path], str]:
    """Write each figure as PNG (kaleido installed) or HTML into ``folder``; returns {key: path} and a note."""
    if importlib.util.find_spec("plotly") is None:
        return {}, "plotly is not installed here: no figures were drawn (every number is in the tables)."
    png = importlib.util.find_spec("kaleido") is not None
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for spec in specs:
        fig = build_figure(spec)
        if png:
            path = folder / f"{spec.key}.png"
            fig.write_image(str(path), width=900, height=420, scale=2)
        else:
            path = folder / f"{spec.key}.html"
            fig.write_html(str(path), include_plotlyjs="directory", full_html=True)
        paths[spec.key] = path
    note = (
        "Figures are PNG (plotly + kaleido)."
        if png
        else "Figures are interactive HTML pages (kaleido, plotly's static export, is not installed here); "
        "they load `plotly.min.js` from their own folder, so they open offline."
    )
    return paths, note


# ----------------------------------------------------------------------------------------------- markdown


def _cell(ms: MeanStd, scale: float = 1.0, digits: int = 2, of: int | None = None) -> str:
    """``ms`` as text; "(k/n)" after it when only k of the variant's n measured runs gave a value."""
    return ms.text(scale, digits) + _share(ms.n, of)


def _share(k: int, of: int | None) -> str:
    """The marker " (k/n)" when a value came from only k of the variant's n runs, else "" (all, or none)."""
    return f" ({k}/{of})" if of is not None and 0 < k < of else ""


def _table(header: list[str], rows: list[list[str]], align_first: int = 1) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * align_first + "---:|" * (len(header) - align_first)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _fmt(value: float) -> str:
    return f"{value:g}"


def render_markdown(
    study: Study,
    figures: dict[str, str] | None = None,
    figure_note: str = "",
    command: str | None = None,
) -> str:
    """The report as markdown. ``figures``: {figure key: link} to embed (PNG) or link (HTML) under each
    dataset; None leaves figures out (the explorer draws them itself)."""
    table = summarize(study)
    preset = study.preset
    rec = study.record
    lines = [f"# Reproduction study: the HomoODE paper's claims (preset `{preset.name}`)", ""]
    lines.append(
        "Generated from the run folders of the study in "
        f"`{study.folder}` by `{command or 'python -m core.study --report-only --out ' + str(study.folder)}` "
        f"on {_dt.datetime.now(_dt.timezone.utc).date().isoformat()}. Do not edit by hand: run it again."
    )
    lines.append("")
    planned = len(study.runs)
    done = sum(r.done for r in study.runs)
    diverged = sum(1 for r in study.runs if r.diverged)
    if done < planned:
        lines += [
            f"> **Not finished: {done} of {planned} runs are in.** Every figure and verdict below uses the finished "
            "runs only (a claim needs two seeds of each variant it compares); the same command continues the study.",
            "",
        ]
    lines.append(
        f"- Runs: {planned} planned ({_grid(study)}), {done} trained and measured, {diverged} diverged (kept: its "
        f"model selected on validation before the divergence is tested and measured), {planned - done} not done yet."
    )
    # One command a line, as code (a period after a long command would wrap onto a line of its own); a command
    # run again right after itself (a study resumed session after session) is one line with its count.
    commands = [(c, len(list(g))) for c, g in itertools.groupby(rec.get("commands", []))]
    lines += (
        ["- Commands, oldest first:", *(f"  - `{c}`" + (f" ({n} times)" if n > 1 else "") for c, n in commands)]
        if commands
        else ["- Commands: not recorded."]
    )
    run_s = sum(r.seconds or 0.0 for r in study.runs)
    measure_s = sum(r.measure_seconds or 0.0 for r in study.runs)
    if run_s:
        lines.append(
            f"- Compute, summed over the runs: {run_s / 60:.1f} min of training, validation and test, "
            f"{measure_s / 60:.1f} min of measurements after training."
        )
    m = rec.get("machine", {})
    lines.append(
        f"- Machine: {m.get('platform', '?')}, {m.get('cpu_count', '?')} CPUs, torch {m.get('torch', '?')}, "
        f"GPU {m.get('cuda') or 'none'}."
    )
    lines.append("")
    lines += ["## The paper's claims", ""]
    rows = [[c.claim, f"**{c.verdict}**", c.evidence, c.measure] for c in claims(table)]
    lines += _table(["claim", "verdict", "evidence (mean ± std over seeds)", "compared"], rows, align_first=4)
    lines += ["", f"Rule: {RULE}", ""]
    lines += _settings_section(study)
    for dataset, variants in table.items():
        lines += _dataset_section(dataset, variants, study, figures)
    if figure_note and figures:
        lines += ["", figure_note]
    lines += ["", *_method_section(study)]
    return "\n".join(lines).rstrip() + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _grid(study: Study) -> str:
    """The planned runs as the grid they are: "1 dataset × 2 variants × 3 seeds (0, 1, 2)"; per dataset where
    the datasets have different variants or seeds."""

    def seeds_of(runs: list) -> list[int]:
        return sorted({r.seed for r in runs})

    def grid(datasets: int, variants: int, seeds: list[int]) -> str:
        parts = [_count(datasets, "dataset")] if datasets else []
        parts += [_count(variants, "variant"), f"{_count(len(seeds), 'seed')} ({', '.join(map(str, seeds))})"]
        return " × ".join(parts)

    runs, datasets = study.runs, study.datasets
    variants = list(dict.fromkeys(r.variant for r in runs))
    seeds = seeds_of(runs)
    if len(runs) == len(datasets) * len(variants) * len(seeds):
        return grid(len(datasets), len(variants), seeds)
    out = []
    for d in datasets:
        rs = [r for r in runs if r.dataset == d]
        nv, ds_seeds = len(study.variants(d)), seeds_of(rs)
        if len(rs) == nv * len(ds_seeds):
            out.append(f"{d}: {grid(0, nv, ds_seeds)}")
        else:  # not a full grid: say so rather than multiply
            seeds_text = f"{_count(len(ds_seeds), 'seed')} ({', '.join(map(str, ds_seeds))})"
            out.append(f"{d}: {_count(len(rs), 'run')} of {_count(nv, 'variant')} and {seeds_text}")
    return "; ".join(out)


def _settings_section(study: Study) -> list[str]:
    p = study.preset
    length = f"{p.steps} steps" if p.steps else f"{p.epochs} epochs"
    subset = (
        f"a {p.train_limit:,}-example subset of the training split" if p.train_limit else "the whole training split"
    )
    ms = p.measure
    out = ["## Settings", ""]
    out.append(
        f"Every variant at matched parameters (presets `image28-*` / `image32-*`; `homoode-learned` is the paper's "
        f"HomoODE with its shared learned start point, `homoode-fixed` the same network from the fixed ±1 start"
        f"{_own_solver_variants(p)}), {_solvers(p)}. Training: {length} of batch {p.batch_size}, "
        f"Adam {p.lr:g} with cosine decay, "
        f"data: {subset}; test accuracy on "
        f"{f'a stratified {p.test_limit:,} of the test split' if p.test_limit else 'the whole test split'}; "
        f"validation every {p.eval_every or 'epoch'} step(s)"
        f"{f' on {p.eval_batches} batches' if p.eval_batches else ''}; learned start point: SGD {p.start_lr:g} "
        f"every {p.start_every} steps. A seed sets the model's initialisation, the data order, the validation "
        "split and the subsets."
    )
    out.append("")
    out.append(
        f"Measured after training on the first {ms.examples} test examples of each run (a stratified sample), "
        f"with the model selected on validation: Gaussian noise σ ∈ {{{', '.join(map(_fmt, ms.noise))}}}, "
        f"FGSM ε ∈ {{{', '.join(map(_fmt, ms.fgsm))}}}, PGD ε ∈ {{{', '.join(map(_fmt, ms.pgd))}}} with "
        f"{ms.pgd_steps} steps (pixel units, images clipped to [0, 1]); the solver budget changed after training: "
        f"tolerance {{{', '.join(map(_fmt, ms.tolerances))}}} (dopri5 rtol = atol; DEQ Anderson with up to "
        f"{ms.tol_max_iter} iterations) and fixed budgets (ODE families rk4 × {{{', '.join(map(str, ms.rk4_steps))}}} "
        f"steps; DEQ Anderson × {{{', '.join(map(str, ms.deq_iters))}}} iterations)."
    )
    if p.per_dataset:
        out.append("")
        out.append(f"Per-dataset changes: {p.per_dataset}.")
    out.append("")
    return out


def _own_solver_variants(p: StudyPreset) -> str:
    """Variants of the study that integrate their own way, described."""
    from .plan import VARIANTS, model_config

    parts = []
    for v in dict.fromkeys((*p.variants, *(x for d in p.per_dataset.values() for x in d.get("variants", ())))):
        if not VARIANTS[v][2]:
            continue
        ode = model_config(v, "image28", 0, ode=p.ode).ode
        how = f"{ode.method} at rtol = atol = {ode.rtol:g}" if ode.adaptive else f"{ode.method} × {ode.n_steps}"
        grad = (
            "differentiated by the exact adjoint (torchdiffeq's `odeint_adjoint`)" if ode.adjoint else "direct backprop"
        )
        parts.append(f"`{v}` the paper's HomoODE integrated with {how}, {grad}")
    return "; " + "; ".join(parts) if parts else ""


def _solvers(p: StudyPreset) -> str:
    from .plan import model_config

    ode = model_config("node", "image28", 0, ode=p.ode).ode
    deq = model_config("deq", "image28", 0, deq=p.deq).deq
    if ode.adaptive:
        ode_text = f"{ode.method} at rtol = {ode.rtol:g}, atol = {ode.atol:g}"
    else:
        ode_text = f"{ode.method} with {ode.n_steps} equal step(s)"
    opts = deq.solver_options
    cell = model_config("deq", "image28", 0, deq=p.deq)
    cell_text = (
        f"with its contractive cell, Lipschitz ≤ {cell.contraction:g} by construction,"
        if cell.cell == "contractive"
        else f"with its {cell.cell} cell,"
    )
    return (
        f"the ODE families integrate with {ode_text}, direct backprop through the solver; the DEQ {cell_text} "
        "solves with "
        f"{deq.solver} to a relative residual of {opts.get('tol', '?'):g} (at most {opts.get('max_iter', '?')} "
        f"iterations) and a{'n implicit' if deq.backward == 'implicit' else ' phantom'} backward"
    )


def _dataset_section(
    dataset: str, variants: dict[str, VariantSummary], study: Study, figures: dict[str, str] | None
) -> list[str]:
    out = [f"## {dataset}", ""]
    cuda = any(s.metrics["cuda_peak_mb"].n for s in variants.values())
    rss = any(s.metrics["rss_peak_mb"].n for s in variants.values())
    keys = [k for k in MAIN_METRICS if (cuda or k != "cuda_peak_mb") and (rss or k != "rss_peak_mb")]
    header = ["variant", "params", "runs", *(MAIN_METRICS[k][0] for k in keys)]
    rows = []
    for v, s in variants.items():
        runs = f"{s.runs}/{s.planned}" + (f" ({s.diverged} diverged)" if s.diverged else "")
        params = "–" if s.params is None else f"{s.params:,}"
        rows.append([v, params, runs, *(_cell(s.metrics[k], *MAIN_METRICS[k][1:], of=s.runs) for k in keys)])
    out += ["### Accuracy, cost and memory", ""]
    out += _table(header, rows)
    if not all(s.selection_agrees for s in variants.values()):
        out += [
            "",
            "⚠️ a run's validation rows select another step than its summary names, or its measurements used "
            "another model than that (see its folder).",
        ]
    labels = list(dict.fromkeys(k for s in variants.values() for k in s.perturbed))
    if any(s.runs for s in variants.values()) and any(k != "clean" and k not in DROP_KINDS for k in labels):
        n = next((r.measurements.get("examples") for r in study.runs if r.dataset == dataset and r.done), "?")
        out += [
            "",
            f"### Input perturbations (accuracy %, {n} test examples; noise / attack drop: share of the clean "
            "accuracy lost, %, mean over the noise settings / over FGSM and PGD)",
            "",
        ]
        rows = [
            [v, *(_cell(s.perturbed.get(k, MeanStd(None, None, 0)), 100, of=s.runs) for k in labels)]
            for v, s in variants.items()
        ]
        out += _table(["variant", *labels], rows)
    ms = study.preset.for_dataset(dataset).measure
    if any(s.budget for s in variants.values()):
        out += ["", "### Solver budget changed after training (accuracy % @ mean forward NFE per batch)", ""]
        columns = [(f"tol {_fmt(t)}", {"ode": ("tol", t), "deq": ("tol", t)}) for t in ms.tolerances]
        for n, k in zip(ms.rk4_steps, ms.deq_iters):
            columns.append((f"rk4 × {n} / DEQ {k} iters", {"ode": ("steps", n), "deq": ("steps", k)}))
        rows = []
        for v, s in variants.items():
            cells = []
            for _, keys in columns:
                key = keys["deq" if v == "deq" else "ode"]
                if key not in s.budget:
                    cells.append("–")
                    continue
                acc, nfe = s.budget[key]
                # One marker for the whole cell: the accuracy and its NFE come from the same runs.
                nfe_text = _cell(MeanStd(nfe.mean, None, nfe.n), 1, 1)
                cells.append(f"{_cell(acc, 100, 1)} @ {nfe_text}{_share(acc.n, s.runs)}")
            rows.append([v, *cells])
        out += _table(["variant", *(name for name, _ in columns)], rows)
        out += ["", *_graceful(variants)]
    curves = {v: variants[v] for v in ("homoode-fixed", "homoode-learned") if v in variants and variants[v].nfe_bins}
    if curves:
        first = next(iter(curves.values()))
        per, steps = first.bin_epochs, first.bin_steps
        unit = f"{steps} steps" if steps else "bin"
        unit += f", {per:.2g} epoch{'' if per and abs(per - 1) < 1e-6 else 's'}" if per else ""
        width = max(len(s.nfe_bins) for s in curves.values())
        out += ["", f"### HomoODE forward NFE along training, fixed vs learned start (per {unit}; mean ± std)", ""]
        rows = [
            [v, *(_cell(b, 1, 1, of=s.runs) for b in s.nfe_bins)] + ["–"] * (width - len(s.nfe_bins))
            for v, s in curves.items()
        ]
        out += _table(["start", *(str(i + 1) for i in range(width))], rows)
    if figures:
        out += ["", "### Figures", ""]
        for key, link in figures.items():
            if key.startswith(f"{dataset}-"):
                title = key[len(dataset) + 1 :].replace("-", " ")
                out.append(f"![{title}]({link})" if link.endswith(".png") else f"- [{title}]({link})")
    out.append("")
    return out


def _graceful(variants: dict[str, VariantSummary]) -> list[str]:
    """One line: each variant's accuracy at its smallest fixed budget, as a share of its clean accuracy."""
    parts = []
    for v, s in variants.items():
        steps = sorted(k for k in s.budget if k[0] == "steps")
        clean = s.perturbed.get("clean")
        if not steps or clean is None or not clean.mean:
            continue
        acc, nfe = s.budget[steps[0]]
        if acc.mean is not None and nfe.mean is not None:
            parts.append(f"{v} {100 * acc.mean / clean.mean:.0f} % (at {nfe.mean:.0f} NFE)")
    if not parts:
        return []
    return [
        "Accuracy kept at the smallest fixed budget, as a share of the trained setting's: " + ", ".join(parts) + "."
    ]


def _method_section(study: Study) -> list[str]:
    limit = study.preset.test_limit
    tested = (
        f"a stratified {limit:,} of the test set (its fixed, class-balanced order; about "
        f"±{100 * math.sqrt(0.85 * 0.15 / limit):.1f} points of binomial standard error at 85 %)"
        if limit
        else "the whole test set"
    )
    return [
        "## How the numbers are made",
        "",
        "- **Model selection**: the trainer validates every `eval_every` steps (and at the last step) and keeps "
        "the model of the best validation accuracy (the first of equal ones); the test split is measured once, "
        "on that model (`summary.json`), and every measurement here uses it too (the checkpoint holds it). The "
        "selection is therefore over the recorded validation evaluations, not over every step. The report "
        "re-derives the selected step from the recorded validation rows and checks it against the summary.",
        f"- **Mean ± std**: over the seeds, sample standard deviation (n − 1). Test accuracy is measured on {tested}, "
        "the same examples for every run (a seed changes the model's initialisation, the data order and the "
        "validation split); the perturbations and budgets are measured on the same first test examples for "
        "every run.",
        "- **NFE**: field (or DEQ cell) evaluations per training step, from the run's own step rows; NFE bwd counts "
        "the DEQ's implicit-backward vector-Jacobian products and the adjoint's field evaluations (0 for direct "
        "backprop through the ODE solver). Curves along training are means per tenth of the run.",
        "- **Seconds per epoch, ms per step**: training steps only (validation excluded; a resumed run counts every "
        "process); they depend on the machine's load (two runs at once with `--jobs 2`, each on one thread). An "
        "epoch's length differs between datasets, a step's batch does not: ms / step compares them.",
        "- **Memory**: graph MB is the number of bytes a training step's forward pass keeps for backward, "
        "measured after training on the model the run selected, with the batch of its first training step "
        "(`measurements.json` → `graph`; the trainer's `SavedTensorMeter`: the saved tensors still alive when the "
        "forward pass ends, each storage once; the same every time on one machine and torch build). It is the "
        "memory of one step at the trained weights (an adaptive solver's NFE, and so its graph, changes along "
        "training). On a GPU, CUDA "
        "peak MB is `max_memory_allocated` over the run (reset before each run). Peak RSS MB is the CPU's peak "
        "resident memory of a run that had a process of its own (`--jobs`): libraries and data included, the same for "
        "every variant; a run trained in a shared study process reports none.",
        "- **Perturbations**: in pixel units on images in [0, 1], then normalised as the data; FGSM and PGD use the "
        "gradient of the cross-entropy through the model's own backward (the DEQ's implicit one). Attacks are "
        "small and untargeted; no model was trained against them. A drop is the share of the clean accuracy "
        "lost, (clean − perturbed) / clean, so that a less accurate model does not look stabler for having less "
        "to lose; the claims judge noise and attacks apart.",
        f"- **{NOT_MEASURED.capitalize()}**: the study lacks the runs a claim needs (two seeds of each variant "
        "compared); the ANODE explanation is not a measurable difference. The paper's own result tables were not "
        "available to compare with.",
    ]


def write_report(folder: str | Path, report: str | Path | None = None, command: str | None = None) -> Path:
    """Write the report of the study in ``folder`` to ``report`` (default ``folder/study.md``), its figures
    to ``<report's stem>-figures/`` beside it. Returns the report's path."""
    from ..training import atomic_write_bytes

    study = load_study(folder)
    path = Path(report) if report is not None else Path(folder) / "study.md"
    fig_dir = path.parent / f"{path.stem}-figures"
    paths, note = write_figures(figure_specs(study), fig_dir)
    links = {k: Path(os.path.relpath(p, path.parent)).as_posix() for k, p in paths.items()}
    text = render_markdown(study, links, note, command)
    atomic_write_bytes(path, text.encode())
    return path
