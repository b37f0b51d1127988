"""Target normalisation: the one place where `targets` is checked and turned into indices."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfsal.errors import TfsalError


def resolve_targets(
    targets,
    n: int,
    num_classes: int | None,
    predict: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """Turn `targets` into an int32 array of shape (n,).

    Args:
        targets: an int (same class for every image), an int array-like of shape (n,), or
            None for the predicted class of each image.
        n: number of images.
        num_classes: the model's class count (None if unknown: only negatives are refused).
        predict: called without arguments when `targets` is None; returns the (n,) predictions.

    Returns:
        int32 array (n,).

    Raises:
        TfsalError: for non-integer values, a wrong count or a class index out of range.
    """
    if targets is None:
        if predict is None:
            raise TfsalError("expected explicit targets (no model to predict them), received None")
        return np.asarray(predict(), dtype=np.int32).reshape(n)
    try:
        arr = np.asarray(targets)
    except (ValueError, TypeError):
        raise TfsalError(f"expected integer class indices as targets, received a ragged or "
                         f"mixed {type(targets).__name__}") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or _integral_float(arr)):
        raise TfsalError(f"expected integer class indices as targets, received {arr.dtype} "
                         f"values {_preview(arr)}")
    if arr.ndim == 0:
        arr = np.full(n, int(arr))
    elif arr.shape != (n,):
        raise TfsalError(f"expected one target per image, shape ({n},), received shape {arr.shape}")
    upper = num_classes if num_classes is not None else np.iinfo(np.int32).max
    bad = (arr < 0) | (arr >= upper)
    if bad.any():
        limit = f"[0, {num_classes})" if num_classes is not None else "≥ 0"
        raise TfsalError(f"expected class indices in {limit}, received {_preview(arr[bad])}")
    return arr.astype(np.int32)


def _integral_float(arr: np.ndarray) -> bool:
    return (np.issubdtype(arr.dtype, np.floating) and arr.size > 0
            and bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr))))


def _preview(arr: np.ndarray) -> str:
    flat = np.ravel(arr)
    text = ", ".join(str(v) for v in flat[:5])
    return f"[{text}{', ...' if flat.size > 5 else ''}]"
