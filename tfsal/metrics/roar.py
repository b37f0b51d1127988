"""ROAR and KAR measurements: rank a map's pixels, remove (or keep) the top ones, and the
areas of the accuracy curves (Hooker et al. 2019, as reported in the RectGrad paper, Table 1).
The retraining experiment that produces the accuracies is `tfsal.experiments.roar_kar`.

Areas. The paper reports "ROAR AUC" and "KAR AOC" (lower = better) without formulas; its
Random row has AUC + AOC = 0.5562 + 0.4438 = 1 exactly. Keeping a random fraction p is
removing a random 1 − p, so for Random the KAR curve is the ROAR curve mirrored, and the sum is
1 exactly when both areas are taken over the whole fraction axis [0, 1] in the unit box and
the mirrored points are the same runs. tfsal therefore integrates (trapezoid) over
[0, p₁, …, p_F, 1] with the end points every method shares:

- ROAR: (0, clean accuracy) … (1, chance accuracy); AUC = the area under it.
- KAR: (0, chance accuracy) … (1, clean accuracy) over the kept fraction; AOC = 1 − the area.

Any other integration over [0, 1] with shared end points has the same property; the end
points are tfsal's choice, the paper does not give them.
"""

from __future__ import annotations

import numpy as np

from tfsal import checks
from tfsal.errors import TfsalError


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
    fraction = checks.fraction(fraction, "fraction")
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
    """(F,) float64 fractions, checked increasing within (0, 1)."""
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
    clean = checks.fraction(clean, "clean_accuracy")
    chance = checks.fraction(chance, "chance_accuracy")
    x = np.concatenate([[0.0], fractions, [1.0]])
    y = np.concatenate([[clean], accuracies, [chance]])
    return x, y
