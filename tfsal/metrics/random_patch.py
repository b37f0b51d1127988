"""The RectGrad paper's random-patch ("training dataset occlusion") experiment.

One fixed patch of uniform RGB noise is pasted into the top-left corner of every training and
evaluation image; a fresh classifier is trained on those images. The patch carries no class
information, so a faithful attribution method should put (nearly) nothing on it.

Score, as in the RectGrad authors' notebook (their Figure 7): each map is summed over the
colour channels; every method except RectGrad gets the "final threshold" of the baselines —
per image, values below the 95th percentile are set to 0 (the notebook's
`preprocess(attribution, 95, 100)`; when that percentile is ≤ 0 they are clipped to it
instead) — while RectGrad is run with its own zero threshold (max(x·R, 0)) and no percentile
cut. The score is the sum of that map over the top-left (patch − 2)² pixels: the 10×10 patch
minus the one-pixel border that a 3×3 first convolution mixes with the image (8×8).
Maps are not normalised in that score (`patch_sum`, the paper's boxplots), so its units differ
between methods; `patch_fraction` divides the absolute mass in the square by the map's total
absolute mass per image, which is comparable across methods (a uniform map scores the
square's share of the pixels). The 95th-percentile cut keeps 5 % of the pixels per image, so a
patch that is not among any image's top 5 % scores exactly 0 for every baseline while RectGrad
keeps all its positive mass; `raw_patch_fraction` (channel sums, no threshold for any method)
compares all methods on the same footing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsal.errors import TfsalError
from tfsal.metrics._common import attributions_in_chunks, pixel_maps, positive, resolve_methods
from tfsal.model import Model


@dataclass(frozen=True)
class RandomPatch:
    """Scores of each method on images carrying the training patch.

    Attributes:
        methods: (M,) labels.
        patch_sum: (M, N) sum of the (thresholded) channel-summed map in the scored square.
        patch_fraction: (M, N) share of the map's absolute mass in the scored square.
        raw_patch_fraction: (M, N) the same share without any final threshold.
        patch: (P, P, 3) the pasted noise.
        region: side of the scored top-left square.
        final_threshold: the baselines' percentile threshold (None: none).
        model: the `tfsal.Model` trained on patched images.
        accuracy: its accuracy on the patched evaluation images.
        control_patch_sum, control_patch_fraction, control_raw_patch_fraction: (M, N) the same
            scores for a model trained
            with the same recipe on the clean images, on the clean evaluation images (how much
            the corner gets without a patch); None without `control`.
        control_model, control_accuracy: that model and its clean accuracy (or None).
    """

    methods: tuple
    patch_sum: np.ndarray
    patch_fraction: np.ndarray
    raw_patch_fraction: np.ndarray
    patch: np.ndarray
    region: int
    final_threshold: float | None
    model: Model
    accuracy: float
    control_patch_sum: np.ndarray | None = None
    control_patch_fraction: np.ndarray | None = None
    control_raw_patch_fraction: np.ndarray | None = None
    control_model: Model | None = None
    control_accuracy: float | None = None

    def summary(self) -> dict:
        """label -> {"sum" | "fraction" | "raw_fraction" [| "control_…"]: (q25, median, q75)}."""
        out = {}
        for i, label in enumerate(self.methods):
            row = {"sum": _quartiles(self.patch_sum[i]),
                   "fraction": _quartiles(self.patch_fraction[i]),
                   "raw_fraction": _quartiles(self.raw_patch_fraction[i])}
            if self.control_patch_fraction is not None:
                row["control_sum"] = _quartiles(self.control_patch_sum[i])
                row["control_fraction"] = _quartiles(self.control_patch_fraction[i])
                row["control_raw_fraction"] = _quartiles(self.control_raw_patch_fraction[i])
            out[label] = row
        return out


def random_patch_experiment(methods, *, n_train: int, n_eval: int, epochs: int,
                            patch_size: int = 10, region: int | None = None,
                            final_threshold: float | None = 95.0, size: int = 64,
                            seed: int = 0, train_seed: int = 1, eval_seed: int = 2,
                            build=None, batch_size: int = 32, learning_rate: float = 2e-3,
                            method_kwargs: dict | None = None, control: bool = False,
                            progress: bool = False) -> RandomPatch:
    """Train on shapes images that all carry one random patch; score each method's maps there.

    Args:
        methods: names in `tfsal.methods.METHODS`, callables `method(model, images, targets)`,
            or a mapping label → name or callable.
        n_train: training images (shapes data, stream `train_seed`).
        n_eval: evaluation images (stream `eval_seed`), explained for their predicted class.
        epochs: training epochs (`tfsal.zoo.train_classifier` recipe).
        patch_size: side of the noise patch in pixels.
        region: side of the scored top-left square (None: patch_size − 2, the RectGrad paper's
            8×8 for a 10×10 patch and 3×3 first convolutions).
        final_threshold: the baselines' per-image percentile threshold (None: no threshold,
            channel sums only, for every method).
        size: image side (≥ 32).
        seed: the patch's noise and the training randomness.
        train_seed, eval_seed: shapes data streams (the zoo's training / test streams by
            default).
        build: architecture builder (None: `tfsal.zoo.build_shapes_cnn`).
        batch_size, learning_rate: training recipe.
        method_kwargs: label -> keyword arguments for that method.
        control: also train on clean images and score the clean evaluation images.
        progress: print training progress and a bar over the methods.

    Returns:
        a `RandomPatch`.

    Raises:
        TfsalError: for bad sizes, thresholds or method names.

    Example:
        >>> r = random_patch_experiment(["vanilla", "rectgrad"], n_train=2000, n_eval=100,
        ...                             epochs=5)
        >>> r.summary()["rectgrad"]["fraction"]
    """
    from tfsal.data import CLASS_NAMES, make_dataset
    from tfsal.progress import progress_bar
    from tfsal.zoo.shapes_cnn import build_shapes_cnn
    from tfsal.zoo.training import accuracy, train_classifier

    n_train, n_eval, epochs = (positive(n_train, "n_train"), positive(n_eval, "n_eval"),
                               positive(epochs, "epochs"))
    size = positive(size, "size", 32)
    patch_size = positive(patch_size, "patch_size")
    if patch_size >= size:
        raise TfsalError(f"expected patch_size below the image size {size}, received "
                         f"{patch_size}")
    region = max(patch_size - 2, 1) if region is None else positive(region, "region")
    if region > patch_size:
        raise TfsalError(f"expected region ≤ patch_size {patch_size}, received {region}")
    _check_threshold(final_threshold)
    seed = positive(seed, "seed", 0)
    resolved = resolve_methods(methods, method_kwargs, seed=seed)
    build = build_shapes_cnn if build is None else build

    patch = np.random.default_rng(seed).random((patch_size, patch_size, 3)).astype(np.float32)
    train = make_dataset(n_train, size=size, seed=train_seed)
    evaluation = make_dataset(n_eval, size=size, seed=eval_seed)
    runs = [(True, paste(train.images, patch), paste(evaluation.images, patch))]
    if control:
        runs.append((False, train.images, evaluation.images))
    results = []
    for patched, train_images, eval_images in runs:
        keras_model = train_classifier(train_images, train.labels, build=build, epochs=epochs,
                                       batch_size=batch_size, learning_rate=learning_rate,
                                       seed=seed, num_classes=len(CLASS_NAMES),
                                       progress=progress)
        score = accuracy(keras_model, eval_images, evaluation.labels)
        what = "patched" if patched else "control"
        model = Model(keras_model, preprocess="tf", class_names=CLASS_NAMES,
                      name=f"{getattr(build, '__name__', 'model')}_{what}")
        scores = []  # per method: (sum, fraction, raw fraction)
        for method in progress_bar(resolved, progress, f"random patch ({what}) maps"):
            raw = np.concatenate(attributions_in_chunks(method.function, model, eval_images,
                                                        method.kwargs))
            threshold = None if method.self_thresholded else final_threshold
            scores.append(patch_scores(raw, region=region, final_threshold=threshold)
                          + patch_scores(raw, region=region)[1:])
        results.append((*(np.asarray(part) for part in zip(*scores)), model, score))
    (patch_sum, patch_fraction, raw_fraction, model, score), *rest = results
    control_fields = {}
    if rest:
        c_sum, c_fraction, c_raw, c_model, c_score = rest[0]
        control_fields = dict(control_patch_sum=c_sum, control_patch_fraction=c_fraction,
                              control_raw_patch_fraction=c_raw, control_model=c_model,
                              control_accuracy=c_score)
    return RandomPatch(tuple(m.label for m in resolved), patch_sum, patch_fraction,
                       raw_fraction, patch, region, final_threshold, model, score,
                       **control_fields)


def paste(images, patch) -> np.ndarray:
    """A copy of `images` (N, H, W, 3) with `patch` (P, Q, 3) in the top-left corner."""
    images = np.array(images, dtype=np.float32, copy=True)
    patch = np.asarray(patch, np.float32)
    if patch.ndim != 3 or patch.shape[-1] != 3 or patch.shape[0] > images.shape[1] \
            or patch.shape[1] > images.shape[2]:
        raise TfsalError(f"expected a patch (P, Q, 3) no larger than the images "
                         f"{images.shape[1:3]}, received shape {patch.shape}")
    images[:, :patch.shape[0], :patch.shape[1]] = patch
    return images


def patch_scores(attributions, *, region: int = 8, final_threshold: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The random-patch scores of maps: (patch_sum (N,), patch_fraction (N,)).

    Args:
        attributions: (N, H, W, C) maps (channels are summed) or (N, H, W).
        region: side of the scored top-left square.
        final_threshold: per-image percentile below which values are zeroed (clipped to the
            percentile when it is ≤ 0), as the RectGrad authors' `preprocess(·, q, 100)`;
            None: no threshold.

    Returns:
        patch_sum: sum of the (thresholded) channel-summed map over the square.
        patch_fraction: |map| summed over the square / |map| summed over the image (NaN for
            an all-zero map).
    """
    maps = np.asarray(attributions, np.float64)
    maps = pixel_maps(maps, maps.shape[1:3])
    region = positive(region, "region")
    if region > min(maps.shape[1:3]):
        raise TfsalError(f"expected region ≤ the map size {maps.shape[1:3]}, received {region}")
    _check_threshold(final_threshold)
    if final_threshold is not None:
        maps = reference_threshold(maps, final_threshold)
    inside = maps[:, :region, :region]
    total = np.abs(maps).sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.abs(inside).sum(axis=(1, 2)) / total
    return inside.sum(axis=(1, 2)), fraction


def reference_threshold(maps: np.ndarray, percentile: float) -> np.ndarray:
    """The RectGrad authors' final threshold of (N, H, W) maps: per image, values below the
    `percentile`-th percentile become 0 if that percentile is > 0, else the percentile."""
    cut = np.percentile(maps, percentile, axis=(1, 2), keepdims=True)
    return np.where(maps < cut, np.where(cut > 0, 0.0, cut), maps)


def _check_threshold(value) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not 0 <= value <= 100:
        raise TfsalError(f"expected final_threshold a percentile in [0, 100] or None, "
                         f"received {value!r}")


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return (np.nan, np.nan, np.nan)
    q = np.percentile(values, [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])
