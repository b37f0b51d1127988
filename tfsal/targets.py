"""Target normalisation: the one place where `targets` is checked and turned into indices.

`targets` names what a method explains, one scalar per image:

- a class: an int (every image), an int array (N,), None (each image's predicted class) or a
  rank "top1", "top2", ...; the adapter's `score` ("logit", "probability",
  "log_probability") of that class is differentiated. This needs a model whose output is a
  class vector (N, classes) or a binary (N, 1) head.
- a callable `f(outputs) -> values`, for anything else the model computes. `outputs` is the
  model's output tensor exactly as the model returns it (its final softmax or sigmoid kept),
  for the images after tfsal's preprocessing (`preprocess=`), of the output chosen by
  `output_key` for a model with several; `f` is called inside tfsal's traced function and
  must return a floating tensor of shape (N,), one value per image, built with TensorFlow
  ops. The values themselves are differentiated: a callable target bypasses `score` (pass
  none) and the class-vector conversion, so it works on any output shape:

      targets=lambda out: out[:, 3]                  # multi-label sigmoid head: label 3
      targets=lambda out: out[:, 2] + out[:, 5]      # ... or the sum of labels 2 and 5
      targets=lambda out: out[:, 0]                  # regression (N, k): its first value
      targets=lambda out: tf.reduce_sum(out[..., c] * mask, axis=[1, 2])
                                                     # segmentation (N, H, W, C): class c
                                                     # summed over a region mask (H, W)

  For a head ending in a sigmoid the values are probabilities; its logit is
  `tf.math.log(p) - tf.math.log1p(-p)` (exact while p stays away from 0 and 1), or build the
  model without the final activation. Methods that need class scores — CAM (a class's weight
  row), signed maps (every class's gradient), the nonlinear loop (the softmax over classes),
  attacks (class cross-entropy and predictions) — refuse a callable target with a
  TfsalError. The compiled functions are keyed by the callable object: pass the same object
  again to reuse them (a new lambda per call is traced anew).
"""

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
    if is_target_function(targets):
        raise TfsalError("expected class targets here, received a callable target (it is "
                         "resolved by the adapter, `Model.resolve_targets`)")
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


def is_target_function(targets) -> bool:
    """True for a callable target (a function of the model's outputs, or one resolved as a
    `TargetFunction`), False for class targets."""
    return callable(targets) or isinstance(targets, TargetFunction)


class TargetFunction:
    """A callable target resolved for `n` images (what `Model.resolve_targets` returns for
    one): the callable and the image count, standing where class indices would.

    It has a length and can be indexed like the (n,) array of class indices it replaces
    (methods pick the targets of a batch's images), but it is no array: turning it into one
    raises a TfsalError, so code that needs class indices refuses it instead of using
    made-up ones. Compiled functions receive `fed_indices(targets)` (zeros, unused) in the
    int32 slot of class targets.

    Attributes:
        function: the user's callable, outputs -> (N,) values.
        n: the number of images it stands for.
    """

    __slots__ = ("function", "n")

    def __init__(self, function: Callable, n: int):
        self.function = function
        self.n = int(n)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index) -> TargetFunction:
        return TargetFunction(self.function, len(np.arange(self.n)[index]))

    def __array__(self, dtype=None, copy=None):
        raise TfsalError(needs_classes("this computation", self.function))

    def __repr__(self) -> str:
        return f"TargetFunction({self.function!r}, n={self.n})"


def needs_classes(what: str, function=None, instead: str = "") -> str:
    """The message refusing a callable target for `what`, which needs class indices."""
    received = "a callable target" + (f" ({_name(function)})" if function is not None else "")
    hint = f"; {instead}" if instead else ("; callable targets work with the gradient methods "
                                           "(vanilla_gradient, gradient_x_input, smoothgrad, "
                                           "vargrad, integrated_gradients, grad_cam, "
                                           "guided_backprop, deconvnet, rectgrad, deeplift, "
                                           "epsilon_lrp)")
    return f"expected class targets (int, int array or None) for {what}, received {received}" \
        + hint


def fed_indices(targets) -> np.ndarray:
    """The int32 (n,) array compiled functions receive as targets: the class indices, or
    zeros (unused) for a callable target."""
    if isinstance(targets, TargetFunction):
        return np.zeros(len(targets), np.int32)
    return np.asarray(targets, np.int32)


def _name(function) -> str:
    return getattr(function, "__qualname__", None) or type(function).__name__


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
