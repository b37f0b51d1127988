"""Turning raw attributions into pictures. NumPy, SciPy and Pillow only; never a model.

Pixel methods give signed (N, H, W, C) maps, CAM methods (N, h, w). The steps are separate
functions so any recipe can be composed: reduce channels → clip percentiles → normalise →
(upsample) → colour → overlay → grid → PNG. `to_display` is the RectGrad paper's recipe.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import atomic_write

REDUCTIONS = ("mean", "sum", "max", "abs-max", "l2")
NORMALIZATIONS = ("minmax", "abs")

# Colour maps as anchor tables interpolated linearly: (position, (r, g, b)).
_CMAPS = {
    "heat": ((0.0, (0, 0, 0)), (0.35, (120, 20, 90)), (0.6, (220, 60, 30)),
             (0.85, (250, 180, 40)), (1.0, (255, 255, 220))),
    "gray": ((0.0, (0, 0, 0)), (1.0, (255, 255, 255))),
    "diverging": ((-1.0, (30, 60, 200)), (-0.5, (120, 160, 235)), (0.0, (255, 255, 255)),
                  (0.5, (240, 140, 110)), (1.0, (190, 20, 30))),
}


def _maps(maps, ranks: tuple[int, ...], what: str = "maps") -> np.ndarray:
    """Validated maps as float64 (computations cannot overflow; results are cast to float32)."""
    try:
        arr = np.asarray(maps)
    except (ValueError, TypeError):
        raise TfsalError(f"expected {what} as a numeric array, received a ragged or mixed "
                         f"{type(maps).__name__}") from None
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) \
            or np.issubdtype(arr.dtype, np.complexfloating):
        raise TfsalError(f"expected numeric {what}, received dtype {arr.dtype}")
    if arr.ndim not in ranks:
        raise TfsalError(f"expected {what} of rank {' or '.join(map(str, ranks))}, received shape "
                         f"{arr.shape}")
    if 0 in arr.shape:
        raise TfsalError(f"expected non-empty {what}, received shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise TfsalError(f"expected finite {what}, received NaN or inf values")
    return arr


def _float32(arr: np.ndarray, what: str) -> np.ndarray:
    """Cast a result to float32, refusing values float32 cannot hold."""
    out = arr.astype(np.float32)
    if not np.all(np.isfinite(out)):
        raise TfsalError(f"expected {what} within float32's range (|x| < 3.4e38), received "
                         f"values up to {np.abs(arr).max():.3g}")
    return out


def reduce_channels(maps, reduction: str = "mean") -> np.ndarray:
    """Collapse the channel axis of (N, H, W, C) maps; (N, H, W) maps pass unchanged.

    Args:
        maps: attributions (N, H, W, C) or (N, H, W).
        reduction: "mean", "sum", "max", "abs-max" (max of |value|) or "l2" (Euclidean norm).

    Returns:
        float32 (N, H, W).

    Raises:
        TfsalError: for an unknown reduction or a wrong rank.

    Example:
        >>> heat = reduce_channels(grads, "abs-max")
        >>> heat.shape == grads.shape[:3]
    """
    arr = _maps(maps, (3, 4))
    if reduction not in REDUCTIONS:
        raise TfsalError(f"expected reduction in {REDUCTIONS}, received {reduction!r}")
    if arr.ndim == 3:
        return _float32(arr, "maps")
    reduce = {"mean": lambda a: a.mean(axis=-1), "sum": lambda a: a.sum(axis=-1),
              "max": lambda a: a.max(axis=-1), "abs-max": lambda a: np.abs(a).max(axis=-1),
              "l2": lambda a: np.sqrt(np.square(a).sum(axis=-1))}[reduction]
    return _float32(reduce(arr), f"the {reduction} of the channels")


def clip_percentile(maps, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Clip each map to its own [low, high] percentiles (RectGrad paper: 0.5 and 99.5).

    Returns:
        float32 array shaped like `maps`.

    Example:
        >>> clipped = clip_percentile(reduce_channels(ig, "sum"))
        >>> clipped.shape
    """
    arr = _maps(maps, (3, 4))
    numbers = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
                  for v in (low, high))
    if not numbers or not 0 <= low < high <= 100:
        raise TfsalError(f"expected numbers 0 ≤ low < high ≤ 100, received low={low!r}, "
                         f"high={high!r}")
    flat = arr.reshape(len(arr), -1)
    lo, hi = np.percentile(flat, [low, high], axis=1)
    return _float32(np.clip(flat, lo[:, None], hi[:, None]).reshape(arr.shape), "maps")


def normalize(maps, mode: str = "minmax") -> np.ndarray:
    """Rescale each map: "minmax" to [0, 1]; "abs" divides by max |value| (→ [-1, 1], zero and
    sign kept). Constant maps become zeros, never NaN.

    Example:
        >>> unit = normalize(heat)
        >>> float(unit.min()), float(unit.max())
    """
    arr = _maps(maps, (3, 4))
    if mode not in NORMALIZATIONS:
        raise TfsalError(f"expected mode in {NORMALIZATIONS}, received {mode!r}")
    flat = arr.reshape(len(arr), -1)
    if mode == "minmax":
        lo = flat.min(axis=1, keepdims=True)
        span = flat.max(axis=1, keepdims=True) - lo
        out = np.divide(flat - lo, span, out=np.zeros_like(flat), where=span > 0)
    else:
        scale = np.abs(flat).max(axis=1, keepdims=True)
        out = np.divide(flat, scale, out=np.zeros_like(flat), where=scale > 0)
    return out.reshape(arr.shape).astype(np.float32)


def upsample(maps, size, order: int = 1) -> np.ndarray:
    """Resize (N, h, w) maps to (N, H, W) — e.g. CAM maps to image size (bilinear by default).

    Args:
        maps: (N, h, w).
        size: H (square) or (H, W).
        order: spline order (0 nearest, 1 bilinear, 3 cubic).

    Example:
        >>> big = upsample(tfsal.grad_cam(model, images), images.shape[1:3])
        >>> big.shape[1:] == images.shape[1:3]
    """
    from scipy.ndimage import zoom

    arr = _maps(maps, (3,))
    pair = (size, size) if np.isscalar(size) else tuple(np.ravel(size))
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and 1 <= v <= 16384 for v in pair):
        raise TfsalError(f"expected size an int in [1, 16384] or a (height, width) pair of "
                         f"them, received {size!r}")
    if order not in range(6) or isinstance(order, bool):
        raise TfsalError(f"expected order an int spline order in 0…5, received {order!r}")
    height, width = int(pair[0]), int(pair[1])
    factors = (1, height / arr.shape[1], width / arr.shape[2])
    # grid_mode aligns pixel areas (not centres), as image resizing does.
    out = zoom(arr, factors, order=order, mode="nearest", grid_mode=True)
    return out[:, :height, :width].astype(np.float32)


def colorize(maps, cmap: str = "heat") -> np.ndarray:
    """Colour normalised (N, H, W) maps: "heat"/"gray" take [0, 1], "diverging" [-1, 1]
    (blue negative, white zero, red positive). Values outside are clipped.

    Returns:
        uint8 RGB (N, H, W, 3).

    Example:
        >>> rgb = colorize(normalize(heat), "heat")
        >>> rgb.dtype
    """
    arr = _maps(maps, (3,))
    if not isinstance(cmap, str) or cmap not in _CMAPS:
        raise TfsalError(f"expected cmap in {tuple(_CMAPS)}, received {cmap!r}")
    positions = np.array([p for p, _ in _CMAPS[cmap]], np.float32)
    colours = np.array([c for _, c in _CMAPS[cmap]], np.float32)
    values = np.clip(arr, positions[0], positions[-1])
    rgb = np.stack([np.interp(values, positions, colours[:, k]) for k in range(3)], axis=-1)
    return np.round(rgb).astype(np.uint8)


def overlay(images, maps, *, alpha: float = 0.5, cmap: str = "heat") -> np.ndarray:
    """Blend coloured maps over images.

    Args:
        images: float (N, H, W, 3) in [0, 1].
        maps: normalised (N, h, w); upsampled to the image size if needed.
        alpha: weight of the map (0 = image only).
        cmap: colour map name.

    Returns:
        uint8 RGB (N, H, W, 3).

    Example:
        >>> pics = overlay(images, normalize(upsample(cams, 64)))
        >>> pics.shape == images.shape
    """
    imgs = _maps(images, (4,), "images")
    arr = _maps(maps, (3,))
    if imgs.shape[-1] != 3:
        raise TfsalError(f"expected RGB images (N, H, W, 3), received shape {imgs.shape}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) \
            or not 0 <= alpha <= 1:
        raise TfsalError(f"expected alpha in [0, 1], received {alpha}")
    if len(arr) != len(imgs):
        raise TfsalError(f"expected one map per image ({len(imgs)}), received {len(arr)}")
    if arr.shape[1:] != imgs.shape[1:3]:
        arr = upsample(arr, imgs.shape[1:3])
    colour = colorize(arr, cmap).astype(np.float32)
    blend = (1 - alpha) * np.clip(imgs, 0, 1) * 255 + alpha * colour
    return np.round(blend).astype(np.uint8)


def to_display(maps, *, reduction: str = "sum", signed: bool = True,
               clip: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """One-call picture of attributions: reduce channels, clip percentiles, then a symmetric
    diverging map (signed) or min–max heat map — the RectGrad paper's visualisation.

    Returns:
        uint8 RGB (N, H, W, 3).

    Example:
        >>> rgb = to_display(tfsal.integrated_gradients(model, images))
        >>> save_png(rgb[0], "ig.png")
    """
    if not isinstance(clip, (tuple, list)) or len(clip) != 2:
        raise TfsalError(f"expected clip a (low, high) pair of percentiles, received {clip!r}")
    reduced = clip_percentile(reduce_channels(maps, reduction), *clip)
    if signed:
        return colorize(normalize(reduced, "abs"), "diverging")
    return colorize(normalize(reduced, "minmax"), "heat")


def render(image: np.ndarray, attribution: np.ndarray) -> np.ndarray:
    """A uint8 RGB picture of one map of one image: pixel maps (H, W, C) as `to_display` draws
    them, CAM-family maps (h, w) as a heat overlay upsampled onto the image.

    Example:
        >>> save_png(render(images[0], tfsal.grad_cam(model, images)[0]), "cam.png")
    """
    attribution = np.asarray(attribution)
    if attribution.ndim == 3:
        return to_display(attribution[None])[0]
    heat = normalize(upsample(attribution[None], np.shape(image)[:2]), "minmax")
    return overlay(np.asarray(image)[None], heat)[0]


def grid(panels, *, row_titles=None, col_titles=None, pad: int = 4, scale: int = 1):
    """Arrange uint8 RGB panels (rows of (H, W, 3) arrays, None for empty) in a titled sheet.

    Args:
        panels: list of rows, each a list of uint8 (H, W, 3) arrays or None.
        row_titles: one string per row (drawn left of it) or None.
        col_titles: one string per column (drawn above it) or None.
        pad: pixels between cells.
        scale: integer nearest-neighbour magnification of every panel.

    Returns:
        a PIL.Image (RGB, white background).

    Example:
        >>> sheet = grid([[img, heat]], col_titles=["image", "grad"], scale=3)
        >>> save_png(sheet, "sheet.png")
    """
    from PIL import Image, ImageDraw

    try:
        rows = [list(r) for r in panels]
    except TypeError:
        raise TfsalError(f"expected panels a list of rows (lists of images), received "
                         f"{type(panels).__name__}") from None
    cells = [c for r in rows for c in r if c is not None]
    if not cells:
        raise TfsalError("expected at least one panel, received none")
    for cell in cells:
        if not isinstance(cell, np.ndarray) or cell.dtype != np.uint8 or cell.ndim != 3 \
                or cell.shape[-1] != 3 or 0 in cell.shape:
            raise TfsalError(f"expected uint8 (H, W, 3) panels, received "
                             f"{getattr(cell, 'dtype', type(cell).__name__)} "
                             f"{getattr(cell, 'shape', '')}")
    for value, name, low in ((scale, "scale", 1), (pad, "pad", 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise TfsalError(f"expected {name} an int ≥ {low}, received {value!r}")
    for titles in (row_titles, col_titles):
        if titles is not None and (isinstance(titles, str) or not hasattr(titles, "__len__")
                                   or not all(isinstance(t, str) for t in titles)):
            raise TfsalError(f"expected titles a sequence of strings, received {titles!r}")
    cell_h = max(c.shape[0] for c in cells) * scale
    cell_w = max(c.shape[1] for c in cells) * scale
    n_cols = max(len(r) for r in rows)
    for titles, count, what in ((row_titles, len(rows), "row"), (col_titles, n_cols, "column")):
        if titles is not None and len(titles) != count:
            raise TfsalError(f"expected {count} {what} titles, received {len(titles)}")
    line = 12  # Pillow's default bitmap font height
    left = (max(len(t) for t in row_titles) * 6 + pad) if row_titles else 0
    top = (line + pad) if col_titles else 0
    width = left + n_cols * (cell_w + pad) + pad
    height = top + len(rows) * (cell_h + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    for c, title in enumerate(col_titles or []):
        draw.text((left + pad + c * (cell_w + pad), pad // 2), str(title), fill="black")
    for r, row in enumerate(rows):
        y = top + pad + r * (cell_h + pad)
        if row_titles:
            draw.text((pad // 2, y + cell_h // 2 - line // 2), str(row_titles[r]), fill="black")
        for c, cell in enumerate(row):
            if cell is None:
                continue
            arr = cell  # validated above
            tile = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale),
                                               Image.NEAREST)
            sheet.paste(tile, (left + pad + c * (cell_w + pad), y))
    return sheet


def save_png(image, path) -> Path:
    """Write a PIL image or uint8 (H, W, 3) array as PNG, atomically (temporary file + rename).

    Returns:
        the written path.

    Example:
        >>> save_png(to_display(maps)[0], "out/map.png")
        PosixPath('out/map.png')
    """
    from PIL import Image

    path = Path(path)
    if not isinstance(image, Image.Image):
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or 0 in arr.shape \
                or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
            raise TfsalError(f"expected a uint8 (H, W[, 3]) array or PIL image, received "
                             f"{arr.dtype} {arr.shape}")
        image = Image.fromarray(arr)
    with atomic_write(path) as handle:
        image.save(handle, format="PNG")
    return path
