"""Where an attribution map puts its mass: inside an object mask, and how much of it is zero.

Maps are reduced as in the rectified-gradient paper's figures: summed over channels, then the
absolute value is taken per pixel.
"""

from __future__ import annotations

import numpy as np

from tfsal.errors import TfsalError


def _pixel_mass(attributions: np.ndarray) -> np.ndarray:
    maps = np.asarray(attributions, dtype=np.float64)
    if maps.ndim == 4:
        maps = maps.sum(axis=-1)
    if maps.ndim != 3:
        raise TfsalError(f"expected attributions (N, H, W[, C]), received shape {maps.shape}")
    return np.abs(maps)


def mass_inside(attributions, masks) -> np.ndarray:
    """Fraction of each map's absolute (channel-summed) attribution inside its mask.

    Args:
        attributions: (N, H, W, C) or (N, H, W).
        masks: (N, H, W) booleans (or weights in [0, 1]) of the object.

    Returns:
        (N,) float64 in [0, 1]; NaN for an all-zero map.
    """
    mass = _pixel_mass(attributions)
    masks = np.asarray(masks, dtype=np.float64)
    if masks.shape != mass.shape:
        raise TfsalError(f"expected masks of shape {mass.shape}, received {masks.shape}")
    total = mass.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (mass * masks).sum(axis=(1, 2)) / total


def nonzero_fraction(attributions, *, tolerance: float = 0.0) -> np.ndarray:
    """Fraction of pixels whose absolute channel-summed attribution exceeds `tolerance`, (N,)."""
    mass = _pixel_mass(attributions)
    return (mass > tolerance).mean(axis=(1, 2))


def _channel_sum(attributions) -> np.ndarray:
    maps = np.asarray(attributions, dtype=np.float64)
    if maps.ndim == 4:
        maps = maps.sum(axis=-1)
    if maps.ndim != 3:
        raise TfsalError(f"expected attributions (N, H, W[, C]), received shape {maps.shape}")
    return maps


def total_variation(attributions) -> np.ndarray:
    """(N,) sum of absolute differences between horizontal and vertical neighbours of the
    channel-summed map (the RectGrad paper's smoothness measure; lower = less noisy)."""
    maps = _channel_sum(attributions)
    return (np.abs(np.diff(maps, axis=1)).sum(axis=(1, 2))
            + np.abs(np.diff(maps, axis=2)).sum(axis=(1, 2)))


def mass_outside_mask(attributions, masks) -> np.ndarray:
    """(N,) sum of |channel-summed attribution| outside the object masks (the RectGrad paper's
    background score; lower = less attribution on the background)."""
    mass = _pixel_mass(attributions)
    masks = np.asarray(masks, dtype=bool)
    if masks.shape != mass.shape:
        raise TfsalError(f"expected masks of shape {mass.shape}, received {masks.shape}")
    return (mass * ~masks).sum(axis=(1, 2))


def mass_in_region(attributions, region) -> np.ndarray:
    """(N,) sum of the (signed, channel-summed) attribution inside `region`, a boolean (H, W)
    or (N, H, W) mask (the RectGrad paper's random-patch score uses the top-left 8x8)."""
    maps = _channel_sum(attributions)
    region = np.asarray(region, dtype=bool)
    if region.shape not in (maps.shape, maps.shape[1:]):
        raise TfsalError(f"expected a region of shape {maps.shape[1:]} or {maps.shape}, "
                         f"received {region.shape}")
    return (maps * region).sum(axis=(1, 2))
