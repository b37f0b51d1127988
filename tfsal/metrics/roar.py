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
- A fresh model is trained on each modified training set (same recipe, `repeats` seeds) and
  tested on the modified test set. "random" ranks pixels in a seeded random order.

Areas. The paper reports "ROAR AUC" and "KAR AOC" (lower = better) without formulas; its
Random row has AUC + AOC = 0.5562 + 0.4438 = 1 exactly. Keeping a random fraction p is
removing a random 1 − p, so for Random the KAR curve is the ROAR curve mirrored, and the sum is
1 exactly when both areas are taken over the whole fraction axis [0, 1] in the unit box and
the mirrored points are the same runs. tfsal therefore integrates (trapezoid) over
[0, p₁, …, p_F, 1] with the end points every method shares:

- ROAR: (0, clean accuracy) … (1, chance accuracy); AUC = the area under it.
- KAR: (0, chance accuracy) … (1, clean accuracy) over the kept fraction; AOC = 1 − the area.

"clean accuracy" is the mean test accuracy of `repeats` models trained with the same recipe on
the unmodified training set (0 % removed = 100 % kept); "chance accuracy" is what a model can
reach when every pixel is replaced (all images equal): the share of the majority training
class among the test labels. With the default fractions (symmetric about 0.5) the random KAR
runs are the random ROAR runs at 1 − p (`mirror_random`), which makes Random's AUC + AOC = 1
exactly, as published. Any other integration over [0, 1] with shared end points has the same
property; the end points are tfsal's choice, the paper does not give them.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.metrics._common import (
    attributions_in_chunks,
    dataset,
    pixel_maps,
    positive,
    resolve_methods,
)

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
        settings: what was run (sizes, epochs, seeds, recipe).
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


def roar_kar(methods, *, train, test, epochs: int, fractions=FRACTIONS, repeats: int = 3,
             seed: int = 0, build=None, model=None, modes=MODES, include_random: bool = True,
             mirror_random: bool = True, batch_size: int = 32, learning_rate: float = 2e-3,
             augment_flips: bool = True, method_kwargs: dict | None = None,
             checkpoint=None, progress: bool = False) -> RoarKar:
    """ROAR and KAR of attribution methods by retraining (see the module docstring).

    Args:
        methods: names in `tfsal.methods.METHODS` ("random" is the random ranking), callables
            `method(model, images, targets)`, or a mapping label → name, callable, or a pair
            of precomputed maps (train maps, test maps), each (N, H, W[, C]).
        train, test: `ShapesDataset`s or (images, labels) pairs; images float32 in [0, 1],
            square.
        epochs: training epochs of every retrained model.
        fractions: increasing fractions in (0, 1).
        repeats: models trained per (method, fraction, mode), with seeds seed, seed + 1, …
            (the same seeds for every method: differences are not seed noise).
        seed: training seeds and the tie-breaking / random-ranking order.
        build: architecture of the retrained models (None: `tfsal.zoo.build_shapes_cnn`).
        model: the trained model whose maps rank the pixels (a `tfsal.Model` or loadable, e.g.
            "shapes-cnn"); None trains one on the clean training set (the first clean run).
        modes: ("roar", "kar") or one of them.
        include_random: add the "random" ranking baseline.
        mirror_random: reuse random ROAR at 1 − p as random KAR at p when 1 − p was run.
        batch_size, learning_rate, augment_flips: the training recipe
            (`tfsal.zoo.train_classifier`).
        method_kwargs: label -> keyword arguments for that method.
        checkpoint: optional JSON file path recording every finished training's accuracy
            (and, next to it, the pixel ranks of every method's maps); a rerun with the same
            settings and data skips what is recorded, so long runs survive an interruption.
            A file from other settings is an error.
        progress: progress bars over maps and trainings.

    Returns:
        a `RoarKar`.

    Raises:
        TfsalError: for bad fractions, modes, repeats, data or method names.

    Example:
        >>> r = roar_kar(["vanilla", "rectgrad"], train=make_dataset(2000, seed=1),
        ...              test=make_dataset(500, seed=2), epochs=8, model="shapes-cnn")
        >>> dict(zip(r.methods, r.roar_auc))
    """
    from tfsal.loading import as_model
    from tfsal.model import Model
    from tfsal.progress import progress_bar
    from tfsal.zoo.shapes_cnn import build_shapes_cnn
    from tfsal.zoo.training import accuracy, train_classifier

    train_images, train_labels = dataset(train, "train")
    test_images, test_labels = dataset(test, "test")
    if train_images.shape[1:] != test_images.shape[1:]:
        raise TfsalError(f"expected train and test images of one size, received "
                         f"{train_images.shape[1:]} and {test_images.shape[1:]}")
    fractions = check_fractions(fractions)
    modes = _check_modes(modes)
    repeats = positive(repeats, "repeats")
    epochs = positive(epochs, "epochs")
    seed = positive(seed, "seed", 0)
    resolved = resolve_methods(methods, method_kwargs, reserved=("random",), seed=seed,
                               allow_maps=True)
    if include_random and not any(m.function is None and m.maps is None for m in resolved):
        resolved.append(resolve_methods(["random"], reserved=("random",))[0])
    build = build_shapes_cnn if build is None else build
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    recipe = dict(build=build, epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, augment_flips=augment_flips,
                  num_classes=num_classes)

    if model is not None:  # fail before any training
        model = as_model(model)
        model.check_size(train_images[:1])

    store = _Checkpoint(checkpoint, dict(
        methods=[m.label for m in resolved], fractions=fractions.tolist(), repeats=repeats,
        epochs=epochs, seed=seed, batch_size=batch_size, learning_rate=learning_rate,
        augment_flips=augment_flips, build=getattr(build, "__name__", str(build)),
        map_model=None if model is None else model.name,
        method_kwargs={m.label: {k: v for k, v in m.kwargs.items()
                                 if isinstance(v, (int, float, str, bool))} for m in resolved},
        data=_fingerprint(train_images, train_labels, test_images, test_labels,
                          *(np.asarray(a, np.float64) for m in resolved for a in m.maps or ()))))

    def fit(images, r):
        return train_classifier(images, train_labels, seed=seed + r, **recipe)

    # 0 % removed: the recipe on clean data; the first run doubles as the map model if needed.
    clean_accuracy = np.empty(repeats)
    for r in progress_bar(range(repeats), progress, "ROAR/KAR clean models"):
        key = f"clean/{r}"
        if key in store and not (r == 0 and model is None):
            clean_accuracy[r] = store[key]
            continue
        trained = fit(train_images, r)
        clean_accuracy[r] = store.save(key, accuracy(trained, test_images, test_labels))
        if r == 0 and model is None:
            model = Model(trained, preprocess="tf")
    model_accuracy = float(np.mean(model.predicted_classes(test_images) == test_labels))
    fill = train_images.reshape(-1, 3).mean(axis=0).astype(np.float32)
    size = train_images.shape[1:3]

    ranks = store.ranks()
    for k, method in enumerate(progress_bar(resolved, progress, "ROAR/KAR maps")):
        if method.label in ranks:
            continue
        rngs = [np.random.default_rng([seed, k, part]) for part in (0, 1)]
        if method.maps is not None:
            maps = [pixel_maps(m, size) for m in method.maps]
            for part, (m, images) in enumerate(zip(maps, (train_images, test_images))):
                if len(m) != len(images):
                    raise TfsalError(f"expected {len(images)} precomputed "
                                     f"{('train', 'test')[part]} maps for {method.label!r}, "
                                     f"received {len(m)}")
        elif method.function is None:  # random ranking: pure tie-breaking noise
            maps = [np.zeros(images.shape[:3]) for images in (train_images, test_images)]
        else:
            maps = [pixel_maps(np.concatenate(attributions_in_chunks(
                method.function, model, images, method.kwargs)), size)
                for images in (train_images, test_images)]
        ranks[method.label] = [rank_pixels(m, seed=rng) for m, rng in zip(maps, rngs)]
        store.save_ranks(ranks)

    shape = (len(resolved), len(fractions), repeats)
    results = {mode: np.full(shape, np.nan) for mode in MODES}
    random_label = next((m.label for m in resolved if m.function is None and m.maps is None),
                        None)
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
        trained = fit(occlude(train_images, train_rank, fractions[j], keep=keep, fill=fill), r)
        results[mode][i, j, r] = store.save(key, accuracy(
            trained, occlude(test_images, test_rank, fractions[j], keep=keep, fill=fill),
            test_labels))
    if mirror:
        i = [m.label for m in resolved].index(random_label)
        results["kar"][i] = results["roar"][i, ::-1]

    majority = np.bincount(train_labels, minlength=num_classes).argmax()
    chance = float(np.mean(test_labels == majority))
    clean = float(clean_accuracy.mean())
    auc = np.array([roar_auc(fractions, np.nanmean(row, axis=-1), clean_accuracy=clean,
                             chance_accuracy=chance) if "roar" in modes else np.nan
                    for row in results["roar"]])
    aoc = np.array([kar_aoc(fractions, np.nanmean(row, axis=-1), clean_accuracy=clean,
                            chance_accuracy=chance) if "kar" in modes else np.nan
                    for row in results["kar"]])
    settings = dict(n_train=len(train_images), n_test=len(test_images),
                    image_size=int(size[0]), epochs=epochs, repeats=repeats, seed=seed,
                    batch_size=batch_size, learning_rate=learning_rate,
                    augment_flips=augment_flips, build=getattr(build, "__name__", str(build)),
                    map_model=model.name, modes=modes,
                    method_kwargs={m.label: {k: v for k, v in m.kwargs.items()
                                             if isinstance(v, (int, float, str, bool))}
                                   for m in resolved})
    return RoarKar(tuple(m.label for m in resolved), fractions, results["roar"],
                   results["kar"], clean_accuracy, chance, auc, aoc, model_accuracy,
                   bool(mirror), settings)


# ------------------------------------------------------------------------------ pieces
class _Checkpoint:
    """Accuracies of finished trainings in a JSON file (a no-op without a path)."""

    def __init__(self, path, settings: dict):
        self.path = None if path is None else Path(path)
        self.settings = json.loads(json.dumps(settings))  # as it reads back
        self.values: dict = {}
        if self.path is not None and self.path.exists():
            try:
                stored = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise TfsalError(f"expected a readable ROAR/KAR checkpoint, received "
                                 f"{self.path} ({exc})") from None
            if stored.get("settings") != self.settings:
                raise TfsalError(f"expected a checkpoint written with these settings and "
                                 f"data, received {self.path} from other ones (delete it or "
                                 f"choose another path)")
            self.values = dict(stored.get("accuracies", {}))

    def _ranks_path(self):
        tag = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        return self.path.with_name(f"{self.path.stem}.{tag[:12]}.ranks.npz")

    def ranks(self) -> dict:
        """label -> [train ranks, test ranks] recorded for these settings (or {})."""
        if self.path is None or not self._ranks_path().exists():
            return {}
        with np.load(self._ranks_path()) as stored:
            labels = {key.rsplit("/", 1)[0] for key in stored.files}
            return {label: [stored[f"{label}/train"].astype(np.int64),
                            stored[f"{label}/test"].astype(np.int64)] for label in labels}

    def save_ranks(self, ranks: dict) -> None:
        if self.path is None:
            return
        arrays = {f"{label}/{part}": r.astype(np.int32)
                  for label, pair in ranks.items() for part, r in zip(("train", "test"), pair)}
        partial = self.path.with_name(self.path.name + ".ranks.partial.npz")
        np.savez(partial, **arrays)
        os.replace(partial, self._ranks_path())

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str) -> float:
        return float(self.values[key])

    def save(self, key: str, value: float) -> float:
        self.values[key] = float(value)
        if self.path is not None:  # write-then-rename: an interruption leaves a whole file
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(json.dumps({"settings": self.settings,
                                           "accuracies": self.values}, indent=1))
            os.replace(partial, self.path)
        return float(value)


def _fingerprint(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def rank_pixels(maps, *, seed=0) -> np.ndarray:
    """(N, H, W) int rank of every pixel in its image: 0 = the largest map value.

    Ties are broken in a random order drawn from `seed` (int or np.random.Generator).
    """
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 3:
        raise TfsalError(f"expected maps (N, H, W), received shape {maps.shape}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    flat = maps.reshape(len(maps), -1)
    tie_break = rng.random(flat.shape)
    order = np.lexsort((tie_break, -flat), axis=-1)  # last key is the primary one
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None, :].repeat(len(flat), 0),
                      axis=1)
    return ranks.reshape(maps.shape)


def occlude(images, ranks, fraction: float, *, keep: bool = False, fill=0.0) -> np.ndarray:
    """Replace pixels by `fill` by rank: the round(fraction·H·W) top-ranked ones (ROAR), or all
    but them (`keep`, KAR).

    Args:
        images: (N, H, W, 3) in [0, 1].
        ranks: (N, H, W) from `rank_pixels`.
        fraction: in [0, 1].
        keep: keep the top fraction instead of removing it.
        fill: a number or per-channel values (3,) in [0, 1].
    """
    images = np.asarray(images, np.float32)
    ranks = np.asarray(ranks)
    if ranks.shape != images.shape[:3]:
        raise TfsalError(f"expected ranks of shape {images.shape[:3]}, received {ranks.shape}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) \
            or not 0 <= fraction <= 1:
        raise TfsalError(f"expected fraction in [0, 1], received {fraction!r}")
    top = ranks < int(round(float(fraction) * ranks[0].size))
    replaced = ~top if keep else top
    out = images.copy()
    out[replaced] = np.broadcast_to(np.asarray(fill, np.float32), (3,))
    return out


def roar_auc(fractions, accuracies, *, clean_accuracy: float, chance_accuracy: float) -> float:
    """Area under the ROAR curve (0, clean), (p_i, accuracies_i), …, (1, chance): trapezoid."""
    x, y = _curve(fractions, accuracies, clean_accuracy, chance_accuracy)
    return float(np.trapezoid(y, x))


def kar_aoc(fractions, accuracies, *, clean_accuracy: float, chance_accuracy: float) -> float:
    """1 − area under the KAR curve (0, chance), (p_i, accuracies_i), …, (1, clean) over the
    kept fraction."""
    x, y = _curve(fractions, accuracies, clean_accuracy, chance_accuracy)
    y[0], y[-1] = y[-1], y[0]  # 0 % kept is every pixel removed: chance; 100 % kept: clean
    return float(1.0 - np.trapezoid(y, x))


def check_fractions(fractions) -> np.ndarray:
    try:
        values = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TfsalError(f"expected fractions a sequence of numbers in (0, 1), received "
                         f"{fractions!r}") from None
    if values.ndim != 1 or not len(values) or not np.all(np.isfinite(values)) \
            or values.min() <= 0 or values.max() >= 1 or np.any(np.diff(values) <= 0):
        raise TfsalError(f"expected increasing fractions in (0, 1), received "
                         f"{values.tolist() if values.ndim else fractions!r}")
    return values


def _curve(fractions, accuracies, clean: float, chance: float):
    """x = [0, fractions, 1]; y = [clean, accuracies, chance] (KAR reverses the end points)."""
    fractions = check_fractions(fractions)
    accuracies = np.asarray(accuracies, np.float64)
    if accuracies.shape != fractions.shape:
        raise TfsalError(f"expected {len(fractions)} accuracies (one per fraction), received "
                         f"shape {accuracies.shape}")
    for name, value in (("clean_accuracy", clean), ("chance_accuracy", chance)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not 0 <= value <= 1:
            raise TfsalError(f"expected {name} in [0, 1], received {value!r}")
    x = np.concatenate([[0.0], fractions, [1.0]])
    y = np.concatenate([[clean], accuracies, [chance]])
    return x, y


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
