"""Figure builders: numpy arrays in, small plotly figures out.

Nothing here trains or touches torch. Every builder keeps the JSON small (the browser redraws these
2-5 times a second): float32 arrays (plotly serialises them as base64 typed arrays), many polylines
folded into one NaN-separated trace, ``template="none"`` plus a few explicit layout settings, and WebGL
(Scattergl) only where the point count makes it pay (``WEBGL_FROM``).
"""

from __future__ import annotations

import functools
import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: Class colours (points, trajectories) and one colour per model / solver, colour-blind safe (Okabe-Ito).
CLASS_COLORS = ("#0072B2", "#D55E00")
#: One colour per model family in every plot of the app, none of them a class colour (the Playground draws
#: classes and models side by side).
FAMILY_COLORS = {"node": "#6A3D9A", "anode": "#CC79A7", "deq": "#000000", "homoode": "#009E73"}
SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
# Heatmap of P(class 1): class-0 blue through white to class-1 orange, pale so points stay visible.
PROB_SCALE = [[0.0, "#9ecae1"], [0.5, "#ffffff"], [1.0, "#fdae6b"]]
STATUS_SYMBOLS = {"converged": "circle", "max_iter": "square", "diverged": "x", "non_finite": "x", "stalled": "diamond"}
#: Point count from which trajectories and point clouds use WebGL (Scattergl). Below it SVG is faster:
#: in headless Chromium with software GL the Playground redrew 1.4 times/s with Scattergl and 3.4 times/s
#: with SVG scatter (same figure, ~1,000 points); WebGL pays off only for many more points.
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


def arrow_segments(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Quiver arrows (shaft + two barbs) as one NaN-separated polyline; arrows scaled by ``scale``."""
    x, y, u, v = (f32(a).ravel() for a in (x, y, u, v))
    dx, dy = u * scale, v * scale
    tip_x, tip_y = x + dx, y + dy
    # Barbs at ±25° back from the tip, a third of the shaft long.
    length = np.hypot(dx, dy) + 1e-12
    ang = np.arctan2(dy, dx)
    barb = 0.35 * length
    pts = []
    for sign in (1.0, -1.0):
        a = ang + np.pi - sign * np.deg2rad(25)
        pts.append((tip_x + barb * np.cos(a), tip_y + barb * np.sin(a)))
    nan = np.full_like(x, np.nan)
    # Per arrow: base, tip, barb1, NaN, tip, barb2, NaN.
    xs = np.stack([x, tip_x, pts[0][0], nan, tip_x, pts[1][0], nan], axis=1).ravel()
    ys = np.stack([y, tip_y, pts[0][1], nan, tip_y, pts[1][1], nan], axis=1).ravel()
    return f32(xs), f32(ys)


# ----------------------------------------------------------------------------------------------
# Playground


@dataclass(frozen=True)
class FlowView:
    """What the Playground draws for one model.

    Attributes:
        title: panel title (model name, step, accuracy).
        grid_x, grid_y: (W,), (H,) coordinates of the input-plane grid.
        prob: (H, W) predicted P(class 1) on the grid.
        points, labels: (N, 2) data points and their (N,) classes.
        paths: (T, M, 2) trajectories of M points in the state view (None: not available).
        path_labels: (M,) class of each trajectory's input.
        state_axes: axis titles of the state view, e.g. ("z₁", "z₂") or ("PC1", "PC2").
        field: (x, y, u, v) arrows of the vector field in the state view, or None.
        state_prob: (grid_x, grid_y, prob) of the head's decision over the state view, or None.
        probe: a point the user placed: ``{"xy": (2,), "path": (T, 2) in the state view, "prob": P(class 1)}``,
            or None.
    """

    title: str
    grid_x: np.ndarray
    grid_y: np.ndarray
    prob: np.ndarray
    points: np.ndarray
    labels: np.ndarray
    paths: np.ndarray | None = None
    path_labels: np.ndarray | None = None
    state_axes: tuple[str, str] = ("z₁", "z₂")
    field: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
    state_prob: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    probe: dict | None = None


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


def _class_points(points: np.ndarray, labels: np.ndarray, axes: dict[str, str], legend: bool) -> list[dict]:
    # One trace per class: two traces whatever the number of points.
    kind = scatter_type(len(points))
    return [
        dict(
            type=kind,
            x=f32(points[labels == k, 0]),
            y=f32(points[labels == k, 1]),
            mode="markers",
            marker=dict(size=5, color=color),
            name=f"class {k}",
            legendgroup=f"class{k}",
            showlegend=legend,
            hovertemplate="(%{x:.2f}, %{y:.2f})<extra>class " + str(k) + "</extra>",
            **axes,
        )
        for k, color in enumerate(CLASS_COLORS)
    ]


def playground_figure(views: Sequence[FlowView], height: int = 620, narrow: bool = False) -> go.Figure:
    """:func:`playground_figure_dict` as a plotly figure (what a gr.Plot takes)."""
    if not views:
        return empty_figure("no model to draw yet", height)
    return go.Figure(playground_figure_dict(views, height, narrow))


def playground_figure_dict(views: Sequence[FlowView], height: int = 620, narrow: bool = False) -> dict:
    """Per model: the decision boundary over the input plane with the data, and the trajectories of a few
    inputs through the model's state space (with the vector field where the state is the input plane).

    Wide: one column per model, input planes on the top row. ``narrow`` (a phone): one row per model, its
    input plane left of its state space, ``height`` ignored (the rows decide it). Every panel keeps x and y
    at one scale (a circle stays round), and ``layout.meta["input_planes"]`` lists the input planes' axes
    (where a click places the user's point).

    Traces per model: 1 heatmap + 2 point sets, then up to 1 heatmap + 2 trajectory sets (one per class,
    NaN-separated) + 1 end-point set + 1 arrow set, then the user's point. ``layout.meta["shape"]`` names the
    traces' kinds in order and the layout: two figures of one shape differ only in their traces' values and
    the panel titles' text, so one can be drawn over the other in place (:mod:`explorer.frames`).

    A plain dict (numpy arrays as values), built without plotly's validation: the animation sends it often.
    """
    n = len(views)
    states = [f"state space ({v.state_axes[0]}, {v.state_axes[1]})" for v in views]
    if narrow:
        rows, cols = n, 2
        # "state space" alone: its axes say which (z₁, z₂ or PC1, PC2), and a long model title has room.
        titles = [t for v in views for t in (v.title, "state space")]
        height = 90 + 215 * rows  # a row: a panel about half a phone wide and square, and 70 px for titles
        layout = _grid_layout(rows, cols, titles, height, spacing=(0.06, 70 / (height - 90)))
        places = [(_axes(r, 1, cols), _axes(r, 2, cols)) for r in range(1, n + 1)]
        # Each row's two titles from its outer edges inwards: a model's title reaching past the middle does
        # not run into its state space's title.
        for k, ann in enumerate(layout["annotations"]):
            left = k % 2 == 0
            domain = layout[_layout_key(places[k // 2][0 if left else 1]["xaxis"])]["domain"]
            ann.update(x=domain[0] if left else domain[1], xanchor="left" if left else "right", font=dict(size=11))
        layout["margin"].update(l=20, r=10, t=50)
    else:
        titles = [v.title for v in views] + states
        layout = _grid_layout(2, n, titles, height, row_heights=(0.55, 0.45))
        places = [(_axes(1, c, n), _axes(2, c, n)) for c in range(1, n + 1)]
        layout["margin"]["t"] = 50
    layout["legend"]["y"] = 1 + 28 / (height - 90)  # above the first row's titles
    data: list[dict] = []
    for i, (view, (top, bottom)) in enumerate(zip(views, places)):
        legend = i == 0  # one legend entry per kind of trace, from the first model
        hover = "(%{x:.2f}, %{y:.2f}) P(class 1)=%{z:.2f}<extra></extra>"
        data.append(_prob_heatmap(view.grid_x, view.grid_y, view.prob, top, hovertemplate=hover))
        data += _class_points(view.points, view.labels, top, legend)
        data += _state_space_traces(view, bottom, legend)
        if view.probe is not None:
            data += _probe_traces(view.probe, top, bottom, legend)
        for ref, title in zip((bottom["xaxis"], bottom["yaxis"]), view.state_axes):
            layout[_layout_key(ref)]["title"] = dict(text=title, standoff=4)
        for axes in (top, bottom):
            # One unit of x is as long as one unit of y: the panel shrinks inside its cell instead.
            layout[_layout_key(axes["yaxis"])].update(scaleanchor=axes["xaxis"], scaleratio=1, constrain="domain")
            layout[_layout_key(axes["xaxis"])]["constrain"] = "domain"
    kinds = ",".join(f"{t['type']}:{t['xaxis']}" for t in data)
    layout["meta"] = {
        "input_planes": [[top["xaxis"], top["yaxis"]] for top, _ in places],
        "shape": f"{'narrow' if narrow else 'wide'}:{height}:{n}:{kinds}",
    }
    # No tick labels (as in TensorFlow Playground; hover shows coordinates): measuring and placing them on
    # 2 x 3 axes was a third of the browser's time per redraw.
    for name, axis in layout.items():
        if name.startswith(("xaxis", "yaxis")):
            axis.update(showticklabels=False, ticks="")
    return dict(data=data, layout=layout)


def _layout_key(ref: str) -> str:
    """The layout key of an axis reference: "x" -> "xaxis", "y3" -> "yaxis3"."""
    return ref[0] + "axis" + ref[1:]


def _prob_heatmap(x: np.ndarray, y: np.ndarray, prob: np.ndarray, axes: dict[str, str], **hover) -> dict:
    """Heatmap trace of P(class 1): x (W,), y (H,), prob (H, W), on the 0-1 ``PROB_SCALE``."""
    return dict(
        type="heatmap", x=f32(x), y=f32(y), z=f32(prob), zmin=0, zmax=1, colorscale=PROB_SCALE, showscale=False,
        **hover, **axes,
    )  # fmt: skip


def _state_space_traces(view: FlowView, axes: dict[str, str], legend: bool) -> list[dict]:
    """The bottom panel of one column: the head's decision over the state view, the vector field, and the
    trajectories with their end states, each only where the view has it."""
    data = []
    if view.state_prob is not None:
        data.append(_prob_heatmap(*view.state_prob, axes, hoverinfo="skip"))
    if view.field is not None:
        ax, ay = arrow_segments(*view.field, scale=_arrow_scale(view.field))
        data.append(
            dict(
                type=scatter_type(len(ax)),
                x=ax,
                y=ay,
                mode="lines",
                line=dict(width=1, color="#888888"),
                name="vector field",
                showlegend=legend,
                hoverinfo="skip",
                **axes,
            )
        )
    if view.paths is not None and view.paths.shape[0] > 0:
        data += _trajectory_traces(view.paths, view.path_labels, axes, legend)
    return data


def _trajectory_traces(
    paths: np.ndarray, path_labels: np.ndarray | None, axes: dict[str, str], legend: bool
) -> list[dict]:
    """(T, M, 2) paths of M inputs of (M,) classes (None: all class 0) -> one NaN-separated line per class
    present, then one trace of the M end states."""
    labels = np.asarray(path_labels if path_labels is not None else np.zeros(paths.shape[1]))
    data = []
    for k, color in enumerate(CLASS_COLORS):
        sel = labels == k
        if not sel.any():
            continue
        px, py = join_polylines(paths[:, sel])
        data.append(
            dict(
                type=scatter_type(len(px)),
                x=px,
                y=py,
                mode="lines",
                # Translucent by its colour, not by the trace's opacity: a translucent SVG group is painted
                # off screen first, which for a frame's worth of paths was a tenth of the page's time.
                line=dict(width=1.2, color=_rgba(color, 0.8)),
                name=f"trajectory, class {k}",
                legendgroup=f"class{k}",
                showlegend=False,
                hoverinfo="skip",
                **axes,
            )
        )
    end = f32(paths[-1])
    data.append(
        dict(
            type=scatter_type(len(end)),
            x=end[:, 0],
            y=end[:, 1],
            mode="markers",
            name="end state",
            showlegend=legend,
            marker=dict(size=6, color=[CLASS_COLORS[int(k) % 2] for k in labels], symbol="diamond"),
            hovertemplate="end (%{x:.2f}, %{y:.2f})<extra></extra>",
            **axes,
        )
    )
    return data


PROBE_COLOR = "#000000"


def _rgba(color: str, alpha: float) -> str:
    """ "#rrggbb" with an opacity, as CSS rgba()."""
    r, g, b = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:g})"


def _probe_traces(probe: Mapping, top: dict[str, str], bottom: dict[str, str], legend: bool) -> list[dict]:
    """The user's point: a star with the model's P(class 1) over the boundary, its path (thick) through
    the state view, and a star where it ends."""
    x, y = (float(v) for v in probe["xy"])
    path = f32(probe["path"])
    label = f"P(class 1) = {probe['prob']:.2f}"
    star = dict(symbol="star", size=15, color=PROBE_COLOR, line=dict(width=1, color="white"))
    return [
        dict(type="scatter", x=[x], y=[y], mode="markers+text", text=[label], textposition="top center",
             textfont=dict(size=11, color=PROBE_COLOR), marker=star, name="your point", legendgroup="probe",
             showlegend=legend, hovertemplate=f"your point ({x:.2f}, {y:.2f})<br>{label}<extra></extra>", **top),
        dict(type="scatter", x=path[:, 0], y=path[:, 1], mode="lines", line=dict(width=3, color=PROBE_COLOR),
             name="your point's path", legendgroup="probe", showlegend=False, hoverinfo="skip", **bottom),
        dict(type="scatter", x=path[-1:, 0], y=path[-1:, 1], mode="markers", marker=star, legendgroup="probe",
             showlegend=False, hovertemplate="your point ends at (%{x:.2f}, %{y:.2f})<extra></extra>", **bottom),
    ]  # fmt: skip


def _arrow_scale(field: tuple[np.ndarray, ...]) -> float:
    # Longest arrow ≈ 0.9 grid cells, so arrows never overlap their neighbours.
    x, y, u, v = (f32(a).ravel() for a in field)
    ux, uy = np.unique(x), np.unique(y)
    cell = min(np.diff(ux).min() if len(ux) > 1 else 1.0, np.diff(uy).min() if len(uy) > 1 else 1.0)
    longest = float(np.nanmax(np.hypot(u, v))) if len(u) else 0.0
    return 0.9 * cell / longest if longest > 0 and np.isfinite(longest) else 0.0


# ----------------------------------------------------------------------------------------------
# Live training curves


def decimate(x: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> np.ndarray:
    """Indices of at most ``max_points`` evenly spread samples of ``x``, always keeping the last."""
    n = len(x)
    if n <= max_points:
        return np.arange(n)
    idx = np.linspace(0, n - 1, max_points).round().astype(int)
    return np.unique(idx)


#: panel key -> (title, [(metric key, label suffix, dash)], y-axis type)
CURVE_PANELS: dict[str, tuple[str, list[tuple[str, str, str]], str]] = {
    "loss": ("loss", [("loss", "", "solid")], "log"),
    "accuracy": (
        "accuracy (dotted: train batch)",
        [("train_acc", " train", "dot"), ("val_acc", " val", "solid")],
        "linear",
    ),
    "nfe": (
        "NFE per step (dotted: backward)",
        [("nfe_forward", " fwd", "solid"), ("nfe_backward", " bwd", "dot")],
        "linear",
    ),
    "memory": ("memory kept for backward (MB)", [("memory_mb", "", "solid")], "linear"),
    "time": ("step time (ms)", [("step_ms", "", "solid")], "linear"),
}


def smooth(y: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: a debiased exponential moving average, s_t = EMA_t / (1 - w^t) with
    EMA_t = w EMA_(t-1) + (1 - w) y_t; NaNs are skipped (they keep the average). weight 0: y unchanged."""
    y = np.asarray(y, dtype=np.float64)
    if weight <= 0 or len(y) == 0:
        return y
    finite = np.isfinite(y)
    vals = y[finite]
    if len(vals) == 0:
        return np.full_like(y, np.nan)
    # Over the finite values only (a NaN keeps the average): EMA_k / (1 - w^k) = sum_j w^(k-j) (1-w) y_j /
    # (1 - w^k), a recurrence solved in closed form in chunks short enough that w^-j stays finite.
    out_vals = np.empty_like(vals)
    ema = 0.0
    chunk = max(1, min(len(vals), int(200 / max(-np.log10(weight), 1e-3))))
    for start in range(0, len(vals), chunk):
        v = vals[start : start + chunk]
        j = np.arange(1, len(v) + 1)
        scaled = np.cumsum((1 - weight) * v * weight ** -j.astype(np.float64))
        emas = weight**j * (ema + scaled)
        out_vals[start : start + chunk] = emas
        ema = emas[-1]
    k = np.arange(1, len(vals) + 1)
    out_vals /= 1 - weight**k
    out = np.empty_like(y)
    out[finite] = out_vals
    # A NaN position shows the average so far (the last finite one), NaN before the first value.
    idx = np.maximum.accumulate(np.where(finite, np.arange(len(y)), -1))
    out[~finite] = np.where(idx[~finite] >= 0, out[np.maximum(idx[~finite], 0)], np.nan)
    return out


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


#: x axes the curves can be drawn against: metric key and axis title.
CURVE_X = {"step": ("step", "step"), "wall time": ("wall_s", "wall time (s)")}


def _curve_x(m: Mapping[str, np.ndarray], prefix: str, x_key: str) -> np.ndarray | None:
    """x values of the per-step (prefix ""), validation ("val_") or change ("change_") series. Wall times
    of validations and changes are read off the steps' wall clock at their step."""
    steps = m.get(prefix + "step")
    if x_key == "step" or prefix == "":
        return m.get(prefix + x_key)
    wall, at = m.get("wall_s"), m.get("step")
    if steps is None or wall is None or at is None or len(at) == 0 or len(wall) != len(at):
        return None
    return np.interp(np.asarray(steps, dtype=np.float64), np.asarray(at, dtype=np.float64), wall)


def curves_figure(
    runs: Mapping[str, Mapping[str, np.ndarray]],
    panels: Sequence[str] = ("loss", "accuracy", "nfe", "memory", "time"),
    height: int | None = None,
    colors: Mapping[str, str] | None = None,
    smoothing: float = 0.0,
    x_axis: str = "step",
    log_loss: bool = True,
    narrow: bool = False,
) -> go.Figure:
    """Live training curves, one colour per run, one panel per metric group (three panels per row; one, with
    the runs listed above them, when ``narrow``: a phone).

    Args:
        runs: run name -> metric arrays: ``step`` (S,), ``loss``, ``train_acc``, ``nfe_forward``,
            ``nfe_backward``, ``memory_mb``, ``step_ms``, ``wall_s`` (each (S,)), ``val_step``, ``val_acc``,
            ``val_wall_s`` (E,), and ``change_step``, ``change_wall_s`` (C,) with ``change_text`` (live
            setting changes, drawn as labelled vertical lines). Missing metrics are skipped.
        panels: which of ``CURVE_PANELS`` to draw, in order.
        colors: run name -> colour (default: the series colours in order).
        smoothing: TensorBoard-style EMA weight in [0, 1) for the per-step series (validation points and the
            raw series' hover stay exact: the raw curve is drawn faint behind the smoothed one).
        x_axis: ``"step"`` or ``"wall time"`` (seconds since the run started).
        log_loss: the loss panel on a log axis (else linear), labelled at the powers of ten.
        narrow: lay the panels out for a phone (``height`` is then per panel).
    """
    _check_curve_options(panels, smoothing, x_axis)
    if not runs or all(len(r.get("step", ())) == 0 for r in runs.values()):
        return empty_figure("no steps yet: press ▶", height or 260)
    x_key, x_title = CURVE_X[x_axis]
    cols = 1 if narrow else min(3, len(panels))
    rows = -(-len(panels) // cols)
    if narrow:
        height = rows * min(height or 190, 190) + 60
        spacing = (0.08, 75 / (height - 60))  # room for a panel's x ticks and the next one's title
    else:
        height, spacing = height or (230 * rows + 40), (0.08, 0.2)
    layout = _grid_layout(rows, cols, [CURVE_PANELS[p][0] for p in panels], height, spacing=spacing)
    # Runs are listed at the right (above the panels on a phone), where they cannot collide with the titles.
    _legend_placed(layout, 120, narrow)
    if narrow:
        layout["legend"]["y"] = 1 + 24 / (height - 60)  # above the first panel's title
    grid = [_axes(p_i // cols + 1, p_i % cols + 1, cols) for p_i in range(len(panels))]
    data: list[dict] = []
    shapes: list[dict] = []
    for r_i, (name, m) in enumerate(runs.items()):
        color = (colors or {}).get(name) or _series_color(r_i)
        data += _run_traces(name, m, color, panels, grid, x_key, smoothing)
        shapes += _change_lines(name, m, color, grid, x_key)
    for p_i, (panel, axes) in enumerate(zip(panels, grid)):
        _, series, scale = CURVE_PANELS[panel]
        y_axis = layout[_layout_key(axes["yaxis"])]
        if scale == "log" and (panel != "loss" or log_loss):
            y_axis["type"] = "log"
            powers_of_ten(y_axis, _decades(runs, series))
        if p_i // cols == rows - 1:  # the x title under the bottom row only
            layout[_layout_key(axes["xaxis"])]["title"] = dict(text=x_title)
    layout["shapes"] = shapes
    layout["annotations"] = list(layout.get("annotations", [])) + _change_marks(shapes)
    return go.Figure(dict(data=data, layout=layout))


def _check_curve_options(panels: Sequence[str], smoothing: float, x_axis: str) -> None:
    """Raise ValueError, naming the choices, for an unknown panel or x axis or a smoothing outside [0, 1)."""
    unknown = [p for p in panels if p not in CURVE_PANELS]
    if unknown:
        raise ValueError(f"unknown panel(s) {unknown}; expected some of {', '.join(CURVE_PANELS)}")
    if x_axis not in CURVE_X:
        raise ValueError(f"x axis must be one of {', '.join(CURVE_X)}, got {x_axis!r}")
    if not (isinstance(smoothing, (int, float)) and 0 <= smoothing < 1):
        raise ValueError(f"smoothing must be a number in [0, 1), got {smoothing!r}")


def _run_traces(
    name: str,
    m: Mapping[str, np.ndarray],
    color: str,
    panels: Sequence[str],
    grid: Sequence[dict[str, str]],
    x_key: str,
    smoothing: float,
) -> list[dict]:
    """One run's traces, panel by panel (``grid``: each panel's axes), series by series (``CURVE_PANELS``)."""
    data = []
    for p_i, (panel, axes) in enumerate(zip(panels, grid)):
        for key, suffix, dash in CURVE_PANELS[panel][1]:
            per_eval = key.startswith("val_")
            x = _curve_x(m, "val_" if per_eval else "", x_key)
            y = m.get(key)
            if y is None or x is None or len(y) == 0 or len(x) != len(y):
                continue
            # One legend entry per run: its first panel's unsuffixed series.
            trace = dict(name=name + suffix, legendgroup=name, showlegend=p_i == 0 and not suffix, **axes)
            data += _series_traces(x, y, per_eval, color, dash, smoothing, trace)
    return data


def _series_traces(
    x: np.ndarray, y: np.ndarray, per_eval: bool, color: str, dash: str, smoothing: float, trace: dict
) -> list[dict]:
    """One metric series, x and y (S,), decimated: its line (``trace`` adds name, legend and axes), with
    the raw series drawn faint behind it when smoothed. A per-validation series (``per_eval``) keeps its
    markers and is never smoothed."""
    y = np.asarray(y, dtype=np.float64)
    idx = decimate(np.asarray(x))
    mode = "lines+markers" if per_eval else "lines"
    line = dict(type="scatter", x=f32(np.asarray(x)[idx]), mode=mode, marker=dict(size=4), **trace)
    data = []
    if smoothing > 0 and not per_eval:
        data.append({**line, "y": f32(y[idx]), "line": dict(color=lighter(color, 0.7), width=1, dash=dash),
                     "showlegend": False, "hoverinfo": "skip"})  # fmt: skip
        y = smooth(y, smoothing)
    data.append({**line, "y": f32(y[idx]), "line": dict(color=color, width=1.5, dash=dash)})
    return data


def _change_lines(
    name: str, m: Mapping[str, np.ndarray], color: str, grid: Sequence[dict[str, str]], x_key: str
) -> list[dict]:
    """Live setting changes (lr, tolerance) of one run as dash-dot vertical lines in every panel: where the
    curve changed course. (C,) change positions -> C shapes per panel, panel by panel."""
    cx = _curve_x(m, "change_", x_key)
    if cx is None or not len(cx):
        return []
    texts = m.get("change_text", [""] * len(cx))
    return [
        dict(type="line", x0=float(x0), x1=float(x0), y0=0, y1=1, xref=axes["xaxis"],
             yref=axes["yaxis"] + " domain", line=dict(color=color, width=1, dash="dashdot"), name=f"{name}: {text}")
        for axes in grid
        for x0, text in zip(cx, texts)
    ]  # fmt: skip


def _change_marks(shapes: Sequence[dict]) -> list[dict]:
    """A ⚙ at the top of each change line of the first panel (one label per change), its text on hover;
    inside the panel, below its title (above the panel it was drawn over the title)."""
    return [
        dict(x=shape["x0"], y=1, xref=shape["xref"], yref="y domain", text="⚙", showarrow=False,
             yanchor="top", bgcolor="rgba(255,255,255,0.8)", font=dict(size=11, color=shape["line"]["color"]),
             hovertext=shape["name"])
        for shape in shapes
        if shape["xref"] in ("x", "x1")
    ]  # fmt: skip


def _decades(runs: Mapping[str, Mapping[str, np.ndarray]], series: list[tuple[str, str, str]]) -> float:
    """log10(max / min) of the positive values of a panel's series."""
    values = [np.asarray(m[k], dtype=np.float64) for m in runs.values() for k, _, _ in series if k in m]
    values = [v[np.isfinite(v) & (v > 0)] for v in values]
    values = np.concatenate(values) if values else np.zeros(0)
    return float(np.log10(values.max() / values.min())) if len(values) else 0.0


# ----------------------------------------------------------------------------------------------
# Solver lab


@dataclass(frozen=True)
class ResidualTrace:
    """One solver's residual history: ``nfe`` (K,) x-values, ``residual`` (K,), how it ended, and what it
    cost besides f-evaluations (e.g. "1,284 J·v · 5.3 s": the NFE axis alone hides homotopy's Jacobian
    products)."""

    name: str
    nfe: np.ndarray
    residual: np.ndarray
    status: str
    cost: str = ""


def residual_figure(traces: Sequence[ResidualTrace], tol: float | None = None, height: int = 360) -> go.Figure:
    """Residual ||f(z) - z|| / ||f(z)|| vs function evaluations, log y, one line per solver, a dashed
    tolerance line, and a marker where each solver stopped (○ converged, □ budget spent, × diverged).

    Traces: one line per solver plus one trace of stop markers.
    """
    if not traces:
        return empty_figure("no solver has run yet", height)
    fig = go.Figure()
    stop_x, stop_y, stop_sym, stop_col, stop_txt = [], [], [], [], []
    for i, tr in enumerate(traces):
        color = _series_color(i)
        res = np.asarray(tr.residual, dtype=np.float64)
        # A log axis cannot show 0 (exact convergence) or inf: clip into the drawable range.
        res = np.clip(np.nan_to_num(res, nan=1e30, posinf=1e30), 1e-16, 1e30)
        fig.add_trace(
            go.Scatter(
                x=f32(tr.nfe),
                y=f32(res),
                mode="lines+markers",
                marker=dict(size=4),
                line=dict(color=color, width=2),
                name=f"{tr.name} ({tr.status}{' · ' + tr.cost if tr.cost else ''})",
                hovertemplate=f"{tr.name}<br>NFE %{{x}}<br>residual %{{y:.3g}}<extra></extra>",
            )
        )
        if len(res):
            stop_x.append(float(tr.nfe[-1]))
            stop_y.append(float(res[-1]))
            stop_sym.append(STATUS_SYMBOLS.get(tr.status, "diamond"))
            stop_col.append(color)
            stop_txt.append(f"{tr.name}: {tr.status}")
    fig.add_trace(
        go.Scatter(
            x=f32(stop_x),
            y=f32(stop_y),
            mode="markers",
            marker=dict(size=13, symbol=stop_sym, color="rgba(0,0,0,0)", line=dict(width=2.5, color=stop_col)),
            text=stop_txt,
            name="where each stopped",
            hovertemplate="%{text}<br>NFE %{x}, residual %{y:.3g}<extra></extra>",
        )
    )
    if tol is not None and tol > 0:
        fig.add_hline(y=tol, line=dict(dash="dash", color="#444444", width=1), annotation_text=f"tol {tol:g}")
    _layout(fig, height=height)
    fig.update_layout(margin_l=75)
    fig.update_yaxes(type="log", title_text="relative residual", exponentformat="power", title_standoff=8)
    fig.update_xaxes(title_text="function evaluations (NFE)")
    return fig


def path_figure(
    paths: Mapping[str, np.ndarray],
    position: float = 1.0,
    labels: Mapping[str, np.ndarray] | None = None,
    explained: np.ndarray | None = None,
    height: int = 360,
    dims: int = 2,
) -> go.Figure:
    """Paths of the state in a frozen PCA basis (2-D, or 3-D with a rotatable camera), with a cursor on
    each path at ``position``.

    Args:
        paths: name -> (T, P) projected states (iterates, homotopy path, ODE solution), P >= ``dims``.
        position: in [0, 1]: fraction along every path (λ, t, or k / K), set by the page's slider.
        labels: name -> (T,) value of the inner time axis (k, λ or t) shown on hover and at the cursor.
        explained: (P,) variance share of each principal axis, for the axis titles.
        dims: 2 (the first two principal axes) or 3.

    Traces: one line per path plus one cursor trace.
    """
    if dims not in (2, 3):
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    if not paths:
        return empty_figure("no path yet: run the solvers", height)
    position = float(np.clip(position, 0.0, 1.0))
    fig = _layout(go.Figure(dict(data=_path_traces(paths, position, labels, dims))), height=height)
    titles = _pc_titles(explained, dims)
    if dims == 3:
        axis = dict(backgroundcolor="white", gridcolor="#dddddd", showspikes=False)
        fig.update_layout(
            scene=dict(
                **{f"{c}axis": dict(title=dict(text=title), **axis) for c, title in zip("xyz", titles)},
                aspectmode="cube",
                # Camera pulled back so the axis titles stay inside the panel.
                camera=dict(eye=dict(x=1.9, y=1.9, z=1.3)),
            ),
            margin=dict(l=10, r=10, t=30, b=10),
        )
    else:
        fig.update_xaxes(title_text=titles[0])
        fig.update_yaxes(title_text=titles[1])
    return fig


def _path_traces(
    paths: Mapping[str, np.ndarray], position: float, labels: Mapping[str, np.ndarray] | None, dims: int
) -> list[dict]:
    """One line per (T, >= dims) path, on its first ``dims`` coordinates, then one trace of cursor markers
    at ``position`` in [0, 1] along each non-empty path. Raises ValueError for a path of another shape."""
    kind = "scatter3d" if dims == 3 else "scatter"
    coords = "xyz"[:dims]
    data: list[dict] = []
    cursor: dict[str, list] = {c: [] for c in coords}
    ccol, ctxt = [], []
    for i, (name, p) in enumerate(paths.items()):
        p = f32(p)
        if p.ndim != 2 or p.shape[1] < dims:
            raise ValueError(f"path {name!r} must have shape (T, >={dims}), got {p.shape}")
        color = _series_color(i)
        lab = None if labels is None else labels.get(name)
        data.append(
            dict(
                type=kind,
                **{c: p[:, k] for k, c in enumerate(coords)},
                mode="lines+markers",
                marker=dict(size=3 if dims == 3 else 4, color=color),
                line=dict(color=color, width=3 if dims == 3 else 1.5),
                name=name,
                customdata=None if lab is None else f32(lab),
                hovertemplate=name + (" %{customdata:.3g}" if lab is not None else "") + "<extra></extra>",
            )
        )
        if len(p):
            j = round(position * (len(p) - 1))
            for k, c in enumerate(coords):
                cursor[c].append(float(p[j, k]))
            ccol.append(color)
            # Where the cursor is: the inner time there, or the state's index without one.
            ctxt.append(f"{name}: k{j}" if lab is None else f"{name}: {float(lab[j]):.3g}")
    data.append(
        dict(
            type=kind,
            **{c: f32(v) for c, v in cursor.items()},
            mode="markers",
            marker=dict(size=8 if dims == 3 else 14, color=ccol, line=dict(width=2, color="black")),
            text=ctxt,
            name="current position",
            hovertemplate="%{text}<extra></extra>",
        )
    )
    return data


def _pc_titles(explained: np.ndarray | None, dims: int) -> list[str]:
    """Axis titles "PC1 (62 % of variance)", ... of the first ``dims`` axes, from (P,) variance shares (None
    or NaN: no share)."""
    ex = np.asarray(explained if explained is not None else [np.nan] * dims, dtype=np.float64)
    # Short axis titles in 3-D, where long ones collide with the tick labels.
    share = "{:.0f} %" if dims == 3 else "{:.0f} % of variance"
    return [
        f"PC{k + 1} ({share.format(100 * ex[k])})" if k < len(ex) and np.isfinite(ex[k]) else f"PC{k + 1}"
        for k in range(dims)
    ]


def sweep_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[str]]], height: int = 340, title: str | None = None
) -> go.Figure:
    """Accuracy vs mean forward NFE: name -> (mean_nfe (S,), accuracy (S,), setting labels (S,)); ``title``
    names the model swept (the figure stays on screen while other models are picked).

    Traces: one line per curve. The accuracy axis always spans 0-100 % (a flat untrained curve would
    otherwise get an axis around its one value).
    """
    if not curves:
        return empty_figure("run a sweep to see accuracy vs NFE", height)
    fig = go.Figure()
    shown = _sparse_labels([(np.asarray(nfe, dtype=np.float64), 100 * np.asarray(acc, dtype=np.float64), text)
                            for nfe, acc, text in curves.values()])  # fmt: skip
    for i, (name, (nfe, acc, text)) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=f32(nfe),
                y=f32(np.asarray(acc) * 100),
                mode="lines+markers+text",
                text=shown[i],
                customdata=list(text),  # every point's setting on hover, labelled or not
                textposition="top center",
                textfont=dict(size=10),
                line=dict(color=_series_color(i), width=2),
                name=name,
                hovertemplate=f"{name} %{{customdata}}<br>mean NFE %{{x:.1f}}<br>accuracy %{{y:.1f}} %<extra></extra>",
            )
        )
    _layout(fig, title=title, height=height)
    fig.update_xaxes(title_text="mean forward NFE per batch")
    fig.update_yaxes(title_text="accuracy (%)", range=[-3, 105])
    return fig


def _sparse_labels(curves: Sequence[tuple[np.ndarray, np.ndarray, Sequence[str]]]) -> list[list[str]]:
    """The point labels to draw of each curve (x (S,), y (S,), labels (S,)), "" for the others: a label is
    dropped where one already kept sits within 8 % of the x range and 7 % of the y range (about a label's
    size on a phone's panel), so curves on top of each other and close settings never print over each other.
    The y range is the sweep's fixed 0-108 %."""
    xs = np.concatenate([c[0] for c in curves]) if curves else np.zeros(0)
    xs = xs[np.isfinite(xs)]
    span_x = float(xs.max() - xs.min()) if len(xs) else 1.0
    span_x = span_x if span_x > 0 else 1.0
    kept: list[tuple[float, float]] = []
    out = []
    for x, y, labels in curves:
        shown = []
        for xi, yi, label in zip(x, y, labels):
            near = any(abs(xi - kx) < 0.08 * span_x and abs(yi - ky) < 0.07 * 108 for kx, ky in kept)
            if near or not (np.isfinite(xi) and np.isfinite(yi)):
                shown.append("")
            else:
                kept.append((float(xi), float(yi)))
                shown.append(str(label))
        out.append(shown)
    return out


# ----------------------------------------------------------------------------------------------
# Compare


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
