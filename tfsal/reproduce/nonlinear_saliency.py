"""Nonlinear-saliency-maps paper: its four figures, drawn from computed results.

Every function here is a pure function of a `tfsal.Trajectory` or `tfsal.SelectiveBlur`
(or of plain arrays); none calls a model.

- Figure 1, `snapshot_strip`: an item's modified image at the end of each level (0 %, 5 %, …,
  95 % of the pixels blurred), its masked saliency maps below.
- Figure 2, `probability_figure`: target-class probability against the % of pixels blurred.
- Figure 3, `linear_vs_nonlinear`: original image, linear map, nonlinear map.
- Figure 4, `selective_blur_figure`: each target's probability before and after blurring only
  its salient pixels.

Figures 1 and 3 are Pillow pictures (`tfsal.visualize.grid`); figures 2 and 4 are plots written
with matplotlib (the `plot` extra), imported only when they are drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsal import plots, visualize
from tfsal.checks import integer
from tfsal.errors import TfsalError

PANEL_INCHES = (3.0, 2.5)  # one Figure 2 panel (width, height)
MAX_COLUMNS = 4  # Figure 2 panels per row
DPI = plots.DPI


# ------------------------------------------------------------------------ Figures 1 and 3
def snapshot_strip(trajectory, item: int, *, scale: int = 1) -> np.ndarray:
    """Figure 1 for one item: snapshots at the end of each level, masked maps below.

    Args:
        trajectory: a `tfsal.Trajectory`.
        item: index of the (image, target) item, in [0, M).
        scale: integer magnification of every panel.

    Returns:
        uint8 RGB (h, w, 3): two rows ("image", "map") of L panels, titled by level in %.

    Raises:
        TfsalError: for an item index out of range.

    Example:
        >>> strip = snapshot_strip(tfsal.nonlinear_saliency(model, images), 0)
        >>> tfsal.visualize.save_png(strip, "strip.png")
    """
    item = _check_items(trajectory, [item])[0]
    rows = [[_to_uint8(x) for x in trajectory.images[item]],
            [_to_uint8(x) for x in trajectory.maps[item]]]
    titles = [percent_label(level) for level in trajectory.levels]
    sheet = visualize.grid(rows, row_titles=["image", "map"], col_titles=titles, scale=scale)
    return np.asarray(sheet)


def linear_vs_nonlinear(image, linear_map, nonlinear_map, *, scale: int = 1) -> np.ndarray:
    """Figure 3 for one item: original image, linear map and nonlinear map side by side.

    Args:
        image: float (H, W, 3) in [0, 1], the original image.
        linear_map, nonlinear_map: float (H, W, 3) in [0, 1], masked maps at the same level
            (e.g. `trajectory.maps[item, -1]` of a linear and a nonlinear trajectory).
        scale: integer magnification of every panel.

    Returns:
        uint8 RGB (h, w, 3), columns titled "image", "linear", "nonlinear".

    Raises:
        TfsalError: if the three arrays are not of one (H, W, 3) shape.

    Example:
        >>> row = linear_vs_nonlinear(images[0], lin.maps[0, -1], nonlin.maps[0, -1])
        >>> tfsal.visualize.save_png(row, "fig3.png")
    """
    panels = [np.asarray(a) for a in (image, linear_map, nonlinear_map)]
    shapes = {p.shape for p in panels}
    if len(shapes) != 1 or panels[0].ndim != 3 or panels[0].shape[-1] != 3:
        raise TfsalError(f"expected image and maps of one shape (H, W, 3), received shapes "
                         f"{[p.shape for p in panels]}")
    sheet = visualize.grid([[_to_uint8(p) for p in panels]],
                           col_titles=["image", "linear", "nonlinear"], scale=scale)
    return np.asarray(sheet)


# ------------------------------------------------------------------------ Figures 2 and 4
def probability_figure(trajectory, path, *, items=None, class_names=None, item_labels=None,
                       compare=None) -> Path:
    """Figure 2: target probability against the % of pixels blurred, one panel per item.

    The x value of step k ≥ 1 is the level of that step (`trajectory.step_levels`) in %, of
    step 0 (the original image) 0 %; the steps of one level share an x value.

    Args:
        trajectory: a `tfsal.Trajectory`.
        path: the PNG file to write.
        items: indices of the items to draw (default: all).
        class_names: names indexed by class, for the panel titles (default: "class <c>").
        item_labels: one prefix per item of the trajectory (e.g. the image file's stem).
        compare: another `Trajectory` of the same items and steps (e.g. the linear one),
            drawn dashed in the same panels.

    Returns:
        the written path. Panels are `PANEL_INCHES` at `DPI`, up to `MAX_COLUMNS` a row.

    Raises:
        TfsalError: without matplotlib, for bad items or a mismatched `compare`.

    Example:
        >>> probability_figure(tfsal.nonlinear_saliency(model, images), "fig2.png")
        PosixPath('fig2.png')
    """
    items = _check_items(trajectory, range(len(trajectory.targets)) if items is None else items)
    _check_compare(trajectory, compare)
    _check_labels(item_labels, len(trajectory.targets))
    cols = min(MAX_COLUMNS, len(items))
    rows = -(-len(items) // cols)
    figure = plots.figure((PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows))
    x = blurred_percent(trajectory)
    for k, item in enumerate(items):
        axes = figure.add_subplot(rows, cols, k + 1)
        for t in (trajectory, compare):
            if t is not None:
                axes.plot(x, t.target_probability[item], "--" if t is compare else "-",
                          marker=".", label="linear" if t.linear else "nonlinear")
        axes.set_title(_title(trajectory, item, class_names, item_labels), fontsize=9)
        axes.set(xlim=(-2, 100), ylim=(-0.03, 1.03), xlabel="% pixels blurred",
                 ylabel="probability")
        if compare is not None:
            axes.legend(fontsize=7)
    return plots.save(figure, path)


def selective_blur_figure(result, path, *, class_names=None, item_labels=None) -> Path:
    """Figure 4: per item, its target's probability before and after selective blurring.

    Args:
        result: a `tfsal.SelectiveBlur`.
        path: the PNG file to write.
        class_names: names indexed by class, for the bar labels (default: "class <c>").
        item_labels: one prefix per item (e.g. the image file's stem).

    Returns:
        the written path.

    Raises:
        TfsalError: without matplotlib, or for a wrong number of item labels.

    Example:
        >>> blurred = tfsal.selective_blur(model, images, t.maps[:, -1] - 1, t.targets)
        >>> selective_blur_figure(blurred, "fig4.png")
    """
    n = len(result.targets)
    _check_labels(item_labels, n)
    rows = np.arange(n)
    before = result.before[rows, result.targets]
    after = result.after[rows, result.targets]
    figure = plots.figure((max(4.0, 0.7 * n + 1.5), 3.5))
    axes = figure.add_subplot(1, 1, 1)
    axes.bar(rows - 0.2, before, width=0.4, label="before")
    axes.bar(rows + 0.2, after, width=0.4, label="after blurring salient pixels")
    labels = [_title(result, i, class_names, item_labels) for i in rows]
    axes.set_xticks(rows, labels, rotation=30, ha="right", fontsize=8)
    axes.set(ylim=(0, 1.05), ylabel="target probability")
    axes.legend(fontsize=8)
    return plots.save(figure, path)


def blurred_percent(trajectory) -> np.ndarray:
    """(S + 1,) the x axis of Figure 2: 0 for step 0, then each step's level in %."""
    return np.concatenate([[0.0], 100.0 * np.asarray(trajectory.step_levels, np.float64)])


def percent_label(level: float) -> str:
    """A level as a column title: 0.05 → "5%" (float32 noise rounded away)."""
    return f"{round(float(level) * 100, 1):g}%"


# ------------------------------------------------------------------------ helpers
def _to_uint8(image) -> np.ndarray:
    return np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)


def _check_items(trajectory, items) -> list[int]:
    m = len(trajectory.targets)
    chosen = list(items)
    if not chosen:
        raise TfsalError(f"expected item indices in [0, {m}), received none")
    return [integer(i, "item indices", low=0, high=m - 1) for i in chosen]


def _check_compare(trajectory, compare) -> None:
    if compare is None:
        return
    mine, theirs = trajectory.target_probability.shape, compare.target_probability.shape
    if mine != theirs or not np.array_equal(trajectory.targets, compare.targets):
        raise TfsalError(f"expected a compare trajectory of the same items and steps "
                         f"{mine}, received {theirs}")


def _check_labels(item_labels, n: int) -> None:
    if item_labels is not None and len(item_labels) != n:
        raise TfsalError(f"expected {n} item labels, received {len(item_labels)}")


def _title(result, item: int, class_names, item_labels) -> str:
    target = int(result.targets[item])
    name = class_names[target] if class_names and target < len(class_names) else f"class {target}"
    return name if item_labels is None else f"{item_labels[item]}: {name}"
