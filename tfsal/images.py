"""Checking images handed to tfsal, and reading image files into tfsal's pixel space."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError


def float_array(value, what: str) -> np.ndarray:
    """`np.asarray(value, float32)`, or a TfsalError naming `what` for non-numeric input."""
    try:
        arr = np.asarray(value)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                       or arr.dtype == bool) \
                or np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError
        return arr.astype(np.float32)
    except (ValueError, TypeError):
        raise TfsalError(f"expected {what} as a real numeric array, received "
                         f"{type(value).__name__}") from None


def _image_array(images) -> np.ndarray:
    try:
        return np.asarray(images)
    except (ValueError, TypeError):
        raise TfsalError("expected images as a numeric array (N, H, W, 3), received a ragged "
                         f"or mixed {type(images).__name__}") from None


def as_batch(images) -> np.ndarray:
    """Convert NumPy/TensorFlow input to a float32 (N, H, W, 3) array, checking shape only."""
    arr = _image_array(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        hint = " (for one image use images[None])" if arr.ndim == 3 else ""
        raise TfsalError(f"expected images of shape (N, H, W, 3), received shape {arr.shape}{hint}")
    if arr.shape[0] == 0:
        raise TfsalError("expected at least one image, received an empty batch (0, H, W, 3)")
    if 0 in arr.shape[1:3]:
        raise TfsalError(f"expected images of at least 1x1 pixels, received shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or arr.dtype == bool:
        raise TfsalError(f"expected float32 images, received dtype {arr.dtype}")
    return arr.astype(np.float32, copy=False)


def check_images(images) -> np.ndarray:
    """Validate user images: float RGB in [0, 1] of shape (N, H, W, 3), finite.

    Returns:
        float32 array (N, H, W, 3) (a view of the input when it already is one).

    Raises:
        TfsalError: for a wrong rank/shape/channel count, integer dtypes, NaN/inf or values
            outside [0, 1].
    """
    arr = _image_array(images)
    if np.issubdtype(arr.dtype, np.integer):
        raise TfsalError(f"expected float images in [0, 1], received dtype {arr.dtype} "
                         "(for uint8 images divide by 255)")
    arr = as_batch(arr)
    if not np.all(np.isfinite(arr)):
        raise TfsalError(f"expected finite pixel values, received {int(np.sum(~np.isfinite(arr)))} "
                         "NaN/inf values")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise TfsalError("expected pixel values in [0, 1], received values in "
                         f"[{lo:.4g}, {hi:.4g}]")
    return arr


def load_image(path, size: tuple[int, int] | None = None) -> tuple[np.ndarray, str | None]:
    """Read a PNG/JPEG file as float32 RGB (H, W, 3) in [0, 1], optionally resized.

    Args:
        path: the image file.
        size: (height, width) to resize to, or None to keep the file's size.

    Returns:
        (image, note): note says what was converted or resized, else None.

    Raises:
        TfsalError: if the file is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    notes = []
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode != "RGB":
                notes.append(f"converted {img.mode} to RGB")
                img = img.convert("RGB")
            if size is not None and (img.height, img.width) != tuple(size):
                notes.append(f"resized {img.width}x{img.height} to {size[1]}x{size[0]}")
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise TfsalError(f"expected an existing image file, received missing path {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise TfsalError(f"expected a readable PNG/JPEG image, received {path} ({exc})") from None
    return arr, ("; ".join(notes) or None)


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def find_images(inputs: list[Path]) -> list[tuple[Path, str]]:
    """(file, output stem) of every image named, or found in a named folder (recursively,
    sorted, by suffix). Stems of files in folders keep their sub-folders ("a__b__img"), and
    repeated stems get a counter, so no two inputs share output names.

    Raises:
        TfsalError: if no image is named or found.
    """
    found = []
    for item in inputs:
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*")
                               if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
                found.append((path, "__".join(path.relative_to(item).with_suffix("").parts)))
        else:
            found.append((item, item.stem))
    if not found:
        raise TfsalError(f"expected image files or folders holding images "
                         f"({', '.join(IMAGE_SUFFIXES)}), received none in "
                         f"{[str(p) for p in inputs]}")
    seen: dict[str, int] = {}
    unique = []
    for path, stem in found:  # two inputs with one name must not overwrite each other's maps
        seen[stem] = seen.get(stem, 0) + 1
        unique.append((path, stem if seen[stem] == 1 else f"{stem}_{seen[stem]}"))
    return unique
