"""The Playground's picture: per model, its decision boundary and data in the input plane, the paths the
points take through the state space (or the homotopy's λ-paths), and a probe point's paths; built as a plain
dict (``playground_figure_dict``) so a frame can carry only what moved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from .style import CLASS_COLORS, _axes, _grid_layout, _layout_key, empty_figure, f32, join_polylines, scatter_type

SERIES_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
# Heatmap of P(class 1): class-0 blue through white to class-1 orange, pale so points stay visible.
PROB_SCALE = [[0.0, "#9ecae1"], [0.5, "#ffffff"], [1.0, "#fdae6b"]]


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
