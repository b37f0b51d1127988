"""Nonlinear saliency maps (nonlinear-saliency-maps paper, its Methods section).

At every step, with s the target column of the Jacobian of the softmax output (the
"sensitivity", recomputed at the current image), ‖s‖ its per-pixel Euclidean norm over RGB and
L the current level (a fraction of pixels):

    next_img = clip(blur_below_level(prev_img, ‖s‖, L) + h · s, 0, 1)
    next_map = clip(mask_below_level(prev_img, ‖s‖, L) + h · s, 0, 1)

`blur_below_level` low-pass filters the fraction L of pixels with the lowest ‖s‖ (by rank,
so ties cannot change how many); `mask_below_level` paints them the background colour (white
in the paper). Levels rise
0 → 5 → … → 95 % of the pixels, `steps_per_level` steps each. Blurring is irreversible, so
the loop need not converge: the answer is the step with the highest target probability.
Freezing s at the original image gives the paper's *linear* counterpart (`linear=True`).
`sensitivity=` drives the loop with any tfsal method's map instead of the probability
gradient (e.g. SmoothGrad or RectGrad).

The default loop runs as one compiled TensorFlow loop per batch of (image, target) items.
The level's pixels are selected by rank with NumPy's introselect on a CPU (the fastest there)
and by TensorFlow's `top_k` where `tfsal.devices.device_loops()` says so (a GPU): no host
round trip per step. Both selections are exact, so the trajectories are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tfsal import devices
from tfsal.checks import flag, fraction, number, positive_int
from tfsal.errors import TfsalError
from tfsal.images import check_images, float_array
from tfsal.loading import as_model
from tfsal.model import Chunker
from tfsal.progress import progress_bar
from tfsal.selection import select
from tfsal.targets import is_target_function, needs_classes, resolve_targets

LEVELS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 0.95)
STEPS_PER_LEVEL = 10
STEP_SIZE = 2.0
BLUR_SIGMA_FRACTION = 1 / 32  # default blur_sigma: 2 px on 64², 7 px on 224²


# ------------------------------------------------------------------------ building blocks
def blur_below_level(images, sensitivity_norm, level: float, *, blur_sigma: float | None = None):
    """Gaussian-blur the round(level · H · W) pixels of lowest sensitivity norm.

    Args:
        images: float32 (N, H, W, 3) in [0, 1].
        sensitivity_norm: (N, H, W), e.g. the Euclidean norm over RGB of a gradient.
        level: fraction in [0, 1] of pixels to blur (0: none).
        blur_sigma: filter width in pixels (default: image side / 32). The filter is SciPy's
            `gaussian_filter` (truncate 4, mode "reflect") over H and W.

    Returns:
        float32 (N, H, W, 3).

    Example:
        >>> norm = np.linalg.norm(tfsal.vanilla_gradient(model, images), axis=-1)
        >>> half = tfsal.blur_below_level(images, norm, 0.5)
    """
    images, norm = _check_pair(images, sensitivity_norm)
    level = _check_level(level)
    filters = blur_filters(images.shape, _sigma(blur_sigma, images.shape))
    below = _below_level(tf.constant(norm), level)
    x = tf.constant(images)
    return tf.where(below, blur(x, filters), x).numpy()


def mask_below_level(images, sensitivity_norm, level: float, *, background: float = 1.0):
    """Paint the round(level · H · W) pixels of lowest sensitivity norm `background`.

    Args:
        images, sensitivity_norm, level: as for `blur_below_level`.
        background: the colour, a value in [0, 1] (1 = white, as in the paper).

    Returns:
        float32 (N, H, W, 3).

    Example:
        >>> masked = tfsal.mask_below_level(images, norm, 0.95)
        >>> (masked == 1).mean()
    """
    images, norm = _check_pair(images, sensitivity_norm)
    level = _check_level(level)
    background = fraction(background, "background")
    below = _below_level(tf.constant(norm), level)
    return tf.where(below, tf.constant(background, tf.float32), images).numpy()


def gaussian_kernel(sigma: float) -> np.ndarray:
    """SciPy's 1-D Gaussian kernel (radius int(4 σ + 0.5)), normalised to sum 1."""
    radius = int(4.0 * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) matrix applying SciPy's 1-D Gaussian filter with mode "reflect".

    Row i holds the kernel's weights folded onto the pixels they reach after reflecting at the
    borders (… c b a | a b c …), so `matrix @ signal` equals `gaussian_filter1d(signal)`. Two
    small matrix products blur an image faster than a 17-57-tap depthwise convolution.
    """
    kernel = gaussian_kernel(sigma)
    radius = (len(kernel) - 1) // 2
    matrix = np.zeros((size, size))
    period = 2 * size
    for offset, weight in zip(range(-radius, radius + 1), kernel):
        source = (np.arange(size) + offset) % period
        source = np.where(source >= size, period - 1 - source, source)
        np.add.at(matrix, (np.arange(size), source), weight)
    return matrix.astype(np.float32)


def blur_filters(shape, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The (rows, columns) blur matrices for images of `shape` (N, H, W, C)."""
    return blur_matrix(shape[1], sigma), blur_matrix(shape[2], sigma)


def blur(images, filters):
    """Separable Gaussian blur over H and W (SciPy's "reflect" borders); `blur_filters`."""
    rows, columns = filters
    vertical = tf.einsum("ij,njkc->nikc", rows, images)
    return tf.einsum("kl,nilc->nikc", columns, vertical)


def _below_level(norm, level, how: str = "numpy"):
    """(N, H, W, 1) booleans marking each image's round(level · H · W) lowest-norm pixels
    (`_below_count`)."""
    shape = tf.shape(norm)
    return _below_count(norm, _count_of_level(level, shape[1] * shape[2]), how)


def _count_of_level(level, n):
    """round(level · n) pixels, in float64 (half to even, as `_counts_of_levels`)."""
    return tf.cast(tf.round(tf.cast(level, tf.float64) * tf.cast(n, tf.float64)), tf.int32)


def _counts_of_levels(levels, n: int) -> np.ndarray:
    """`_count_of_level` of float32 levels on the host: int32 counts a compiled loop takes as
    input, so its rank arithmetic stays in host memory (on a GPU, a count computed from a
    level on the device would be copied back to the host at every step for `top_k`)."""
    fractions = np.asarray(levels, np.float32).astype(np.float64)
    return np.round(fractions * float(n)).astype(np.int32)


def _below_count(norm, count, how: str = "numpy"):
    """(N, H, W, 1) booleans marking each image's `count` lowest-norm pixels.

    Selection by rank (ties broken by position) blurs exactly the level's fraction of pixels,
    also when many norms tie (a saturated softmax has an all-zero gradient). The count-th
    smallest value comes from `selection.select` by `how`: "numpy" (NumPy's introselect,
    cheaper on the CPU than TensorFlow's partial sort at the middle levels, BENCHMARKS.md, but
    a host round trip) or "top_k" (on the device; `level_selection`).

    Pixels are counted in int64: TensorFlow's GPU kernels for int32 sums and comparisons
    work in host memory, which would copy (N, H · W) counts to the host at every step.
    """
    shape = tf.shape(norm)
    flat = tf.reshape(tf.cast(norm, tf.float32), (shape[0], -1))
    threshold = select(flat, tf.maximum(count, 1) - 1, how)[:, None]
    less = flat < threshold
    tied = tf.equal(flat, threshold)
    wanted_ties = tf.cast(count, tf.int64) - tf.reduce_sum(tf.cast(less, tf.int64), axis=1,
                                                           keepdims=True)
    below = less | (tied & (tf.cumsum(tf.cast(tied, tf.int64), axis=1) <= wanted_ties))
    return tf.reshape(below & (count > 0), shape)[..., None]


def level_selection() -> str:
    """How the loops select a level's pixels: "top_k" on the device (a GPU), else "numpy"."""
    return "top_k" if devices.device_loops() else "numpy"


def advance(images, sensitivity, level, filters, step_size, background, how: str = "numpy"):
    """One step of the loop (TF): (next image, next masked map, pixels kept (N, H, W)); `how`
    selects the level's pixels (`_below_level`)."""
    shape = tf.shape(sensitivity)
    return _advance(images, sensitivity, _count_of_level(level, shape[1] * shape[2]), filters,
                    step_size, background, how)


def _advance(images, sensitivity, count, filters, step_size, background, how):
    """`advance` blurring the `count` pixels of lowest sensitivity norm."""
    below = _below_count(tf.norm(sensitivity, axis=-1), count, how)
    push = step_size * sensitivity
    next_image = tf.clip_by_value(tf.where(below, blur(images, filters), images) + push, 0, 1)
    next_map = tf.clip_by_value(tf.where(below, background, images) + push, 0, 1)
    return next_image, next_map, tf.logical_not(below[..., 0])


# ------------------------------------------------------------------------ the trajectory
@dataclass(frozen=True)
class Trajectory:
    """One nonlinear (or linear) saliency trajectory per (image, target) item.

    Steps are numbered from 0 (the original image) to S; snapshots are taken at the end of
    each level.

    Attributes:
        targets: (M,) target class of each item.
        image_index: (M,) index of the input image each item starts from.
        levels: (L,) the levels, fractions of pixels.
        step_levels: (S,) the level used at each step 1 … S.
        probabilities: (M, S + 1, classes) softmax output at every step.
        blurred_fraction: (M, S) fraction of pixels blurred / masked at each step.
        images: (M, L, H, W, 3) the modified image at the end of each level.
        maps: (M, L, H, W, 3) the masked saliency map at the end of each level.
        kept: (M, L, H, W) the pixels the last step of each level kept (neither blurred nor
            masked): the salient pixels at that level (Figure 4 blurs `kept[:, -1]`).
        best_step: (M,) the step with the highest target probability.
        best_image, best_map: (M, H, W, 3) image and map at that step (step 0: the original).
        linear: whether the sensitivity was frozen at the original image.
    """

    targets: np.ndarray
    image_index: np.ndarray
    levels: np.ndarray
    step_levels: np.ndarray
    probabilities: np.ndarray
    blurred_fraction: np.ndarray
    images: np.ndarray
    maps: np.ndarray
    kept: np.ndarray
    best_step: np.ndarray
    best_image: np.ndarray
    best_map: np.ndarray
    linear: bool

    @property
    def target_probability(self) -> np.ndarray:
        """(M, S + 1) probability of each item's target class at every step."""
        return np.take_along_axis(self.probabilities, self.targets[:, None, None], 2)[..., 0]

    @property
    def best_probability(self) -> np.ndarray:
        """(M,) the highest target probability along the trajectory."""
        return self.target_probability.max(axis=1)

    def top_classes(self, k: int = 2) -> np.ndarray:
        """(M, S + 1, k) the k most probable classes at every step, most probable first."""
        return np.argsort(-self.probabilities, axis=-1)[..., :k]


def nonlinear_saliency(model, images, targets=None, *, levels=LEVELS,
                       steps_per_level: int = STEPS_PER_LEVEL, step_size: float = STEP_SIZE,
                       blur_sigma: float | None = None, background: float = 1.0,
                       linear: bool = False, sensitivity: Callable | None = None,
                       progress: bool = False) -> Trajectory:
    """Nonlinear saliency maps: the blur-and-step loop, recorded as a trajectory.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), an int array (N, K) for K targets per image (e.g. the
            top-2 classes; items are image-major), or None for the predicted class. Callable
            targets are refused: the loop follows and records the softmax over the classes.
        levels: increasing fractions of pixels in [0, 1] to blur, one stage each.
        steps_per_level: steps at each level.
        step_size: h, the scale of the step along the sensitivity.
        blur_sigma: Gaussian filter width in pixels (default: image side / 32).
        background: colour of masked pixels in the maps (1 = white).
        linear: freeze the sensitivity at the original image (the paper's linear map).
        sensitivity: None (the target column of the softmax Jacobian), or a tfsal method
            `method(model, images, targets) -> (N, H, W, 3)` whose map drives the loop
            instead; it then runs step by step in Python.
        progress: show a progress bar over batches (tqdm, if installed).

    Returns:
        a `Trajectory`.

    Raises:
        TfsalError: for bad levels, steps, step size, sigma, background or targets (a callable
            target included).

    Example:
        >>> t = tfsal.nonlinear_saliency("shapes-cnn", images, targets=3)
        >>> t.best_probability, t.maps[:, -1]
    """
    if is_target_function(targets):
        raise TfsalError(needs_classes(
            "the nonlinear saliency loop (it follows and records the softmax over the "
            "classes)", getattr(targets, "function", targets)))
    model = as_model(model)
    images = check_images(images)
    model.check_size(images)
    if sensitivity is not None and not callable(sensitivity):
        raise TfsalError(f"expected sensitivity None or a method (callable), received "
                         f"{sensitivity!r}")
    items, item_targets = _items(model, images, targets)
    levels = _check_levels(levels)
    steps = positive_int(steps_per_level, "steps_per_level", maximum=10_000)
    step_size = number(step_size, "step_size")
    filters = blur_filters(images.shape, _sigma(blur_sigma, images.shape))
    background = fraction(background, "background")
    linear = flag(linear, "linear")
    config = (levels, steps, step_size, filters, background)
    chunks = range(0, len(items), model.batch_size)
    chunker = Chunker(model.batch_size)  # halves a chunk that runs out of memory

    def loop(start: int, stop: int):
        x, t = images[items[start:stop]], item_targets[start:stop]
        if sensitivity is None:
            return _compiled_loop(model, x, t, config, bool(linear))
        return _python_loop(model, x, t, config, bool(linear), sensitivity)

    parts = []
    for start in progress_bar(chunks, progress, "nonlinear saliency"):
        stop = min(start + model.batch_size, len(items))
        parts.extend(chunker.run(lambda a, b, start=start: loop(start + a, start + b),
                                 stop - start))
    joined = [np.concatenate(p) for p in zip(*parts)]
    probabilities, fractions, snap_images, snap_maps, kept, best_step, best_image, best_map = \
        joined
    return Trajectory(item_targets, items, np.asarray(levels, np.float32),
                      np.repeat(np.asarray(levels, np.float32), steps), probabilities, fractions,
                      snap_images, snap_maps, kept, best_step, best_image, best_map,
                      bool(linear))


# ------------------------------------------------------------------------ the two loops
def _compiled_loop(model, images, targets, config, linear):
    levels, steps, step_size, filters, background = config
    h, w = images.shape[1:3]

    def build():
        spec = tf.TensorSpec
        signature = [spec([None, h, w, 3], tf.float32), spec([None], tf.int32),
                     spec([len(levels)], tf.int32), spec([], tf.int32), spec([], tf.float32),
                     (spec([h, h], tf.float32), spec([w, w], tf.float32)),
                     spec([], tf.float32)]

        def run(*args):
            return _loop(model, linear, how, *args)

        return tf.function(run, input_signature=signature, autograph=False)

    how = level_selection()
    fn = model.compiled(("nonlinear", linear, len(levels), h, w, how), build)
    counts = _counts_of_levels(levels, h * w)
    out = fn(tf.constant(images), tf.constant(targets), tf.constant(counts), tf.constant(steps),
             tf.constant(step_size, tf.float32), tuple(tf.constant(f) for f in filters),
             tf.constant(background, tf.float32))
    return [np.asarray(o) for o in out]


def _loop(model, linear, how, images, targets, counts, steps, step_size, filters, background):
    """The whole trajectory as TensorFlow ops: levels unrolled (`counts`: pixels blurred at
    each, `_counts_of_levels`), steps in a while_loop."""
    if linear:
        frozen, _ = model.traced_gradients(images, targets, score="probability")

    def measure(x):
        if linear:
            return frozen, model.traced_scores(x, score="probability")
        return model.traced_gradients(x, targets, score="probability")

    best = _no_best(images)
    step = tf.constant(0)
    image, image_map = images, images
    kept = tf.ones(tf.shape(images)[:3], tf.bool)
    probabilities, fractions, snap_images, snap_maps, snap_kept = [], [], [], [], []
    for index in range(counts.shape[0]):
        count = counts[index]

        def body(i, step, image, image_map, kept, best, probs, fracs, count=count):
            sensitivity, p = measure(image)
            best = _update_best(best, p, targets, step, image, image_map)
            image, image_map, kept = _advance(image, sensitivity, count, filters, step_size,
                                              background, how)
            return (i + 1, step + 1, image, image_map, kept, best, probs.write(i, p),
                    fracs.write(i, _blurred_fraction(kept)))

        arrays = (tf.TensorArray(tf.float32, size=steps), tf.TensorArray(tf.float32, size=steps))
        _, step, image, image_map, kept, best, probs, fracs = tf.while_loop(
            lambda i, *_: i < steps, body,
            (tf.constant(0), step, image, image_map, kept, best, *arrays))
        probabilities.append(tf.transpose(probs.stack(), [1, 0, 2]))
        fractions.append(tf.transpose(fracs.stack()))
        snap_images.append(image)
        snap_maps.append(image_map)
        snap_kept.append(kept)
    final = model.traced_scores(image, score="probability")
    best = _update_best(best, final, targets, step, image, image_map)
    probabilities.append(final[:, None])
    return (tf.concat(probabilities, axis=1), tf.concat(fractions, axis=1),
            tf.stack(snap_images, axis=1), tf.stack(snap_maps, axis=1),
            tf.stack(snap_kept, axis=1), best[1], best[2], best[3])


def _blurred_fraction(kept):
    return 1.0 - tf.reduce_mean(tf.cast(kept, tf.float32), axis=(1, 2))


def _python_loop(model, images, targets, config, linear, method):
    """The loop driven by another method's map, one model call per step from Python."""
    levels, steps, step_size, filters, background = config
    h, w = images.shape[1:3]

    def build():
        spec = tf.TensorSpec

        def step(*args):
            return advance(*args, how)

        return tf.function(step, autograph=False, input_signature=[
            spec([None, h, w, 3], tf.float32), spec([None, h, w, 3], tf.float32),
            spec([], tf.float32), (spec([h, h], tf.float32), spec([w, w], tf.float32)),
            spec([], tf.float32),
            spec([], tf.float32)])

    how = level_selection()
    step_fn = model.compiled(("advance", h, w, how), build)
    frozen = _sensitivity(method, model, images, targets) if linear else None
    best = _no_best(tf.constant(images))
    image, image_map = images, images
    probabilities, fractions, snap_images, snap_maps, snap_kept = [], [], [], [], []
    step = 0
    for level in levels:
        for _ in range(steps):
            p = model.predict(image, score="probability")
            probabilities.append(p)
            best = _update_best(best, p, targets, step, image, image_map)
            sensitivity = frozen if linear else _sensitivity(method, model, image, targets)
            image, image_map, kept = (np.asarray(t) for t in step_fn(
                tf.constant(image), tf.constant(sensitivity), tf.constant(level, tf.float32),
                tuple(tf.constant(f) for f in filters), tf.constant(step_size, tf.float32),
                tf.constant(background, tf.float32)))
            fractions.append(np.asarray(_blurred_fraction(kept)))
            step += 1
        snap_images.append(image)
        snap_maps.append(image_map)
        snap_kept.append(kept)
    p = model.predict(image, score="probability")
    probabilities.append(p)
    best = _update_best(best, p, targets, step, image, image_map)
    return [np.stack(probabilities, axis=1), np.stack(fractions, axis=1),
            np.stack(snap_images, axis=1), np.stack(snap_maps, axis=1),
            np.stack(snap_kept, axis=1), *(np.asarray(b) for b in best[1:])]


def _sensitivity(method, model, images, targets) -> np.ndarray:
    maps = np.asarray(method(model, images, targets), np.float32)
    if maps.shape != images.shape:
        raise TfsalError(f"expected the sensitivity method to return maps of shape "
                         f"{images.shape}, received {maps.shape}")
    return maps


def _no_best(images):
    """(best target probability, best step, best image, best map) before any step."""
    n = tf.shape(images)[0]
    return (tf.fill([n], -1.0), tf.zeros([n], tf.int32), images, images)


def _update_best(best, probabilities, targets, step, image, image_map):
    """Keep, per item, the step whose target probability is highest (the earliest on ties)."""
    p = tf.gather(tf.convert_to_tensor(probabilities, tf.float32), targets, batch_dims=1)
    better = p > best[0]
    step = tf.fill(tf.shape(better), tf.cast(step, tf.int32))
    pick = better[:, None, None, None]
    return (tf.where(better, p, best[0]), tf.where(better, step, best[1]),
            tf.where(pick, tf.convert_to_tensor(image, tf.float32), best[2]),
            tf.where(pick, tf.convert_to_tensor(image_map, tf.float32), best[3]))


# ------------------------------------------------------------------------ arguments
def _items(model, images, targets):
    """(image index, target) of every item; targets (N, K) give K items per image."""
    n = len(images)
    arr = None if targets is None else np.asarray(targets)
    if arr is not None and arr.ndim == 2:
        if arr.shape[0] != n or arr.shape[1] == 0:
            raise TfsalError(f"expected targets of shape ({n}, K) with K ≥ 1, received "
                             f"{arr.shape}")
        flat = resolve_targets(arr.reshape(-1), arr.size, model.num_classes, predict=None)
        return np.repeat(np.arange(n), arr.shape[1]), flat
    return np.arange(n), model.resolve_targets(images, targets)


def _check_levels(levels) -> tuple:
    try:
        values = tuple(fraction(v, "levels") for v in levels)
    except (TypeError, TfsalError):
        raise TfsalError(f"expected levels a sequence of fractions in [0, 1], received "
                         f"{levels!r}") from None
    if not values or any(b < a for a, b in zip(values, values[1:])):
        raise TfsalError(f"expected levels a non-empty, non-decreasing sequence of fractions in "
                         f"[0, 1], received {levels!r}")
    return values


def _check_level(level) -> float:
    return _check_levels([level])[0]


def _sigma(blur_sigma, shape) -> float:
    side = min(shape[1:3])
    sigma = side * BLUR_SIGMA_FRACTION if blur_sigma is None else number(blur_sigma, "blur_sigma")

    if sigma <= 0 or sigma >= side or int(4.0 * sigma + 0.5) >= side:
        raise TfsalError(f"expected blur_sigma > 0 with a filter radius (4 sigma) below the image "
                         f"side {side}, received {blur_sigma!r}")
    return sigma


def _check_pair(images, sensitivity_norm):
    images = check_images(images)
    norm = float_array(sensitivity_norm, "sensitivity_norm")
    if norm.shape != images.shape[:3]:
        raise TfsalError(f"expected sensitivity_norm of shape {images.shape[:3]}, received "
                         f"{norm.shape}")
    if not np.isfinite(norm).all():
        raise TfsalError("expected a finite sensitivity_norm, received NaN or inf values")
    return images, norm
