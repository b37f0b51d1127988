"""Integrated Gradients (Sundararajan et al. 2017; lecture notes; overview paper).

IG_i(x) = (x_i − b_i) · ∫₀¹ ∂S_c(b + α(x − b))/∂x_i dα, approximated by a quadrature rule over
`steps` points of the straight path from the baseline b to x. Completeness: Σ_i IG_i(x) equals
S_c(x) − S_c(b) up to the quadrature error, which `completeness_delta` reports.

The baseline, the differences and the nodes are uploaded once; the path points, gradients and
their weighted float64 sums are made on the device by compiled functions
(`tfsal.methods._on_device`), with nothing copied back before the result: no copy and
synchronisation per batch on a GPU, and as fast or faster than a NumPy loop on a CPU
(BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

from tfsal.checks import base_seed, non_negative, positive_int
from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method

BASELINES = ("black", "white", "noise", "blur")
SCHEDULES = ("left", "right", "midpoint", "trapezoid", "gauss_legendre", "graded")


def path_schedule(schedule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes α in [0, 1] and their weights (summing to 1) for `steps` path points.

    "left"/"right"/"midpoint" are Riemann sums (the RectGrad authors used "right");
    "trapezoid" puts half weight on both ends; "gauss_legendre" is exact for polynomials of
    degree 2·steps − 1 along the path and the most accurate for smooth networks.

    "graded" is the midpoint rule after the substitution α = u²: nodes ((k + ½)/steps)², weights
    (2k + 1)/steps², so the nodes are denser near the baseline. For ReLU / max-pool networks
    the integrand (the path derivative of the score) is piecewise constant and rough, and its
    jumps — units crossing zero at α* = −bias / (w · (x − b)) — are densest near α = 0: their
    squared-variation density falls roughly like 1/α. A midpoint rule's error there is
    minimised by a node density ∝ √(variation density) ∝ α^(−1/2), which α = u² gives. On the
    embedded model it lowers the completeness error at every step count measured
    (BENCHMARKS.md).
    """
    steps = positive_int(steps, "steps", maximum=10_000)
    k = np.arange(steps, dtype=np.float64)
    if schedule == "left":
        return k / steps, np.full(steps, 1.0 / steps)
    if schedule == "right":
        return (k + 1) / steps, np.full(steps, 1.0 / steps)
    if schedule == "midpoint":
        return (k + 0.5) / steps, np.full(steps, 1.0 / steps)
    if schedule == "trapezoid":
        if steps < 2:
            raise TfsalError(f"expected steps ≥ 2 for the trapezoid rule, received {steps}")
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return k / (steps - 1), weights
    if schedule == "gauss_legendre":
        from scipy.special import roots_legendre  # O(steps); NumPy's leggauss is O(steps³)

        nodes, weights = roots_legendre(steps)
        return (nodes + 1) / 2, weights / 2
    if schedule == "graded":
        u = (k + 0.5) / steps
        return u**2, 2 * u / steps
    raise TfsalError(f"expected schedule in {SCHEDULES}, received {schedule!r}")


def make_baseline(images: np.ndarray, baseline="black", *, seed=None,
                  blur_sigma: float | None = None) -> np.ndarray:
    """The baseline images (N, H, W, 3) for `images`.

    Args:
        images: float32 (N, H, W, 3) in [0, 1].
        baseline: "black" (0), "white" (1), "noise" (uniform in [0, 1], one seeded draw shared
            by all images), "blur" (each image Gaussian-blurred), a scalar, or an array
            broadcastable to `images`.
        seed: randomness for "noise".
        blur_sigma: filter width in pixels for "blur" (default: a tenth of the image side).

    Raises:
        TfsalError: for bad images, an unknown name, a bad blur_sigma, a non-finite or
            non-numeric baseline, or a shape that does not broadcast.
    """
    from tfsal.images import as_batch, float_array

    images = as_batch(images)  # not range-checked: SmoothGrad passes noisy copies
    if not np.all(np.isfinite(images)):
        raise TfsalError("expected finite images, received NaN or inf values")
    if isinstance(baseline, str):
        if baseline == "black":
            return np.zeros_like(images)
        if baseline == "white":
            return np.ones_like(images)
        if baseline == "noise":
            rng = np.random.default_rng(base_seed(seed))
            return np.broadcast_to(rng.random(images.shape[1:], np.float32), images.shape).copy()
        if baseline == "blur":
            from scipy.ndimage import gaussian_filter

            side = max(images.shape[1:3])
            sigma = side / 10 if blur_sigma is None else non_negative(blur_sigma, "blur_sigma")
            if sigma > side:  # wider filters change nothing more and only cost time
                raise TfsalError(f"expected blur_sigma ≤ the image side {side}, received "
                                 f"{blur_sigma!r}")
            return gaussian_filter(images, sigma=(0, sigma, sigma, 0), mode="nearest")
        raise TfsalError(f"expected baseline in {BASELINES}, a number or an array, "
                         f"received {baseline!r}")
    if baseline is None:
        raise TfsalError(f"expected baseline in {BASELINES}, a number or an array, received None")
    arr = float_array(baseline, "baseline")
    if not np.all(np.isfinite(arr)):
        raise TfsalError("expected a finite baseline, received NaN or inf values")
    try:
        return np.broadcast_to(arr, images.shape).copy()
    except ValueError:
        raise TfsalError(f"expected a baseline broadcastable to {images.shape}, received shape "
                         f"{arr.shape}") from None


@attribution_method
def integrated_gradients(model, images, targets=None, *, baseline="black", steps: int = 50,
                         schedule: str = "gauss_legendre", score: str | None = None, seed=None,
                         blur_sigma: float | None = None,
                         multiply_by: str = "pixels") -> np.ndarray:
    """Integrated Gradients along the straight path from `baseline` to the image.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class; or a callable from
            the model's output to one value per image (`tfsal.targets`).
        baseline: "black", "white", "noise", "blur", a scalar or an array (see `make_baseline`).
        steps: number of path points (gradient evaluations per image).
        schedule: quadrature rule, one of `SCHEDULES`.
        score: score to integrate ("logit" by default).
        seed: randomness of the "noise" baseline.
        blur_sigma: filter width of the "blur" baseline.
        multiply_by: "pixels" (default): the mean gradient times x − b; "model_input": the mean
            model-input gradient times x_in − b_in (b_in = the preprocessed baseline). The
            straight pixel path is the straight model-input path only for an affine
            preprocessing (required), and then the chain rule makes both the same map: only
            the baseline matters (the authors' code used zeros in model-input space,
            `tfsal.methods.gradient.model_input_zero`).

    Returns:
        float32 (N, H, W, 3), signed; sums to ≈ S(x) − S(baseline) per image.

    Raises:
        TfsalError: for bad images, targets, baseline, steps, schedule or multiply_by.

    Example:
        >>> ig = tfsal.integrated_gradients(model, images, steps=16)
        >>> delta = tfsal.completeness_delta(model, images, ig)
    """
    from tfsal.methods.gradient import check_multiply_by, multiplied_input

    check_multiply_by(multiply_by)
    alphas, weights = path_schedule(schedule, steps)
    base = make_baseline(images, baseline, seed=seed, blur_sigma=blur_sigma)
    diff = images - base
    factor = multiplied_input(model, images, base, multiply_by=multiply_by, affine=True)
    mean_grad = _mean_gradient(model, base, diff, alphas.astype(np.float32), weights, targets,
                               score)
    return (mean_grad * factor).astype(np.float32)


def _mean_gradient(model, base, diff, alphas, weights, targets, score):
    """Σ_k weights[k] · ∂S/∂x at base + alphas[k] · diff, for every image (float64): each batch
    of path points made on the device by gathering from the uploaded arrays."""
    import tensorflow as tf

    from tfsal.methods._on_device import sum_over_points_on_device

    model.check_size(base)
    objective = model.objective(targets, score)

    def path_point(arrays, i, j):
        start, step, nodes = arrays
        return tf.gather(start, i) + tf.gather(nodes, j)[:, None, None, None] * tf.gather(step, i)

    def gradient(batch, batch_targets):
        return model.traced_gradients(batch, batch_targets, score=objective)[0]

    return sum_over_points_on_device(model, ("integrated_gradients", objective), path_point,
                                     gradient, (base, diff, alphas), targets, weights)


def completeness_delta(model, images, attributions, targets=None, *, baseline="black",
                       score: str | None = None, seed=None, blur_sigma: float | None = None,
                       relative: bool = False) -> np.ndarray:
    """How far attributions are from completeness: Σ attributions − (S(x) − S(baseline)).

    Args:
        model, images, targets: as for `integrated_gradients`.
        attributions: (N, H, W, 3) maps to check.
        baseline, score, seed, blur_sigma: the settings the attributions were computed with.
        relative: divide by |S(x) − S(baseline)|.

    Returns:
        float32 (N,): the signed gap (or its relative size).

    Example:
        >>> ig = tfsal.integrated_gradients(model, images)
        >>> abs(tfsal.completeness_delta(model, images, ig, relative=True)).max() < 0.01
    """
    from tfsal.images import check_images, float_array
    from tfsal.loading import as_model

    model = as_model(model)
    images = check_images(images)
    attributions = float_array(attributions, "attributions")
    if attributions.shape != images.shape:
        raise TfsalError(f"expected attributions of shape {images.shape}, received "
                         f"{attributions.shape}")
    targets = model.resolve_targets(images, targets)
    base = make_baseline(images, baseline, seed=seed, blur_sigma=blur_sigma)
    gap = (model.target_scores(images, targets, score=score)
           - model.target_scores(base, targets, score=score))
    delta = attributions.reshape(len(images), -1).sum(axis=1, dtype=np.float64) - gap
    if relative:
        delta = np.abs(delta) / np.maximum(np.abs(gap), 1e-12)
    return delta.astype(np.float32)
