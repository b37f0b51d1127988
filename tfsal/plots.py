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


def explanation_sheet(images, maps: Mapping, path, *, row_titles=None, title: str = "",
                      clip: float = 99.5) -> Path:
    """One readable figure: a row per image, the image then one panel per method.

    Pixel maps (N, H, W, C) are summed over channels and drawn with a diverging colour map on a
    symmetric range (±the `clip` percentile of |map| of each panel): red raises the explained
    class's score, blue lowers it, white is no effect. Feature-map resolution maps (N, h, w),
    e.g. Grad-CAM, are upsampled and drawn as heat over the image. A colour bar for each kind
    says so.

    Args:
        images: (N, H, W, 3) in [0, 1].
        maps: {title: maps} in column order.
        path: the PNG file to write.
        row_titles: one title per image (e.g. "tabby 0.62").
        title: the figure's title.
        clip: the percentile of |map| that sets each signed panel's range.

    Returns:
        the written path.
    """
    from matplotlib import cm, colors

    images = np.asarray(images, np.float32)
    if not maps or images.ndim != 4:
        raise TfsalError(f"expected images (N, H, W, 3) and at least one map, received shape "
                         f"{images.shape} and {len(maps)} maps")
    n, h, w = images.shape[:3]
    cols = 1 + len(maps)
    fig = figure((2.3 * cols, 2.3 * n + 1.1))
    grid = fig.add_gridspec(n + 1, cols, height_ratios=[1.0] * n + [0.12])
    kinds = set()
    for i in range(n):
        axes = fig.add_subplot(grid[i, 0])
        axes.imshow(images[i])
        _panel(axes, "image" if i == 0 else "", row_titles[i] if row_titles else "")
        gray = images[i].mean(axis=-1)
        for j, (name, value) in enumerate(maps.items(), start=1):
            axes = fig.add_subplot(grid[i, j])
            value = np.asarray(value[i], np.float32)
            if value.ndim == 3:  # a pixel map: signed, diverging, symmetric
                signed = value.sum(axis=-1)
                bound = float(np.percentile(np.abs(signed), clip)) or 1.0
                axes.imshow(gray, cmap="gray", vmin=0, vmax=1)
                axes.imshow(signed, cmap="RdBu_r", vmin=-bound, vmax=bound, alpha=0.85)
                kinds.add("signed")
            else:  # a feature-map resolution map: heat over the image
                heat = visualize.normalize(visualize.upsample(value[None], (h, w)), "minmax")[0]
                axes.imshow(images[i])
                axes.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=0.55)
                kinds.add("heat")
            _panel(axes, name if i == 0 else "", "")
    bars = [("signed", "RdBu_r", "blue: lowers the class score · white: no effect · "
                                 "red: raises it"),
            ("heat", "inferno", "Grad-CAM / CAM: low → high relevance")]
    bars = [b for b in bars if b[0] in kinds]
    for k, (_, cmap, label) in enumerate(bars):
        span = slice(k * cols // len(bars), (k + 1) * cols // len(bars))
        axes = fig.add_subplot(grid[n, span])
        bar = fig.colorbar(cm.ScalarMappable(colors.Normalize(-1 if cmap == "RdBu_r" else 0, 1),
                                             cmap=cmap), cax=axes, orientation="horizontal")
        bar.set_label(label, fontsize=11)
        bar.set_ticks([])
    if title:
        fig.suptitle(title, fontsize=15)
    return save(fig, path)


def _panel(axes, title: str, ylabel: str) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=13)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=12)
