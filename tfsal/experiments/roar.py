"""ROAR and KAR: remove (or keep) the pixels a method ranks highest, retrain, re-test
(Hooker et al. 2019, as run in the RectGrad paper, Table 1 and its Figure 18).

Protocol (the RectGrad authors' notebook):

- Maps of every training and test image come from one trained model (`model`). They are summed
  over the colour channels (signed: the most important pixels are the most positive ones);
  RectGrad is run with its zero threshold (max(x·R, 0)). Ties — RectGrad's many zeros — are
  broken in a seeded random order (the notebook adds N(0, 1e-4) noise; a random secondary sort
  key does the same without disturbing pixels that are not tied).
- ROAR at fraction p replaces the round(p·H·W) highest-ranked pixels of each image (all
  channels) by the per-channel mean of the clean training images; KAR at p keeps only them and
  replaces the rest. Training and test sets are modified alike.
- A fresh model is trained on each modified training set (the injected `trainer`, `repeats`
  seeds) and tested on the modified test set. "random" ranks pixels in a seeded random order.

The areas (ROAR AUC, KAR AOC over the whole fraction axis with shared end points, so that
Random's AUC + AOC = 1 as published) are pure measurements: `tfsal.metrics.roar_auc` and
`tfsal.metrics.kar_aoc` explain them. "clean accuracy" is the mean test accuracy of `repeats`
models trained on the unmodified training set (0 % removed = 100 % kept); "chance accuracy" is
what a model can reach when every pixel is replaced (all images equal): the share of the
majority training class among the test labels. With fractions symmetric about 0.5 the random
KAR runs are the random ROAR runs at 1 − p (`mirror_random`), which makes Random's
AUC + AOC = 1 exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from tfsal.checks import flag, integer, positive_int
from tfsal.errors import TfsalError
from tfsal.experiments._common import (
    SELF_THRESHOLDING,
    ResolvedMethod,
    attributions_in_chunks,
    dataset,
    resolve_methods,
)
from tfsal.experiments.checkpoint import Checkpoint, fingerprint
from tfsal.experiments.training import (
    DEFAULT_RECIPE,
    Trainer,
    accuracy,
    trained_model,
    trainer_settings,
)
from tfsal.metrics import kar_aoc, occlude, pixel_maps, rank_pixels, roar_auc
from tfsal.metrics.roar import check_fractions
from tfsal.progress import progress_bar

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
MODES = ("roar", "kar")


@dataclass(frozen=True)
class RoarKar:
    """Accuracies of models retrained on images with pixels removed by each method's ranking.

    Attributes:
        methods: (M,) labels ("random" included).
        fractions: (F,) fractions removed (ROAR) or kept (KAR).
        roar: (M, F, R) test accuracy with the top fraction removed (NaN: mode not run).
        kar: (M, F, R) test accuracy with only the top fraction kept (NaN: mode not run).
        clean_accuracy: (R,) models trained on the unmodified data (0 % removed).
        chance_accuracy: majority-class share of the test labels (100 % removed).
        roar_auc: (M,) area under the ROAR curve (lower = better ranking).
        kar_aoc: (M,) area over the KAR curve (lower = better ranking).
        model_accuracy: test accuracy of the model that made the maps.
        mirrored_random: whether random KAR reuses the random ROAR runs at 1 − p.
        settings: what was run (sizes, seeds, the trainer's settings).
    """

    methods: tuple
    fractions: np.ndarray
    roar: np.ndarray
    kar: np.ndarray
    clean_accuracy: np.ndarray
    chance_accuracy: float
    roar_auc: np.ndarray
    kar_aoc: np.ndarray
    model_accuracy: float
    mirrored_random: bool
    settings: dict


@dataclass(frozen=True)
class _Data:
    """The checked training and test sets and what follows from them."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.train_images.shape[1:3])

    @property
    def num_classes(self) -> int:
        return int(max(self.train_labels.max(), self.test_labels.max())) + 1

    @cached_property
    def fill(self) -> np.ndarray:
        """Per-channel mean of the clean training images: what removed pixels become."""
        return self.train_images.reshape(-1, 3).mean(axis=0).astype(np.float32)

    @property
    def chance_accuracy(self) -> float:
        """Accuracy of predicting the majority training class on the test labels."""
        majority = np.bincount(self.train_labels, minlength=self.num_classes).argmax()
        return float(np.mean(self.test_labels == majority))


def roar_kar(methods, *, train, test, trainer: Trainer = DEFAULT_RECIPE, fractions=FRACTIONS,
             repeats: int = 3, seed: int = 0, model=None, modes=MODES,
             include_random: bool = True, mirror_random: bool = True,
             method_kwargs: dict | None = None, checkpoint=None,
             progress: bool = False) -> RoarKar:
    """ROAR and KAR of attribution methods by retraining (see the module docstring).

    Args:
        methods: names in `tfsal.methods.METHODS` ("random" is the random ranking), callables
            `method(model, images, targets)`, or a mapping label → name, callable, or a pair
            of precomputed maps (train maps, test maps), each (N, H, W[, C]).
        train, test: `ShapesDataset`s or (images, labels) pairs; images float32 in [0, 1],
            square.
        trainer: trains every model: a `TrainingRecipe` (the embedded architecture's recipe;
            default `TrainingRecipe()`) or any `trainer(images, labels, *, seed, num_classes)`
            returning a `tfsal.Model`.
        fractions: increasing fractions in (0, 1).
        repeats: models trained per (method, fraction, mode), with seeds seed, seed + 1, …
            (the same seeds for every method: differences are not seed noise).
        seed: training seeds and the tie-breaking / random-ranking order.
        model: the trained model whose maps rank the pixels (a `tfsal.Model` or loadable, e.g.
            "shapes-cnn"); None trains one on the clean training set (the first clean run).
        modes: ("roar", "kar") or one of them.
        include_random: add the "random" ranking baseline.
        mirror_random: reuse random ROAR at 1 − p as random KAR at p when 1 − p was run.
        method_kwargs: label -> keyword arguments for that method.
        checkpoint: optional JSON file path recording every finished training's accuracy
            (and, next to it, the pixel ranks of every method's maps); a rerun with the same
            settings and data skips what is recorded, so long runs survive an interruption.
            A file from other settings is an error.
        progress: progress bars over maps and trainings.

    Returns:
        a `RoarKar`.

    Raises:
        TfsalError: for bad fractions, modes, repeats, data, trainer or method names.

    Example:
        >>> r = roar_kar(["vanilla", "rectgrad"], train=make_dataset(2000, seed=1),
        ...              test=make_dataset(500, seed=2), trainer=TrainingRecipe(epochs=8),
        ...              model="shapes-cnn")
        >>> dict(zip(r.methods, r.roar_auc))
    """
    from tfsal.loading import as_model

    data = _Data(*dataset(train, "train"), *dataset(test, "test"))
    if data.train_images.shape[1:] != data.test_images.shape[1:]:
        raise TfsalError(f"expected train and test images of one size, received "
                         f"{data.train_images.shape[1:]} and {data.test_images.shape[1:]}")
    fractions = check_fractions(fractions)
    modes = _check_modes(modes)
    repeats = positive_int(repeats, "repeats")
    seed = integer(seed, "seed", low=0)
    if not callable(trainer):
        raise TfsalError(f"expected trainer a TrainingRecipe or a callable trainer(images, "
                         f"labels, *, seed, num_classes), received {trainer!r}")
    resolved = resolve_methods(methods, method_kwargs, reserved=("random",), seed=seed,
                               allow_maps=True, self_thresholding=SELF_THRESHOLDING)
    if flag(include_random, "include_random") and not any(_is_random(m) for m in resolved):
        resolved.append(resolve_methods(["random"], reserved=("random",))[0])
    if model is not None:  # fail before any training
        model = as_model(model)
        model.check_size(data.train_images[:1])
    store = Checkpoint(checkpoint, dict(
        methods=[m.label for m in resolved], fractions=fractions.tolist(), repeats=repeats,
        seed=seed, **trainer_settings(trainer),
        map_model=None if model is None else model.name, method_kwargs=_plain_kwargs(resolved),
        data=fingerprint(data.train_images, data.train_labels, data.test_images,
                         data.test_labels,
                         *(np.asarray(a, np.float64) for m in resolved for a in m.maps or ()))))

    def fit(images, r):
        return trained_model(trainer, images, data.train_labels, seed=seed + r,
                     num_classes=data.num_classes)

    clean_accuracy, model = _clean_runs(fit, data, repeats, model, store, progress)
    model_accuracy = accuracy(model, data.test_images, data.test_labels)
    ranks = _rankings(resolved, model, data, seed, store, progress)
    results, mirrored = _retrain(fit, resolved, ranks, data, fractions, modes, repeats,
                                 flag(mirror_random, "mirror_random"), store, progress)
    clean, chance = float(clean_accuracy.mean()), data.chance_accuracy
    auc = np.array([roar_auc(fractions, np.nanmean(row, axis=-1), clean_accuracy=clean,
                             chance_accuracy=chance) if "roar" in modes else np.nan
                    for row in results["roar"]])
    aoc = np.array([kar_aoc(fractions, np.nanmean(row, axis=-1), clean_accuracy=clean,
                            chance_accuracy=chance) if "kar" in modes else np.nan
                    for row in results["kar"]])
    settings = dict(n_train=len(data.train_images), n_test=len(data.test_images),
                    image_size=int(data.size[0]), repeats=repeats, seed=seed,
                    **trainer_settings(trainer), map_model=model.name, modes=modes,
                    method_kwargs=_plain_kwargs(resolved))
    return RoarKar(tuple(m.label for m in resolved), fractions, results["roar"],
                   results["kar"], clean_accuracy, chance, auc, aoc, model_accuracy,
                   mirrored, settings)


# ------------------------------------------------------------------------------ the steps
def _clean_runs(fit, data: _Data, repeats: int, model, store: Checkpoint, progress: bool):
    """(R,) test accuracies of models trained on the clean data (0 % removed), and the map
    model: the given one, or else the first clean run (retrained even when recorded)."""
    clean_accuracy = np.empty(repeats)
    for r in progress_bar(range(repeats), progress, "ROAR/KAR clean models"):
        key = f"clean/{r}"
        needs_model = r == 0 and model is None
        if key in store and not needs_model:
            clean_accuracy[r] = store[key]
            continue
        trained = fit(data.train_images, r)
        clean_accuracy[r] = store.save(key, accuracy(trained, data.test_images,
                                                     data.test_labels))
        if needs_model:
            model = trained
    return clean_accuracy, model


def _rankings(resolved: list[ResolvedMethod], model, data: _Data, seed: int,
              store: Checkpoint, progress: bool) -> dict:
    """label -> [train ranks, test ranks] (`rank_pixels` of each method's per-pixel maps,
    ties broken by a generator per method and part); recorded ones are read back."""
    ranks = store.ranks()
    for k, method in enumerate(progress_bar(resolved, progress, "ROAR/KAR maps")):
        if method.label in ranks:
            continue
        maps = _pixel_maps(method, model, data)
        rngs = [np.random.default_rng([seed, k, part]) for part in (0, 1)]
        ranks[method.label] = [rank_pixels(m, seed=rng) for m, rng in zip(maps, rngs)]
        store.save_ranks(ranks)
    return ranks


def _pixel_maps(method: ResolvedMethod, model, data: _Data) -> list[np.ndarray]:
    """[train maps, test maps], (N, H, W) each: precomputed, all-zero for the random ranking
    (pure tie-breaking noise), or the method's maps from the map model."""
    parts = (data.train_images, data.test_images)
    if method.maps is not None:
        maps = [pixel_maps(m, data.size) for m in method.maps]
        for part, (m, images) in enumerate(zip(maps, parts)):
            if len(m) != len(images):
                raise TfsalError(f"expected {len(images)} precomputed "
                                 f"{('train', 'test')[part]} maps for {method.label!r}, "
                                 f"received {len(m)}")
        return maps
    if _is_random(method):
        return [np.zeros(images.shape[:3]) for images in parts]
    return [pixel_maps(attributions_in_chunks(method.function, model, images, method.kwargs),
                       data.size) for images in parts]


def _retrain(fit, resolved, ranks, data: _Data, fractions, modes, repeats: int,
             mirror_random: bool, store: Checkpoint, progress: bool):
    """({mode: (M, F, R) accuracies, NaN where not run}, whether random KAR mirrors ROAR)."""
    shape = (len(resolved), len(fractions), repeats)
    results = {mode: np.full(shape, np.nan) for mode in MODES}
    random_label = next((m.label for m in resolved if _is_random(m)), None)
    mirror = (mirror_random and random_label is not None and modes == MODES
              and np.allclose(np.sort(1 - fractions), fractions))
    jobs = [(i, j, mode, r) for r in range(repeats) for i, m in enumerate(resolved)
            for mode in modes for j in range(len(fractions))
            if not (mirror and mode == "kar" and m.label == random_label)]
    for i, j, mode, r in progress_bar(jobs, progress, "ROAR/KAR retraining"):
        key = f"{resolved[i].label}/{mode}/{fractions[j]:.6g}/{r}"
        if key in store:
            results[mode][i, j, r] = store[key]
            continue
        train_rank, test_rank = ranks[resolved[i].label]
        keep = mode == "kar"
        trained = fit(occlude(data.train_images, train_rank, fractions[j], keep=keep,
                              fill=data.fill), r)
        test_images = occlude(data.test_images, test_rank, fractions[j], keep=keep,
                              fill=data.fill)
        results[mode][i, j, r] = store.save(key, accuracy(trained, test_images,
                                                          data.test_labels))
    if mirror:
        i = [m.label for m in resolved].index(random_label)
        results["kar"][i] = results["roar"][i, ::-1]
    return results, bool(mirror)


# ------------------------------------------------------------------------------ helpers
def _is_random(method: ResolvedMethod) -> bool:
    return method.function is None and method.maps is None


def _plain_kwargs(resolved: list[ResolvedMethod]) -> dict:
    """label -> the method's JSON-able keyword arguments (what settings record)."""
    return {m.label: {k: v for k, v in m.kwargs.items()
                      if isinstance(v, (int, float, str, bool))} for m in resolved}


def _check_modes(modes) -> tuple:
    if isinstance(modes, str):
        modes = (modes,)
    try:
        modes = tuple(modes)
    except TypeError:
        raise TfsalError(f"expected modes from {MODES}, received {modes!r}") from None
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise TfsalError(f"expected modes a non-empty selection of {MODES}, received {modes!r}")
    return tuple(m for m in MODES if m in modes)
