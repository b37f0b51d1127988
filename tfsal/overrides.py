"""Backward rules: Guided Backprop, Deconvnet, Rectified Gradient, DeepLIFT Rescale, ε-LRP.

A rule replaces the backward pass at three kinds of sites while the forward pass stays exact:

- activations: `Activation(...)` layers, the fused `activation=` of Conv2D / SeparableConv2D /
  DepthwiseConv2D / Dense, and `ReLU` (Relu6 too), `ELU`, `LeakyReLU` layers, for the activation
  types the RectGrad reference overrides (`OVERRIDDEN`);
- SAME-padded convolutions (RectGrad's padding trick: zero a one-pixel border of the gradient
  arriving at the convolution's output, before its own backward pass);
- max-pooling (RectGrad's proportional redistribution rule, PRR; DeepLIFT's optional
  `maxpool="rescale"`, which keeps summation-to-delta).

Rules reach a model in one of two independent ways, each the other's oracle:

- Keras graphs, layer by layer: `graph.GraphRunner` calls the user's layers one by one;
  `Overrider` intercepts those calls inside one trace and wraps their outputs in
  `tf.custom_gradient` functions. Fused activations are evaluated through a bare shallow copy
  of the layer with a linear activation (sharing the weights), so the user's model is never
  changed.
- Graphs without layers (SavedModels, TF Serving exports, hub handles), op by op, the RectGrad
  authors' mechanism: `gradient_overrides(rule)` registers one gradient per (rule, op type)
  with `tf.RegisterGradient`, under a name spelling out the rule's parameters, and
  `opgraph.OpGraph` imports the model's graph under `gradient_override_map`. Only ops imported
  under that map carry the registered name, so no other graph's gradients change.

Either way a compiled plain gradient and a compiled rule gradient are different functions that
cannot leak into each other.

Rules are frozen dataclasses, so they are hashable keys of the adapter's compiled functions.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from tfsal.errors import TfsalError
from tfsal.graph import linear_copy
from tfsal.selection import RANKS, best_selection, percentile_rank, select

# Activation types overridden by the RectGrad reference (one TensorFlow op each).
OVERRIDDEN = ("relu", "relu6", "elu", "selu", "sigmoid", "tanh", "softplus", "leaky_relu")

_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D)
# How DeepLIFT passes max-pooling (`Rescale.maxpool`).
MAXPOOL_RULES = ("gradient", "rescale")
# Max-pooling layers `maxpool="rescale"` cannot handle (it refuses them rather than silently
# breaking summation-to-delta there).
_OTHER_MAX_POOLS = (keras.layers.MaxPooling1D, keras.layers.MaxPooling3D,
                    keras.layers.GlobalMaxPooling1D, keras.layers.GlobalMaxPooling2D,
                    keras.layers.GlobalMaxPooling3D)


# ------------------------------------------------------------------------------------ rules
class Rule:
    """Base class: how the gradient passes an activation, a padded convolution, a max-pool."""

    needs_reference = False  # True: the rule needs a forward pass on reference inputs first
    padding_trick = False
    prr = False

    def activation_backward(self, grad, z, a, derivative, reference):
        """Gradient at the activation's input.

        Args:
            grad: gradient arriving at the activation's output (R).
            z: pre-activation; a: activation output.
            derivative: callable(z) -> the activation's own elementwise derivative at z.
            reference: (z0, a0) from the reference input, for rules that need it, else None.
        """
        raise NotImplementedError


@dataclass(frozen=True)
class Guided(Rule):
    """Guided Backprop (Springenberg et al. 2015): R · f'(z) · 1[R > 0]."""

    def activation_backward(self, grad, z, a, derivative, reference):
        return tf.nn.relu(grad) * derivative(z)


@dataclass(frozen=True)
class Deconv(Rule):
    """Deconvnet (Zeiler & Fergus 2014): the activation passes max(R, 0), ignoring the input."""

    def activation_backward(self, grad, z, a, derivative, reference):
        return tf.nn.relu(grad)


@dataclass(frozen=True)
class Rectified(Rule):
    """Rectified Gradient (Kim et al. 2019): R · 1[a · R > τ], strict.

    τ is the `percentile`-th percentile ("nearest") of a · R per sample over all of the layer's
    units, or the constant `threshold` when one is given. `rank` is how the percentile's rank
    is rounded (`tfsal.selection.percentile_rank`): "authors" (their TF1 percentile, the
    default) or "numpy". As in the authors' code, the rule replaces the activation's
    derivative (for ReLU and τ ≥ 0 the two agree).
    """

    percentile: float | None = 98.0
    threshold: float | None = None
    padding_trick: bool = True
    prr: bool = False
    rank: str = "authors"

    def __post_init__(self):
        if self.rank not in RANKS:
            raise TfsalError(f"expected rank in {RANKS}, received {self.rank!r}")

    def activation_backward(self, grad, z, a, derivative, reference):
        if self.threshold is None:
            return rectify(grad, a, self.percentile, self.rank)
        return tf.where(a * grad > self.threshold, grad, tf.zeros_like(grad))


@dataclass(frozen=True)
class Rescale(Rule):
    """DeepLIFT's Rescale rule (Shrikumar et al. 2017): R · (a − a0) / (z − z0).

    Where |z − z0| ≤ 1e-5 the derivative at the midpoint is used instead (as in DeepExplain).

    `maxpool`: how max-pooling passes the multipliers. "gradient" (the default, as in the
    RectGrad authors' DeepExplain and the DeepLIFT package): the plain gradient, all of a
    window's multiplier to its largest input, which breaks summation-to-delta. "rescale": each
    window's multiplier is shared by the path-averaged gradient of the window's maximum
    (`_window_path_shares`), the multi-input form of the Rescale rule itself, which keeps
    summation-to-delta exact.
    """

    needs_reference = True
    maxpool: str = "gradient"

    def __post_init__(self):
        if self.maxpool not in MAXPOOL_RULES:
            raise TfsalError(f"expected maxpool in {MAXPOOL_RULES}, received {self.maxpool!r}")

    def activation_backward(self, grad, z, a, derivative, reference):
        z0, a0 = reference
        dz = z - z0
        near = tf.abs(dz) <= 1e-5
        ratio = (a - a0) / tf.where(near, tf.ones_like(dz), dz)
        return grad * tf.where(near, derivative(0.5 * (z + z0)), ratio)


@dataclass(frozen=True)
class Epsilon(Rule):
    """ε-LRP as a modified gradient (Ancona et al. 2018): R · a / (z + ε · sign(z))."""

    epsilon: float = 1e-4

    def activation_backward(self, grad, z, a, derivative, reference):
        stabiliser = self.epsilon * tf.where(z >= 0, tf.ones_like(z), -tf.ones_like(z))
        return grad * a / (z + stabiliser)


# ------------------------------------------------------------------------------- primitives
def per_sample_percentile(values, q: float, how: str | None = None, rank: str = "authors"):
    """The q-th percentile of each sample's values, "nearest" interpolation.

    The value at ascending rank `selection.percentile_rank(n, q, rank)` of each sample's n
    values: by the RectGrad authors' TF1 rule (default) or NumPy's (`rank="numpy"`), found by
    `how` (see `selection.select`; default `selection.best_selection`): every algorithm is
    exact.

    Returns:
        a tensor broadcastable against `values`: (N, 1, ..., 1), of their dtype (the
        selection runs in float32).
    """
    n = int(np.prod(values.shape[1:]))
    index = percentile_rank(n, q, rank)
    # Selected in float32 (the radix select's keys are float32 bit patterns): exact for
    # float16 / bfloat16 values, whose float32 images keep their order, and cast back.
    flat = tf.cast(tf.reshape(values, (-1, n)), tf.float32)
    tau = tf.cast(select(flat, index, how or best_selection(n, index)), values.dtype)
    return tf.reshape(tau, (-1,) + (1,) * (len(values.shape) - 1))


def rectify(grad, activation, q: float, rank: str = "authors"):
    """RectGrad's rule R · 1[a · R > τ] with τ the per-sample q-th percentile of a · R
    (its rank by `rank`, see `per_sample_percentile`).

    With the radix select (large layers) the rule runs as one XLA cluster: XLA fuses the
    elementwise work around the select's two counting passes (faster than op by op on CPU,
    BENCHMARKS.md). The compiled function is shared, so each distinct layer shape (and q) is
    compiled once per process.
    """
    n = int(np.prod(grad.shape[1:]))
    how = best_selection(n, percentile_rank(n, q, rank))
    if how == "radix":
        return _rectify_compiled(grad, activation, float(q), how, rank)
    return _rectify(grad, activation, q, how, rank)


def _rectify(grad, activation, q, how, rank="authors"):
    importance = activation * grad
    tau = per_sample_percentile(importance, q, how, rank)
    return tf.where(importance > tau, grad, tf.zeros_like(grad))


_rectify_compiled = tf.function(_rectify, jit_compile=True, autograph=False)


def _border_mask(tensor):
    """1 inside, 0 on the one-pixel border of H and W; all ones on maps with H or W ≤ 2."""
    shape = tf.shape(tensor)
    h, w = shape[1], shape[2]
    rows = tf.range(h)
    cols = tf.range(w)
    tiny = tf.logical_or(h <= 2, w <= 2)
    keep_rows = tf.logical_or(tiny, (rows > 0) & (rows < h - 1))
    keep_cols = tf.logical_or(tiny, (cols > 0) & (cols < w - 1))
    mask = tf.logical_and(keep_rows[:, None], keep_cols[None, :])
    return tf.cast(mask, tensor.dtype)[None, :, :, None]


def _mask_border_gradient(out):
    """Identity forward; the backward pass zeroes the gradient's one-pixel border."""

    @tf.custom_gradient
    def padded(x):
        return tf.identity(x), lambda grad: grad * _border_mask(grad)

    return padded(out)


def _pool_geometry(layer, rule: str):
    """(ksize, strides, padding) of a Keras max-pooling layer, as the raw pooling ops take
    them; a TfsalError naming `rule` for channels_first layers."""
    if layer.data_format != "channels_last":
        raise TfsalError(f"expected channels_last max-pooling for {rule}, received "
                         f"{layer.data_format} in {layer.name}")
    return [1, *layer.pool_size, 1], [1, *layer.strides, 1], layer.padding.upper()


def _proportional_max_pool(layer, x):
    """Max-pool forward; backward by the proportional redistribution rule (`_prr_backward`)."""
    ksize, strides, padding = _pool_geometry(layer, "the proportional redistribution rule")

    @tf.custom_gradient
    def pool(inputs):
        return layer(inputs), lambda grad: _prr_backward(inputs, grad, ksize, strides, padding)

    return pool(x)


def _prr_backward(inputs, grad, ksize, strides, padding):
    """PRR: dx = x ⊙ AvgPoolGrad(dy / (AvgPool(x) + 1e-10)), each window's gradient shared
    in proportion to its inputs."""
    window_mean = tf.nn.avg_pool2d(inputs, ksize, strides, padding) + 1e-10
    share = tf.raw_ops.AvgPoolGrad(orig_input_shape=tf.shape(inputs), grad=grad / window_mean,
                                   ksize=ksize, strides=strides, padding=padding)
    return inputs * share


def rescales_max_pool(rule: Rule) -> bool:
    """Whether `rule` replaces max-pooling's gradient by DeepLIFT's summation-exact rule."""
    return getattr(rule, "maxpool", "gradient") == "rescale"


def _path_max_pool(layer, x, x0):
    """Max-pool forward; backward by DeepLIFT's `maxpool="rescale"` (`_path_max_pool_backward`)
    against the same layer's input `x0` on the reference images."""
    ksize, strides, padding = _pool_geometry(layer, "DeepLIFT's maxpool='rescale'")

    @tf.custom_gradient
    def pool(inputs):
        return layer(inputs), lambda grad: _path_max_pool_backward(inputs, x0, grad, ksize,
                                                                    strides, padding)

    return pool(x)


def _window_views(t, ksize, strides, padding):
    """The K = kh·kw views of `t` (N, H, W, C) that max-pooling compares: view k holds, at
    every output position, the window's k-th input (row-major in the window), as
    (N, oh, ow, C); plus K masks (1, oh, ow, 1), 0 where the input is SAME padding."""
    kh, kw, sh, sw = ksize[1], ksize[2], strides[1], strides[2]
    h, w = tf.shape(t)[1], tf.shape(t)[2]
    if padding == "SAME":
        oh, ow = (h + sh - 1) // sh, (w + sw - 1) // sw
        pad_h = tf.maximum((oh - 1) * sh + kh - h, 0)
        pad_w = tf.maximum((ow - 1) * sw + kw - w, 0)
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        pad_h = pad_w = tf.constant(0)
    paddings = [[0, 0], [pad_h // 2, pad_h - pad_h // 2], [pad_w // 2, pad_w - pad_w // 2],
                [0, 0]]
    padded = tf.pad(t, paddings)
    inside = tf.pad(tf.ones(tf.stack([1, h, w, 1]), t.dtype), paddings)
    views, masks = [], []
    for a in range(kh):
        for b in range(kw):
            rows = slice(a, a + (oh - 1) * sh + 1, sh)
            cols = slice(b, b + (ow - 1) * sw + 1, sw)
            views.append(padded[:, rows, cols, :])
            masks.append(inside[:, rows, cols, :] > 0)
    return views, masks


def _window_path_shares(x_views, x0_views, masks):
    """Per window and input k: the fraction m_k of the straight path from the reference window
    x0 to the window x along which input k is the window's maximum (the path-averaged gradient
    of max, ∫₀¹ ∂max(x0 + α(x − x0))/∂x_k dα).

    Along the path input k is the line x0_k + α·Δ_k; it is the maximum where it is at least
    every other line, an interval of α (the maximum of lines is convex): α ≥ −g/s for each
    other input with slope difference s > 0, α ≤ −g/s for s < 0 (g = the lines' gap at α = 0),
    never if s = 0 and g < 0; identical lines go to the first. So m_k ≥ 0, Σ_k m_k = 1 and
    Σ_k m_k·Δ_k = max(x) − max(x0) exactly (up to rounding): the fundamental theorem of
    calculus along the path. For one input this is DeepLIFT's Rescale multiplier Δy / Δx.
    """
    deltas = [x - x0 for x, x0 in zip(x_views, x0_views)]
    shares = []
    for k, (x0_k, delta_k) in enumerate(zip(x0_views, deltas)):
        low, high = tf.zeros_like(delta_k), tf.ones_like(delta_k)
        possible = tf.broadcast_to(masks[k], tf.shape(delta_k))
        for j, (x0_j, delta_j) in enumerate(zip(x0_views, deltas)):
            if j == k:
                continue
            gap, slope = x0_k - x0_j, delta_k - delta_j
            cross = -gap / tf.where(tf.equal(slope, 0), tf.ones_like(slope), slope)
            low = tf.where(masks[j] & (slope > 0), tf.maximum(low, cross), low)
            high = tf.where(masks[j] & (slope < 0), tf.minimum(high, cross), high)
            below = gap <= 0 if j < k else gap < 0  # identical lines: the first one wins
            possible &= ~(masks[j] & tf.equal(slope, 0) & below)
        shares.append(tf.where(possible, tf.maximum(high - low, 0), tf.zeros_like(delta_k)))
    return shares


def _path_max_pool_backward(inputs, reference, grad, ksize, strides, padding):
    """DeepLIFT's `maxpool="rescale"`: each window's multiplier goes to its inputs weighted by
    their path shares (`_window_path_shares`), so Σ_k multiplier_k·Δx_k = Δy per window and
    summation-to-delta holds through the pooling; where x = x0 this is the plain gradient."""
    x_views, masks = _window_views(inputs, ksize, strides, padding)
    x0_views, _ = _window_views(reference, ksize, strides, padding)
    shares = _window_path_shares(x_views, x0_views, masks)
    with tf.GradientTape() as tape:  # the transpose of taking the views: scatter-add
        tape.watch(inputs)
        views, _ = _window_views(inputs, ksize, strides, padding)
    return tape.gradient(views, inputs, output_gradients=[m * grad for m in shares])


def _derivative(name: str, forward):
    """The elementwise derivative of an activation, as a function of its input z."""
    if name == "relu":  # plain ReLU in every form: no need to differentiate the forward op
        return lambda z: tf.cast(z > 0, z.dtype)

    def derivative(z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            y = forward(z)
        return tape.gradient(y, z)

    return derivative


# ------------------------------------------------------------------------------ the hook
def _activation_name(layer) -> str | None:
    """Which overridden activation `layer` applies ("relu", ...), or None."""
    if isinstance(layer, keras.layers.ReLU):
        plain = (layer.max_value is None and float(layer.negative_slope) == 0.0
                 and float(layer.threshold) == 0.0)
        return "relu" if plain else ("relu6" if layer.max_value == 6 else "relu_layer")
    if isinstance(layer, keras.layers.ELU):
        return "elu"
    if isinstance(layer, keras.layers.LeakyReLU):
        return "leaky_relu"
    activation = getattr(layer, "activation", None)
    name = getattr(activation, "__name__", None)
    return name if name in OVERRIDDEN else None


def _is_same_conv(layer) -> bool:
    return isinstance(layer, _CONVOLUTIONS) and getattr(layer, "padding", None) == "same"


class Overrider:
    """Per-trace interceptor of layer calls that applies one rule (see the module docstring).

    Args:
        rule: the rule to apply.
        references: for rules with `needs_reference`, the Overrider that recorded the reference
            pass (its `recorded` pre-activations are looked up in the same call order).
        record: record pre-activations (the reference pass) instead of applying the rule.
    """

    def __init__(self, rule: Rule, references: Overrider | None = None, record: bool = False):
        self.rule = rule
        self.record = record
        self.references = references
        self.recorded: dict = {}
        self.reached: Counter = Counter()
        self._calls: Counter = Counter()
        self._linear: dict = {}

    def __call__(self, path: str, layer, args, kwargs):
        name = _activation_name(layer)
        if name is None:
            if isinstance(layer, keras.layers.MaxPooling2D) and self.rule.prr and not self.record:
                self.reached["max_pool"] += 1
                return _proportional_max_pool(layer, args[0])
            if rescales_max_pool(self.rule) and isinstance(
                    layer, (keras.layers.MaxPooling2D, *_OTHER_MAX_POOLS)):
                return self._rescaled_max_pool(path, layer, args, kwargs)
            out = layer(*args, **kwargs)
            if _is_same_conv(layer) and self.rule.padding_trick and not self.record:
                self.reached["padding"] += 1
                out = _mask_border_gradient(out)
            return out
        key = (path, self._calls[path])
        self._calls[path] += 1
        if isinstance(layer, (keras.layers.Activation, keras.layers.ReLU, keras.layers.ELU,
                              keras.layers.LeakyReLU)):
            z = args[0]
            forward = layer.activation if isinstance(layer, keras.layers.Activation) else layer
        else:  # fused activation: pre-activation from the linear copy
            if path not in self._linear:
                self._linear[path] = linear_copy(layer)
            z = self._linear[path](*args, **kwargs)
            if _is_same_conv(layer) and self.rule.padding_trick and not self.record:
                self.reached["padding"] += 1
                z = _mask_border_gradient(z)
            forward = layer.activation
        if self.record:
            a = forward(z)
            self.recorded[key] = (tf.stop_gradient(z), tf.stop_gradient(a))
            return a
        self.reached["activation"] += 1
        reference = self.references.recorded[key] if self.references is not None else None
        derivative = _derivative(name, forward)
        return self._apply(forward, z, derivative, reference)

    def _rescaled_max_pool(self, path: str, layer, args, kwargs):
        """DeepLIFT's maxpool="rescale": the reference pass records the pooling's input, the
        image pass attaches `_path_max_pool_backward` against it."""
        if not isinstance(layer, keras.layers.MaxPooling2D):
            raise TfsalError(f"expected max-pooling that DeepLIFT's maxpool='rescale' handles "
                             f"(MaxPooling2D layers), received {type(layer).__name__} "
                             f"{layer.name!r}; use maxpool='gradient' for this model")
        key = (path, self._calls[path])
        self._calls[path] += 1
        if self.record:
            self.recorded[key] = tf.stop_gradient(args[0])
            return layer(*args, **kwargs)
        self.reached["max_pool"] += 1
        return _path_max_pool(layer, args[0], self.references.recorded[key])

    def _apply(self, forward, z, derivative, reference):
        rule = self.rule

        @tf.custom_gradient
        def activation(pre):
            a = forward(pre)

            def backward(grad):
                return rule.activation_backward(grad, pre, a, derivative, reference)

            return a, backward

        return activation(z)

    def check_reached(self):
        """Raise unless the rule reached at least one activation."""
        if self.reached["activation"] == 0:
            kinds = ", ".join(OVERRIDDEN)
            raise TfsalError(
                f"expected a model with activations a backward rule can reach ({kinds} as "
                "Activation layers, fused activation= arguments or ReLU/ELU/LeakyReLU layers); "
                "found none, so the rule would silently return the plain gradient")


def activation_layers(runner) -> list[str]:
    """Paths of the layers applying an overridden activation to a spatial (rank-4) map."""
    return [path for path in runner.spatial_paths(_activation_name)
            if path != runner.head_path]


# ------------------------------------------------------------------ op-level registrations
# The TensorFlow op of each overridden activation (what Keras 3 emits for `OVERRIDDEN`), and
# the op with the same attributes applied to another tensor (for the derivative at any point).
ACTIVATION_OPS = {
    "Relu": ("relu", lambda op, t: tf.raw_ops.Relu(features=t)),
    "Relu6": ("relu6", lambda op, t: tf.raw_ops.Relu6(features=t)),
    "Elu": ("elu", lambda op, t: tf.raw_ops.Elu(features=t)),
    "Selu": ("selu", lambda op, t: tf.raw_ops.Selu(features=t)),
    "Sigmoid": ("sigmoid", lambda op, t: tf.raw_ops.Sigmoid(x=t)),
    "Tanh": ("tanh", lambda op, t: tf.raw_ops.Tanh(x=t)),
    "Softplus": ("softplus", lambda op, t: tf.raw_ops.Softplus(features=t)),
    "LeakyRelu": ("leaky_relu",
                  lambda op, t: tf.raw_ops.LeakyRelu(features=t, alpha=op.get_attr("alpha"))),
}
CONVOLUTION_OPS = ("Conv2D", "DepthwiseConv2dNative")
MAX_POOL_OP = "MaxPool"
MAX_POOL_OPS = (MAX_POOL_OP, "MaxPoolV2")  # V2: the same, with ksize and strides as inputs
# Max-pooling ops DeepLIFT's maxpool="rescale" refuses (their gradient raises a TfsalError).
OTHER_MAX_POOL_OPS = ("MaxPool3D", "MaxPoolWithArgmax")


def gradient_overrides(rule: Rule) -> dict[str, str]:
    """The `gradient_override_map` applying `rule`: op type -> registered gradient name.

    Each (rule, op type) is registered once per process; the name holds the rule's repr, so
    rules with other parameters never share a gradient.
    """
    types = list(ACTIVATION_OPS)
    if rule.padding_trick:
        types += CONVOLUTION_OPS
    if rule.prr or rescales_max_pool(rule):
        types += MAX_POOL_OPS
    if rescales_max_pool(rule):
        types += OTHER_MAX_POOL_OPS
    return {op_type: _registered(rule, op_type) for op_type in types}


def _registered(rule: Rule, op_type: str) -> str:
    name = f"tfsal/{rule!r}/{op_type}"
    if op_type in ACTIVATION_OPS:
        gradient = _activation_op_gradient
    elif op_type in MAX_POOL_OPS:
        gradient = _max_pool_op_gradient
    elif op_type in OTHER_MAX_POOL_OPS:
        gradient = _refused_max_pool_op_gradient
    else:
        gradient = _padded_convolution_op_gradient
    try:
        tf.RegisterGradient(name)(lambda op, *grads: gradient(rule, op, *grads))
    except KeyError:  # registered before, by this function: the same rule, the same gradient
        pass
    return name


def _activation_op_gradient(rule: Rule, op, grad):
    name, forward = ACTIVATION_OPS[op.type]
    z, a = op.inputs[0], op.outputs[0]
    grad.set_shape(z.shape)  # the per-layer percentile needs the static unit count
    derivative = _derivative(name, lambda t: forward(op, t))
    if not rule.needs_reference:
        return rule.activation_backward(grad, z, a, derivative, None)
    # OpGraph.run feeds the images and their references as one batch, references second.
    n = tf.shape(z)[0] // 2
    images_part = rule.activation_backward(grad[:n], z[:n], a[:n], derivative, (z[n:], a[n:]))
    return tf.concat([images_part, tf.zeros_like(grad[n:])], axis=0)


def _padded_convolution_op_gradient(rule: Rule, op, grad):
    """The padding trick: a SAME convolution's own backward pass, of the gradient with its
    one-pixel border zeroed."""
    if op.get_attr("padding") == b"SAME":
        grad = grad * _border_mask(grad)
    return _standard_gradient(op, grad)


def _max_pool_op_gradient(rule: Rule, op, grad):
    """PRR (RectGrad) or DeepLIFT's maxpool="rescale" for a MaxPool / MaxPoolV2 op."""
    what = ("the proportional redistribution rule" if rule.prr else
            "DeepLIFT's maxpool='rescale'")
    if op.get_attr("data_format") != b"NHWC":
        raise TfsalError(f"expected NHWC max-pooling for {what}, received "
                         f"{op.get_attr('data_format').decode()} in {op.name}")
    if op.type == MAX_POOL_OP:
        ksize, strides = op.get_attr("ksize"), op.get_attr("strides")
    else:  # MaxPoolV2: window and strides are (usually constant) inputs
        ksize, strides = (tf.get_static_value(t) for t in op.inputs[1:3])
        if ksize is None or strides is None:
            raise TfsalError(f"expected a MaxPoolV2 op with constant ksize and strides for "
                             f"{what}, received computed ones in {op.name}")
        ksize, strides = [int(v) for v in ksize], [int(v) for v in strides]
    padding = op.get_attr("padding").decode()
    if rule.prr:
        dx = _prr_backward(op.inputs[0], grad, ksize, strides, padding)
    else:  # OpGraph.run feeds the images and their references as one batch, references second
        inputs = op.inputs[0]
        n = tf.shape(inputs)[0] // 2
        images_part = _path_max_pool_backward(inputs[:n], inputs[n:], grad[:n], ksize, strides,
                                              padding)
        dx = tf.concat([images_part, tf.zeros_like(inputs[n:])], axis=0)
    return dx if op.type == MAX_POOL_OP else (dx, None, None)  # V2: nothing for ksize, strides


def _refused_max_pool_op_gradient(rule: Rule, op, *grads):
    raise TfsalError(f"expected max-pooling ops DeepLIFT's maxpool='rescale' handles "
                     f"({', '.join(MAX_POOL_OPS)}), received a {op.type} op ({op.name}); use "
                     f"maxpool='gradient' for this model")


def _standard_gradient(op, *grads):
    """The gradient TensorFlow registers for the op's type (the override replaces it)."""
    from tensorflow.python.framework import ops  # the registry has no public lookup

    return ops._gradient_registry.lookup(op.type)(op, *grads)
