"""What every figure shares: colours (one per class, family and series), the layout and axes style, legends
placed clear of titles, log axes at powers of ten, subplot grids, and the placeholder figure."""

from __future__ import annotations

import functools
import json
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Class colours (points, trajectories) and one colour per model / solver, colour-blind safe (Okabe-Ito).
CLASS_COLORS = ("#0072B2", "#D55E00")


CLASS_COLORS = ("#0072B2", "#D55E00")
#: One colour per model family in every plot of the app, none of them a class colour (the Playground draws
#: classes and models side by side).
FAMILY_COLORS = {"node": "#6A3D9A", "anode": "#CC79A7", "deq": "#000000", "homoode": "#009E73"}


FAMILY_COLORS = {"node": "#6A3D9A", "anode": "#CC79A7", "deq": "#000000", "homoode": "#009E73"}
SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


PROB_SCALE = [[0.0, "#9ecae1"], [0.5, "#ffffff"], [1.0, "#fdae6b"]]
STATUS_SYMBOLS = {"converged": "circle", "max_iter": "square", "diverged": "x", "non_finite": "x", "stalled": "diamond"}


STATUS_SYMBOLS = {"converged": "circle", "max_iter": "square", "diverged": "x", "non_finite": "x", "stalled": "diamond"}
#: Point count from which trajectories and point clouds use WebGL (Scattergl). Below it SVG is faster:
#: in headless Chromium with software GL the Playground redrew 1.4 times/s with Scattergl and 3.4 times/s
#: with SVG scatter (same figure, ~1,000 points); WebGL pays off only for many more points.
WEBGL_FROM = 5000


WEBGL_FROM = 5000
#: Longest curve sent to the browser: longer series are decimated (the last point is always kept).
MAX_CURVE_POINTS = 400


_AXIS = dict(showgrid=True, gridcolor="#eeeeee", zeroline=False, linecolor="#bbbbbb", ticks="outside")


def f32(x: np.ndarray | Sequence[float]) -> np.ndarray:
    """float32 copy: half the JSON of float64, and plenty for a picture."""
    return np.asarray(x, dtype=np.float32)


def _layout(fig: go.Figure, title: str | None = None, height: int = 360, legend_y: float = 1.02) -> go.Figure:
    # A title has its own line at the top of the figure; the legend's line is under it, just above the plot
    # area (a title centred in a margin the legend also sits in is drawn over the legend).
    top = 70 if title else 20
    if legend_y > 1.05:
        top += 30
    fig.update_layout(
        template="none",
        title=None
        if title is None
        else dict(
            text=title, x=0.01, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=8), font=dict(size=14)
        ),
        height=height,
        margin=dict(l=50, r=15, t=top, b=40),
        paper_bgcolor="white",
        plot_bgcolor="white",
        font=dict(family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif", size=12),
        # Legend above the plot area, clear of subplot titles (which sit just above each panel).
        legend=dict(orientation="h", yanchor="bottom", y=legend_y, x=0, bgcolor="rgba(255,255,255,0)"),
        uirevision="keep",  # keep the user's zoom across live redraws
    )
    fig.update_xaxes(**_AXIS)
    fig.update_yaxes(**_AXIS)
    return fig


#: A legend as a column right of the plot area: clear of subplot titles, however many entries it has.
_LEGEND_RIGHT = dict(orientation="v", x=1.01, xanchor="left", y=1, yanchor="top")


def _legend_at_right(layout: dict, margin: int) -> None:
    """Move a layout dict's legend right of the plots (``_LEGEND_RIGHT``), ``margin`` px wide."""
    layout["legend"] = dict(_LEGEND_RIGHT)
    layout["margin"]["r"] = margin


#: Below this page width (CSS px) figures are laid out for a phone: one panel per row, legends above the plots.
NARROW_WIDTH = 700


NARROW_WIDTH = 700
#: A legend as rows above the plot area (a phone's figure has no room for a column at the right).
_LEGEND_TOP = dict(orientation="h", x=0, xanchor="left", y=1.02, yanchor="bottom")


def _legend_placed(layout: dict, margin: int, narrow: bool) -> None:
    """A layout dict's legend at the right (``margin`` px wide), or above the plots when ``narrow``."""
    if narrow:
        layout["legend"] = dict(_LEGEND_TOP)
        layout["margin"]["r"] = 15
    else:
        _legend_at_right(layout, margin)


def powers_of_ten(axis: dict, decades: float) -> dict:
    """A log axis spanning a decade or more labelled at the powers of ten only (1, 10⁻¹, 10⁻², ...):
    plotly's own labels there (5, 2, 0.1, 5, 2, 0.01, ...) crowd a small panel and read as clutter.
    Returns ``axis`` (a layout axis dict), changed in place."""
    axis["exponentformat"] = "power"
    if decades >= 1:
        axis["dtick"] = 1
    return axis


def _series_color(i: int) -> str:
    """The i-th series colour, cycling through ``SERIES_COLORS``."""
    return SERIES_COLORS[i % len(SERIES_COLORS)]


#: An empty figure's message wraps at this many characters: at 14 px that is ~280 px, which fits a panel on a
#: 360 px phone (at 55 a placeholder ran off both sides of a 390 px page's panel) and a half-width one alike.
EMPTY_FIGURE_CHARS = 38


def empty_figure(message: str, height: int = 300) -> go.Figure:
    """A blank figure carrying a centred message (e.g. "press ▶ to start"), wrapped at ``EMPTY_FIGURE_CHARS``
    so a long note fits a phone's panel."""
    fig = go.Figure()
    # A name (a run's, a model's: "image28-homoode") stays whole, on a line of its own if need be.
    lines = textwrap.wrap(message, EMPTY_FIGURE_CHARS, break_long_words=False, break_on_hyphens=False)
    text = "<br>".join(lines) or message
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=14))
    _layout(fig, height=height)
    fig.update_layout(margin=dict(l=15, r=15))  # no axes: the message centred on the figure, not on a plot area
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def join_polylines(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, M, 2) M polylines of T points -> x, y of one NaN-separated line of M*(T+1) points."""
    paths = f32(paths)
    if paths.ndim != 3 or paths.shape[-1] != 2:
        raise ValueError(f"paths must have shape (T, M, 2), got {paths.shape}")
    t, m, _ = paths.shape
    out = np.full((m, t + 1, 2), np.nan, dtype=np.float32)
    out[:, :t] = paths.transpose(1, 0, 2)
    out = out.reshape(-1, 2)
    return out[:, 0], out[:, 1]


def _axes(row: int, col: int, cols: int) -> dict[str, str]:
    """The axis references of subplot (row, col) in a make_subplots grid (1-based)."""
    idx = (row - 1) * cols + col
    suffix = "" if idx == 1 else str(idx)
    return {"xaxis": f"x{suffix}", "yaxis": f"y{suffix}"}


@functools.lru_cache(maxsize=16)
def _skeleton(rows: int, cols: int, n_titles: int, height: int, spacing: tuple[float, float], row_heights=None):
    """Layout of an empty subplot grid, built once per shape: plotly's incremental API costs ~40 ms per
    figure, a figure built from plain dicts ~5 ms, and these figures are redrawn several times a second."""
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[f"t{i}" for i in range(n_titles)],
        horizontal_spacing=spacing[0],
        vertical_spacing=spacing[1],
        row_heights=list(row_heights) if row_heights else None,
    )
    _layout(fig, height=height)
    fig.update_annotations(font_size=12)
    return json.dumps(fig.to_plotly_json()["layout"])


def _grid_layout(rows: int, cols: int, titles: Sequence[str], height: int, spacing=(0.07, 0.11), row_heights=None):
    layout = json.loads(_skeleton(rows, cols, len(titles), height, spacing, row_heights))
    for ann, text in zip(layout["annotations"], titles):
        ann["text"] = text
    return layout


def scatter_type(n_points: int) -> str:
    """ "scattergl" for large point counts, "scatter" (SVG) otherwise (see ``WEBGL_FROM``)."""
    return "scattergl" if n_points >= WEBGL_FROM else "scatter"


def _layout_key(ref: str) -> str:
    """The layout key of an axis reference: "x" -> "xaxis", "y3" -> "yaxis3"."""
    return ref[0] + "axis" + ref[1:]


def lighter(color: str, amount: float) -> str:
    """``color`` (#rrggbb) mixed with white by ``amount`` in [0, 1]."""
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * amount):02x}" for c in rgb)


def family_colors(families: Mapping[str, str | None]) -> dict[str, str]:
    """Run name -> colour: its family's colour, lighter for each further run of the same family, so one
    family keeps one hue in every plot of the app."""
    seen: dict[str, int] = {}
    out = {}
    for i, (name, family) in enumerate(families.items()):
        if family in FAMILY_COLORS:
            k = seen[family] = seen.get(family, -1) + 1
            out[name] = FAMILY_COLORS[family] if k == 0 else lighter(FAMILY_COLORS[family], min(0.6, 0.3 * k))
        else:
            out[name] = _series_color(i)
    return out


def _axis_decades(fig: go.Figure, letter: str) -> float:
    """log10(max / min) of the positive numeric ``letter`` ("x" or "y") values of a figure's traces."""
    values = []
    for trace in fig.data:
        try:
            values.append(np.asarray(getattr(trace, letter, None), dtype=np.float64).ravel())
        except (TypeError, ValueError):  # no such values, or categories
            continue
    values = np.concatenate(values) if values else np.zeros(0)
    values = values[np.isfinite(values) & (values > 0)]
    return float(np.log10(values.max() / values.min())) if len(values) else 0.0
