"""Plots of computed results: curves and box plots, written as PNG files.

matplotlib (the `plot` extra) is imported only when a plot is drawn, and drawn on its own Agg
canvas — no pyplot, no global figure state. Nothing here calls a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfsal import visualize
from tfsal.errors import TfsalError

DPI = 100


def figure(inches):
    """A matplotlib Figure on its own Agg canvas (no pyplot, no global state)."""
    try:
        import matplotlib  # noqa: F401  (first, so a missing package fails here)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise TfsalError("expected matplotlib for this figure, received none installed: "
                         "pip install tfsal[plot]") from None
    result = Figure(figsize=inches, dpi=DPI)
    FigureCanvasAgg(result)
    return result


def save(fig, path) -> Path:
    """Render on the Agg canvas and write an RGB PNG atomically (`visualize.save_png`)."""
    fig.tight_layout()
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return visualize.save_png(np.ascontiguousarray(rgba[..., :3]), path)


def curve_plot(curves: Mapping, path, *, title: str = "", xlabel: str = "fraction deleted",
               ylabel: str = "value") -> Path:
    """One line per named `tfsal.metrics.Curve`, its AUC in the legend.

    Args:
        curves: {name: Curve} (anything with `fractions`, `values` and `auc`).
        path: the PNG file to write.
        title, xlabel, ylabel: labels.

    Returns:
        the written path.

    Example:
        >>> curve_plot({"positive": allegiance_curve(model, x, signed.positive)}, "c.png")
    """
    if not curves:
        raise TfsalError("expected at least one curve to plot, received none")
    fig = figure((5.0, 3.6))
    axes = fig.add_subplot()
    for name, curve in curves.items():
        axes.plot(curve.fractions, curve.values, marker="o", markersize=3,
                  label=f"{name} (AUC {curve.auc:.3f})")
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel, ylim=(-0.02, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    return save(fig, path)


def box_plot(values: Mapping, path, *, title: str = "", ylabel: str = "value") -> Path:
    """One box per named 1-D array (e.g. a metric's per-image scores for each method).

    Args:
        values: {name: (N,) array}; non-finite entries are left out.
        path: the PNG file to write.
        title, ylabel: labels.

    Returns:
        the written path.

    Example:
        >>> box_plot({"rectgrad": mass_outside_mask(maps, masks)}, "background.png")
    """
    if not values:
        raise TfsalError("expected at least one series to plot, received none")
    series = [np.asarray(v, dtype=np.float64).ravel() for v in values.values()]
    series = [s[np.isfinite(s)] for s in series]
    fig = figure((max(4.0, 0.8 * len(series) + 1.5), 3.6))
    axes = fig.add_subplot()
    axes.boxplot(series, showfliers=True)
    axes.set_xticks(range(1, len(series) + 1), list(values), rotation=30, ha="right")
    axes.set(title=title, ylabel=ylabel)
    axes.grid(alpha=0.3, axis="y")
    return save(fig, path)
