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
