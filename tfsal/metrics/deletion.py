"""Deletion-style curves: allegiance (signed-maps paper), deletion and insertion.

Deletion at fraction p follows the signed-maps reference: each map is min–max normalised per
image; the cut is the map's value at rank round(p · H · W) in descending order; the pixels with
map > cut **and** map ≠ 0 are replaced (all channels) by the fill — 0 for black-deletion, 1 for
white-deletion, or any value / baseline image. Zero-saliency pixels are never deleted, hence the
curves' plateaus. Curves are evaluated with batched model calls over every (fraction, image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsal.errors import TfsalError
from tfsal.images import check_images
from tfsal.loading import as_model

FRACTIONS = (0.0, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class Curve:
    """A curve over deletion fractions.

    Attributes:
        fractions: (F,) fractions of pixels considered for deletion.
        values: (F,) the curve (mean over images).
        auc: trapezoid area under `values` over `fractions`.
        per_image: (N, F) each image's values (allegiance: 1 if the prediction is unchanged).
    """

    fractions: np.ndarray
    values: np.ndarray
    auc: float
    per_image: np.ndarray


def allegiance_curve(model, images, maps, *, fill="black", fractions=FRACTIONS) -> Curve:
    """Share of images whose predicted class survives deleting their most salient pixels.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        maps: (N, H, W) saliency maps (reduce channels first, e.g. `visualize.reduce_channels`).
        fill: "black" (0), "white" (1), a number in [0, 1] or an image array (N, H, W, 3).
        fractions: increasing fractions in [0, 1) (default: the reference grid, up to 0.9).

    Returns:
        a `Curve`; lower AUC = the map found the pixels the prediction depends on.

    Raises:
        TfsalError: for bad maps, fill or fractions.

    Example:
        >>> signed = tfsal.signed_maps(model, images)
        >>> tfsal.metrics.allegiance_curve(model, images, signed.positive).auc
    """
    model, images, maps, fill, fractions = _check(model, images, maps, fill, fractions)
    before = model.predicted_classes(images)
    after = _over_fractions(images, maps, fill, fractions, model.predicted_classes)
    return _curve(fractions, (after == before[:, None]).astype(np.float64))


def deletion_curve(model, images, maps, targets=None, *, fill="black",
                   fractions=FRACTIONS) -> Curve:
    """Target-class probability as the most salient pixels are deleted (replaced by `fill`).

    Args, Raises as `allegiance_curve`; targets as for every method (None = predicted class).

    Returns:
        a `Curve` of mean target probability; lower AUC = a more faithful map.
    """
    model, images, maps, fill, fractions = _check(model, images, maps, fill, fractions)
    targets = model.resolve_targets(images, targets)
    probability = _target_probability(model, targets)
    return _curve(fractions, _over_fractions(images, maps, fill, fractions, probability))


def insertion_curve(model, images, maps, targets=None, *, fill="black",
                    fractions=FRACTIONS) -> Curve:
    """Target-class probability as the most salient pixels are put back onto the `fill`.

    At fraction p the image is the fill except for the pixels deletion would remove at p.
    Args, Raises as `deletion_curve`.

    Returns:
        a `Curve` of mean target probability; higher AUC = a more faithful map.
    """
    model, images, maps, fill, fractions = _check(model, images, maps, fill, fractions)
    targets = model.resolve_targets(images, targets)
    probability = _target_probability(model, targets)
    backdrop = np.broadcast_to(fill, images.shape).astype(np.float32)
    return _curve(fractions, _over_fractions(backdrop, maps, images, fractions, probability))


# ------------------------------------------------------------------------------ mechanics
def deletion_mask(maps: np.ndarray, fraction: float) -> np.ndarray:
    """(N, H, W) pixels deleted at `fraction`: normalised map > cut, and map ≠ 0 (the map as
    given: after min–max normalisation a signed map's zeros are no longer 0)."""
    return _Ranked(maps).mask(fraction)


class _Ranked:
    """Maps normalised and sorted once, so each fraction's mask is one comparison."""

    def __init__(self, maps: np.ndarray):
        self.shape = maps.shape
        self.flat = _normalise(maps).reshape(len(maps), -1)
        self.salient = maps.reshape(len(maps), -1) != 0
        self.ordered = -np.sort(-self.flat, axis=1)

    def mask(self, fraction: float) -> np.ndarray:
        rank = min(int(np.round(fraction * self.flat.shape[1])), self.flat.shape[1] - 1)
        cut = self.ordered[:, rank:rank + 1]
        return ((self.flat > cut) & self.salient).reshape(self.shape)


def _over_fractions(images, maps, fill, fractions, measure, chunk: int = 256) -> np.ndarray:
    """measure(modified images) for every fraction: (N, F).

    The (fraction, image) stream is measured in chunks of about `chunk` images, so batches stay
    full when N is small and memory stays bounded when N is large.
    """
    ranked = _Ranked(maps)
    n = len(images)
    per_chunk = max(1, chunk // n)  # fractions per model call
    fill = np.broadcast_to(np.asarray(fill, np.float32), images.shape)
    values = []
    for start in range(0, len(fractions), per_chunk):
        group = fractions[start:start + per_chunk]
        batch = np.empty((len(group) * n,) + images.shape[1:], np.float32)
        for j, p in enumerate(group):
            part = batch[j * n:(j + 1) * n]
            np.copyto(part, images)
            np.copyto(part, fill, where=ranked.mask(p)[..., None])
        values.append(np.asarray(measure(batch)))
    return np.concatenate(values).reshape(len(fractions), len(images)).T


def _target_probability(model, targets):
    def measure(batch):
        repeats = len(batch) // len(targets)
        probs = model.predict(batch, score="probability")
        return probs[np.arange(len(batch)), np.tile(targets, repeats)]
    return measure


def _curve(fractions, per_image) -> Curve:
    values = per_image.mean(axis=0)
    return Curve(np.asarray(fractions), values, float(np.trapezoid(values, fractions)), per_image)


def _normalise(maps):
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1), 0.0)


def _check(model, images, maps, fill, fractions):
    model = as_model(model)
    images = check_images(images)
    maps = np.asarray(maps, dtype=np.float64)
    if maps.shape != images.shape[:3]:
        raise TfsalError(f"expected maps of shape {images.shape[:3]} (one value per pixel; "
                         f"reduce channels first), received {maps.shape}")
    if not np.isfinite(maps).all():
        raise TfsalError("expected finite maps, received NaN or inf values")
    if isinstance(fill, str):
        if fill not in ("black", "white"):
            raise TfsalError(f"expected fill 'black', 'white', a number or an image array, "
                             f"received {fill!r}")
        fill = 0.0 if fill == "black" else 1.0
    fill_arr = np.asarray(fill, dtype=np.float32)
    if fill_arr.ndim and fill_arr.shape != images.shape:
        raise TfsalError(f"expected a fill image of shape {images.shape}, received "
                         f"{fill_arr.shape}")
    if not np.isfinite(fill_arr).all() or fill_arr.min() < 0 or fill_arr.max() > 1:
        raise TfsalError(f"expected fill values in [0, 1], received {fill!r}")
    try:
        fractions = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise TfsalError(f"expected fractions a sequence of numbers, received "
                         f"{fractions!r}") from None
    if fractions.ndim != 1 or len(fractions) < 2 or not np.isfinite(fractions).all() \
            or fractions.min() < 0 or fractions.max() >= 1 or np.any(np.diff(fractions) <= 0):
        raise TfsalError(f"expected at least two increasing fractions in [0, 1), received "
                         f"{fractions.tolist() if fractions.ndim else fractions!r}")
    return model, images, maps, fill_arr, fractions
