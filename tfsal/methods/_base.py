"""What every attribution method shares: argument handling in one place, and batched sampling."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from tfsal.images import check_images
from tfsal.loading import as_model
from tfsal.model import Chunker, Model


def attribution_method(compute: Callable) -> Callable:
    """Turn `compute(model: Model, images, targets, **hyper)` into a public method.

    The public function accepts anything `tfsal.load_model` takes as `model`, validates the
    images and resolves the targets (None = predicted class) exactly once, then calls
    `compute`. `public.compute` stays reachable so wrappers such as SmoothGrad can feed it
    images that legitimately leave [0, 1] (noisy samples) without re-validation.
    """

    @functools.wraps(compute)
    def public(model, images, targets=None, **hyper):
        model = as_model(model)
        images = check_images(images)
        targets = model.resolve_targets(images, targets)
        return compute(model, images, targets, **hyper)

    public.compute = compute
    return public


def sum_over_points(
    model: Model,
    n_images: int,
    n_points: int,
    point_images: Callable[[np.ndarray, np.ndarray], np.ndarray],
    attribute: Callable[[np.ndarray, np.ndarray], np.ndarray],
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    squares: bool = False,
):
    """Σ_j weights[j] · attribute(point_images(i, j)) for every image i, in full batches.

    The (image, point) pairs are enumerated point-major (p = j·N + i) and cut into chunks of
    `model.batch_size`, so batches stay full whatever N is, and memory does not grow with the
    number of points. A chunk whose `attribute` call runs out of memory is computed in halves
    (`tfsal.model.Chunker`, with a warning) and summed as one chunk: the result is unchanged.

    This is the host loop (NumPy points and float64 sums), for SmoothGrad of methods it calls
    batch by batch; IG and SmoothGrad of the plain gradients use its device twin,
    `tfsal.methods._on_device.sum_over_points_on_device`.

    Returns:
        the weighted sum (N, H, W, C); with `squares`, also the weighted sum of squares.
    """
    n_pairs = n_images * n_points
    total = squared = None
    chunker = Chunker(model.batch_size)
    for start in range(0, n_pairs, model.batch_size):
        p = np.arange(start, min(start + model.batch_size, n_pairs))
        i, j = p % n_images, p // n_images

        def part(a, b, i=i, j=j):
            return np.asarray(attribute(point_images(i[a:b], j[a:b]), targets[i[a:b]]))

        pieces = chunker.run(part, len(p))
        attr = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
        if total is None:
            total = np.zeros((n_images,) + attr.shape[1:], np.float64)
            squared = np.zeros_like(total) if squares else None
        # one matrix product adds every row to its image with its point's weight
        mixing = np.zeros((n_images, len(p)))
        mixing[i, np.arange(len(p))] = weights[j]
        rows = attr.reshape(len(p), -1).astype(np.float64)
        total += (mixing @ rows).reshape(total.shape)
        if squares:
            squared += (mixing @ rows**2).reshape(total.shape)
    return (total, squared) if squares else total
