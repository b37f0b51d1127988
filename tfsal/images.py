"""Checking images handed to tfsal, and reading image files into tfsal's pixel space."""

from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path

import numpy as np

from tfsal.checks import integer
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


DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default Image.MAX_IMAGE_PIXELS (about 9459x9459)

# Pillow's pixel limit is a module global: load_image raises it only while it decodes one file
# whose limit is above Pillow's, and this lock keeps two such loads from restoring it out of order.
_PILLOW_LIMIT_LOCK = threading.Lock()

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


FITS = ("resize", "crop")


def load_image(path, size: tuple[int, int] | None = None,
               max_pixels: int | None = DEFAULT_MAX_PIXELS,
               fit: str = "resize") -> tuple[np.ndarray, str | None]:
    """Read an image file (PNG, JPEG, TIFF, BMP, GIF, WebP, ...) as float32 RGB (H, W, 3) in
    [0, 1], optionally resized (or centre-cropped to the size's aspect, then resized).

    What each Pillow mode becomes:

    - "RGB": pixel / 255, unchanged.
    - 8-bit modes ("1", "L", "P", "LA", "PA", "RGBA", "CMYK", "YCbCr", "RGBX", ...): converted
      to RGB by Pillow (alpha dropped, palette applied), then / 255.
    - 16-bit grayscale ("I;16", "I;16B", "I;16L", "I;16N"): / 65535, gray copied to R, G, B.
    - 32-bit integer grayscale ("I"): scaled by the integer type's range, as scikit-image's
      `img_as_float` does. A TIFF's BitsPerSample and SampleFormat tags give the type: unsigned
      N bits / (2**N - 1); signed N bits / (2**(N-1) - 1) with negative values clipped to 0.
      Without those tags (e.g. a 16-bit PGM, which Pillow opens as "I") values in 0..65535
      are read as 16-bit (/ 65535), others as signed 32-bit.
    - float grayscale ("F"): kept as is when every finite value is in [0, 1], else scaled from
      its own min..max to [0, 1]; NaN/inf become 0.

    High-bit-depth images are resized as floats (no rounding to 8 bits). An EXIF orientation
    (JPEG/TIFF/PNG/WebP) is applied first. The note says each step, e.g.
    "rotated per EXIF orientation 6; converted 16-bit grayscale (I;16) to RGB, scaled 0..65535
    to [0, 1]; resized 640x480 to 224x224".

    Args:
        path: the image file, or its bytes as a binary file object (errors name it by its
            str; `tfsal.beam` decodes images read from any Beam file system this way).
        size: (height, width) to resize to, or None to keep the file's size.
        max_pixels: refuse files whose declared width * height exceeds this, before decoding
            any pixels (a small file can declare a huge image: a "decompression bomb"). The
            default is Pillow's own default limit; None means no limit. Pillow's global
            `Image.MAX_IMAGE_PIXELS` is left as it was.
        fit: how an image of another aspect ratio meets `size`: "resize" squashes or
            stretches the whole image; "crop" cuts the largest centred part of `size`'s
            aspect ratio, then resizes it (as ImageNet models are evaluated). The crop box
            is `crop_box`. Nothing changes without `size`.

    Returns:
        (image, note): note says what was rotated, converted, scaled or resized, else None.

    Raises:
        TfsalError: if the file is missing, too large for `max_pixels`, or cannot be decoded
            for any reason (the message names the file and the cause).
    """
    from PIL import Image

    if max_pixels is not None:
        max_pixels = integer(max_pixels, "max_pixels", low=1, note="or None")
    if fit not in FITS:
        raise TfsalError(f"expected fit in {FITS}, received {fit!r}")
    max_pixels = None if max_pixels is None else int(max_pixels)
    path = path if hasattr(path, "read") else Path(path)
    try:
        with _pillow_pixel_limit(Image, max_pixels):
            return _decode(path, size, max_pixels, fit)
    except TfsalError:
        raise
    except FileNotFoundError:
        raise TfsalError(f"expected an existing image file, received missing path {path}") from None
    except Image.DecompressionBombError as exc:
        raise TfsalError(f"expected an image of at most {max_pixels} pixels, received {path}, "
                         f"which Pillow refused as a possible decompression bomb "
                         f"({_first_line(exc)}); {_LIMIT_HINT}") from None
    except Exception as exc:  # any decoder failure (also MemoryError) is this one file's failure
        raise TfsalError(f"expected a readable image file, received {path} "
                         f"({_first_line(exc)})") from None


_LIMIT_HINT = ("if the file is trusted, raise the limit with max_pixels= (None for no limit) "
               "in Python or --max-pixels on the command line")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0][:200] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def _pillow_pixel_limit(Image, max_pixels: int | None):
    """Let Pillow open images up to `max_pixels` (None: any size) while the block runs."""
    with _PILLOW_LIMIT_LOCK:  # read the limit no other load_image has raised for the moment
        current = Image.MAX_IMAGE_PIXELS
    if current is None or (max_pixels is not None and max_pixels <= current):
        yield  # Pillow's limit is no tighter than ours; load_image checks ours before decoding
        return
    with _PILLOW_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        try:
            # a bigger limit than Pillow's was asked for: Pillow would refuse (2x) or warn (1x)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                Image.MAX_IMAGE_PIXELS = max_pixels
                yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def crop_box(width: int, height: int, size) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the largest centred part of a width × height image with
    the aspect ratio of `size` (height, width); None when the image already has it."""
    target_h, target_w = int(size[0]), int(size[1])
    if width * target_h == height * target_w:
        return None
    if width * target_h > height * target_w:  # wider than the target: cut left and right
        new_w = max(1, min(width, round(height * target_w / target_h)))
        left = (width - new_w) // 2
        return left, 0, left + new_w, height
    new_h = max(1, min(height, round(width * target_h / target_w)))
    top = (height - new_h) // 2
    return 0, top, width, top + new_h


def _decode(path: Path, size, max_pixels: int | None,
            fit: str = "resize") -> tuple[np.ndarray, str | None]:
    from PIL import Image, ImageOps

    notes = []
    with Image.open(path) as img:
        width, height = img.size
        if max_pixels is not None and width * height > max_pixels:
            raise TfsalError(f"expected an image of at most {max_pixels} pixels, received {path} "
                             f"declaring {width}x{height} = {width * height} pixels; "
                             f"{_LIMIT_HINT}")
        if width < 1 or height < 1:
            raise TfsalError(f"expected an image of at least 1x1 pixels, received {path} "
                             f"declaring {width}x{height}")
        img.load()
        orientation = _exif_orientation(img, notes)
        if orientation is not None:
            img = ImageOps.exif_transpose(img)
            notes.append(f"rotated per EXIF orientation {orientation}")
        box = crop_box(img.width, img.height, size) if size is not None and fit == "crop" \
            else None
        crop_note = None if box is None else (f"cropped {img.width}x{img.height} to its "
                                              f"centre {box[2] - box[0]}x{box[3] - box[1]}")
        if img.mode in _SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
            gray, note = _high_bit_gray(img)
            notes.append(note)
            if box is not None:
                notes.append(crop_note)
                gray = gray[box[1]:box[3], box[0]:box[2]]
            if size is not None and gray.shape != tuple(size):
                notes.append(f"resized {gray.shape[1]}x{gray.shape[0]} to {size[1]}x{size[0]}")
                gray = np.asarray(Image.fromarray(gray.astype(np.float32))
                                  .resize((size[1], size[0]), Image.BILINEAR))
            gray = np.clip(gray, 0.0, 1.0).astype(np.float32)
            arr = np.repeat(gray[..., None], 3, axis=-1)
        else:
            if img.mode != "RGB":
                notes.append(f"converted {img.mode} to RGB")
                img = img.convert("RGB")
            if box is not None:
                notes.append(crop_note)
                img = img.crop(box)
            if size is not None and (img.height, img.width) != tuple(size):
                notes.append(f"resized {img.width}x{img.height} to {size[1]}x{size[0]}")
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise TfsalError(f"expected an RGB image, received {path} decoding to shape {arr.shape}")
    return arr, ("; ".join(notes) or None)


def _exif_orientation(img, notes: list[str]) -> int | None:
    """The EXIF orientation 2..8 that needs a transpose, or None (1, absent or unreadable)."""
    try:
        value = img.getexif().get(0x0112)
    except Exception:  # a broken EXIF block does not make the pixels unreadable
        notes.append("ignored unreadable EXIF data")
        return None
    return value if isinstance(value, int) and 2 <= value <= 8 else None


def _high_bit_gray(img) -> tuple[np.ndarray, str]:
    """A 16/32-bit integer or float grayscale image as float64 (H, W) in [0, 1], and a note."""
    mode = img.mode
    arr = np.asarray(img)
    if mode in _SIXTEEN_BIT_MODES:
        return (arr.astype(np.float64) / 65535.0,
                f"converted 16-bit grayscale ({mode}) to RGB, scaled 0..65535 to [0, 1]")
    if mode == "F":
        return _float_gray(arr.astype(np.float64))
    bits, signed = _tiff_integer_type(img)
    if bits is None:  # no TIFF tags: 0..65535 is a 16-bit image, anything else a 32-bit one
        in_16_bit = arr.size == 0 or (int(arr.min()) >= 0 and int(arr.max()) <= 65535)
        bits, signed = (16, False) if in_16_bit else (32, True)
    if not signed and bits == 32:
        arr = arr.view(np.uint32)  # Pillow holds uint32 samples in int32 storage
    top = 2 ** (bits - 1) - 1 if signed else 2 ** bits - 1
    kind = "signed" if signed else "unsigned"
    note = (f"converted {bits}-bit {kind} integer grayscale ({mode}) to RGB, "
            f"scaled 0..{top} to [0, 1]")
    arr = arr.astype(np.float64)
    negative = int(np.count_nonzero(arr < 0))
    if negative:
        note += f", clipped {negative} negative values to 0"
    return np.clip(arr / top, 0.0, 1.0), note


def _tiff_integer_type(img) -> tuple[int | None, bool]:
    """(bits, signed) from a TIFF's BitsPerSample (258) and SampleFormat (339) tags, or
    (None, False) without usable tags."""
    tags = getattr(img, "tag_v2", None)
    if tags is None:
        return None, False
    try:
        bits, fmt = tags.get(258), tags.get(339, 1)
        bits = bits[0] if isinstance(bits, tuple) else bits
        fmt = fmt[0] if isinstance(fmt, tuple) else fmt
    except Exception:  # malformed tags: fall back to the values' range
        return None, False
    if not isinstance(bits, int) or not 2 <= bits <= 32 or fmt not in (1, 2):
        return None, False
    return bits, fmt == 2


def _float_gray(arr: np.ndarray) -> tuple[np.ndarray, str]:
    finite = np.isfinite(arr)
    bad = int(arr.size - np.count_nonzero(finite))
    values = arr[finite]
    note = "converted 32-bit float grayscale (F) to RGB"
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        lo, hi = float(values.min()), float(values.max())
        out = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        note += f", scaled its range {lo:.6g}..{hi:.6g} to [0, 1]"
    else:
        out = arr
        note += ", kept its values in [0, 1]"
    if bad:
        out = np.where(finite, out, 0.0)
        note += f", set {bad} NaN/inf values to 0"
    return out, note
