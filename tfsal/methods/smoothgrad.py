"""SmoothGrad and VarGrad.

SmoothGrad (Smilkov et al. 2017; lecture notes): average a method's map over noisy copies of the
image, M̂(x) = 1/n Σ_j M(x + ε_j), ε_j ~ N(0, σ²) with σ = noise_level · (max(x) − min(x)).
With `squared=True` the maps are squared before averaging (SmoothGrad-SQ).
VarGrad (Adebayo et al. 2018): the variance of the maps over the same noisy copies.

Noise sample j is drawn from a generator seeded by (seed, j) and shared by every image of the
call, so a map does not depend on which other images are in the batch. Noisy images are not
clipped to [0, 1], as in the original formulation.
"""

from __future__ import annotations

import numpy as np

from tfsal.errors import TfsalError
from tfsal.methods._base import (
    attribution_method,
    base_seed,
    non_negative,
    positive_int,
    sum_over_points,
)
from tfsal.methods.gradient import vanilla_gradient


@attribution_method
def smoothgrad(model, images, targets=None, *, method=vanilla_gradient, n_samples: int = 50,
               noise_level: float = 0.15, squared: bool = False, seed=None,
               **method_kwargs) -> np.ndarray:
    """SmoothGrad of any attribution method.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class (of the clean image).
        method: the wrapped attribution method (a tfsal method or any callable
            `(model, images, targets) -> maps`).
        n_samples: number of noisy copies.
        noise_level: σ as a fraction of each image's value range (max − min).
        squared: square the maps before averaging.
        seed: int, `np.random.Generator` or None.
        **method_kwargs: passed to `method` (e.g. `score="probability"`).

    Returns:
        float32 maps shaped like `method`'s output.

    Raises:
        TfsalError: for bad images, targets or hyperparameters.

    Example:
        >>> sg = tfsal.smoothgrad(model, images, n_samples=25, seed=0)
        >>> sg.shape == images.shape
    """
    total, total_sq = _noisy_sums(model, images, targets, method, n_samples, noise_level, seed,
                                  method_kwargs, squares=squared)
    return (total_sq if squared else total).astype(np.float32)


@attribution_method
def vargrad(model, images, targets=None, *, method=vanilla_gradient, n_samples: int = 50,
            noise_level: float = 0.15, seed=None, **method_kwargs) -> np.ndarray:
    """VarGrad: the per-element variance of a method's maps over noisy copies of the image.

    Args and Raises as `smoothgrad` (without `squared`).

    Returns:
        float32 maps (≥ 0) shaped like `method`'s output.

    Example:
        >>> vg = tfsal.vargrad(model, images, n_samples=25, seed=0)
        >>> bool((vg >= 0).all())
    """
    mean, mean_sq = _noisy_sums(model, images, targets, method, n_samples, noise_level, seed,
                                method_kwargs, squares=True)
    return np.maximum(mean_sq - mean**2, 0.0).astype(np.float32)


def _noisy_sums(model, images, targets, method, n_samples, noise_level, seed, method_kwargs,
                *, squares):
    n_samples = positive_int(n_samples, "n_samples")
    # σ beyond 100 × the image's range only floods the maps (and overflows float32 squares)
    noise_level = non_negative(noise_level, "noise_level", maximum=100.0)
    if not callable(method):
        raise TfsalError(f"expected method a tfsal attribution method, received {method!r}")
    compute = getattr(method, "compute", method)
    seed = base_seed(seed)
    sigma = noise_level * (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3)))
    shape = images.shape[1:]

    def noisy(i, j):
        noise = {jj: np.random.default_rng([seed, jj]).standard_normal(shape, np.float32)
                 for jj in np.unique(j)}
        eps = np.stack([noise[jj] for jj in j])
        return images[i] + sigma[i].reshape(-1, 1, 1, 1).astype(np.float32) * eps

    def attribute(batch, batch_targets):
        return np.asarray(compute(model, batch, batch_targets, **method_kwargs))

    weights = np.full(n_samples, 1.0 / n_samples)
    result = sum_over_points(model, len(images), n_samples, noisy, attribute, targets, weights,
                             squares=squares)
    return result if squares else (result, None)
