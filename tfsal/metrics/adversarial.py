"""Class sensitivity (RectGrad paper §5.2): does a method's map follow the class?

An attack moves the prediction to another class; the maps of the original and of the
adversarial prediction should then differ. Compared per image by the Spearman rank correlation
of the per-pixel magnitudes (abs-max over channels) and the overlap of their top-k pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfsal.attacks import AttackResult, fgsm
from tfsal.checks import fraction
from tfsal.images import check_images
from tfsal.loading import as_model


@dataclass(frozen=True)
class ClassSensitivity:
    """How much a method's maps move when an attack changes the prediction.

    Attributes:
        rank_correlation: (N,) Spearman correlation of the maps for the original and the
            adversarial prediction (1 = the map ignores the class).
        top_overlap: (N,) shared fraction of the two maps' top-k pixels.
        attack: the `AttackResult` used.
    """

    rank_correlation: np.ndarray
    top_overlap: np.ndarray
    attack: AttackResult


def class_sensitivity(model, images, method: Callable, attack: Callable = fgsm, *,
                      top_fraction: float = 0.1, **attack_options) -> ClassSensitivity:
    """Compare a method's map of the original prediction with that of the adversarial one.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        method: a tfsal method `method(model, images, targets)` returning (N, H, W, 3) maps.
        attack: `tfsal.fgsm` or `tfsal.bim` (untargeted), called with `attack_options`.
        top_fraction: fraction of pixels in the top-k overlap.

    Returns:
        a `ClassSensitivity` (maps are reduced to one value per pixel by abs-max).

    Raises:
        TfsalError: for a top_fraction outside (0, 1] and whatever the attack refuses.

    Example:
        >>> s = tfsal.class_sensitivity(model, images, tfsal.rectgrad, tfsal.bim)
        >>> s.rank_correlation.mean(), s.top_overlap.mean()
    """
    from scipy.stats import spearmanr

    model = as_model(model)
    images = check_images(images)
    top_fraction = fraction(top_fraction, "top_fraction", low_open=True)
    result = attack(model, images, **attack_options)
    original = np.abs(method(model, images, result.before)).max(axis=-1)
    adversarial = np.abs(method(model, result.images, result.after)).max(axis=-1)
    a, b = original.reshape(len(images), -1), adversarial.reshape(len(images), -1)
    rho = np.array([spearmanr(x, y).statistic for x, y in zip(a, b)])
    k = max(1, int(round(top_fraction * a.shape[1])))
    top_a, top_b = np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k]
    overlap = np.array([len(np.intersect1d(x, y)) / k for x, y in zip(top_a, top_b)])
    return ClassSensitivity(rho, overlap, result)
