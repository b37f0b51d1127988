"""Turning raw attributions into pictures. NumPy, SciPy and Pillow only; never a model.

Pixel methods give signed (N, H, W, C) maps, CAM methods (N, h, w). The steps are separate
functions so any recipe can be composed: reduce channels → clip percentiles → normalise →
(upsample) → colour → overlay → grid → PNG. `to_display` is the RectGrad paper's recipe;
`to_display_symmetric` keeps sparse maps' support visible. Titles are drawn with the DejaVu Sans
font file matplotlib ships (found, not imported), else Pillow's scalable default font.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsal.checks import fraction, integer, number, positive_int
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
    low, high = number(low, "low", low=0, high=100), number(high, "high", low=0, high=100)
    if not low < high:
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
    if len(pair) != 2:
        raise TfsalError(f"expected size an int or a (height, width) pair, received {size!r}")
    height, width = (integer(v, "size", low=1, high=16384, note="or a (height, width) pair of "
                             "them") for v in pair)
    order = integer(order, "order", low=0, high=5, note="a spline order")
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
    alpha = fraction(alpha, "alpha")
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


def to_display_symmetric(maps, *, reduction: str = "sum", percentile: float = 99.0,
                         floor: float = 0.0) -> np.ndarray:
    """Signed maps on a symmetric range that keeps sparsity visible: zero is white, and each
    map's range is ±the `percentile` of its NON-ZERO |values| (a map 99 % zeros is not clipped
    to nothing, as `to_display`'s percentiles of all values would do).

    Args:
        maps: attributions (N, H, W, C) or (N, H, W).
        reduction: how channels are combined (see `reduce_channels`).
        percentile: in (0, 100]; 100 is each map's max |value|.
        floor: in [0, 1): the colour strength of the weakest non-zero value, so that every
            non-zero pixel is tinted (e.g. 0.25 for a threshold sweep) and the coloured area is
            the map's support; 0 draws strength in proportion to |value|.

    Returns:
        uint8 RGB (N, H, W, 3): blue negative, white zero, red positive.

    Example:
        >>> rgb = to_display_symmetric(tfsal.rectgrad(model, images, percentile=99), floor=0.25)
        >>> save_png(rgb[0], "sparse.png")
    """
    percentile = number(percentile, "percentile", low=0, high=100, low_open=True)
    floor = fraction(floor, "floor", high_open=True)
    reduced = reduce_channels(maps, reduction).astype(np.float64)
    out = np.zeros_like(reduced)
    for i, one in enumerate(reduced):
        nonzero = np.abs(one[one != 0])
        if not nonzero.size:
            continue
        bound = float(np.percentile(nonzero, percentile)) or float(nonzero.max())
        strength = np.clip(np.abs(one) / bound, 0, 1)
        strength = np.where(one != 0, floor + (1 - floor) * strength, 0.0)
        out[i] = np.sign(one) * strength
    return colorize(out, "diverging")


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


MIN_FONT_PX = 16  # title font size on small panels (ink ≥ 14 px for text with a descender)


def font_file() -> str | None:
    """The TrueType font titles are drawn with: DejaVu Sans as matplotlib ships it (found
    without importing matplotlib), or None when matplotlib is not installed."""
    try:
        spec = importlib.util.find_spec("matplotlib")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if path.is_file():
            return str(path)
    return None


@functools.lru_cache(maxsize=32)
def _truetype(path: str | None, size: int):
    from PIL import ImageFont

    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    try:  # Pillow ≥ 10.1: a scalable default font
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow: the 11 px bitmap font, better than nothing
        return ImageFont.load_default()


def title_font(size: int):
    """A PIL font `size` px high: matplotlib's DejaVu Sans, else Pillow's scalable default.

    Example:
        >>> ImageDraw.Draw(sheet).text((4, 4), "RectGrad", font=title_font(18), fill="black")
    """
    return _truetype(font_file(), int(size))


def title_size(cell_h: int, cell_w: int) -> int:
    """Title font size in px for panels of cell_h × cell_w px: 16 px up to 144 px panels, then
    a ninth of the smaller side (21 px for 192 px panels, 25 px for 224 px ones)."""
    return max(MIN_FONT_PX, round(min(cell_h, cell_w) / 9))


def _line_height(font) -> int:
    if hasattr(font, "getmetrics"):
        ascent, descent = font.getmetrics()
        return ascent + descent
    box = font.getbbox("Ag")
    return box[3] - min(0, box[1]) + 2


def _ink_width(font, text: str) -> int:
    if not text:
        return 0
    box = font.getbbox(text)
    return box[2] - box[0]


def wrap_text(text: str, font, width: int, *, break_words: bool = True) -> list[str]:
    """`text` as lines no wider than `width` px in `font`: explicit newlines kept, lines broken
    after spaces, "_", "-" and "/", and a word too wide on its own broken between letters
    (left whole, overflowing, with `break_words=False`)."""
    lines = []
    for paragraph in str(text).split("\n"):
        line = ""
        for piece in re.split(r"(?<=[ _\-/])", paragraph):
            if not piece:
                continue
            if _ink_width(font, (line + piece).rstrip()) <= width:
                line += piece
                continue
            if line.strip():
                lines.append(line.rstrip())
            line = ""
            for char in piece if break_words else [piece]:
                if line and _ink_width(font, (line + char).rstrip()) > width:
                    lines.append(line.rstrip())
                    line = ""
                line += char
        lines.append(line.rstrip())
    return lines


def fit_text(text: str, size: int, width: int, *, smallest: int = 12) -> tuple[int, list[str]]:
    """(font size, lines) of `text` in at most `width` px: wrapped at word breaks at `size`;
    if a word is still too wide, the largest size down to `smallest` at which every word fits;
    else broken between letters at `smallest`."""
    for s in range(int(size), min(int(size), int(smallest)) - 1, -1):
        font = title_font(s)
        lines = wrap_text(text, font, width, break_words=False)
        if max(_ink_width(font, line) for line in lines) <= width:
            return s, lines
    s = min(int(size), int(smallest))
    return s, wrap_text(text, title_font(s), width)


@dataclass(frozen=True)
class GridLayout:
    """Where `grid` puts everything: the sheet's (width, height), the title margins (`left`,
    `top`), the cell size, the padding, the title font size and the wrapped title lines."""

    size: tuple[int, int]
    left: int
    top: int
    cell: tuple[int, int]  # (width, height) in px, after scaling
    pad: int
    font_size: int  # the size of row titles and of the column titles that fit at it
    col_titles: tuple  # per column: (font size, wrapped lines)
    row_lines: tuple  # per row: wrapped lines at font_size

    def origin(self, row: int, col: int) -> tuple[int, int]:
        """(x, y) of the top-left pixel of the panel in `row`, `col`."""
        return (self.left + self.pad + col * (self.cell[0] + self.pad),
                self.top + self.pad + row * (self.cell[1] + self.pad))


def _checked_grid(panels, row_titles, col_titles, pad, scale):
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
    positive_int(scale, "scale")
    integer(pad, "pad", low=0)
    for titles in (row_titles, col_titles):
        if titles is not None and (isinstance(titles, str) or not hasattr(titles, "__len__")
                                   or not all(isinstance(t, str) for t in titles)):
            raise TfsalError(f"expected titles a sequence of strings, received {titles!r}")
    n_cols = max(len(r) for r in rows)
    for titles, count, what in ((row_titles, len(rows), "row"), (col_titles, n_cols, "column")):
        if titles is not None and len(titles) != count:
            raise TfsalError(f"expected {count} {what} titles, received {len(titles)}")
    return rows, cells, n_cols


def grid_layout(panels, *, row_titles=None, col_titles=None, pad: int = 4, scale: int = 1,
                frame: bool = False) -> GridLayout:
    """The layout `grid` draws with the same arguments (e.g. to find a panel in the sheet);
    `frame` is accepted so that `grid_layout(**kwargs)` takes `grid(**kwargs)`'s arguments.

    Column titles are centred over their column and fitted to its width (`fit_text`); row
    titles are wrapped to twice the cell width (at least ten font sizes). The font is
    `title_font` at `title_size` of the scaled cell.

    Example:
        >>> layout = grid_layout(rows, col_titles=names, scale=3)
        >>> x, y = layout.origin(0, 1)  # the second panel of the first row
    """
    rows, cells, n_cols = _checked_grid(panels, row_titles, col_titles, pad, scale)
    cell_h = max(c.shape[0] for c in cells) * scale
    cell_w = max(c.shape[1] for c in cells) * scale
    size = title_size(cell_h, cell_w)
    font = title_font(size)
    fitted = tuple((s, tuple(lines)) for s, lines in (fit_text(t, size, cell_w)
                                                     for t in col_titles or ()))
    row_width = max(cell_w * 2, size * 10)
    row_lines = tuple(tuple(wrap_text(t, font, row_width)) for t in row_titles or ())
    left = (max(_ink_width(font, s) for t in row_lines for s in t) + pad) if row_titles else 0
    top = (max(len(lines) * _line_height(title_font(s)) for s, lines in fitted) + pad
           if col_titles else 0)
    width = left + n_cols * (cell_w + pad) + pad
    height = top + len(rows) * (cell_h + pad) + pad
    return GridLayout((width, height), left, top, (cell_w, cell_h), pad, size, fitted,
                      row_lines)


def grid(panels, *, row_titles=None, col_titles=None, pad: int = 4, scale: int = 1,
         frame: bool = False):
    """Arrange uint8 RGB panels (rows of (H, W, 3) arrays, None for empty) in a titled sheet.

    Titles are drawn in DejaVu Sans (`title_font`; Pillow's scalable default font without
    matplotlib) at a size that grows with the panels (`title_size`: 16 px up to 144 px panels,
    21 px for 192 px ones); a column title wider than its column wraps onto more lines, and
    shrinks (down to 12 px) if one word alone is too wide (`fit_text`), so titles never overlap.

    Args:
        panels: list of rows, each a list of uint8 (H, W, 3) arrays or None.
        row_titles: one string per row (drawn left of it) or None.
        col_titles: one string per column (drawn above it) or None.
        pad: pixels between cells.
        scale: integer nearest-neighbour magnification of every panel.
        frame: a 1 px light-grey line around each panel, in the padding (needs pad ≥ 2), so
            maps that are white at their edges (zero attribution) still show where they end.

    Returns:
        a PIL.Image (RGB, white background); `grid_layout` says where each panel lies.

    Example:
        >>> sheet = grid([[img, heat]], col_titles=["image", "grad"], scale=3)
        >>> save_png(sheet, "sheet.png")
    """
    from PIL import Image, ImageDraw

    layout = grid_layout(panels, row_titles=row_titles, col_titles=col_titles, pad=pad,
                         scale=scale)
    rows = [list(r) for r in panels]
    cell_w, cell_h = layout.cell
    sheet = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(sheet)

    def text(x, y, s, font):
        if s:
            draw.text((x - font.getbbox(s)[0], y), s, font=font, fill="black")

    for c, (size, lines) in enumerate(layout.col_titles):
        font = title_font(size)
        x0, line = layout.origin(0, c)[0], _line_height(font)
        for k, s in enumerate(lines):
            text(x0 + (cell_w - _ink_width(font, s)) // 2, pad // 2 + k * line, s, font)
    font = title_font(layout.font_size)
    line = _line_height(font)
    for r, row in enumerate(rows):
        x0, y0 = layout.origin(r, 0)
        if row_titles:
            lines = layout.row_lines[r]
            y = y0 + (cell_h - len(lines) * line) // 2
            for k, s in enumerate(lines):
                text(pad // 2, y + k * line, s, font)
        for c, cell in enumerate(row):
            if cell is None:
                continue
            tile = Image.fromarray(cell).resize((cell.shape[1] * scale, cell.shape[0] * scale),
                                                Image.NEAREST)
            x, y = layout.origin(r, c)
            sheet.paste(tile, (x, y))
            if frame and pad >= 2:
                draw.rectangle((x - 1, y - 1, x + tile.width, y + tile.height),
                               outline=(190, 190, 190))
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
