"""Figure builders: numpy arrays in, small plotly figures out.

Nothing here trains or touches torch. Every builder keeps the JSON small (the browser redraws these
2-5 times a second): float32 arrays (plotly serialises them as base64 typed arrays), many polylines
folded into one NaN-separated trace, ``template="none"`` plus a few explicit layout settings, and WebGL
(Scattergl) only where the point count makes it pay (``WEBGL_FROM``).
"""

from __future__ import annotations

from .compare import GRADIENT_DASH, RunPoint, memory_figure, runs_accuracy_figure, study_figure
from .curves import CURVE_PANELS, CURVE_X, curves_figure, decimate, smooth
from .lab import ResidualTrace, path_figure, residual_figure, sweep_figure
from .playground import PROB_SCALE, PROBE_COLOR, FlowView, arrow_segments, playground_figure, playground_figure_dict
from .style import (
    CLASS_COLORS,
    EMPTY_FIGURE_CHARS,
    FAMILY_COLORS,
    MAX_CURVE_POINTS,
    NARROW_WIDTH,
    SERIES_COLORS,
    STATUS_SYMBOLS,
    WEBGL_FROM,
    empty_figure,
    f32,
    family_colors,
    join_polylines,
    lighter,
    powers_of_ten,
    scatter_type,
)

__all__ = [
    "CLASS_COLORS",
    "CURVE_PANELS",
    "CURVE_X",
    "EMPTY_FIGURE_CHARS",
    "FAMILY_COLORS",
    "GRADIENT_DASH",
    "MAX_CURVE_POINTS",
    "NARROW_WIDTH",
    "PROBE_COLOR",
    "PROB_SCALE",
    "SERIES_COLORS",
    "STATUS_SYMBOLS",
    "WEBGL_FROM",
    "FlowView",
    "ResidualTrace",
    "RunPoint",
    "arrow_segments",
    "curves_figure",
    "decimate",
    "empty_figure",
    "f32",
    "family_colors",
    "join_polylines",
    "lighter",
    "memory_figure",
    "path_figure",
    "playground_figure",
    "playground_figure_dict",
    "powers_of_ten",
    "residual_figure",
    "runs_accuracy_figure",
    "scatter_type",
    "smooth",
    "study_figure",
    "sweep_figure",
]
