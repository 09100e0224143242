"""The Solver lab's figures: residual against NFE for every solver, the solvers' paths in one PCA basis, and
accuracy against NFE over a sweep of solver budgets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from .style import STATUS_SYMBOLS, _layout, _series_color, empty_figure, f32


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
