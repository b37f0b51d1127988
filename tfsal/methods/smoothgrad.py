"""SmoothGrad and VarGrad.

SmoothGrad (Smilkov et al. 2017; lecture notes): average a method's map over noisy copies of the
image, M̂(x) = 1/n Σ_j M(x + ε_j), ε_j ~ N(0, σ²) with σ = noise_level · (max(x) − min(x)).
With `squared=True` the maps are squared before averaging (SmoothGrad-SQ).
VarGrad (Adebayo et al. 2018): the variance of the maps over the same noisy copies.

Noise sample j is drawn from a generator seeded by (seed, j) and shared by every image of the
call, so a map does not depend on which other images are in the batch. Noisy images are not
clipped to [0, 1], as in the original formulation.

SmoothGrad and VarGrad of the plain gradient methods (`vanilla_gradient`, and
`gradient_x_input` with multiply_by="pixels") run as compiled functions that keep their work
on the device (`tfsal.methods._on_device`): the noise table is made on the host by the same
generators (in parallel threads) and uploaded once; the noisy images, gradients and float64
sums are made by TensorFlow ops, with nothing copied back before the result. On a GPU that
saves a copy and a synchronisation per batch; on a CPU it is as fast or faster than the NumPy
loop (BENCHMARKS.md). Other wrapped methods are called batch by batch from the host loop
(`sum_over_points`). Both give the same maps for the same seed.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from tfsal.checks import base_seed, non_negative, positive_int
from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method, sum_over_points
from tfsal.methods.gradient import gradient_x_input, vanilla_gradient

# Bytes of noise made and uploaded at once (more samples go in several groups), so memory
# stays flat in n_samples beyond about a batch of noisy images.
_NOISE_TABLE_BYTES = 1 << 24


@attribution_method
def smoothgrad(model, images, targets=None, *, method=vanilla_gradient, n_samples: int = 50,
               noise_level: float = 0.15, squared: bool = False, seed=None,
               **method_kwargs) -> np.ndarray:
    """SmoothGrad of any attribution method.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class (of the clean image);
            or a callable from the model's output to one value per image (`tfsal.targets`).
        method: the wrapped attribution method (a tfsal method or any callable
            `(model, images, targets) -> maps`). `vanilla_gradient` and
            `gradient_x_input` (pixels) run wholly on the device; other methods are called
            batch by batch from the host (module docstring).
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
    plain = _plain_gradient(method, method_kwargs)
    if plain is not None:
        result = _noisy_sums_on_device(model, images, targets, sigma, seed, weights, plain,
                                       squares=squares)
    else:
        result = sum_over_points(model, len(images), n_samples, noisy, attribute, targets,
                                 weights, squares=squares)
    return result if squares else (result, None)


def _plain_gradient(method, method_kwargs) -> tuple | None:
    """(kind, score) where the wrapped method is a plain gradient the device path computes
    itself; None for every other method (and unknown keywords, left to the method to refuse)."""
    compute = getattr(method, "compute", None)
    score = method_kwargs.get("score")
    if compute is vanilla_gradient.compute and set(method_kwargs) <= {"score"}:
        return "gradient", score
    if compute is gradient_x_input.compute and set(method_kwargs) <= {"score", "multiply_by"} \
            and method_kwargs.get("multiply_by", "pixels") == "pixels":
        return "gradient_x_input", score
    return None


def _noisy_sums_on_device(model, images, targets, sigma, seed, weights, plain, *, squares):
    """`sum_over_points` of the noisy gradients on the device, noise uploaded in groups of
    samples (`_samples_per_upload`)."""
    import tensorflow as tf

    from tfsal.devices import upload
    from tfsal.methods._on_device import sum_over_points_on_device

    kind, score = plain
    objective = model.objective(targets, score)
    model.check_size(images)
    clean, spread = upload(images), upload(sigma)

    def noisy(arrays, i, j):
        clean, spread, noise = arrays
        return tf.gather(clean, i) + tf.gather(spread, i)[:, None, None, None] * tf.gather(
            noise, j)

    def attribute(batch, batch_targets):
        gradients, _ = model.traced_gradients(batch, batch_targets, score=objective)
        return gradients * batch if kind == "gradient_x_input" else gradients

    per_group = _samples_per_upload(len(images), images[0].nbytes, model.batch_size)
    sums = None
    for start in range(0, len(weights), per_group):
        stop = min(start + per_group, len(weights))
        noise = upload(noise_table(seed, start, stop, images.shape[1:]))  # no host copy kept
        part = sum_over_points_on_device(
            model, ("smoothgrad", kind, objective), noisy, attribute, (clean, spread, noise),
            targets, weights[start:stop], squares=squares)
        part = part if squares else (part,)
        sums = part if sums is None else tuple(a + b for a, b in zip(sums, part))
    return sums if squares else sums[0]


def _samples_per_upload(n_images: int, image_bytes: int, batch_size: int) -> int:
    """Noise samples per upload: a multiple of the samples whose pairs fill whole batches (so
    only the last batch of a call is partial) within `_NOISE_TABLE_BYTES`, or that one
    multiple if it takes at most 4 times as much; else as many as fit."""
    fit = max(1, _NOISE_TABLE_BYTES // image_bytes)
    whole = batch_size // math.gcd(n_images, batch_size)
    if fit >= whole:
        return fit - fit % whole
    return whole if whole * image_bytes <= 4 * _NOISE_TABLE_BYTES else fit


def noise_table(seed: int, start: int, stop: int, shape) -> np.ndarray:
    """Noise samples start … stop − 1 as one float32 array (stop − start, *shape).

    Sample j comes from `np.random.default_rng([seed, j])`, as in the host loop, so the table
    does not depend on how samples are grouped. Rows are filled by parallel threads (NumPy
    draws without the GIL), each straight into its row: no per-thread allocations.
    """
    table = np.empty((stop - start,) + tuple(shape), np.float32)

    def fill(j: int) -> None:
        np.random.default_rng([seed, j]).standard_normal(dtype=np.float32, out=table[j - start])

    workers = min(len(table), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fill, range(start, stop)))
    else:
        for j in range(start, stop):
            fill(j)
    return table
