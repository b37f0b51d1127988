"""Signed saliency maps (signed-saliency-maps paper; its authors' reference formulas).

With g_k = ∂logit_k/∂x (H, W, C) and t the explained class (by default the predicted one),
each map reduces over channels by the maximum:

    standard = max_c |g_t|                      positive = max_c ReLU(g_t)
    negative = max_c ReLU(−g_t)
    active   = max_c |g_t · 1[g_t > g_k for every k ≠ t]|     (element-wise, per channel, strict)
    inactive = max_c |g_t · 1[g_t < g_k for every k ≠ t]|

Active and inactive need every class's gradient: they are computed for (image, class) pairs in
full batches of the adapter's `batch_size`, keeping only the running maximum and minimum over
the other classes, so memory does not grow with the number of classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method
from tfsal.targets import TargetFunction, needs_classes


@dataclass(frozen=True)
class SignedMaps:
    """The five maps of each image, (N, H, W) float32 each, raw (not normalised)."""

    targets: np.ndarray
    standard: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    active: np.ndarray
    inactive: np.ndarray


@attribution_method
def signed_maps(model, images, targets=None) -> SignedMaps:
    """Standard, positive, negative, active and inactive saliency maps of the target class.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class (the paper's choice).
            A callable target is refused: active and inactive maps compare the target's
            logit gradient with every other class's.

    Returns:
        a `SignedMaps` of (N, H, W) maps; standard == max(positive, negative).

    Raises:
        TfsalError: for bad images or targets, a callable target, or an output that is no
            class vector.

    Example:
        >>> maps = tfsal.signed_maps("shapes-cnn", images)
        >>> curve = tfsal.metrics.allegiance_curve("shapes-cnn", images, maps.positive)
    """
    if isinstance(targets, TargetFunction):
        raise TfsalError(needs_classes(
            "signed maps (active and inactive maps compare the target's logit gradient with "
            "every other class's)", targets.function,
            instead="vanilla_gradient gives a callable target's gradient, whose positive and "
                    "negative parts are the positive and negative maps"))
    gradient = model.input_gradients(images, targets, score="logit")
    others_max, others_min = _other_class_extremes(model, images, targets)
    active = np.where(gradient > others_max, gradient, 0)
    inactive = np.where(gradient < others_min, gradient, 0)
    return SignedMaps(
        targets=targets,
        standard=np.abs(gradient).max(axis=-1),
        positive=np.maximum(gradient, 0).max(axis=-1),
        negative=np.maximum(-gradient, 0).max(axis=-1),
        active=np.abs(active).max(axis=-1),
        inactive=np.abs(inactive).max(axis=-1))


def _other_class_extremes(model, images, targets):
    """Element-wise max and min of ∂logit_k/∂x over every class k except each image's target."""
    n, classes = len(images), model.num_classes
    highest = np.full(images.shape, -np.inf, np.float32)
    lowest = np.full(images.shape, np.inf, np.float32)
    pairs = [(i, k) for i in range(n) for k in range(classes) if k != targets[i]]
    for start in range(0, len(pairs), model.batch_size):
        chunk = np.array(pairs[start:start + model.batch_size])
        rows, classes_ = chunk[:, 0], chunk[:, 1].astype(np.int32)
        grads = model.input_gradients(images[rows], classes_, score="logit")
        np.maximum.at(highest, rows, grads)
        np.minimum.at(lowest, rows, grads)
    return highest, lowest
