"""Model-randomisation sanity check (Adebayo et al. 2018).

A map that explains the model must change when the model's weights are destroyed. The layers
are re-initialised one by one from the output towards the input ("cascading"), on a copy of
the model, and each map is compared with the original one by Spearman rank correlation of
its per-pixel magnitude.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfsal.images import check_images
from tfsal.loading import as_model


@dataclass(frozen=True)
class RandomizationCheck:
    """Rank correlation with the original maps after each cumulative re-initialisation.

    Attributes:
        layers: (L,) paths re-initialised, output side first (row i: layers[:i + 1] random).
        rank_correlation: (L, N) Spearman correlation of |map| per image.
    """

    layers: tuple
    rank_correlation: np.ndarray


def randomization_check(model, images, method: Callable, targets=None, *,
                        seed: int = 0) -> RandomizationCheck:
    """Cascading randomisation: re-initialise the layers top-down and compare the maps.

    Every weight of a re-initialised layer is redrawn from a normal distribution with the
    original weight's standard deviation (biases: zeros), on a copy of the model
    (`tfsal.Model.randomized_layers`) — the user's model is never touched.

    Args:
        model: a `tfsal.Model` (or loadable) wrapping a functional or sequential Keras model.
        images: float32 (N, H, W, 3) in [0, 1].
        method: a tfsal method `method(model, images, targets)`.
        targets: as for every method (None = predicted class of the original model).
        seed: randomness of the new weights.

    Returns:
        a `RandomizationCheck`.

    Example:
        >>> check = tfsal.metrics.randomization_check(model, images, tfsal.vanilla_gradient)
        >>> check.rank_correlation.mean(axis=1)  # should fall as layers are randomised
    """
    from scipy.stats import spearmanr

    model = as_model(model)
    images = check_images(images)
    cascade = model.randomized_layers(seed=seed)  # a copy: refuses unreachable layers first
    targets = model.resolve_targets(images, targets)

    def magnitudes(m):
        maps = np.abs(np.asarray(method(m, images, targets), np.float64))
        return (maps.max(axis=-1) if maps.ndim == 4 else maps).reshape(len(images), -1)

    original = magnitudes(model)
    layers, rows = [], []
    for path, randomized in cascade:
        now = magnitudes(randomized)
        layers.append(path)
        rows.append([spearmanr(a, b).statistic if np.ptp(b) > 0 else 0.0
                     for a, b in zip(original, now)])
    return RandomizationCheck(tuple(layers), np.asarray(rows, np.float64))
