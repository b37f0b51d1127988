"""The RectGrad paper's random-patch ("training dataset occlusion") experiment.

One fixed patch of uniform RGB noise is pasted into the top-left corner of every training and
evaluation image; a fresh classifier is trained on those images (the injected `trainer`). The
patch carries no class information, so a faithful attribution method should put (nearly)
nothing on it.

The score is a pure measurement, `tfsal.metrics.patch_scores` (its docstring has the RectGrad
authors' protocol): channel sums, the baselines' 95th-percentile "final threshold" — skipped
for the methods that threshold their own maps (RectGrad, run with its zero threshold) — and
the sum / share of the map in the top-left (patch − 2)² square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsal.checks import integer
from tfsal.errors import TfsalError
from tfsal.experiments._common import SELF_THRESHOLDING, attributions_in_chunks, resolve_methods
from tfsal.experiments.training import DEFAULT_RECIPE, Trainer, accuracy, trained_model
from tfsal.metrics import patch_scores
from tfsal.metrics.random_patch import check_threshold
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


def random_patch_experiment(methods, *, n_train: int, n_eval: int,
                            trainer: Trainer = DEFAULT_RECIPE, patch_size: int = 10,
                            region: int | None = None, final_threshold: float | None = 95.0,
                            size: int = 64, seed: int = 0, train_seed: int = 1,
                            eval_seed: int = 2, method_kwargs: dict | None = None,
                            control: bool = False, progress: bool = False) -> RandomPatch:
    """Train on shapes images that all carry one random patch; score each method's maps there.

    Args:
        methods: names in `tfsal.methods.METHODS`, callables `method(model, images, targets)`,
            or a mapping label → name or callable.
        n_train: training images (shapes data, stream `train_seed`).
        n_eval: evaluation images (stream `eval_seed`), explained for their predicted class.
        trainer: trains the model: a `TrainingRecipe` (the embedded architecture's recipe;
            default `TrainingRecipe()`) or any `trainer(images, labels, *, seed, num_classes)`
            returning a `tfsal.Model`.
        patch_size: side of the noise patch in pixels.
        region: side of the scored top-left square (None: patch_size − 2, the RectGrad paper's
            8×8 for a 10×10 patch and 3×3 first convolutions).
        final_threshold: the baselines' per-image percentile threshold (None: no threshold,
            channel sums only, for every method).
        size: image side (≥ 32).
        seed: the patch's noise and the training randomness.
        train_seed, eval_seed: shapes data streams (the zoo's training / test streams by
            default).
        method_kwargs: label -> keyword arguments for that method.
        control: also train on clean images and score the clean evaluation images.
        progress: a bar over the methods (a `TrainingRecipe(progress=True)` prints the
            training's epochs).

    Returns:
        a `RandomPatch`.

    Raises:
        TfsalError: for bad sizes, thresholds, trainer or method names.

    Example:
        >>> r = random_patch_experiment(["vanilla", "rectgrad"], n_train=2000, n_eval=100,
        ...                             trainer=TrainingRecipe(epochs=5))
        >>> r.summary()["rectgrad"]["fraction"]
    """
    from tfsal.data import CLASS_NAMES, make_dataset
    from tfsal.progress import progress_bar

    n_train, n_eval = integer(n_train, "n_train", low=1), integer(n_eval, "n_eval", low=1)
    size = integer(size, "size", low=32)
    patch_size = integer(patch_size, "patch_size", low=1)
    if patch_size >= size:
        raise TfsalError(f"expected patch_size below the image size {size}, received "
                         f"{patch_size}")
    region = max(patch_size - 2, 1) if region is None else integer(region, "region", low=1)
    if region > patch_size:
        raise TfsalError(f"expected region ≤ patch_size {patch_size}, received {region}")
    check_threshold(final_threshold)
    seed = integer(seed, "seed", low=0)
    if not callable(trainer):
        raise TfsalError(f"expected trainer a TrainingRecipe or a callable trainer(images, "
                         f"labels, *, seed, num_classes), received {trainer!r}")
    resolved = resolve_methods(methods, method_kwargs, seed=seed,
                               self_thresholding=SELF_THRESHOLDING)

    patch = np.random.default_rng(seed).random((patch_size, patch_size, 3)).astype(np.float32)
    data = make_dataset(n_train, size=size, seed=train_seed)
    evaluation = make_dataset(n_eval, size=size, seed=eval_seed)
    runs = [("patched", paste(data.images, patch), paste(evaluation.images, patch))]
    if control:
        runs.append(("control", data.images, evaluation.images))
    results = []
    for what, train_images, eval_images in runs:
        model = trained_model(trainer, train_images, data.labels, seed=seed,
                      num_classes=len(CLASS_NAMES))
        scores = []  # per method: (sum, fraction, raw fraction)
        for method in progress_bar(resolved, progress, f"random patch ({what}) maps"):
            raw = attributions_in_chunks(method.function, model, eval_images, method.kwargs)
            threshold = None if method.self_thresholded else final_threshold
            scores.append(patch_scores(raw, region=region, final_threshold=threshold)
                          + patch_scores(raw, region=region)[1:])
        results.append((*(np.asarray(part) for part in zip(*scores)), model,
                        accuracy(model, eval_images, evaluation.labels)))
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


def _quartiles(values: np.ndarray) -> tuple[float, float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return (np.nan, np.nan, np.nan)
    q = np.percentile(values, [25, 50, 75])
    return float(q[0]), float(q[1]), float(q[2])
