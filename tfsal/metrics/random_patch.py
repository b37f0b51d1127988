"""Scores of the RectGrad paper's random-patch ("training dataset occlusion") experiment; the
experiment that trains on patched images is `tfsal.experiments.random_patch_experiment`.

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
keeps all its positive mass; without the threshold (`raw_patch_fraction` in the experiment)
all methods compare on the same footing.
"""

from __future__ import annotations

import numpy as np

from tfsal.checks import integer, number
from tfsal.errors import TfsalError
from tfsal.metrics._common import pixel_maps


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
    region = integer(region, "region", low=1)
    if region > min(maps.shape[1:3]):
        raise TfsalError(f"expected region ≤ the map size {maps.shape[1:3]}, received {region}")
    check_threshold(final_threshold)
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


def check_threshold(value) -> None:
    """Refuse a final threshold other than None or a percentile in [0, 100]."""
    if value is not None:
        number(value, "final_threshold", low=0, high=100, note="a percentile, or None")
