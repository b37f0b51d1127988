"""What the map scores share: one per-pixel map per image."""

from __future__ import annotations

import numpy as np

from tfsal.errors import TfsalError


def pixel_maps(attributions, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) float64 per-pixel maps: channels summed (the RectGrad authors' reduction);
    lower-resolution (N, h, w) maps (CAM family) upsampled bilinearly to `size`.

    Raises:
        TfsalError: for attributions of another rank or with NaN / inf values.
    """
    maps = np.asarray(attributions, np.float64)
    if maps.ndim == 4:
        maps = maps.sum(axis=-1)
    if maps.ndim != 3:
        raise TfsalError(f"expected attributions (N, H, W, C) or (N, h, w), received shape "
                         f"{maps.shape}")
    if maps.shape[1:] != tuple(size):
        from tfsal.visualize import upsample

        maps = np.asarray(upsample(maps, tuple(size)), np.float64)
    if not np.all(np.isfinite(maps)):
        raise TfsalError("expected finite attributions, received NaN or inf values")
    return maps
