"""Target normalisation: the one place where `targets` is checked and turned into indices."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tfsal.errors import TfsalError


def rank_of(rule) -> int | None:
    """k for a rank rule "top1", "top2", ... ("topk" = each image's k-th best class), else
    None."""
    if isinstance(rule, str) and rule.startswith("top") and rule[3:].isdigit() \
            and rule[3:].isascii():
        return int(rule[3:])
    return None


def resolve_targets(
    targets,
    n: int,
    num_classes: int | None,
    predict: Callable[[], np.ndarray] | None = None,
    scores: Callable[[], np.ndarray] | None = None,
) -> np.ndarray:
    """Turn `targets` into an int32 array of shape (n,).

    Args:
        targets: an int (same class for every image), an int array-like of shape (n,), None
            for the predicted class of each image, or a rank "top1", "top2", ... "topk": each
            image's k-th best class by the model's scores ("top1" is the predicted class, the
            same as None; "top2" the runner-up; ties go to the lower class index). A method
            call returns one map per image: for the maps of the two best classes call it with
            "top1" and with "top2".
        n: number of images.
        num_classes: the model's class count (None if unknown: only negatives are refused).
        predict: called without arguments when `targets` is None or "top1"; returns the (n,)
            predictions.
        scores: called without arguments for "top2" and beyond; returns the (n, classes)
            scores that rank the classes.

    Returns:
        int32 array (n,).

    Raises:
        TfsalError: for non-integer values, a wrong count or a class index out of range, and
            a rank beyond the classes.
    """
    if isinstance(targets, str):
        return _ranked(targets, n, num_classes, predict, scores)
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


def _ranked(rule: str, n: int, num_classes, predict, scores) -> np.ndarray:
    k = rank_of(rule)
    if k is None:
        raise TfsalError(f"expected integer class indices as targets, None or a rank 'top1', "
                         f"'top2', ..., received the string {rule!r}")
    if k < 1 or (num_classes is not None and k > num_classes):
        upper = f"'top{num_classes}'" if num_classes is not None else "..."
        raise TfsalError(f"expected a rank 'top1' ... {upper} for a model of {num_classes} "
                         f"classes, received {rule!r}")
    if k == 1 and predict is not None:
        return np.asarray(predict(), dtype=np.int32).reshape(n)
    if scores is None:
        raise TfsalError(f"expected explicit targets (no model to rank the classes), received "
                         f"{rule!r}")
    values = np.asarray(scores())
    if values.ndim != 2 or values.shape[0] != n or k > values.shape[1]:
        raise TfsalError(f"expected a rank within the model's {values.shape[-1]} scores, "
                         f"received {rule!r}")
    return np.argsort(-values, axis=1, kind="stable")[:, k - 1].astype(np.int32)


def class_label(model, target) -> str:
    """The model's name for a class index (the index as text when it has no names)."""
    names = model.class_names
    return names[int(target)] if names and int(target) < len(names) else str(int(target))


def _integral_float(arr: np.ndarray) -> bool:
    return (np.issubdtype(arr.dtype, np.floating) and arr.size > 0
            and bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr))))


def _preview(arr: np.ndarray) -> str:
    flat = np.ravel(arr)
    text = ", ".join(str(v) for v in flat[:5])
    return f"[{text}{', ...' if flat.size > 5 else ''}]"
