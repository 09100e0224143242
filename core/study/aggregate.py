"""From a study's run folders to its numbers: per-run figures, mean ± std over seeds, and the paper's claims
judged by one stated rule. Reads files only (never raises on a missing or half-written run: it is counted
as not done).

Selection on validation: the trainer keeps the model of its best validation accuracy (the first of equal
ones) and measures the test split once, on that model (``summary.json``: ``test_accuracy``, ``best_step``);
the checkpoint holds that model, and the study's measurements use it. :func:`select_on_validation` reads the
same choice back from the recorded validation rows, and the report shows both.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..training import RunDir
from ..training.rundir import read_json
from .digest import read_digest
from .plan import MEMORY_HOMOODE, PAPER_HOMOODE, StudyPreset
from .runner import MEASUREMENTS, STUDY_FILE, StudyError, run_status

MB = 2**20


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation (n - 1 in the denominator) of the values of n seeds; std is None
    for fewer than two values, mean None for none."""

    mean: float | None
    std: float | None
    n: int

    def text(self, scale: float = 1.0, digits: int = 2) -> str:
        if self.mean is None:
            return "–"
        mean = f"{self.mean * scale:.{digits}f}"
        return mean if self.std is None else f"{mean} ± {self.std * scale:.{digits}f}"


def mean_std(values: list[float | None]) -> MeanStd:
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return MeanStd(None, None, 0)
    mean = sum(xs) / len(xs)
    if len(xs) < 2:
        return MeanStd(mean, None, len(xs))
    var = sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
    return MeanStd(mean, math.sqrt(var), len(xs))


def select_on_validation(events: list[dict[str, Any]]) -> tuple[int | None, float | None]:
    """(step, accuracy) of the best validation row, the first of equal ones (as the trainer selects)."""
    best: tuple[int | None, float | None] = (None, None)
    for row in events:
        if row.get("kind") == "eval" and row.get("split", "val") == "val" and row.get("accuracy") is not None:
            if best[1] is None or row["accuracy"] > best[1]:
                best = (row.get("step"), row["accuracy"])
    return best


@dataclass(frozen=True)
class RunResult:
    """One run's figures, read from its folder (None where the run has not recorded them)."""

    name: str
    dataset: str
    variant: str
    seed: int
    status: str
    family: str | None = None
    params: int | None = None
    test_accuracy: float | None = None
    best_step: int | None = None
    best_val_accuracy: float | None = None
    selected_step: int | None = None  # from the validation rows (equals best_step)
    selected_val_accuracy: float | None = None
    steps: int | None = None
    epochs: float | None = None
    nfe_forward: float | None = None
    nfe_backward: float | None = None
    seconds_per_epoch: float | None = None
    ms_per_step: float | None = None  # the same clock per step of the one batch size: comparable across datasets
    graph_mb: float | None = None
    cuda_peak_mb: float | None = None
    rss_peak_mb: float | None = None  # the CPU's peak RSS of a run that had a process of its own (--jobs)
    unconverged_share: float | None = None  # DEQ: share of steps whose root solves missed their tolerance
    seconds: float | None = None  # wall time of the whole run (resumes included): training, validation, test
    measure_seconds: float | None = None  # wall time of the measurements after training
    nfe_bins: list[float] = field(default_factory=list)
    bin_steps: int | None = None  # steps per bin of ``nfe_bins`` (a tenth of the run)
    bin_epochs: float | None = None  # epochs per bin of ``nfe_bins``
    measurements: dict[str, Any] = field(default_factory=dict)
    diverged: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.status == "measured"


def read_run(folder: Path, dataset: str, variant: str, seed: int) -> RunResult:
    run = RunDir(folder)
    status = run_status(run) if folder.is_dir() else "new"
    base = RunResult(folder.name, dataset, variant, seed, status)
    summary = run.read_summary()
    if not summary:
        return base
    digest = read_digest(run)
    steps = summary.get("steps")
    epochs = summary.get("epochs")
    per_epoch = steps / epochs if steps and epochs else None
    per_bin = digest["bin_steps"]
    events = digest["evals"]
    sel_step, sel_acc = select_on_validation(events)
    measurements = read_json(folder / MEASUREMENTS)
    cuda = str(summary.get("memory_measure", "")).startswith("cuda")
    # Measured after training, one way for every run (the training maxima of studies trained before the
    # meter was exact counted storages freed within the forward pass too: dopri5's up to ~15 % more).
    graph = (measurements.get("graph") or {}).get("bytes")
    return RunResult(
        name=folder.name,
        dataset=dataset,
        variant=variant,
        seed=seed,
        status=status,
        family=summary.get("model"),
        params=summary.get("params"),
        test_accuracy=summary.get("test_accuracy"),
        best_step=summary.get("best_step"),
        best_val_accuracy=summary.get("best_val_accuracy"),
        selected_step=sel_step,
        selected_val_accuracy=sel_acc,
        steps=steps,
        epochs=epochs,
        nfe_forward=summary.get("mean_nfe_forward"),
        nfe_backward=summary.get("mean_nfe_backward"),
        seconds_per_epoch=summary.get("seconds_per_epoch"),  # training steps only, resumes included
        ms_per_step=_per_step_ms(summary.get("seconds_per_epoch"), epochs, steps),
        graph_mb=None if graph is None else graph / MB,
        cuda_peak_mb=summary.get("peak_memory_bytes", 0) / MB if cuda else None,
        rss_peak_mb=(
            summary.get("peak_memory_bytes", 0) / MB
            if measurements.get("own_process") and summary.get("memory_measure") == "cpu_peak_rss"
            else None
        ),
        unconverged_share=(
            summary["unconverged_steps"] / steps if summary.get("unconverged_steps") is not None and steps else None
        ),
        seconds=summary.get("seconds"),
        measure_seconds=measurements.get("seconds"),
        nfe_bins=[b["nfe_forward"] for b in digest["bins"] if b["nfe_forward"] is not None],
        bin_steps=per_bin,
        bin_epochs=per_bin / per_epoch if per_epoch else None,
        measurements=measurements if measurements.get("format") else {},
        diverged=measurements.get("diverged"),
    )


def _per_step_ms(seconds_per_epoch: float | None, epochs: float | None, steps: int | None) -> float | None:
    """Training milliseconds per step: (s / epoch) × epochs / steps × 1000."""
    if seconds_per_epoch is None or not epochs or not steps:
        return None
    return 1000.0 * seconds_per_epoch * epochs / steps


@dataclass(frozen=True)
class Study:
    """A study folder read back: its record (``study.json``) and every planned run's figures."""

    folder: Path
    record: dict[str, Any]
    runs: list[RunResult]

    @property
    def preset(self) -> StudyPreset:
        return StudyPreset.from_dict(self.record["preset"])

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r.dataset for r in self.runs))

    def variants(self, dataset: str) -> list[str]:
        return list(dict.fromkeys(r.variant for r in self.runs if r.dataset == dataset))

    def results(self, dataset: str, variant: str, done_only: bool = True) -> list[RunResult]:
        return [r for r in self.runs if r.dataset == dataset and r.variant == variant and (r.done or not done_only)]


def is_study(folder: str | Path) -> bool:
    return (Path(folder) / STUDY_FILE).is_file()


def load_study(folder: str | Path) -> Study:
    """Read a study folder; StudyError when it holds none."""
    folder = Path(folder)
    record = read_json(folder / STUDY_FILE)
    if not record.get("runs") or "preset" not in record:
        raise StudyError(
            f"{folder} holds no study (no readable {STUDY_FILE}); run `python -m core.study --out {folder}`"
        )
    runs = []
    for name in record["runs"]:
        dataset, variant, seed = _parse_name(name, record.get("datasets", []))
        runs.append(read_run(folder / name, dataset, variant, seed))
    return Study(folder, record, runs)


def _parse_name(name: str, datasets: list[str]) -> tuple[str, str, int]:
    stem, _, seed = name.rpartition("-s")
    for dataset in sorted(datasets, key=len, reverse=True):
        if stem.startswith(f"{dataset}-"):
            return dataset, stem[len(dataset) + 1 :], int(seed)
    raise StudyError(f"run {name!r} of the study matches none of its datasets")


# ----------------------------------------------------------------------------------------------- tables

#: The main table's figures: key -> (header, scale, digits).
MAIN_METRICS: dict[str, tuple[str, float, int]] = {
    "test_accuracy": ("test acc (%)", 100.0, 2),
    "selected_val_accuracy": ("val acc of the selected model (%)", 100.0, 2),
    "nfe_forward": ("NFE fwd", 1.0, 1),
    "nfe_backward": ("NFE bwd", 1.0, 1),
    "seconds_per_epoch": ("s / epoch", 1.0, 1),
    "ms_per_step": ("ms / step", 1.0, 0),
    "graph_mb": ("graph MB", 1.0, 1),
    "unconverged_share": ("DEQ steps with unconverged solves (%)", 100.0, 1),
    "cuda_peak_mb": ("CUDA peak MB", 1.0, 0),
    "rss_peak_mb": ("peak RSS MB (own process)", 1.0, 0),
}


def perturbations(measurements: dict[str, Any]) -> dict[str, float | None]:
    """{label: accuracy} of every perturbation of one run's measurements ('noise σ=0.1', 'FGSM ε=0.05', ...)."""
    out: dict[str, float | None] = {}
    for key, label, symbol in (("noise", "noise", "σ"), ("fgsm", "FGSM", "ε"), ("pgd", "PGD", "ε")):
        for row in measurements.get(key, []):
            name = f"{label} {symbol}={row['strength']:.3g}" + (f" ×{row['steps']}" if key == "pgd" else "")
            out[name] = row.get("accuracy")
    return out


#: The stability claims judge the two kinds of perturbation apart (a mean over both would let the number of
#: settings of one kind decide): label -> the measurement keys of that kind.
DROP_KINDS: dict[str, tuple[str, ...]] = {"noise drop": ("noise",), "attack drop": ("fgsm", "pgd")}


def relative_drop(measurements: dict[str, Any], kinds: tuple[str, ...]) -> float | None:
    """Mean over the perturbations of ``kinds`` (``noise``, ``fgsm``, ``pgd``) of the share of the clean
    accuracy lost on the same examples, (clean - perturbed) / clean: 0 = unaffected, 1 = nothing left. A
    share, not points, so that a less accurate model does not look stabler for having less to lose. None
    when the clean accuracy is missing or 0, or any perturbation of those kinds is missing (or there is none)."""
    clean = measurements.get("clean", {}).get("accuracy")
    accs = [row.get("accuracy") for kind in kinds for row in measurements.get(kind, [])]
    if not clean or not accs or any(a is None for a in accs):
        return None
    return sum((clean - a) / clean for a in accs) / len(accs)


@dataclass(frozen=True)
class VariantSummary:
    """Mean ± std over the seeds of one variant on one dataset (finished, measured runs only)."""

    dataset: str
    variant: str
    runs: int  # measured
    planned: int
    diverged: int
    params: int | None
    metrics: dict[str, MeanStd]
    perturbed: dict[str, MeanStd]  # label -> accuracy, "clean" first; then the DROP_KINDS (shares lost)
    budget: dict[tuple[str, float], tuple[MeanStd, MeanStd]]  # (sweep, value) -> (accuracy, NFE)
    nfe_bins: list[MeanStd]
    bin_steps: int | None
    bin_epochs: float | None
    selection_agrees: bool  # every run's validation rows select the step its summary names, and it measured that


def summarize_variant(study: Study, dataset: str, variant: str) -> VariantSummary:
    runs = study.results(dataset, variant)
    planned = study.results(dataset, variant, done_only=False)
    metrics = {key: mean_std([getattr(r, key) for r in runs]) for key in MAIN_METRICS}
    labels = list(dict.fromkeys(k for r in runs for k in perturbations(r.measurements)))
    perturbed = {"clean": mean_std([r.measurements.get("clean", {}).get("accuracy") for r in runs])}
    for label in labels:
        perturbed[label] = mean_std([perturbations(r.measurements).get(label) for r in runs])
    for label, kinds in DROP_KINDS.items():
        perturbed[label] = mean_std([relative_drop(r.measurements, kinds) for r in runs])
    keys = list(dict.fromkeys((b["sweep"], b["value"]) for r in runs for b in r.measurements.get("budget", [])))
    budget = {}
    for key in keys:
        rows = [b for r in runs for b in r.measurements.get("budget", []) if (b["sweep"], b["value"]) == key]
        budget[key] = (mean_std([b.get("accuracy") for b in rows]), mean_std([b.get("nfe") for b in rows]))
    # Bins of the planned steps: a run that stopped early (diverged) has fewer, and its seeds' mean goes on
    # without it.
    width = max((len(r.nfe_bins) for r in runs), default=0)
    bins = [mean_std([r.nfe_bins[i] for r in runs if i < len(r.nfe_bins)]) for i in range(width)]
    return VariantSummary(
        dataset=dataset,
        variant=variant,
        runs=len(runs),
        planned=len(planned),
        diverged=sum(1 for r in planned if r.diverged),
        params=next((r.params for r in runs if r.params is not None), None),
        metrics=metrics,
        perturbed=perturbed,
        budget=budget,
        nfe_bins=bins,
        bin_steps=next((r.bin_steps for r in runs if r.bin_steps), None),
        bin_epochs=next((r.bin_epochs for r in runs if r.bin_epochs), None),
        selection_agrees=all(
            r.selected_step == r.best_step and r.measurements.get("selected_step", r.best_step) == r.best_step
            for r in runs
        ),
    )


def summarize(study: Study) -> dict[str, dict[str, VariantSummary]]:
    """dataset -> variant -> its summary, in the study's order."""
    return {d: {v: summarize_variant(study, d, v) for v in study.variants(d)} for d in study.datasets}


# ----------------------------------------------------------------------------------------------- claims

SUPPORTED, NOT_SUPPORTED, NOT_MEASURED = "supported", "not supported", "not measured here"
INCOMPLETE = "supported where measured (incomplete)"
RULE = (
    "A is higher than B when mean(A) - mean(B) > sqrt(std(A)² + std(B)²) (sample std over the seeds; at least "
    "two measured seeds each); lower when the difference is below minus that; otherwise the two are within "
    "noise. A claim is supported when its comparison (every measure it names) goes the claimed way on every "
    "dataset of the study; supported where measured (incomplete) when it does so wherever it could be judged "
    "but a dataset still lacks the runs (or its runs a value) it needs; not supported when it fails on at "
    "least one (the evidence says where and how); not measured here when no dataset has the runs it needs. "
    "This is a stated rule, not a significance test: "
    "with three seeds each it asks for a Welch t above √3 (one-sided p ≈ 0.08 at 4 degrees of freedom; with two "
    "seeds, √2 and p ≈ 0.15); every run is tested on the same examples, so the std is the spread of the seeds "
    "only, and a verdict speaks for these test examples."
)


@dataclass(frozen=True)
class Comparison:
    diff: float
    noise: float

    @property
    def outcome(self) -> str:
        return "higher" if self.diff > self.noise else "lower" if self.diff < -self.noise else "within noise"


def compare(a: MeanStd, b: MeanStd) -> Comparison | None:
    """A vs B by :data:`RULE`; None without two seeds on each side."""
    if a.n < 2 or b.n < 2 or a.mean is None or b.mean is None:
        return None
    return Comparison(a.mean - b.mean, math.sqrt((a.std or 0.0) ** 2 + (b.std or 0.0) ** 2))


@dataclass(frozen=True)
class Claim:
    claim: str
    verdict: str
    evidence: str
    measure: str  # what was compared


Measure = Callable[[VariantSummary], MeanStd]


def _judge(
    table: dict[str, dict[str, VariantSummary]],
    measures: list[tuple[str, Measure]],
    pairs: list[tuple[str, str]],
    wanted: set[str],
    scale: float,
    unit: str,
) -> tuple[str, str]:
    """Verdict and evidence of comparisons ``a vs b`` of each of ``measures`` ((name, getter); a lone measure
    may go unnamed) that must come out in ``wanted`` on every dataset, by :data:`RULE`."""
    parts, verdicts, missing, no_value = [], [], [], []
    for dataset, variants in table.items():
        for a, b in pairs:
            if a not in variants or b not in variants:
                continue  # a variant this dataset's study does not have: not part of the claim here
            for name, get in measures:
                c = compare(get(variants[a]), get(variants[b]))
                if c is None:
                    pair = f"{dataset} {name + ' ' if name else ''}({a} vs {b})"
                    # Seeds still to come, or seeds in whose measurements hold no value for it.
                    (missing if min(variants[a].runs, variants[b].runs) < 2 else no_value).append(pair)
                    continue
                ok = c.outcome in wanted
                verdicts.append(ok)
                parts.append(
                    f"{dataset}: {name + ' ' if name else ''}{a} {get(variants[a]).text(scale)} vs {b} "
                    f"{get(variants[b]).text(scale)}{unit} ({c.outcome}{'' if ok else ' ✗'})"
                )
    if not verdicts:
        return NOT_MEASURED, "the runs it needs (two or more seeds of each variant) are not in this study"
    if missing:
        parts.append("not yet two seeds each: " + ", ".join(dict.fromkeys(missing)))
    if no_value:
        parts.append("no value in two seeds' measurements: " + ", ".join(no_value))
    verdict = NOT_SUPPORTED if not all(verdicts) else INCOMPLETE if missing or no_value else SUPPORTED
    return verdict, "; ".join(parts)


def claims(table: dict[str, dict[str, VariantSummary]]) -> list[Claim]:
    """The paper's claims, each with a verdict by :data:`RULE` and its evidence."""
    h = PAPER_HOMOODE
    # The memory claim is about HomoODE's O(1)-memory mode: the adjoint variant when the study has it.
    has_adjoint = any(MEMORY_HOMOODE in variants for variants in table.values())
    m = MEMORY_HOMOODE if has_adjoint else h

    def metric(key: str) -> list[tuple[str, Measure]]:
        return [("", lambda s: s.metrics[key])]

    drops: list[tuple[str, Measure]] = [(label, lambda s, k=label: s.perturbed[k]) for label in DROP_KINDS]
    out = []
    spec = [
        (
            "HomoODE is more accurate than Neural ODEs (NODE, ANODE)",
            metric("test_accuracy"), [(h, "node"), (h, "anode")], {"higher"}, 100, " %",
            "test accuracy of the model selected on validation",
        ),
        (
            "HomoODE inherits the high accuracy of DEQs (at least on par with a DEQ)",
            metric("test_accuracy"), [(h, "deq")], {"higher", "within noise"}, 100, " %",
            "test accuracy; on par = not lower beyond noise",
        ),
        (
            "HomoODE surpasses existing implicit models in accuracy",
            metric("test_accuracy"), [(h, "node"), (h, "anode"), (h, "deq")], {"higher"}, 100, " %",
            "test accuracy against every other family",
        ),
        (
            "HomoODE inherits the stability of Neural ODEs (input perturbations hurt it no more than a NODE)",
            drops, [(h, "node")], {"lower", "within noise"}, 100, " %",
            "share of the clean accuracy lost under Gaussian noise, and under the attacks (FGSM, PGD), each "
            "judged apart (smaller = more stable)",
        ),
        (
            "HomoODE is more stable than a DEQ under input perturbations",
            drops, [(h, "deq")], {"lower"}, 100, " %",
            "share of the clean accuracy lost under Gaussian noise, and under the attacks (FGSM, PGD), each "
            "judged apart",
        ),
        (
            "A shared learnable start point accelerates HomoODE (fewer function evaluations)",
            metric("nfe_forward"), [("homoode-learned", "homoode-fixed")], {"lower"}, 1, "",
            "mean forward NFE per training step over the whole run, learned vs fixed start",
        ),
        (
            "HomoODE needs less memory than the other implicit models",
            metric("graph_mb"), [(m, "node"), (m, "anode"), (m, "deq")], {"lower"}, 1, " MB",
            "bytes one training step's forward pass keeps for backward (the selected model on a training batch of "
            "the run's size; the backward's own working memory, such as the DEQ's Anderson history or the "
            "adjoint's per-step graphs, is not in it): "
            + (
                "HomoODE by the exact adjoint (the O(1)-memory mode the claim is about) against NODE and ANODE "
                "backpropagating through dopri5 and the DEQ differentiating implicitly. The saving is the "
                "adjoint's, not HomoODE's: a NODE or ANODE by the same adjoint keeps as little (`python -m "
                "core.bench memory`, docs/benchmarks.md)"
                if m == MEMORY_HOMOODE
                else "every ODE family backpropagates through the solver, as the official CIFAR-10 code; the "
                "DEQ differentiates implicitly"
            ),
        ),
    ]  # fmt: skip
    for text, measures, pairs, wanted, scale, unit, measure in spec:
        verdict, evidence = _judge(table, measures, pairs, wanted, scale, unit)
        out.append(Claim(text, verdict, evidence, measure))
    out.append(
        Claim(
            "ANODE works because its augmented channels act as an equilibrium variable",
            NOT_MEASURED,
            "an explanation, not a measurable difference; the study only reports ANODE's figures",
            "–",
        )
    )
    return out
