"""Surgery on copies of Keras models: cloning, absorbing an input shift, re-initialising layers.

The adapter's `# ---- surgery` methods (`Model.clone`, `Model.shift_compensated`,
`Model.randomized_layers`) are built from these functions; measurements ask the adapter and
never touch Keras layers themselves. Every function here works on a copy made by
`clone_keras_model`: the user's model is never changed.

Input-shift compensation (Kindermans et al., "The (un)reliability of saliency methods"): with
δ the constant shift of the model's input, the first layer's bias absorbs it, so that the copy
computes f₂(x + δ) = f₁(x):

- Conv2D: b'_o = b_o − Σ_{i,j,c} W[i, j, c, o] · δ_c
- Dense on the image (last axis): b' = b − δ · W; Flatten → Dense: b' = b − flatten(δ) · W

Exact for VALID convolutions and dense layers. A SAME-padded first convolution pads with
zeros, which are not shifted, so its border outputs get the wrong compensation; with
`border_correction` the copy's first convolution also adds the position-dependent remainder at
its borders (a constant offset map before its activation), which makes the equivalence exact.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from tfsal.errors import TfsalError


def clone_keras_model(model, clone_function: Callable | None = None):
    """A copy of a functional or sequential Keras model (nested models too) with the same
    weights in new variables; `clone_function(layer)` makes each new layer (default: the same
    class from the layer's config)."""
    if clone_function is None:
        def clone_function(layer):
            return layer.__class__.from_config(layer.get_config())
    try:
        copy = keras.models.clone_model(model, clone_function=clone_function, recursive=True)
        copy.set_weights(model.get_weights())
    except Exception as exc:  # Keras raises many types for models it cannot re-create
        raise TfsalError(f"expected a model keras.models.clone_model can copy, received "
                         f"{type(model).__name__}: {exc}") from None
    return copy


def weighted_layers(runner) -> list[str]:
    """Paths of the layers of a `tfsal.graph.GraphRunner` that hold weights themselves (nested
    models are walked into, not counted), input side first."""
    return [path for path in runner.paths if runner.layer(path).weights
            and not isinstance(runner.layer(path), keras.Model)]


def reinitialize(layer, rng: np.random.Generator) -> None:
    """Redraw every weight of `layer` in place: kernels from N(0, std of the old values),
    1-D weights (biases, normalisation parameters) as zeros."""
    for weight in layer.weights:
        value = np.asarray(weight)
        if value.ndim > 1:
            weight.assign(rng.normal(0.0, value.std(), value.shape).astype(value.dtype))
        else:
            weight.assign(np.zeros_like(value))


def shift_compensated_copy(model, input_shift: np.ndarray, *, border_correction: bool = True):
    """A copy of the Keras `model` whose first layer absorbs the constant input shift δ
    (3,) of its input (see the module docstring).

    Raises:
        TfsalError: for an unsupported first layer (anything but Conv2D / Dense / Flatten →
            Dense with a bias; a Conv2D without a bias gets its whole compensation as an
            offset map) or a model that cannot be cloned.
    """
    delta = np.asarray(input_shift, np.float64)
    first, follower = _first_layer(model)
    _check_supported(first, follower)
    is_conv = type(first) is keras.layers.Conv2D
    offset_layer = is_conv and (not first.use_bias
                                or (border_correction and first.padding == "same"))

    def clone_function(layer):
        if layer is first and offset_layer:  # same config, plus the offset map
            return _OffsetConv2D.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = clone_keras_model(model, clone_function)
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
    return copy


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
