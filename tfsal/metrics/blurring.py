"""Selective blurring (nonlinear-saliency-maps paper, Figure 4): blur only the pixels a map
calls salient and measure every class's probability before and after.

If the map found what the prediction rests on, blurring those pixels alone should lower the
target's probability. The blur is the nonlinear loop's Gaussian filter (`tfsal.nonlinear`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsal.errors import TfsalError
from tfsal.images import check_images, float_array
from tfsal.loading import as_model
from tfsal.nonlinear import blur_below_level, mask_below_level


@dataclass(frozen=True)
class SelectiveBlur:
    """Class probabilities before and after blurring only the salient pixels.

    Attributes:
        targets: (N,) the class each map explains.
        before, after: (N, classes) softmax outputs of the original and the blurred images.
        blurred: (N, H, W, 3) the images with their salient pixels blurred.
        salient_fraction: (N,) fraction of pixels blurred.
    """

    targets: np.ndarray
    before: np.ndarray
    after: np.ndarray
    blurred: np.ndarray
    salient_fraction: np.ndarray

    @property
    def target_change(self) -> np.ndarray:
        """(N,) after − before for each map's target class."""
        rows = np.arange(len(self.targets))
        return self.after[rows, self.targets] - self.before[rows, self.targets]


def selective_blur(model, images, maps, targets=None, *, level: float = 0.95,
                   blur_sigma: float | None = None) -> SelectiveBlur:
    """Blur only the pixels a map selects as salient and measure every class's probability.

    The paper's Figure 4 blurs the pixels the nonlinear loop kept at its 95 % level: pass
    `Trajectory.kept[:, -1]` (a boolean mask). A float map instead selects the 1 − `level`
    fraction of pixels with the highest norm over RGB.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        maps: a boolean (N, H, W) mask of the salient pixels, or (N, H, W, 3) / (N, H, W)
            saliency maps whose per-pixel norm selects them.
        targets: the classes the maps explain (None: predicted class), reported back.
        level: for float maps, the fraction of pixels that are *not* salient.
        blur_sigma: Gaussian filter width in pixels (default: image side / 32).

    Returns:
        a `SelectiveBlur`.

    Raises:
        TfsalError: for maps or a mask of another shape than the images, a bad level or sigma.

    Example:
        >>> t = tfsal.nonlinear_saliency(model, images)
        >>> tfsal.selective_blur(model, images, t.kept[:, -1], t.targets).target_change
    """
    model = as_model(model)
    images = check_images(images)
    targets = model.resolve_targets(images, targets)
    # Level 1 blurs every pixel: the filtered image to take the salient pixels from.
    everywhere = blur_below_level(images, np.zeros(images.shape[:3], np.float32), 1.0,
                                  blur_sigma=blur_sigma)
    if isinstance(maps, np.ndarray) and maps.dtype == bool:  # e.g. Trajectory.kept
        salient = maps
        if salient.shape != images.shape[:3]:
            raise TfsalError(f"expected a boolean mask of shape {images.shape[:3]}, received "
                             f"{salient.shape}")
    else:
        maps = float_array(maps, "maps")
        norm = np.linalg.norm(maps, axis=-1) if maps.ndim == 4 else np.abs(maps)
        # The pixels the loop would paint at this level (lowest norm) are the non-salient ones.
        painted = mask_below_level(np.zeros_like(images), norm, level, background=1.0)
        salient = painted[..., 0] == 0
    blurred = np.where(salient[..., None], everywhere, images)
    return SelectiveBlur(targets, model.predict(images, score="probability"),
                         model.predict(blurred, score="probability"), blurred,
                         salient.mean(axis=(1, 2)))
