"""The Compare tab: every saved run in one table (filter, rename, delete, export), their curves overlaid,
accuracy vs NFE, and training memory vs batch size measured per family and gradient method."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import plotly.graph_objects as go

from core import FAMILY_NAMES
from core import study as study_lib
from core.checks import check_choice, check_number, short_repr
from core.models import INPUT_KINDS
from core.training import RunDir

from .. import plots, runs
from ..sessions import CapacityError
from ..worker import live_run_dirs
from .common import (
    KEEP,
    RUN_COLUMN_WIDTHS,
    Choices,
    CurvesTab,
    Nav,
    Page,
    Result,
    curve_controls,
    plot,
    result,
)
from .lab import LabOut, open_lab

COMPARE_SCOPES = ("all saved runs", "this tab's runs")
COMPARE_PANELS = ("loss", "accuracy", "nfe", "memory", "time")
MAX_OVERLAID = 8  # curves of more runs than colours are unreadable
DELETE_CONFIRM_SECONDS = 15  # a second press of Delete within this time deletes
# One probe keeps its whole forward graph: image32 NODE, direct backprop, rk4 x 8 at batch 128 saves ~0.6 GB.
MAX_MEMORY_BATCH = 128
MAX_MEMORY_STEPS = 8
_NO_RUNS = "No saved runs yet: start one in the **Train** tab (or with `python -m core.train --out runs/NAME`)."


@result
class CompareOut(Result):
    """The Compare tab's outputs."""

    table: list[list[Any]] = KEEP
    runs: Choices = KEEP  # the run picker: every listed run, and those whose curves are overlaid
    curves: go.Figure = KEEP
    accuracy: go.Figure = KEEP
    message: str = KEEP
    file: str = KEEP  # an exported table to download
    memory: go.Figure = KEEP
    studies: Choices = KEEP  # the study folders under the runs directory
    study_figures: Choices = KEEP  # the open study's figures
    study_plot: go.Figure = KEEP
    study_report: str = KEEP


#: The runs directory itself, when it holds a study (``python -m core.study --out RUNS_DIR``).
STUDY_HERE = "."


def study_folders(runs_dir: Path) -> list[str]:
    """The studies a tab may open: the runs directory itself and its direct subfolders holding a
    ``study.json`` (never a link out of it)."""
    root = runs_dir.resolve()
    names = [STUDY_HERE] if study_lib.is_study(runs_dir) else []
    if runs_dir.is_dir():
        for folder in sorted(runs_dir.iterdir()):
            if not folder.is_symlink() and folder.is_dir() and folder.resolve().parent == root:
                if study_lib.is_study(folder):
                    names.append(folder.name)
    return names


class CompareTab(CurvesTab):
    """The Compare tab's handlers."""

    name, Out = "compare", CompareOut

    def _records(self, key: str, scope: str, text: str = "") -> list[runs.RunRecord]:
        check_choice(scope, "show", COMPARE_SCOPES)
        only = set(self.session(key).run_dirs) if scope == "this tab's runs" else None
        return runs.filter_runs(runs.read_runs(self.ctx.runs_dir, only=only), text)

    def _no_runs(self, scope: str) -> str:
        """What an empty table means: no saved run at all, or none started by this tab (saying how many
        there are in all, and where they are shown)."""
        if scope == "this tab's runs":
            total = len(RunDir.list(self.ctx.runs_dir))
            if total:
                runs_in_all = "1 saved run" if total == 1 else f"{total:,} saved runs"
                return (
                    f"This tab has no saved runs yet ({runs_in_all} in `{self.ctx.runs_dir}` in all: show "
                    "“all saved runs” to see them)."
                )
        return _NO_RUNS

    def _ticked(self, records: list[runs.RunRecord], selected: list[str] | None) -> list[runs.RunRecord]:
        """The records of the ticked runs that still exist, listed or not (a filter or the scope may hide a
        ticked run's row: it stays ticked, and its curves stay drawn)."""
        picked = [n for n in dict.fromkeys(selected or []) if isinstance(n, str) and Path(n).name == n]
        listed = {r.name: r for r in records}
        hidden = [n for n in picked if n not in listed]
        if hidden:
            found = runs.read_runs(self.ctx.runs_dir, limit=None, only={self.ctx.runs_dir / n for n in hidden})
            listed.update({r.name: r for r in found})
        return [listed[n] for n in picked if n in listed]

    def refresh(self, key: str, scope: str, selected: list[str] | None = None, text: str = "") -> CompareOut:
        """Re-read the runs directory: the table (only rows containing every word of ``text``), the run
        picker's choices, the overlaid curves (of the ticked runs, else of the three newest) and every run's
        accuracy vs NFE.

        The ticks are the user's alone: a refresh sends the picker its choices, never its value, so a tick
        made while a refresh is on its way survives it, and nothing is ever ticked for the user. A ticked run
        stays in the picker (ticked) when the filter or the scope hides its row; only a run that no longer
        exists leaves the picks (the picker cannot hold a choice it does not list)."""
        try:
            records = self._records(key, scope, text)
        except ValueError as err:
            return CompareOut.failed(err)
        names = [r.name for r in records]
        ticked = self._ticked(records, selected)
        kept = [r.name for r in ticked]
        choices = names + [n for n in kept if n not in names]
        points = [p for p in (_run_point(r) for r in records) if p is not None]
        words = str(text or "").strip()
        matching = f" matching {short_repr(words, 40)}" if words else ""
        empty = "no run matches the filter" if words else self._no_runs(scope)
        message = f"{len(records)} run(s) in `{self.ctx.runs_dir}`{matching}" if records else empty
        hidden = [n for n in kept if n not in names]
        if hidden:
            message += f" · ticked, though not in the table: {', '.join(hidden)}"
        elif records and not ticked:
            message += f" · curves of the {min(3, len(records))} newest (tick runs to choose)"
        return CompareOut(
            table=runs.run_rows(records),
            runs=Choices(choices, KEEP if kept == list(selected or []) else kept),
            curves=self._curves(key, ticked or records[:3]),
            accuracy=plots.runs_accuracy_figure(points, narrow=self.ctx.narrow(key)),
            message=message,
        )

    def _curves(self, key: str, chosen: list[runs.RunRecord]) -> Any:
        chosen = chosen[:MAX_OVERLAID]
        if not chosen:
            return plots.empty_figure("pick runs above to overlay their training curves", 300)
        colors = plots.family_colors({r.name: r.family for r in chosen})
        metrics = {r.name: runs.read_metrics(r.folder) for r in chosen}
        return plots.curves_figure(metrics, COMPARE_PANELS, colors=colors, **self.curve_options(key))

    def select(self, key: str, scope: str, selected: list[str] | None, text: str = "") -> CompareOut:
        """The run picker changed (or a refresh ended, with the ticks as they are now): redraw the overlaid
        curves only."""
        try:
            records = self._records(key, scope, text)
        except ValueError as err:
            return CompareOut.failed(err)
        picked = list(selected or [])
        many = f"showing the curves of the first {MAX_OVERLAID} of {len(picked)} picked runs"
        ticked = self._ticked(records, picked)
        return CompareOut(
            curves=self._curves(key, ticked or records[:3]), message=many if len(picked) > MAX_OVERLAID else KEEP
        )

    def redraw_curves(self, key: str, scope: str = "", selected: list[str] | None = None) -> CompareOut:
        return self.select(key, scope or COMPARE_SCOPES[0], selected)

    def pick(
        self, key: str, position: int = -1, row: list[Any] | None = None
    ) -> tuple[Nav, LabOut, CompareOut] | tuple[()] | CompareOut:
        """A row of the runs table was clicked: open that run's model in the Solver lab (first test image)."""
        name = row[0] if row else None
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            return ()  # not a run folder's name (the table only shows names; nothing else is opened)
        if not (self.ctx.runs_dir / name / "checkpoint.pt").is_file():
            text = f"run {short_repr(name)} has no checkpoint yet (it is saved when the run ends or is stopped)"
            return CompareOut.failed(text)
        nav, lab = open_lab(self.ctx, key, f"run:{name}", 0)
        return nav, lab, CompareOut(message="")

    def _check_may_manage(self, key: str, folders: list[Path]) -> None:
        """On a shared server (``manage_all_runs`` False) only the runs this tab started may change."""
        if self.ctx.manage_all_runs:
            return
        own = {p.resolve() for p in self.session(key).run_dirs}
        others = [f.name for f in folders if f.resolve() not in own]
        if others:
            raise ValueError(
                f"this server is shared: a tab may rename or delete only the runs it started, not {', '.join(others)}"
            )

    def rename(self, key: str, scope: str, selected: list[str] | None, new_name: str, text: str = "") -> CompareOut:
        """Rename the one picked run (a folder directly in the runs directory; never one still training)."""
        try:
            picked = list(selected or [])
            if len(picked) != 1:
                raise ValueError("pick exactly one run to rename (in “overlay the curves of these runs”)")
            name = picked[0]
            folder = runs.run_folder(self.ctx.runs_dir, name)
            self._check_may_manage(key, [folder])
            if folder.resolve() in live_run_dirs():
                raise ValueError(f"run {short_repr(name)} is still training: stop it first")
            target = runs.rename_run(self.ctx.runs_dir, name, new_name)
        except (ValueError, OSError) as err:
            return CompareOut.failed(err)
        registry = self.ctx.registry
        for session_key in registry.keys():  # tabs that started it still list it as theirs
            session = registry.peek(session_key)
            if session is not None:
                session.run_dirs = [target if p.resolve() == folder.resolve() else p for p in session.run_dirs]
        out = self.refresh(key, scope, [target.name], text)
        # The user's command: the run they ticked is ticked under its new name (its old one is gone).
        picks = Choices(out.runs.choices, [target.name]) if isinstance(out.runs, Choices) else KEEP
        return dataclasses.replace(out, runs=picks, message=f"renamed {name} to **{target.name}**")

    def delete(self, key: str, scope: str, selected: list[str] | None, text: str = "") -> CompareOut:
        """Delete the ticked runs, exactly those: the first press lists them, a second press within
        ``DELETE_CONFIRM_SECONDS`` with the same runs ticked deletes them (any other ticks ask again). Never a
        run still training. The picker keeps only the ticked runs that could not be deleted."""
        session = self.session(key)
        picked = sorted(selected or [])
        try:
            if not picked:
                raise ValueError("pick the runs to delete (in “overlay the curves of these runs”)")
            folders = [runs.run_folder(self.ctx.runs_dir, name) for name in picked]
            self._check_may_manage(key, folders)
            live = live_run_dirs()
            busy = [f.name for f in folders if f.resolve() in live]
            if busy:
                raise ValueError(f"still training: {', '.join(busy)}; stop it first")
        except ValueError as err:
            return CompareOut.failed(err)
        pending = session.lab.get("delete")
        if pending is None or pending[0] != picked or time.monotonic() - pending[1] > DELETE_CONFIRM_SECONDS:
            session.lab["delete"] = (picked, time.monotonic())
            return CompareOut(
                message=f"⚠️ Delete {len(picked)} ticked run(s) and their files: **{', '.join(picked)}**? Press "
                f"**Delete picked runs** again within {DELETE_CONFIRM_SECONDS} s to delete exactly these."
            )
        session.lab.pop("delete", None)
        failed, bad = [], []
        for name in picked:
            try:
                runs.delete_run(self.ctx.runs_dir, name)
            except (ValueError, OSError) as err:
                failed.append(f"{name} ({err})")
                bad.append(name)
        message = f"deleted {len(picked) - len(failed)} run(s): {', '.join(n for n in picked if n not in bad)}"
        message += f"; could not delete {', '.join(failed)}" if failed else ""
        out = self.refresh(key, scope, bad, text)
        # The user's command: the deleted runs leave the picks (a picker cannot hold a run it does not list).
        picks = Choices(out.runs.choices, bad) if isinstance(out.runs, Choices) else KEEP
        return dataclasses.replace(out, runs=picks, message=message)

    def export(self, key: str, scope: str, fmt: str, text: str = "") -> CompareOut:
        """Write the runs table (as filtered) as CSV or JSON for download."""
        try:
            records = self._records(key, scope, text)
            if not records and not str(text or "").strip() and scope == "this tab's runs":
                raise ValueError(f"nothing to export: {self._no_runs(scope)}")
            path = runs.export_runs(records, fmt, self.ctx.export_dir(key))
        except (ValueError, OSError) as err:
            return CompareOut.failed(err)
        return CompareOut(file=str(path), message=f"exported {path.name}: download it below the buttons")

    def memory(
        self,
        key: str,
        families: list[str] | None,
        gradients: list[str] | None,
        batch_sizes: str,
        kind: str,
        n_steps: Any,
        progress: Callable[[int, int], None] | None = None,
    ) -> CompareOut:
        """One training step per (family, gradient method, batch size) on random inputs of ``kind``,
        measuring the bytes the forward graph keeps for backward (deterministic, unlike RSS, and the part
        that grows with the batch). Runs on the CPU so it never disturbs a GPU run's peak counter, and takes
        a slot of the server's training cap while it runs (it is a training step, many times over).
        ``progress(done, total)`` counts the steps measured."""
        from core.bench import MEMORY_VARIANTS, memory_probe

        try:
            plan = _memory_plan(MEMORY_VARIANTS, families, gradients, batch_sizes, kind, n_steps)
        except ValueError as err:
            return CompareOut.failed(err)
        token = object()
        try:
            self.ctx.registry.gate.acquire(token)
            records = []
            report = progress or (lambda done, total: None)
            report(0, len(plan))
            for f, g, b, n in plan:
                records.append(memory_probe(f, g, b, n, kind, "cpu"))
                report(len(records), len(plan))
        except CapacityError as err:
            return CompareOut.failed(err)
        except RuntimeError as err:  # out of memory, most likely
            return CompareOut.failed(f"the measurement failed ({err}); try smaller batch sizes or fewer steps")
        finally:
            self.ctx.registry.gate.release(token)
        ode = any(f != "deq" for f, *_ in plan)
        return CompareOut(
            memory=plots.memory_figure(records, narrow=self.ctx.narrow(key)),
            message=f"measured {len(records)} training steps on the CPU ({kind} inputs"
            + (f"; ODE models: rk4 × {plan[0][3]} steps)" if ode else ")"),
        )

    # --------------------------------------------------------------------------------- reproduction studies

    def studies(self, key: str, study: str | None = None) -> CompareOut:
        """List the study folders (keeping the one picked while it is still there)."""
        names = study_folders(self.ctx.runs_dir)
        return CompareOut(studies=Choices(names, study if study in names else None))

    def _study(self, name: str | None) -> study_lib.Study:
        if name not in study_folders(self.ctx.runs_dir):
            raise ValueError(f"there is no study {short_repr(name)} in {self.ctx.runs_dir}; press Refresh")
        return study_lib.load_study(self.ctx.runs_dir / name)

    def open_study(self, key: str, study: str | None) -> CompareOut:
        """A study folder was picked: its report's tables (core's aggregation) and its first figure."""
        try:
            loaded = self._study(study)
        except ValueError as err:
            return CompareOut.failed(err)
        specs = study_lib.figure_specs(loaded)
        names = [spec.key for spec in specs]
        return CompareOut(
            study_report=study_lib.render_markdown(loaded),
            study_figures=Choices(names, names[0] if names else None),
            study_plot=plots.study_figure(specs[0], narrow=self.ctx.narrow(key))
            if specs
            else plots.empty_figure("this study has no results yet"),
            message=f"study `{study}`: {sum(r.done for r in loaded.runs)} of {len(loaded.runs)} runs measured",
        )

    def study_figure(self, key: str, study: str | None, figure: str | None) -> CompareOut:
        try:
            specs = {spec.key: spec for spec in study_lib.figure_specs(self._study(study))}
            check_choice(figure, "figure", tuple(specs))
        except ValueError as err:
            return CompareOut.failed(err)
        return CompareOut(study_plot=plots.study_figure(specs[figure], narrow=self.ctx.narrow(key)))


def _run_point(record: runs.RunRecord) -> plots.RunPoint | None:
    """A run on the accuracy-vs-NFE chart: test accuracy when it has ended, else its best validation
    accuracy so far; mean NFE from its summary, else from its steps so far. None when it has neither."""
    s = record.summary
    acc, on = s.get("test_accuracy"), "test"
    fwd, bwd = s.get("mean_nfe_forward"), s.get("mean_nfe_backward")
    if acc is None or fwd is None:
        m = runs.read_metrics(record.folder)
        if acc is None and len(m["val_acc"]) and np.isfinite(m["val_acc"]).any():
            acc, on = float(np.nanmax(m["val_acc"])), "val"
        if fwd is None and len(m["nfe_forward"]):
            backward = m.get("nfe_backward")  # none for direct backprop: no backward solve, 0 as in its summary
            fwd = float(np.nanmean(m["nfe_forward"]))
            bwd = float(np.nanmean(backward)) if backward is not None and len(backward) else 0.0
    if acc is None or fwd is None:
        return None
    return plots.RunPoint(record.name, record.family or "?", float(fwd), float(bwd or 0.0), float(acc), on)


def _memory_plan(
    variants: tuple[tuple[str, str], ...],
    families: list[str] | None,
    gradients: list[str] | None,
    batch_sizes: str,
    kind: str,
    n_steps: Any,
) -> list[tuple[str, str, int, int]]:
    """(family, gradient, batch, rk4 steps) of each measurement; a clear error for any bad field."""
    families, gradients = list(families or []), list(gradients or [])
    if not families:
        raise ValueError("pick at least one model family to measure")
    if not gradients:
        raise ValueError("pick at least one gradient method to measure")
    for family in families:
        check_choice(family, "family", tuple(dict.fromkeys(f for f, _ in variants)))
    for gradient in gradients:
        check_choice(gradient, "gradient method", tuple(dict.fromkeys(g for _, g in variants)))
    check_choice(kind, "input kind", INPUT_KINDS)
    check_number(n_steps, "rk4 steps", 1, MAX_MEMORY_STEPS, integer=True)
    steps = int(n_steps)
    try:
        batches = sorted({int(b) for b in str(batch_sizes).replace(",", " ").split()})
    except ValueError:
        raise ValueError(
            f"batch sizes must be whole numbers separated by commas, e.g. 8, 32, 128; got {short_repr(batch_sizes)}"
        ) from None
    if not batches or not all(1 <= b <= MAX_MEMORY_BATCH for b in batches) or len(batches) > 8:
        raise ValueError(
            f"give 1 to 8 batch sizes from 1 to {MAX_MEMORY_BATCH}, e.g. 8, 32, 128; got {short_repr(batch_sizes)}"
        )
    plan = [(f, g, b, steps) for f, g in variants if f in families and g in gradients for b in batches]
    if not plan:
        raise ValueError(
            "no family uses the chosen gradient methods: NODE, ANODE and HomoODE take direct or adjoint, DEQ "
            "implicit or phantom"
        )
    return plan


def build(tab: CompareTab, page: Page) -> tuple[gr.Tab, gr.Dataframe, gr.Markdown]:
    """The Compare tab's layout and events; returns the tab, its runs table (whose rows open the lab) and
    its message area."""
    with gr.Tab("Compare", id="compare") as compare_tab:
        with gr.Row():
            scope = gr.Radio(list(COMPARE_SCOPES), value=COMPARE_SCOPES[0], label="show")
            refresh = gr.Button("Refresh", elem_id="compare-refresh")
            csv = gr.Button("Export table as CSV", elem_id="compare-csv")
            json = gr.Button("Export as JSON (with configs)", elem_id="compare-json")
        with gr.Row():
            text = gr.Textbox(
                "",
                label="filter (every word must appear in the row: e.g. deq digits finished)",
                elem_id="compare-filter",
                scale=3,
                max_lines=1,
            )
            new_name = gr.Textbox("", label="new name for the picked run", elem_id="compare-new-name", max_lines=1)
            # Wide enough for their labels on one line (CSS keeps them there).
            rename = gr.Button("Rename", elem_id="compare-rename", scale=0, min_width=110)
            delete = gr.Button("Delete picked runs", elem_id="compare-delete", scale=0, min_width=190)
        message = gr.Markdown("", elem_id="compare-message")
        file = gr.File(label="exported table", interactive=False, elem_id="compare-file", visible=False)
        table = gr.Dataframe(
            headers=runs.RUN_COLUMNS,
            label="runs (click a row to open its model in the Solver lab; graph MB: the most memory one "
            "training step's forward pass kept for backward, the run's own figure)",
            interactive=False,
            wrap=True,
            column_widths=RUN_COLUMN_WIDTHS,
            elem_id="compare-table",
        )
        picker = gr.CheckboxGroup([], label="overlay the curves of these runs", elem_id="compare-runs")
        curves = plot("training curves", "compare-curves", "open this tab or press Refresh to list the saved runs", 300)
        curve_controls(page, tab, [curves, message], scope=scope, selected=picker)
        accuracy = plot("accuracy vs NFE", "compare-accuracy", "accuracy vs NFE of every run appears here", 300)
        gr.Markdown(
            "#### Memory vs batch size, measured\n"
            "One training step per family, gradient method and batch size on random inputs, here and "
            "now. The figure is the memory the forward pass keeps for backward: it grows with the batch "
            "(and, for direct backprop, with the ODE steps), while adjoint and implicit gradients keep "
            "only states. Whole-process peaks per run: `python -m core.bench memory`."
        )
        with gr.Row():
            families = gr.CheckboxGroup(
                [(v, k) for k, v in FAMILY_NAMES.items()], value=list(FAMILY_NAMES), label="families"
            )
            gradients = gr.CheckboxGroup(
                list(plots.GRADIENT_DASH), value=list(plots.GRADIENT_DASH), label="gradient methods"
            )
            batches = gr.Textbox("8, 32, 128", label="batch sizes", elem_id="memory-batches", max_lines=1)
            kind = gr.Dropdown(list(INPUT_KINDS), value="image28", label="inputs")
            steps = gr.Number(2, label="rk4 steps (ODE)")
            measure = gr.Button("Measure", elem_id="memory-run")
        memory = plot("memory vs batch size", "compare-memory", "press “Measure” (a few seconds on a CPU)", 320)
        gr.Markdown(
            "#### Reproduction studies\n"
            "The paper's claims over several seeds: `python -m core.study --out RUNS_DIR/NAME` trains and measures "
            "every family, then a study folder here shows its report's tables and figures."
        )
        with gr.Row():
            study = gr.Dropdown([], value=None, label="study folder", elem_id="compare-study")
            figure = gr.Dropdown([], value=None, label="figure", elem_id="compare-study-figure")
        study_plot = plot("study figure", "compare-study-plot", "pick a study folder", 380)
        study_report = gr.Markdown("", elem_id="compare-study-report")

    page.bind(CompareOut, table=table, runs=picker, curves=curves, accuracy=accuracy, message=message, file=file,
              memory=memory, studies=study, study_figures=figure, study_plot=study_plot,
              study_report=study_report)  # fmt: skip
    shown = {"scope": scope, "selected": picker, "text": text}
    out = [table, picker, curves, accuracy, message]
    # A refresh lists the runs but never touches the ticks (``CompareTab.refresh``); then the curves are drawn
    # for the ticks as they are by then (a tick made meanwhile, whose own redraw may have come first, counts).
    opened = [compare_tab.select, scope.input, text.input]
    refreshed = [
        page.on(refresh.click, tab.refresh, shown, out, api_name="compare_refresh"),
        page.on(opened, tab.refresh, shown, [table, picker, accuracy, message], trigger_mode="always_last"),
    ]
    for done in refreshed:
        page.on(done.then, tab.select, shown, [curves, message], show_progress="hidden")
    page.on(rename.click, tab.rename, {"scope": scope, "selected": picker, "new_name": new_name, "text": text}, out,
            api_name="compare_rename")  # fmt: skip
    page.on(delete.click, tab.delete, shown, out, api_name="compare_delete")
    page.on(picker.input, tab.select, shown, [curves, message], api_name="compare_select", trigger_mode="always_last")
    for button, fmt in ((csv, "csv"), (json, "json")):
        page.on(
            button.click,
            partial(tab.export, fmt=fmt),
            {"scope": scope, "text": text},
            [file, message],
            api_name=f"compare_export_{fmt}",
        )
    memory_inputs = {"families": families, "gradients": gradients, "batch_sizes": batches, "kind": kind,
                     "n_steps": steps}  # fmt: skip
    # Seconds (a minute on big settings): in line with the other slow jobs, never in the way of clicks (``WORK``).
    page.on(
        measure.click,
        tab.memory,
        memory_inputs,
        [memory, message],
        api_name="compare_memory",
        work="slow",
        progress="steps measured",
    )
    page.on(refresh.click, tab.studies, {"study": study}, [study], api_name="compare_studies",
            twins=(compare_tab.select,))  # fmt: skip
    study_out = [figure, study_plot, study_report, message]
    page.on(study.input, tab.open_study, {"study": study}, study_out, api_name="compare_study", work="slow")
    page.on(figure.input, tab.study_figure, {"study": study, "figure": figure}, [study_plot, message],
            api_name="compare_study_figure")  # fmt: skip
    return compare_tab, table, message
