"""Plots of computed results: curves and box plots, written as PNG files.

matplotlib (the `plot` extra) is imported only when a plot is drawn, and drawn on its own Agg
canvas — no pyplot, no global figure state. Nothing here calls a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tfsal import visualize
from tfsal.checks import positive_int
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


SIGNED_LABEL = "red raises the class score, blue lowers it, white: no effect"
HEAT_LABEL = "Grad-CAM / CAM: heat over the image, low → high relevance"
PANEL_INCHES = 2.4  # one image_sheet panel
SHEET_COLUMNS = 5  # image_sheet panels per row


def explanation_sheet(images, maps: Mapping, path, *, row_titles=None, title: str = "",
                      clip: float = 99.5) -> Path:
    """One readable figure: a row per image, the image then one panel per method.

    Pixel maps (N, H, W, C) are summed over channels and drawn with a diverging colour map on a
    symmetric range (±the `clip` percentile of |map| of each panel) over a faint grey copy of
    the image: red raises the explained class's score, blue lowers it, white is no effect.
    Feature-map resolution maps (N, h, w), e.g. Grad-CAM, are upsampled and drawn as heat over
    the image. A colour bar for each kind says so. Panels look as `image_sheet`'s do.

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
    images = np.asarray(images, np.float32)
    if not maps or images.ndim != 4:
        raise TfsalError(f"expected images (N, H, W, 3) and at least one map, received shape "
                         f"{images.shape} and {len(maps)} maps")
    n = len(images)
    cols = 1 + len(maps)
    fig = figure((2.3 * cols, 2.3 * n + 1.1))
    grid = fig.add_gridspec(n + 1, cols, height_ratios=[1.0] * n + [0.12])
    kinds = set()
    for i in range(n):
        axes = fig.add_subplot(grid[i, 0])
        axes.imshow(np.clip(images[i], 0, 1))
        _panel(axes, "image" if i == 0 else "", row_titles[i] if row_titles else "")
        for j, (name, value) in enumerate(maps.items(), start=1):
            axes = fig.add_subplot(grid[i, j])
            kinds.add(_draw_map(axes, images[i], value[i], clip=clip))
            _panel(axes, name if i == 0 else "", "")
    _colour_bars(fig, grid, n, cols, kinds)
    if title:
        fig.suptitle(title, fontsize=15)
    return save(fig, path)


def image_sheet(image, maps: Mapping, path, *, title: str = "", clip: float = 99.5,
                columns: int = SHEET_COLUMNS) -> Path:
    """One image explained: the image, then a panel per map, in rows of at most `columns`.

    Each map is drawn as in `explanation_sheet`: a pixel map (H, W, C) summed over channels, on
    a diverging colour map over a faint grey copy of the image, its range symmetric (±the
    `clip` percentile of |map|, so one hot pixel does not wash out the rest); a feature-map
    resolution map (h, w) (Grad-CAM, CAM) upsampled as heat over the image. Colour bars below
    say what red and blue mean and what heat means. Panels are `PANEL_INCHES` (2.4 in) at
    `DPI`, titles ≥ 11 pt and wrapped to the panel width — 13 methods × 2 classes read well.

    Args:
        image: (H, W, 3) in [0, 1].
        maps: {title: map}, e.g. {"vanilla_gradient · class 281": (H, W, 3) array}, in order.
        path: the PNG file to write.
        title: the sheet's title (e.g. "chelsea — Egyptian cat (39.6 %)").
        clip: the percentile of |map| that sets each signed panel's range.
        columns: panels per row (the image counts as one).

    Returns:
        the written path.

    Raises:
        TfsalError: without matplotlib, for no maps, an image that is not (H, W, 3), or a
            map that is neither (H, W, C) at the image's size nor (h, w).

    Example:
        >>> image_sheet(x[0], {"rectgrad · class 3": tfsal.rectgrad(model, x)[0]}, "x0.png",
        ...             title="x0 — star (97.1 %)")
        PosixPath('x0.png')
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or 0 in image.shape:
        raise TfsalError(f"expected an image (H, W, 3), received shape {image.shape}")
    if not isinstance(maps, Mapping) or not maps:
        raise TfsalError("expected {title: map} with at least one map, received none")
    for name, value in maps.items():
        shape = np.shape(value)
        if 0 in shape or not (len(shape) == 2 or len(shape) == 3
                              and shape[:2] == image.shape[:2]):
            raise TfsalError(f"expected map {name!r} (H, W, C) at the image's size "
                             f"{image.shape[:2]} or (h, w), received shape {shape}")
    columns = positive_int(columns, "columns")
    n = 1 + len(maps)
    cols = min(int(columns), n)
    rows = -(-n // cols)
    row_inches, head = PANEL_INCHES + 0.15, 0.4 if title else 0.0
    fig = figure((PANEL_INCHES * cols, row_inches * rows + 0.75 + head))
    # a row for the title (tight_layout keeps it clear of the panel titles), the panels, bars
    grid = fig.add_gridspec(rows + 2, cols,
                            height_ratios=[head / row_inches] + [1.0] * rows + [0.08])
    if title:
        axes = fig.add_subplot(grid[0, :])
        axes.axis("off")
        axes.text(0.5, 0.5, title, ha="center", va="center", fontsize=15,
                  transform=axes.transAxes)
    chars = max(12, int(PANEL_INCHES * 72 / (12 * 0.55)))  # characters per 12 pt title line
    axes = fig.add_subplot(grid[1, 0])
    axes.imshow(np.clip(image, 0, 1))
    _panel(axes, "image", "")
    kinds = set()
    for k, (name, value) in enumerate(maps.items(), start=1):
        axes = fig.add_subplot(grid[1 + k // cols, k % cols])
        kinds.add(_draw_map(axes, image, value, clip=clip))
        _panel(axes, _wrap_title(str(name), chars), "")
    _colour_bars(fig, grid, rows + 1, cols, kinds)
    return save(fig, path)


def _wrap_title(text: str, chars: int) -> str:
    """`text` in lines of at most `chars` characters, broken after " · " where it has them."""
    import textwrap

    lines = []
    for part in text.split(" · "):
        if lines and len(lines[-1]) + 3 + len(part) <= chars:
            lines[-1] += " · " + part
        else:
            if lines:
                lines[-1] += " ·"
            lines += textwrap.wrap(part, chars, break_on_hyphens=False) or [""]
    return "\n".join(lines)


def _draw_map(axes, image, value, *, clip: float = 99.5) -> str:
    """Draw one map of one image in `axes`; returns its kind, "signed" or "heat".

    A pixel map (H, W, C) is summed over channels and drawn with RdBu_r on ±the `clip`
    percentile of |map| (its max |value| where that percentile is 0) over a faint grey copy of
    the image; a (h, w) map is upsampled to the image, min–max normalised and drawn as inferno
    heat over the image.
    """
    value = np.asarray(value, np.float32)
    image = np.clip(np.asarray(image, np.float32), 0, 1)
    if value.ndim == 3:  # a pixel map: signed, diverging, symmetric
        signed = value.sum(axis=-1)
        magnitude = np.abs(signed)
        bound = float(np.percentile(magnitude, clip)) or float(magnitude.max()) or 1.0
        axes.imshow(image.mean(axis=-1), cmap="gray", vmin=0, vmax=1)
        axes.imshow(signed, cmap="RdBu_r", vmin=-bound, vmax=bound, alpha=0.85)
        return "signed"
    heat = visualize.normalize(visualize.upsample(value[None], image.shape[:2]), "minmax")[0]
    axes.imshow(image)
    axes.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=0.55)
    return "heat"


def _colour_bars(fig, grid, row: int, cols: int, kinds) -> None:
    """Horizontal colour bars in `grid`'s row `row`: one for signed maps, one for heat."""
    from matplotlib import cm, colors

    bars = [b for b in (("signed", "RdBu_r", SIGNED_LABEL), ("heat", "inferno", HEAT_LABEL))
            if b[0] in kinds]
    for k, (kind, cmap, label) in enumerate(bars):
        span = slice(k * cols // len(bars), (k + 1) * cols // len(bars))
        axes = fig.add_subplot(grid[row, span])
        low = -1 if kind == "signed" else 0
        bar = fig.colorbar(cm.ScalarMappable(colors.Normalize(low, 1), cmap=cmap), cax=axes,
                           orientation="horizontal")
        bar.set_label(label, fontsize=11)
        if kind == "signed":
            bar.set_ticks([-1, 0, 1], labels=["lowers", "0", "raises"], fontsize=11)
        else:
            bar.set_ticks([0, 1], labels=["low", "high"], fontsize=11)


def _panel(axes, title: str, ylabel: str) -> None:
    axes.set_xticks([])
    axes.set_yticks([])
    if title:
        axes.set_title(title, fontsize=12)
    if ylabel:
        axes.set_ylabel(ylabel, fontsize=12)
