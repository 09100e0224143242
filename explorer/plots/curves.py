"""Training curves (loss, accuracy, NFE, residual, memory ...) of live and saved runs: decimated, smoothed as
TensorBoard does, against steps, epochs or time, with a mark where a setting changed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from .style import (
    MAX_CURVE_POINTS,
    _axes,
    _grid_layout,
    _layout_key,
    _legend_placed,
    _series_color,
    empty_figure,
    f32,
    lighter,
    powers_of_ten,
)


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
