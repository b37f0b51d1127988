"""Input-shift invariance (Kindermans et al., "The (un)reliability of saliency methods"; the
overview paper's brightness-offset experiment).

Adding a constant `s` to every pixel of a channel and subtracting its effect from the first
layer's bias gives a second model f₂ with f₂(x + s) = f₁(x): the two networks compute the same
function of the image content, so a map that explains the function must not change:
map(f₁, x) = map(f₂, x + s). Vanilla gradient and Grad-CAM satisfy this; Gradient × Input and
Integrated Gradients from a black baseline do not (the input, or the path from 0, moved).

With δ = pre(x + s) − pre(x) the shift in the model's own input space (the adapter's
preprocessing: "tf" maps s to 2s, "caffe" to 255·s in BGR order), the adapter makes the
compensated copy (`Model.shift_compensated`: the first layer's bias absorbs δ; a SAME-padded
first convolution also gets the position-dependent remainder at its borders, where taps fall on
the unshifted zero padding, which makes the equivalence exact — `tfsal.surgery`). Without that
border correction the equivalence is approximate at the borders; the result reports the
measured logit difference either way (`logit_error`; its size on the shipped models is in the
README's evaluation tables, `scripts/evaluation_tables.py --only shift`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfsal.checks import integer, non_negative
from tfsal.errors import TfsalError
from tfsal.images import check_images
from tfsal.loading import as_model

FITS = ("compress", "require")


@dataclass(frozen=True)
class ShiftInvariance:
    """Maps of the original and the shift-compensated model, compared image by image.

    Attributes:
        shift: (3,) pixel-space shift per channel.
        input_shift: (3,) the same shift in the model's input space (after preprocessing).
        relative_l2: (N,) ‖map₂ − map₁‖ / ‖map₁‖ (0 when both are zero; inf when only map₁
            is zero).
        max_abs_difference: (N,) max |map₂ − map₁|.
        map_scale: (N,) max |map₁| (to read `max_abs_difference` against).
        logit_error: (N,) max over classes |f₂(x + s) − f₁(x)|: 0 up to float error for exact
            equivalence, larger when SAME zero-padding breaks it at the borders.
        logit_scale: (N,) max over classes |f₁(x)|.
        invariant: every relative_l2 ≤ tolerance.
        tolerance: the threshold used for `invariant`.
        border: pixels cropped from each side before comparing the maps.
        compressed: whether the images were compressed to leave room for the shift.
        border_corrected: whether SAME-padding borders were corrected (exact equivalence).
    """

    shift: np.ndarray
    input_shift: np.ndarray
    relative_l2: np.ndarray
    max_abs_difference: np.ndarray
    map_scale: np.ndarray
    logit_error: np.ndarray
    logit_scale: np.ndarray
    invariant: bool
    tolerance: float
    border: int
    compressed: bool
    border_corrected: bool


def input_shift_invariance(model, images, method, shift, targets=None, *,
                           tolerance: float = 1e-2, border: int = 0, fit: str = "compress",
                           border_correction: bool = True,
                           method_kwargs: dict | None = None) -> ShiftInvariance:
    """Compare method(model, x) with method(shift-compensated model, x + shift).

    Images stay in [0, 1]. With fit="compress" (default) each channel c is first mapped
    linearly into [max(0, −s_c), 1 − max(0, s_c)] — x' = max(0, −s_c) + (1 − |s_c|)·x — so that
    x' + s is in [0, 1] too, and both models explain those images (the comparison is between
    the two models on corresponding inputs, so compressing changes which images are explained,
    not the test). With fit="require" the images are used as given and must leave room.

    Args:
        model: a `tfsal.Model` (or loadable) whose first layer after the input is a Conv2D, a
            Dense, or Flatten → Dense, with a bias; functional, sequential or nested.
        images: float32 (N, H, W, 3) in [0, 1].
        method: a name in `tfsal.methods.METHODS` or a callable `method(model, images, targets,
            **method_kwargs)`; (N, H, W[, C]) and (N, h, w) maps are both compared as given.
        shift: a number or 3 numbers (per RGB channel) in (−1, 1), in pixel units.
        targets: as for every method (None = predicted class of the original model); the same
            targets are explained under both models.
        tolerance: largest relative L2 distance still called invariant. Not 0: the two models
            agree to float rounding (~1e-6 of the logits), which now and then flips a ReLU
            gate or a max-pool arg-max sitting on a tie and moves a gradient map by ~1e-3;
            the methods that are not invariant move by ~0.1 or more.
        border: pixels cropped from every side of the maps before comparing (0: whole map;
            for (N, h, w) maps the crop is scaled to their resolution, rounded up).
        fit: "compress" or "require" (see above).
        border_correction: make the equivalence exact for a SAME-padded first convolution
            (see `tfsal.Model.shift_compensated`); False: the plain bias compensation, whose border
            error `logit_error` then shows.
        method_kwargs: keyword arguments for the method (fix a `seed` for SmoothGrad-like
            methods so that both calls draw the same noise).

    Returns:
        a `ShiftInvariance`.

    Raises:
        TfsalError: for a bad shift, fit, border or method name; images that do not fit with
            fit="require"; an unsupported first layer (anything but Conv2D / Dense / Flatten →
            Dense with a bias), a model that cannot be cloned, or a preprocessing that does not
            map a constant pixel shift to a constant input shift.

    Example:
        >>> r = tfsal.metrics.input_shift_invariance("shapes-cnn", images, "vanilla", 0.1)
        >>> r.invariant, r.relative_l2.max()
    """
    model = as_model(model)
    images = check_images(images)
    method_fn = _method(method)
    shift = _check_shift(shift)
    if fit not in FITS:
        raise TfsalError(f"expected fit in {FITS}, received {fit!r}")
    border = integer(border, "border", low=0, high=(min(images.shape[1:3]) - 1) // 2,
                     note=f"leaving some of the {images.shape[1]}x{images.shape[2]} map")
    tolerance = non_negative(tolerance, "tolerance")
    if fit == "compress":
        low = np.maximum(0.0, -shift)
        images = (low + (1.0 - np.abs(shift)) * images).astype(np.float32)
    shifted_images = images + shift.astype(np.float32)
    if shifted_images.min() < 0 or shifted_images.max() > 1:
        raise TfsalError(f"expected images + shift within [0, 1] (fit='require'), received "
                         f"values in [{shifted_images.min():.4g}, {shifted_images.max():.4g}]; "
                         "use fit='compress'")
    shifted_images = np.clip(shifted_images, 0.0, 1.0)  # float rounding only

    delta = model.input_space_shift(shift, probe=images[:1])
    shifted_model = model.shift_compensated(delta, border_correction=border_correction)
    targets = model.resolve_targets(images, targets)
    kwargs = dict(method_kwargs or {})
    before = np.asarray(method_fn(model, images, targets, **kwargs), np.float64)
    after = np.asarray(method_fn(shifted_model, shifted_images, targets, **kwargs), np.float64)
    if before.shape != after.shape:
        raise TfsalError(f"expected the method to return maps of one shape, received "
                         f"{before.shape} and {after.shape}")

    score = "logit" if model.output_kind == "logits" else "log_probability"
    z1 = model.predict(images, score=score).astype(np.float64)
    z2 = shifted_model.predict(shifted_images, score=score).astype(np.float64)
    a, b = _crop(before, border, images.shape[1]), _crop(after, border, images.shape[1])
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    norm = np.linalg.norm(a, axis=1)
    diff = np.linalg.norm(b - a, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(norm > 0, diff / norm, np.where(diff > 0, np.inf, 0.0))
    return ShiftInvariance(
        shift=shift, input_shift=delta,
        relative_l2=relative, max_abs_difference=np.abs(b - a).max(axis=1),
        map_scale=np.abs(a).max(axis=1),
        logit_error=np.abs(z2 - z1).max(axis=1), logit_scale=np.abs(z1).max(axis=1),
        invariant=bool(np.all(relative <= tolerance)), tolerance=float(tolerance),
        border=int(border), compressed=fit == "compress",
        border_corrected=bool(border_correction))


# ------------------------------------------------------------------------------ helpers
def _method(method) -> Callable:
    if isinstance(method, str):
        from tfsal.methods import METHODS

        if method not in METHODS:
            raise TfsalError(f"expected a method name in {sorted(METHODS)} or a callable, "
                             f"received {method!r}")
        return METHODS[method]
    if not callable(method):
        raise TfsalError(f"expected a method name or a callable, received "
                         f"{type(method).__name__}")
    return method


def _check_shift(shift) -> np.ndarray:
    try:
        value = np.asarray(shift, dtype=np.float64)
    except (TypeError, ValueError):
        raise TfsalError(f"expected shift a number or 3 numbers, received {shift!r}") from None
    if value.ndim == 0:
        value = np.full(3, float(value))
    if value.shape != (3,) or not np.all(np.isfinite(value)) or np.any(np.abs(value) >= 1):
        raise TfsalError(f"expected shift a number or 3 numbers (one per RGB channel) in "
                         f"(-1, 1), received shape {value.shape} values {value.tolist()}")
    return value


def _crop(maps: np.ndarray, border: int, image_size: int) -> np.ndarray:
    if border == 0:
        return maps
    size = maps.shape[1]
    k = int(np.ceil(border * size / image_size))
    if 2 * k >= size:
        raise TfsalError(f"expected border to leave part of the {size}-pixel maps, "
                         f"received border {border}")
    return maps[:, k:size - k, k:size - k]
