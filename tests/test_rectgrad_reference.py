"""Rectified Gradient (Kim et al. 2019) against an independent, op-level reference.

The reference below is written the way the paper's authors wrote theirs in TF1: gradient
functions registered with `tf.RegisterGradient` and swapped in for whole op types with
`gradient_override_map` while the graph is built (here inside a `tf.function`), then
`tf.gradients(score, pixels)`. It shares no code with `tfsal`:

* Relu / Relu6: pass `grad` only where `a * grad` exceeds (strictly) its per-sample
  `percentile`-th percentile, numpy's "nearest" interpolation (tf.sort + tf.gather).
* Conv2D / DepthwiseConv2dNative with SAME padding ("padding trick"): zero a one-pixel border
  of the incoming gradient (maps of height or width <= 2 are left alone), then the usual
  backprop.
* MaxPool ("proportional redistribution rule", PRR): each window's gradient is shared among
  its inputs in proportion to their values.

The fast tests check each rule against NumPy; the slow ones compare `tfsal.rectgrad` with the
reference on real ImageNet architectures (weights=None).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import toy_cnn
from tensorflow.python.ops import gen_nn_ops

import tfsal

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]

_REGISTERED: set[str] = set()


def _percentile_nearest(s, q):
    """np.percentile(s, q, axis=<all but batch>, method="nearest", keepdims=True)."""
    n = int(np.prod(s.shape[1:]))  # static
    ranked = tf.sort(tf.reshape(s, [-1, n]), axis=1)
    index = tf.round(tf.constant(n - 1, tf.float64) * (tf.constant(q, tf.float64) / 100.0))
    tau = tf.gather(ranked, tf.cast(index, tf.int32), axis=1)  # round() is half-to-even
    return tf.reshape(tau, [-1] + [1] * (s.shape.rank - 1))


def _register(name, fn):
    if name not in _REGISTERED:  # tf.RegisterGradient raises on a second registration
        tf.RegisterGradient(name)(fn)
        _REGISTERED.add(name)
    return name


def _rectgrad_relu(q):
    def grad_fn(op, grad):
        s = op.outputs[0] * grad
        return tf.where(s > _percentile_nearest(s, q), grad, tf.zeros_like(grad))
    return _register(f"RefRectGradRelu_q{q!r}", grad_fn)


def _padding_trick_conv(op, grad):
    assert op.get_attr("data_format") == b"NHWC"
    padding = op.get_attr("padding").decode()
    height, width = grad.shape[1], grad.shape[2]
    if padding == "SAME" and height > 2 and width > 2:
        border = [[0, 0], [1, 1], [1, 1], [0, 0]]
        grad = grad * tf.pad(tf.ones([1, height - 2, width - 2, 1]), border)
    x, w = op.inputs
    attrs = dict(strides=op.get_attr("strides"), padding=padding, data_format="NHWC",
                 dilations=op.get_attr("dilations"))
    if op.type == "Conv2D":
        return (tf.compat.v1.nn.conv2d_backprop_input(tf.shape(x), w, grad, **attrs),
                tf.compat.v1.nn.conv2d_backprop_filter(x, tf.shape(w), grad, **attrs))
    return (tf.compat.v1.nn.depthwise_conv2d_native_backprop_input(tf.shape(x), w, grad, **attrs),
            tf.compat.v1.nn.depthwise_conv2d_native_backprop_filter(x, tf.shape(w), grad, **attrs))


def _prr_maxpool(op, grad):
    x, ksize, strides = op.inputs[0], op.get_attr("ksize"), op.get_attr("strides")
    padding = op.get_attr("padding").decode()
    z = tf.nn.avg_pool2d(x, ksize, strides, padding) + 1e-10
    return x * gen_nn_ops.avg_pool_grad(tf.shape(x), grad / z, ksize, strides, padding)


def _reference_gradient(fn, x, percentile=98, padding_trick=True, prr=True, rectify=True):
    """d fn(x) / dx, with the overrides active while fn builds its ops."""
    overrides = {}
    if rectify:
        overrides.update(Relu=_rectgrad_relu(percentile), Relu6=_rectgrad_relu(percentile))
    if padding_trick:
        name = _register("RefPaddingTrick", _padding_trick_conv)
        overrides.update(Conv2D=name, DepthwiseConv2dNative=name)
    if prr:
        overrides["MaxPool"] = _register("RefPRR", _prr_maxpool)

    @tf.function
    def run(x):
        with tf.compat.v1.get_default_graph().gradient_override_map(overrides):
            y = fn(x)
        return tf.gradients(y, x)[0]

    return run(tf.constant(x, tf.float32)).numpy()


_PREPROCESS = {"caffe": lambda x: x[..., ::-1] * 255.0 - tf.constant([103.939, 116.779, 123.68]),
               "tf": lambda x: x * 2.0 - 1.0}


def _reference_rectgrad(model, preprocess, images, targets, **rules):
    """Attribution = pixel gradient of the target LOGIT (softmax head bypassed) * pixels."""
    head = model.get_layer("predictions")
    features = keras.Model(model.inputs, head.input)
    one_hot = tf.one_hot(targets, head.units)

    def score(x):
        logits = tf.matmul(features(_PREPROCESS[preprocess](x)), head.kernel) + head.bias
        return tf.reduce_sum(logits * one_hot)

    return _reference_gradient(score, images, **rules) * images


# ---------------------------------------------------------------- the reference, against NumPy
@pytest.mark.parametrize("shape", [(3, 4), (2, 5), (2, 3, 3, 2), (3, 7, 5, 4)])
@pytest.mark.parametrize("q", [0, 12.5, 50, 60, 98, 100])
def test_percentile_nearest_matches_numpy(shape, q):
    rng = np.random.default_rng(0)
    s = rng.integers(-3, 4, shape).astype(np.float32)  # many ties
    axes = tuple(range(1, len(shape)))
    expected = np.percentile(s, q, axis=axes, method="nearest", keepdims=True)
    np.testing.assert_array_equal(_percentile_nearest(tf.constant(s), q).numpy(), expected)


@pytest.mark.parametrize("shape", [(2, 5, 5, 3), (3, 40)])
@pytest.mark.parametrize("q", [0, 60, 98])
def test_relu_rule_matches_numpy(shape, q):
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    got = _reference_gradient(lambda t: tf.reduce_sum(tf.nn.relu(t) * w), x, percentile=q)
    s = np.maximum(x, 0) * w
    tau = np.percentile(s, q, axis=tuple(range(1, x.ndim)), method="nearest", keepdims=True)
    np.testing.assert_array_equal(got, np.where(s > tau, w, 0))


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("size, strides, padding, masked", [
    (6, 1, "SAME", True), (7, 2, "SAME", True), (6, 1, "VALID", False), (2, 1, "SAME", False)])
def test_padding_trick_matches_border_masked_gradient(depthwise, size, strides, padding, masked):
    rng = np.random.default_rng(2)
    x = tf.constant(rng.normal(size=(2, size, size, 3)).astype(np.float32))
    k = tf.constant(rng.normal(size=(3, 3, 3, 2 if depthwise else 4)).astype(np.float32))
    if depthwise:
        conv = lambda t: tf.nn.depthwise_conv2d(t, k, [1, strides, strides, 1], padding)  # noqa: E731
    else:
        conv = lambda t: tf.nn.conv2d(t, k, strides, padding)  # noqa: E731
    w = rng.normal(size=conv(x).shape).astype(np.float32)
    got = _reference_gradient(lambda t: tf.reduce_sum(conv(t) * w), x, rectify=False, prr=False)
    if masked:  # the expected gradient: plain backprop of a border-zeroed output gradient
        w[:, [0, -1]], w[:, :, [0, -1]] = 0, 0
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(conv(x) * w)
    np.testing.assert_allclose(got, tape.gradient(total, x).numpy(), rtol=1e-5, atol=1e-5)


def _numpy_prr(x, g, k, s, padding):
    """Each window's gradient shared among its (non-padding) inputs in proportion to x."""
    n, h, w, c = x.shape
    oh, ow = g.shape[1:3]
    pad_h = max((oh - 1) * s + k - h, 0) // 2 if padding == "SAME" else 0
    pad_w = max((ow - 1) * s + k - w, 0) // 2 if padding == "SAME" else 0
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(oh):
        for j in range(ow):
            r = slice(max(i * s - pad_h, 0), min(i * s - pad_h + k, h))
            q = slice(max(j * s - pad_w, 0), min(j * s - pad_w + k, w))
            win = x[:, r, q, :].astype(np.float64)
            out[:, r, q, :] += win / win.sum(axis=(1, 2), keepdims=True) * g[:, i:i + 1, j:j + 1]
    return out


@pytest.mark.parametrize("size, k, s, padding", [(8, 2, 2, "VALID"), (7, 3, 2, "VALID"),
                                                  (7, 3, 2, "SAME"), (8, 3, 2, "SAME"),
                                                  (5, 3, 1, "SAME")])
def test_prr_matches_numpy_loop(size, k, s, padding):
    rng = np.random.default_rng(3)
    x = rng.uniform(0.1, 1.0, (2, size, size, 3)).astype(np.float32)
    pool = lambda t: tf.nn.max_pool2d(t, k, s, padding)  # noqa: E731
    g = rng.normal(size=pool(x).shape).astype(np.float32)
    got = _reference_gradient(lambda t: tf.reduce_sum(pool(t) * g), x, rectify=False,
                              padding_trick=False)
    np.testing.assert_allclose(got, _numpy_prr(x, g, k, s, padding), rtol=1e-5, atol=1e-6)


def test_overrides_reach_keras_layers():
    """On a Keras 3 model called inside tf.function, every override takes effect."""
    model = toy_cnn()  # conv relu -> maxpool -> conv -> relu -> GAP -> dense(softmax)
    images = np.random.default_rng(4).random((2, 16, 16, 3)).astype(np.float32)
    plain = _reference_rectgrad(model, "tf", images, [1, 3], rectify=False, padding_trick=False,
                                prr=False)
    tfsal_plain = tfsal.gradient_x_input(tfsal.Model(model, preprocess="tf"), images, [1, 3])
    np.testing.assert_allclose(plain, tfsal_plain, rtol=1e-5, atol=1e-6)
    # percentile 100: no a * grad is strictly above its maximum, so nothing gets through
    assert not _reference_rectgrad(model, "tf", images, [1, 3], percentile=100).any()
    for rules in ({"rectify": True}, {"padding_trick": True}, {"prr": True}):
        only = {"rectify": False, "padding_trick": False, "prr": False, **rules}
        changed = _reference_rectgrad(model, "tf", images, [1, 3], percentile=60, **only)
        assert np.isfinite(changed).all() and np.abs(changed - plain).max() > 1e-4, rules


# ---------------------------------------------------------------- tfsal against the reference
ARCHITECTURES = [(keras.applications.VGG16, 64, "caffe"),
                 (keras.applications.ResNet50, 128, "caffe"),
                 (keras.applications.InceptionV3, 139, "tf"),
                 (keras.applications.Xception, 71, "tf")]


def _setup(build, size):
    keras.utils.set_random_seed(0)
    model = build(weights=None, input_shape=(size, size, 3))
    images = np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32)
    return model, images, np.array([3, 7])


def _assert_close(ours, ref):
    assert ours.shape == ref.shape and ours.dtype == np.float32 and np.abs(ref).max() > 0
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.slow
@pytest.mark.parametrize("build, size, preprocess", ARCHITECTURES,
                         ids=[a[0].__name__ for a in ARCHITECTURES])
def test_rectgrad_matches_reference(build, size, preprocess):
    model, images, targets = _setup(build, size)
    wrapped = tfsal.Model(model, preprocess=preprocess)
    # same score and preprocessing as tfsal when no rule is active
    plain = _reference_rectgrad(model, preprocess, images, targets, rectify=False,
                                padding_trick=False, prr=False)
    _assert_close(tfsal.gradient_x_input(wrapped, images, targets), plain)
    ref = _reference_rectgrad(model, preprocess, images, targets, percentile=98,
                              padding_trick=True, prr=True)
    ours = tfsal.rectgrad(wrapped, images, targets, percentile=98, padding_trick=True, prr=True)
    _assert_close(ours, ref)


@pytest.mark.slow
def test_rectgrad_percentile_60_without_tricks_matches_reference():
    model, images, targets = _setup(keras.applications.VGG16, 64)
    ref = _reference_rectgrad(model, "caffe", images, targets, percentile=60,
                              padding_trick=False, prr=False)
    ours = tfsal.rectgrad(tfsal.Model(model, preprocess="caffe"), images, targets,
                          percentile=60, padding_trick=False, prr=False)
    _assert_close(ours, ref)
