"""Input-shift invariance (Kindermans et al., "The (un)reliability of saliency methods"; the
overview paper's brightness-offset experiment).

Adding a constant `s` to every pixel of a channel and subtracting its effect from the first
layer's bias gives a second model f₂ with f₂(x + s) = f₁(x): the two networks compute the same
function of the image content, so a map that explains the function must not change:
map(f₁, x) = map(f₂, x + s). Vanilla gradient and Grad-CAM satisfy this; Gradient × Input and
Integrated Gradients from a black baseline do not (the input, or the path from 0, moved).

Bias compensation, with δ = pre(x + s) − pre(x) the shift in the model's own input space
(the adapter's preprocessing: "tf" maps s to 2s, "caffe" to 255·s in BGR order):

- Conv2D: b'_o = b_o − Σ_{i,j,c} W[i, j, c, o] · δ_c
- Dense on the image (last axis): b' = b − δ · W; Flatten → Dense: b' = b − flatten(δ) · W

Exact for VALID convolutions and dense layers. A SAME-padded first convolution pads with
zeros, which are not shifted, so its border outputs would get the wrong compensation (on the
shipped shapes CNN, shift 0.1: logits off by up to ~0.4 where they reach ~100, vanilla-gradient
maps by ~7 % relative L2). By default the clone's first convolution therefore also adds the
position-dependent remainder at its borders (`border_correction`), which makes the
equivalence exact; the result reports the measured logit difference either way
(`logit_error`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np

from tfsal.errors import TfsalError
from tfsal.images import check_images
from tfsal.loading import as_model
from tfsal.model import Model

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
            (see `shift_compensated_model`); False: the plain bias compensation, whose border
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
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0 \
            or 2 * border >= min(images.shape[1:3]):
        raise TfsalError(f"expected border an int ≥ 0 leaving some of the "
                         f"{images.shape[1]}x{images.shape[2]} map, received {border!r}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
            or not tolerance >= 0:
        raise TfsalError(f"expected tolerance a number ≥ 0, received {tolerance!r}")
    if fit == "compress":
        low = np.maximum(0.0, -shift)
        images = (low + (1.0 - np.abs(shift)) * images).astype(np.float32)
    shifted_images = images + shift.astype(np.float32)
    if shifted_images.min() < 0 or shifted_images.max() > 1:
        raise TfsalError(f"expected images + shift within [0, 1] (fit='require'), received "
                         f"values in [{shifted_images.min():.4g}, {shifted_images.max():.4g}]; "
                         "use fit='compress'")
    shifted_images = np.clip(shifted_images, 0.0, 1.0)  # float rounding only

    delta = _input_shift(model, images[:1], shift)
    shifted_model = shift_compensated_model(model, delta, border_correction=border_correction)
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


def shift_compensated_model(model, input_shift, *, border_correction: bool = True) -> Model:
    """A copy of `model` whose first layer absorbs a constant input-space shift.

    The Keras model is cloned (`keras.models.clone_model`) and its weights copied; only the
    copy changes, so the user's model is never touched. The first layer's bias absorbs the
    shift (b' = b − Σ W·δ). With `border_correction`, a SAME-padded first Conv2D also gets the
    position-dependent remainder at its borders — where some kernel taps fall on the zero
    padding, which the shift does not move — as a constant offset map added before its
    activation (the clone's layer is a `Conv2D` subclass); that makes the equivalence exact.
    A first Conv2D without a bias gets its whole compensation as that offset map.

    Args:
        model: a `tfsal.Model` (or loadable) over a functional/sequential Keras model.
        input_shift: (3,) shift per channel in the model's input space (after preprocessing).
        border_correction: correct SAME-padding borders (False: the plain bias compensation,
            approximate at the borders).

    Returns:
        a `tfsal.Model` with the same preprocessing, score and batch size, such that
        f₂(x + s) = f₁(x) for pixel shifts s with pre(x + s) = pre(x) + input_shift.

    Raises:
        TfsalError: for an unsupported first layer or a model that cannot be cloned.
    """
    model = as_model(model)
    model._require_runner("the input-shift experiment")
    delta = np.asarray(input_shift, np.float64).reshape(-1)
    if delta.shape != (3,) or not np.all(np.isfinite(delta)):
        raise TfsalError(f"expected input_shift as 3 finite numbers, received "
                         f"{np.asarray(input_shift).tolist()}")
    first, follower = _first_layer(model.wrapped)
    _check_supported(first, follower)
    is_conv = type(first) is keras.layers.Conv2D
    offset_layer = is_conv and (not first.use_bias
                                or (border_correction and first.padding == "same"))

    def clone_function(layer):
        if layer is first and offset_layer:  # same config, plus the offset map
            return _OffsetConv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    try:
        copy = keras.models.clone_model(model.wrapped, clone_function=clone_function,
                                        recursive=True)
        copy.set_weights(model.wrapped.get_weights())
    except Exception as exc:  # Keras raises many types for models it cannot re-create
        raise TfsalError(f"expected a model keras.models.clone_model can copy, received "
                         f"{type(model.wrapped).__name__}: {exc}") from None
    clone_first, clone_follower = _first_layer(copy)
    if isinstance(clone_first, keras.layers.Flatten):
        flat = np.broadcast_to(delta, tuple(clone_first.input.shape[1:])).reshape(-1)
        _shift_bias(clone_follower, flat @ np.asarray(clone_follower.kernel, np.float64))
    elif isinstance(clone_first, keras.layers.Dense):
        _shift_bias(clone_first, delta @ np.asarray(clone_first.kernel, np.float64))
    else:
        kernel = np.asarray(clone_first.kernel, np.float64)  # (kh, kw, 3, out)
        full = np.einsum("ijco,c->o", kernel, delta)  # what the shift adds in the interior
        # conv(x + δ) = conv(x) + reached: at the borders fewer taps land on (shifted) pixels.
        reached = _shifted_taps(clone_first, delta) if border_correction \
            else np.broadcast_to(full, _output_shape(clone_first))
        if clone_first.use_bias:
            _shift_bias(clone_first, full)
            offset = full - reached  # zero in the interior
        else:
            offset = -reached
        if offset_layer:
            clone_first.offset = offset.astype(np.float32)
    output = "auto" if model.output_kind == "logits" else model.output_kind
    return Model(copy, preprocess=model.preprocess, score=model.score, output=output,
                 batch_size=model.batch_size, class_names=model.class_names,
                 name=f"{model.name}_shifted")


class _OffsetConv2D(keras.layers.Conv2D):
    """Conv2D adding a constant (h, w, filters) offset map before its activation (None: no
    offset, as while the clone's graph is built)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset = None

    def call(self, inputs):
        outputs = self.convolution_op(inputs, self.kernel)
        if self.use_bias:
            outputs = keras.ops.add(outputs, self.bias)
        if self.offset is not None:
            outputs = keras.ops.add(outputs, keras.ops.convert_to_tensor(self.offset,
                                                                         outputs.dtype))
        return self.activation(outputs) if self.activation is not None else outputs


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


def _input_shift(model: Model, probe: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """δ = pre(x + s) − pre(x) per channel, checked to be the same at every pixel and input."""
    import tensorflow as tf

    x = np.concatenate([probe, np.full_like(probe, 0.5)])
    moved = model._preprocess(tf.constant(x + shift.astype(np.float32)))
    delta = np.asarray(moved, np.float64) - np.asarray(model._preprocess(tf.constant(x)),
                                                       np.float64)
    if delta.shape != x.shape:
        raise TfsalError(f"expected a preprocessing that keeps the image shape {x.shape}, "
                         f"received {delta.shape}")
    per_channel = delta.reshape(-1, 3)
    mean = per_channel.mean(axis=0)
    if not np.allclose(per_channel, mean, atol=1e-4 * max(1.0, np.abs(mean).max())):
        raise TfsalError("expected a preprocessing that maps a constant pixel shift to a "
                         "constant input shift (affine per channel), received one whose shift "
                         f"varies by {np.ptp(per_channel, axis=0).max():.3g} across pixels")
    return mean


def _first_layer(model):
    """(first layer applied to the model input, the Dense after it if it is a Flatten)."""
    if isinstance(model, keras.Sequential):
        consumers = [model.layers[0]] if model.layers else []
    else:
        source = model.inputs[0]
        consumers = [layer for layer in model.layers
                     if not isinstance(layer, keras.layers.InputLayer)
                     and any(any(t is source for t in node.input_tensors)
                             for node in layer._inbound_nodes)]
    if len(consumers) != 1:
        raise TfsalError(f"expected one layer reading the model input, received "
                         f"{[layer.name for layer in consumers]}")
    first = consumers[0]
    if isinstance(first, keras.Model):  # a base model used as a layer: its own first layer
        return _first_layer(first)
    follower = None
    if isinstance(first, keras.layers.Flatten):
        follower = _single_follower(model, first)
    return first, follower


def _single_follower(model, layer):
    if isinstance(model, keras.Sequential):
        index = model.layers.index(layer)
        return model.layers[index + 1] if index + 1 < len(model.layers) else None
    source = layer.output
    followers = [other for other in model.layers
                 if any(any(t is source for t in node.input_tensors)
                        for node in other._inbound_nodes)]
    return followers[0] if len(followers) == 1 else None


def _check_supported(first, follower) -> None:
    if isinstance(first, keras.layers.Flatten) and isinstance(follower, keras.layers.Dense):
        if None in tuple(first.input.shape[1:]):
            raise TfsalError(f"expected a fixed input size for Flatten → Dense, received "
                             f"{first.input.shape}")
        return
    if isinstance(first, keras.layers.Dense):
        return
    if type(first) is keras.layers.Conv2D:
        if first.data_format != "channels_last" or first.groups != 1:
            raise TfsalError(f"expected a channels_last, ungrouped first Conv2D, received "
                             f"{first.name} ({first.data_format}, groups={first.groups})")
        if None in _output_shape(first):
            raise TfsalError(f"expected a fixed input size for the first Conv2D, received "
                             f"{first.input.shape}")
        return
    extra = f" → {type(follower).__name__}" if follower is not None else ""
    raise TfsalError(f"expected a Conv2D, Dense or Flatten → Dense first layer, received "
                     f"{first.name} ({type(first).__name__}{extra})")


def _output_shape(layer) -> tuple:
    return tuple(layer.compute_output_shape(tuple(layer.input.shape))[1:])


def _shifted_taps(layer, delta: np.ndarray) -> np.ndarray:
    """(h, w, filters): the layer's kernel applied, with its own padding, strides and dilation,
    to an image that is δ everywhere — Σ over the taps that land on real pixels of W·δ."""
    image = np.broadcast_to(delta, (1,) + tuple(layer.input.shape[1:])).astype(np.float32)
    out = keras.ops.conv(image, layer.kernel, strides=layer.strides, padding=layer.padding,
                         dilation_rate=layer.dilation_rate)
    return np.asarray(out, np.float64)[0]


def _shift_bias(layer, compensation: np.ndarray) -> None:
    if not getattr(layer, "use_bias", False) or layer.bias is None:
        raise TfsalError(f"expected a first layer with a bias to absorb the shift, received "
                         f"{layer.name} without one")
    bias = np.asarray(layer.bias, np.float64)
    layer.bias.assign((bias - compensation).astype(layer.bias.dtype))


def _crop(maps: np.ndarray, border: int, image_size: int) -> np.ndarray:
    if border == 0:
        return maps
    size = maps.shape[1]
    k = int(np.ceil(border * size / image_size))
    if 2 * k >= size:
        raise TfsalError(f"expected border to leave part of the {size}-pixel maps, "
                         f"received border {border}")
    return maps[:, k:size - k, k:size - k]
