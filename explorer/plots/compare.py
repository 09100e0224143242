"""The Compare tab's figures: accuracy against NFE of saved runs, training memory, and a study's charts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from .style import (
    _LEGEND_RIGHT,
    _LEGEND_TOP,
    FAMILY_COLORS,
    _axes,
    _axis_decades,
    _grid_layout,
    _layout,
    _legend_placed,
    empty_figure,
    f32,
    powers_of_ten,
)

#: Line style per gradient method of the memory chart: stored graph (solid) vs O(1)-memory methods.
GRADIENT_DASH = {"direct": "solid", "adjoint": "dash", "implicit": "dot", "phantom": "dashdot"}


@dataclass(frozen=True)
class RunPoint:
    """One run on the accuracy-vs-NFE chart: ``accuracy`` in [0, 1], ``measured_on`` "test" or "val"."""

    name: str
    family: str
    nfe_forward: float
    nfe_backward: float
    accuracy: float
    measured_on: str


def runs_accuracy_figure(points: Sequence[RunPoint], height: int = 340, narrow: bool = False) -> go.Figure:
    """Each run as a point: accuracy vs mean forward NFE (left) and vs mean backward NFE (right; below it,
    with the legend above, when ``narrow``: a phone).

    Filled markers are test accuracy (finished runs), open ones validation accuracy (runs in progress).
    Traces: one per family present (both panels share it, one legend entry).
    """
    points = [p for p in points if np.isfinite(p.accuracy) and np.isfinite(p.nfe_forward)]
    if not points:
        return empty_figure("no run with an accuracy and NFE yet: finish or stop one in the Train tab", height)
    titles = ["accuracy vs forward NFE (● test, ○ best validation so far)", "accuracy vs backward NFE"]
    rows, cols = (2, 1) if narrow else (1, 2)
    if narrow:
        titles[0] = "accuracy vs forward NFE<br>(● test, ○ best validation so far)"
        height = 2 * height
    layout = _grid_layout(rows, cols, titles, height, spacing=(0.1, 0.25 if narrow else 0.1))
    _legend_placed(layout, 110, narrow)
    if narrow:
        layout["legend"]["y"] = 1.1
        layout["margin"]["t"] = 60
    data: list[dict] = []
    for family in sorted({p.family for p in points}):
        mine = [p for p in points if p.family == family]
        for col, key in ((1, "nfe_forward"), (2, "nfe_backward")):
            data.append(
                dict(
                    type="scatter",
                    x=f32([getattr(p, key) for p in mine]),
                    y=f32([100 * p.accuracy for p in mine]),
                    mode="markers+text",  # each point says which run it is
                    textposition="top center",
                    textfont=dict(size=10, color="#555555"),
                    texttemplate=[_point_label(p.name) for p in mine],
                    cliponaxis=False,  # a label near the edge is drawn whole
                    marker=dict(
                        size=11,
                        color=FAMILY_COLORS.get(family, "#777777"),
                        symbol=["circle" if p.measured_on == "test" else "circle-open" for p in mine],
                        line=dict(width=2, color=FAMILY_COLORS.get(family, "#777777")),
                    ),
                    text=[f"{p.name}<br>{p.measured_on} accuracy" for p in mine],
                    hovertemplate="%{text}<br>NFE %{x:.1f}<br>%{y:.2f} %<extra></extra>",
                    name=family,
                    legendgroup=family,
                    showlegend=col == 1,
                    **(_axes(col, 1, 1) if narrow else _axes(1, col, 2)),
                )
            )
    layout["xaxis"]["title"] = dict(text="mean forward NFE per step")
    layout["xaxis2"]["title"] = dict(text="mean backward NFE per step")
    layout["yaxis"]["title"] = dict(text="accuracy (%)")
    if narrow:
        layout["yaxis2"]["title"] = dict(text="accuracy (%)")
    return go.Figure(dict(data=data, layout=layout))


def _point_label(run: str, limit: int = 18) -> str:
    """A run's name shortened for a point label: the part after the time stamp, cut to ``limit``."""
    parts = run.split("-", 2)
    short = parts[2] if len(parts) == 3 and parts[0].isdigit() and parts[1].isdigit() else run
    return short if len(short) <= limit else short[: limit - 1] + "…"


def memory_figure(records: Sequence[Mapping], height: int = 340, narrow: bool = False) -> go.Figure:
    """Measured training memory vs batch size, one line per (family, gradient method); the legend at the
    right, or above the plot when ``narrow`` (a phone).

    Args:
        records: ``core.bench.models.memory_probe`` dicts: ``family``, ``gradient``, ``batch_size``,
            ``nfe_forward`` and ``graph_bytes`` (bytes the forward graph keeps for backward), drawn in MB.
    Traces: one line per (family, gradient).
    """
    if not records:
        return empty_figure("press “Measure” to run one training step per family and batch size", height)
    fig = go.Figure()
    groups: dict[tuple[str, str], list[Mapping]] = {}
    for r in records:
        groups.setdefault((r["family"], r["gradient"]), []).append(r)
    for (family, gradient), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["batch_size"])
        y = [r["graph_bytes"] / 2**20 for r in rows]
        fig.add_trace(
            go.Scatter(
                x=f32([r["batch_size"] for r in rows]),
                y=f32(y),
                mode="lines+markers",
                line=dict(color=FAMILY_COLORS.get(family, "#777777"), dash=GRADIENT_DASH.get(gradient, "solid")),
                name=f"{family} · {gradient}",
                customdata=f32([r.get("nfe_forward") or 0 for r in rows]),
                hovertemplate=f"{family} · {gradient}<br>batch %{{x}}<br>%{{y:.1f}} MB<br>forward NFE "
                "%{customdata}<extra></extra>",
            )
        )
    _layout(fig, height=height)
    fig.update_layout(legend=_LEGEND_TOP if narrow else _LEGEND_RIGHT, margin_r=15 if narrow else 150)
    batches = sorted({r["batch_size"] for r in records})
    fig.update_xaxes(type="log", tickvals=batches, ticktext=[str(b) for b in batches], title_text="batch size")
    fig.update_yaxes(title_text="MB saved for backward, one training step", rangemode="tozero")
    return fig


def study_figure(spec: object, height: int = 380, narrow: bool = False) -> go.Figure:
    """A reproduction study's figure (a ``core.study.FigureSpec``, which core describes and draws) in the app's
    style, so the Compare tab shows what ``python -m core.study`` writes into its report; the legend at the
    right, or above the plot when ``narrow`` (a phone). A log axis is labelled at the powers of ten."""
    from core.study import build_figure

    fig = _layout(build_figure(spec, height), getattr(spec, "title", None), height)
    if narrow:
        fig.update_layout(legend=_LEGEND_TOP, margin_r=15)
    else:
        fig.update_layout(legend=_LEGEND_RIGHT, margin_r=190)
    for axis in ("xaxis", "yaxis"):
        if fig.layout[axis].type == "log":
            fig.layout[axis].update(powers_of_ten({}, _axis_decades(fig, axis[0])))
    return fig
