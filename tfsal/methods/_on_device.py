"""The device twin of `sum_over_points`: the same weighted sums over (image, point) pairs,
with the points, the attributions and the float64 sums made by TensorFlow ops on the device.

Used by Integrated Gradients and by SmoothGrad / VarGrad of the plain gradients. The inputs
are uploaded once; each chunk of pairs is one call of a compiled function that builds its
points by gathering from them, attributes them and adds the rows to their images with their
weights (one float64 matrix product, as the host loop does in NumPy). Nothing comes back to
the host until the sums are complete: on a GPU no copy and synchronisation per batch, on a CPU
no NumPy pass over every batch (as fast or faster than the host loop, BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from tfsal.devices import upload
from tfsal.model import Chunker, Model, invalid_argument
from tfsal.targets import fed_indices


def sum_over_points_on_device(
    model: Model,
    key: tuple,
    point_images: Callable[[Sequence[tf.Tensor], tf.Tensor, tf.Tensor], tf.Tensor],
    attribute: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    data: Sequence[np.ndarray | tf.Tensor],
    targets: np.ndarray,
    weights: np.ndarray,
    *,
    squares: bool = False,
):
    """Σ_j weights[j] · attribute(point_images(data, i, j)) for every image i, on the device.

    Pairs are enumerated and chunked as in `sum_over_points` (point-major, full batches of
    `model.batch_size`; a chunk that runs out of memory is attributed in halves, joined and
    summed as one chunk), so the sums equal the host loop's up to float64 rounding.

    Args:
        model: the adapter; it caches the compiled functions under `key`.
        key: names what `point_images` and `attribute` compute: equal keys, equal functions.
        point_images: inside the trace, (data tensors, image indices i, point indices j) ->
            the (pairs, H, W, 3) inputs.
        attribute: inside the trace, (inputs, targets of the pairs) -> their maps.
        data: arrays (or tensors already uploaded) handed to `point_images`, first axis
            free; uploaded once.
        targets: (N,) int32, one per image, or a callable target's `TargetFunction` (its
            callable is in `key`, through `Model.objective`).
        weights: (n_points,) float64.
        squares: also sum the weighted squares.

    Returns:
        float64 NumPy sums (N, ...) shaped like one image's map; with `squares`, a pair.
    """
    n_images, batch = len(targets), model.batch_size
    n_pairs = n_images * len(weights)
    shapes = tuple((tuple(a.shape[1:]), tf.as_dtype(a.dtype).name) for a in data)
    attributed = model.compiled(("sum_over_points", "attributed") + tuple(key) + (shapes,),
                                lambda: _attributed(point_images, attribute, shapes))
    weighted = model.compiled(("sum_over_points", "weighted", squares),
                              lambda: _weighted(squares))
    inputs = [upload(a) for a in data] + [upload(fed_indices(targets))]
    weights = upload(np.asarray(weights, np.float64))
    count = tf.constant(n_images)
    chunker = Chunker(batch)
    totals = []
    for start in range(0, n_pairs, batch):
        stop = min(start + batch, n_pairs)
        pieces = chunker.run(lambda a, b, start=start: _call(
            attributed, data, *inputs, tf.constant(start + a), tf.constant(start + b)),
            stop - start)
        maps = pieces[0] if len(pieces) == 1 else tf.concat(pieces, 0)
        sums = weighted(maps, weights, count, tf.constant(start))
        totals = list(sums) if not totals else [t + s for t, s in zip(totals, sums)]
    result = [t.numpy() for t in totals]
    return tuple(result) if squares else result[0]


def _attributed(point_images, attribute, shapes):
    """(data…, targets, start, stop) -> the float32 maps of pairs start … stop − 1."""
    specs = [tf.TensorSpec((None,) + shape, dtype) for shape, dtype in shapes]
    specs += [tf.TensorSpec([None], tf.int32), tf.TensorSpec([], tf.int32),
              tf.TensorSpec([], tf.int32)]

    def attributed(*args):
        *arrays, targets, start, stop = args
        n = tf.shape(targets)[0]
        pairs = tf.range(start, stop)
        i, j = pairs % n, pairs // n
        return tf.cast(attribute(point_images(arrays, i, j), tf.gather(targets, i)), tf.float32)

    return tf.function(attributed, input_signature=specs, autograph=False)


def _weighted(squares: bool):
    """(maps of pairs start …, weights, N, start) -> each image's weighted sum of its rows
    (and of their squares): one float64 matrix product adds every row to its image."""
    specs = [tf.TensorSpec(None, tf.float32), tf.TensorSpec([None], tf.float64),
             tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)]

    def weighted(maps, weights, n, start):
        pairs = start + tf.range(tf.shape(maps)[0])
        i, j = pairs % n, pairs // n
        rows = tf.reshape(tf.cast(maps, tf.float64), (tf.shape(maps)[0], -1))
        mixing = tf.transpose(tf.one_hot(i, n, dtype=tf.float64)) * tf.gather(weights, j)
        shape = tf.concat([[n], tf.shape(maps)[1:]], 0)
        sums = [tf.reshape(mixing @ rows, shape)]
        if squares:
            sums.append(tf.reshape(mixing @ tf.square(rows), shape))
        return sums

    return tf.function(weighted, input_signature=specs, autograph=False)


def _call(function, data, *args):
    """`function(*args)`, with the errors of inputs too small for the model as TfsalErrors."""
    try:
        return function(*args)
    except tf.errors.InvalidArgumentError as exc:  # e.g. too small for the model's convs
        raise invalid_argument(exc, data[0].shape) from None
