"""What a model may output and take: binary sigmoid heads, refused outputs and inputs, bounded
batches and out-of-memory recovery."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SIZE

import tfsal
from tfsal import TfsalError

SUPPORTED = r"\(N, classes\) logits or probabilities, or a single-unit sigmoid/logit \(N, 1\) " \
            r"binary head"
OPTIONS = {"smoothgrad": dict(n_samples=3, seed=0), "vargrad": dict(n_samples=3, seed=0),
           "integrated_gradients": dict(steps=4)}


def binary_cnn(seed: int = 0) -> keras.Model:
    """Conv-ReLU-conv-ReLU-GAP-Dense(1, sigmoid), deterministic weights."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="head")(x)
    return keras.Model(inp, out, name="binary_cnn")


def pre_sigmoid(user: keras.Model):
    """z(x), the head's value before its sigmoid, from the user's own layers."""
    layers = [layer for layer in user.layers if not isinstance(layer, keras.layers.InputLayer)]
    index = [layer.name for layer in layers].index("head")

    def z(x):
        for layer in layers[:index]:
            x = layer(x)
        return tf.matmul(x, layers[index].kernel) + layers[index].bias

    return z


def tape_gradient(fn, images):
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(fn(x))
    return tape.gradient(total, x).numpy()


@pytest.fixture(scope="module")
def user():
    return binary_cnn()


@pytest.fixture(scope="module")
def probe():
    return np.random.default_rng(5).random((4, SIZE, SIZE, 3)).astype(np.float32)


# ------------------------------------------------------------------------ binary heads
def test_a_sigmoid_unit_is_a_binary_classifier_with_both_classes(user, probe):
    model = tfsal.Model(user)
    z = pre_sigmoid(user)(probe).numpy()[:, 0]
    assert model.num_classes == 2 and model.binary
    assert "logits from before the sigmoid layer (binary: classes 0/1)" in repr(model)
    np.testing.assert_allclose(model.predict(probe), np.stack([-z, z], 1), rtol=1e-5, atol=1e-6)
    p = np.asarray(user(probe))[:, 0]
    np.testing.assert_allclose(model.predict(probe, score="probability"),
                               np.stack([1 - p, p], 1), atol=1e-6)
    np.testing.assert_allclose(model.predict(probe, score="log_probability"),
                               np.log(np.stack([1 - p, p], 1)), atol=1e-5)
    np.testing.assert_array_equal(model.predicted_classes(probe), (z > 0).astype(np.int32))
    np.testing.assert_array_equal(model.resolve_targets(probe, None), (z > 0).astype(np.int32))
    with pytest.raises(TfsalError, match=r"\[0, 2\)"):
        model.resolve_targets(probe, 2)


def test_binary_gradients_are_those_of_the_pre_sigmoid_logit(user, probe):
    model = tfsal.Model(user)
    z_fn = pre_sigmoid(user)
    grad_z = tape_gradient(z_fn, probe)
    assert np.abs(grad_z).max() > 0
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, 1), grad_z,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, 0), -grad_z,
                               rtol=1e-5, atol=1e-7)
    p = tf.sigmoid(z_fn(probe)).numpy()[:, 0].reshape(-1, 1, 1, 1)
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, 1, score="probability"),
                               p * (1 - p) * grad_z, rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, 0, score="log_probability"),
                               -p * grad_z, rtol=1e-4, atol=1e-8)


def test_every_method_gives_finite_non_zero_binary_maps(user, probe):
    model = tfsal.Model(user, batch_size=3)
    for target in (0, 1):
        for name, method in tfsal.METHODS.items():
            maps = method(model, probe, target, **OPTIONS.get(name, {}))
            assert np.isfinite(maps).all() and np.abs(maps).max() > 0, (name, target)
        signed = tfsal.signed_maps(model, probe, target)
        for part in ("standard", "positive", "negative", "active", "inactive"):
            values = getattr(signed, part)
            assert np.isfinite(values).all() and values.max() > 0, (part, target)
        result = tfsal.nonlinear_saliency(model, probe[:2], target, levels=[0.0, 0.5],
                                          steps_per_level=2)
        assert np.isfinite(result.best_map).all() and np.abs(result.best_map).max() > 0
        assert result.probabilities.shape[-1] == 2
    # two classes, g_0 = −g_1: active where g_t > 0, inactive where g_t < 0
    signed = tfsal.signed_maps(model, probe, [0, 1, 0, 1])
    np.testing.assert_array_equal(signed.active, signed.positive)
    np.testing.assert_array_equal(signed.inactive, signed.negative)
    cam = tfsal.cam(model, probe, [0, 1, 0, 1])
    np.testing.assert_allclose(cam[[0, 2]], -tfsal.cam(model, probe[[0, 2]], 1), atol=1e-7)


def test_a_separate_sigmoid_layer_in_a_sequential_model():
    keras.utils.set_random_seed(2)
    user = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(5, 3, activation="relu", name="conv"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(1, name="head"),
        keras.layers.Activation("sigmoid", name="sigmoid")], name="binary_seq")
    probe = np.random.default_rng(1).random((3, SIZE, SIZE, 3)).astype(np.float32)
    model = tfsal.Model(user)
    assert "before the sigmoid layer (binary" in repr(model) and model.num_classes == 2
    grad_z = tape_gradient(pre_sigmoid(user), probe)
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, 1), grad_z,
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(model.predict(probe, score="probability")[:, 1],
                               np.asarray(user(probe))[:, 0], atol=1e-6)


def test_a_saved_model_with_a_sigmoid_gives_the_keras_binary_numbers(user, probe, tmp_path):
    user.export(tmp_path / "binary", verbose=False)
    loaded = tfsal.load_model(tmp_path / "binary")
    keras_side = tfsal.Model(user)
    assert loaded.graph is not None and loaded.num_classes == 2
    assert "logits from before the Sigmoid op (binary: classes 0/1)" in repr(loaded)
    np.testing.assert_allclose(loaded.predict(probe), keras_side.predict(probe), atol=1e-5)
    for target in (0, 1):
        for name in ("vanilla", "integrated_gradients", "guided_backprop", "grad_cam", "cam"):
            method = tfsal.METHODS[name]
            expected = method(keras_side, probe, target, **OPTIONS.get(name, {}))
            got = method(loaded, probe, target, **OPTIONS.get(name, {}))
            np.testing.assert_allclose(got, expected, rtol=1e-4,
                                       atol=1e-5 * np.abs(expected).max(), err_msg=name)


class LinearUnit(tf.Module):
    """A single logit (or its sigmoid) from the image's channel means: no Keras layers."""

    def __init__(self, sigmoid: bool, manual: bool = False, units: int = 1):
        super().__init__()
        kernel = np.array([[0.8, 0.1], [-1.5, 0.3], [0.4, -0.2]])[:, :units]
        self.kernel = tf.Variable(kernel, dtype=tf.float32)
        self.sigmoid, self.manual = sigmoid, manual

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        z = tf.reduce_mean(images, axis=[1, 2]) @ self.kernel
        if self.manual:  # a sigmoid without a Sigmoid op
            return 1.0 / (1.0 + tf.exp(-z))
        return tf.sigmoid(z) if self.sigmoid else z


@pytest.mark.parametrize("sigmoid", [True, False])
def test_saved_modules_with_a_single_unit(tmp_path, probe, sigmoid):
    module = LinearUnit(sigmoid)
    tf.saved_model.save(module, str(tmp_path / "unit"),
                        signatures={"serving_default": module.__call__})
    loaded = tfsal.load_model(tmp_path / "unit")
    z = (probe.mean(axis=(1, 2)) @ module.kernel.numpy())[:, 0]
    np.testing.assert_allclose(loaded.predict(probe), np.stack([-z, z], 1), rtol=1e-5)
    grad = np.broadcast_to(module.kernel.numpy()[:, 0] / SIZE**2, probe.shape)
    np.testing.assert_allclose(tfsal.vanilla_gradient(loaded, probe, 1), grad, rtol=1e-5)
    np.testing.assert_allclose(tfsal.vanilla_gradient(loaded, probe, 0), -grad, rtol=1e-5)
    assert ("Sigmoid op" in repr(loaded)) == sigmoid and "binary: classes 0/1" in repr(loaded)
    # the head's sigmoid is not differentiated: no activation is left for a rule to change
    with pytest.raises(TfsalError, match="activations a backward rule can reach"):
        tfsal.guided_backprop(loaded, probe, 1)


def test_a_keras_logit_unit_is_taken_as_z(probe):
    keras.utils.set_random_seed(3)
    inp = keras.Input((SIZE, SIZE, 3))
    user = keras.Model(inp, keras.layers.Dense(1, name="head")(
        keras.layers.GlobalAveragePooling2D(name="gap")(
            keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp))))
    model = tfsal.Model(user)
    z = np.asarray(user(probe))[:, 0]
    assert "outputs: logits (binary: classes 0/1)" in repr(model) and model.num_classes == 2
    np.testing.assert_allclose(model.predict(probe), np.stack([-z, z], 1), rtol=1e-6)
    np.testing.assert_allclose(model.predict(probe, score="probability")[:, 1],
                               1 / (1 + np.exp(-z)), rtol=1e-5)
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, 0),
                               -tape_gradient(user, probe), rtol=1e-5, atol=1e-8)


def test_probabilities_of_one_unit_and_callables_that_hide_their_sigmoid(user, probe, tmp_path):
    z_fn = pre_sigmoid(user)
    grad_z = tape_gradient(z_fn, probe)
    p = tf.sigmoid(z_fn(probe)).numpy()[:, 0].reshape(-1, 1, 1, 1)
    opaque = tfsal.Model(lambda x: user(x))  # size unknown: probed at the first call
    with pytest.raises(TfsalError, match="output='logits' or 'probabilities'.*sigmoid"):
        tfsal.vanilla_gradient(opaque, probe, 1)
    given = tfsal.Model(lambda x: user(x), output="probabilities")
    assert given.num_classes == 2 and "probabilities (given) (binary" in repr(given)
    np.testing.assert_allclose(tfsal.vanilla_gradient(given, probe, 1, score="probability"),
                               p * (1 - p) * grad_z, rtol=1e-4, atol=1e-8)
    # logit = log p − log(1 − p): the gradient of z again
    np.testing.assert_allclose(tfsal.vanilla_gradient(given, probe, 1, score="logit"), grad_z,
                               rtol=1e-3, atol=1e-5 * np.abs(grad_z).max())
    np.testing.assert_allclose(given.predict(probe), tfsal.Model(user).predict(probe),
                               rtol=1e-4, atol=1e-5)
    # a loaded graph computing its sigmoid by hand: no Sigmoid op, its values are logits
    # unless told otherwise
    module = LinearUnit(sigmoid=True, manual=True)
    tf.saved_model.save(module, str(tmp_path / "manual"),
                        signatures={"serving_default": module.__call__})
    assert "outputs: logits (binary" in repr(tfsal.load_model(tmp_path / "manual"))
    loaded = tfsal.load_model(tmp_path / "manual", output="probabilities")
    z = (probe.mean(axis=(1, 2)) @ module.kernel.numpy())[:, 0]
    np.testing.assert_allclose(loaded.predict(probe)[:, 1], z, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(loaded.predicted_classes(probe), (z > 0).astype(np.int32))


def test_multi_label_and_single_unit_softmax_heads_are_refused(probe, tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp))
    multi_label = keras.Model(inp, keras.layers.Dense(5, activation="sigmoid")(pooled))
    accepted = tfsal.Model(multi_label)  # for callable targets (tests/test_custom_targets.py)
    for class_use in (lambda: tfsal.vanilla_gradient(accepted, probe, 0),
                      lambda: accepted.predict(probe), lambda: accepted.num_classes):
        with pytest.raises(TfsalError, match="multi-label sigmoid heads are not class vectors"
                                             ".*callable target"):
            class_use()
    given = tfsal.Model(multi_label, output="probabilities")  # as before: values as they are
    np.testing.assert_allclose(given.predict(probe, score="probability"),
                               np.asarray(multi_label(probe)), atol=1e-6)
    constant = keras.Model(inp, keras.layers.Dense(1, activation="softmax")(pooled))
    with pytest.raises(TfsalError, match="single-unit softmax"):
        tfsal.Model(constant)
    module = LinearUnit(sigmoid=True, units=2)
    tf.saved_model.save(module, str(tmp_path / "labels"),
                        signatures={"serving_default": module.__call__})
    with pytest.raises(TfsalError, match="multi-label sigmoid heads.*Sigmoid op"):
        tfsal.load_model(tmp_path / "labels").predict(probe)
    loaded = tfsal.load_model(tmp_path / "labels", output="probabilities")
    np.testing.assert_allclose(loaded.predict(probe, score="probability"),
                               module(tf.constant(probe)).numpy(), atol=1e-6)


# ------------------------------------------------------------------------ refused outputs
def _segmentation():
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, keras.layers.Conv2D(4, 1, activation="softmax")(inp), name="seg")


def _squeezed():
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    z = keras.layers.Dense(1)(keras.layers.GlobalAveragePooling2D()(inp))
    return keras.Model(inp, keras.layers.Reshape(())(z), name="squeezed")


def _two_outputs(as_dict: bool):
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inp)
    a, b = keras.layers.Dense(3)(pooled), keras.layers.Dense(2)(pooled)
    return keras.Model(inp, {"a": a, "b": b} if as_dict else [a, b])


@pytest.mark.parametrize("build, received", [
    (_segmentation, r"received output shape \(None, 16, 16, 4\)"),
    (_squeezed, r"received output shape \(None,\)"),
    (lambda: _two_outputs(False), "received 2 outputs"),
    (lambda: _two_outputs(True), "received 2 outputs"),
], ids=["segmentation", "squeezed", "list", "dict"])
def test_outputs_that_are_not_a_class_vector_are_refused(build, received, probe):
    keras_model = build()
    # several outputs when wrapped (output_key= chooses one); other outputs at the first use
    # of classes (callable targets explain them: tests/test_custom_targets.py)
    with pytest.raises(TfsalError, match=f"{SUPPORTED}.*{received}"):
        tfsal.vanilla_gradient(tfsal.Model(keras_model), probe, 0)
    # the same model as an opaque callable: refused when traced, at the first call
    opaque = tfsal.Model(lambda x: keras_model(x))
    with pytest.raises(TfsalError, match=SUPPORTED):
        tfsal.vanilla_gradient(opaque, probe, 0)


@pytest.mark.parametrize("output", [
    lambda x: tf.reduce_mean(x, axis=[1, 2, 3]),
    lambda x: (tf.reduce_mean(x, axis=[1, 2]), tf.reduce_mean(x, axis=[1, 2])),
    lambda x: {"a": tf.reduce_mean(x, axis=[1, 2]), "b": tf.reduce_mean(x, axis=[1, 2])},
    lambda x: x,
], ids=["flat", "tuple", "dict", "images"])
def test_callables_returning_no_class_vector_are_refused(output, probe):
    model = tfsal.Model(output)
    for call in (lambda: model.predict(probe), lambda: tfsal.vanilla_gradient(model, probe, 0)):
        with pytest.raises(TfsalError, match=SUPPORTED):
            call()


class Segmenter(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        return tf.nn.softmax(images, axis=-1)


def test_a_saved_segmentation_model_refuses_class_targets(tmp_path, probe):
    module = Segmenter()
    tf.saved_model.save(module, str(tmp_path / "seg"),
                        signatures={"serving_default": module.__call__})
    loaded = tfsal.load_model(tmp_path / "seg")  # for callable targets
    with pytest.raises(TfsalError, match=f"{SUPPORTED}.*output shape \\(None, 16, 16, 3\\)"):
        tfsal.vanilla_gradient(loaded, probe)


# ------------------------------------------------------------------------ refused inputs
class Grayscale(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 1], tf.float32)])
    def __call__(self, images):
        return tf.reduce_mean(images, axis=[1, 2]) * tf.ones([1, 3])


def test_models_not_taking_rgb_images_are_refused(tmp_path, probe):
    keras.utils.set_random_seed(0)
    dense = keras.Sequential([keras.Input((784,)), keras.layers.Dense(10)])
    with pytest.raises(TfsalError, match=r"expected a model taking \(N, H, W, 3\) images, "
                                         r"received input shape \(None, 784\)"):
        tfsal.Model(dense)
    gray_in = keras.Input((SIZE, SIZE, 1))
    gray = keras.Model(gray_in, keras.layers.Dense(3)(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(2, 3)(gray_in))))
    with pytest.raises(TfsalError, match=r"received input shape \(None, 16, 16, 1\)"):
        tfsal.load_model(gray)
    module = Grayscale()
    tf.saved_model.save(module, str(tmp_path / "gray"),
                        signatures={"serving_default": module.__call__})
    with pytest.raises(TfsalError, match=r"received input shape \(None, 16, 16, 1\)"):
        tfsal.load_model(tmp_path / "gray")
    # a preprocess callable may legitimately map RGB to the model's input
    to_gray = tfsal.Model(gray, preprocess=lambda x: tf.reduce_mean(x, -1, keepdims=True))
    assert np.isfinite(tfsal.vanilla_gradient(to_gray, probe, 1)).all()
    # shape mismatches met while tracing an opaque callable: TfsalError, not ValueError
    for opaque in (lambda x: dense(tf.reshape(x, (-1, SIZE * SIZE * 3))), lambda x: gray(x)):
        for call in (tfsal.vanilla_gradient, tfsal.grad_cam):
            with pytest.raises(TfsalError, match="expected"):
                call(tfsal.Model(opaque), probe, 0)


# ------------------------------------------------------------------------ batches and memory
def test_batch_size_is_bounded(cnn):
    assert tfsal.Model(cnn, batch_size=4096).batch_size == 4096
    for size in (4097, 10**6, np.int64(10**9)):
        with pytest.raises(TfsalError, match=r"batch_size an int in \[1, 4096\].*memory"):
            tfsal.Model(cnn, batch_size=size)
        with pytest.raises(TfsalError, match="batch_size"):
            tfsal.load_model(cnn, batch_size=size)


class OutOfMemoryAbove:
    """A compiled function that runs out of memory on batches of more than `limit` images."""

    def __init__(self, fn, limit: int, sizes: list):
        self.fn, self.limit, self.sizes = fn, limit, sizes

    def __call__(self, images, *rest):
        if images.shape[0] > self.limit:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")
        self.sizes.append(int(images.shape[0]))
        return self.fn(images, *rest)


def _tight(monkeypatch, model, limit: int) -> list:
    sizes, compiled = [], model._fn
    monkeypatch.setattr(model, "_fn", lambda *a, **k: OutOfMemoryAbove(compiled(*a, **k),
                                                                        limit, sizes))
    return sizes


def test_out_of_memory_halves_the_batch_with_identical_results(monkeypatch, cnn):
    images = np.random.default_rng(2).random((7, SIZE, SIZE, 3)).astype(np.float32)
    targets = np.array([0, 1, 2, 3, 0, 1, 2], np.int32)
    model = tfsal.Model(cnn, batch_size=8)
    expected = {
        "vanilla": tfsal.vanilla_gradient(model, images, targets),
        "grad_cam": tfsal.grad_cam(model, images, targets),
        "predict": model.predict(images)}
    sizes = _tight(monkeypatch, model, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = {
            "vanilla": tfsal.vanilla_gradient(model, images, targets),
                "grad_cam": tfsal.grad_cam(model, images, targets),
            "predict": model.predict(images)}
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    messages = [str(w.message) for w in caught]
    assert all(w.category is RuntimeWarning and w.filename == __file__ for w in caught)
    # vanilla: 7 -> 3, 3, 1 (IG's compiled chunks: tests/test_device_loops.py)
    assert messages[0] == "tfsal: out of memory with a batch of 7; retrying with 3"
    assert sizes[:3] == [3, 3, 1]
    assert max(sizes) == 3
    _tight(monkeypatch, model, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(TfsalError, match="expected inputs that fit in memory.*batch of 1"):
            tfsal.vanilla_gradient(model, images, targets)


def test_sampled_methods_halve_their_own_chunks_with_identical_sums(cnn):
    images = np.random.default_rng(4).random((3, SIZE, SIZE, 3)).astype(np.float32)
    model = tfsal.Model(cnn, batch_size=4)
    seen = []

    def tight(limit):
        def method(m, batch, targets):
            if len(batch) > limit:
                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")
            seen.append(len(batch))
            return tfsal.vanilla_gradient.compute(m, batch, targets)
        return method

    options = dict(n_samples=5, seed=3, squared=True)
    expected = tfsal.smoothgrad(model, images, 1, method=tight(4), **options)
    assert max(seen) == 4
    seen.clear()
    with pytest.warns(RuntimeWarning, match="batch of 4; retrying with 2"):
        got = tfsal.smoothgrad(model, images, 1, method=tight(2), **options)
    assert max(seen) == 2 and sum(seen) == 15  # every (image, sample) pair once
    np.testing.assert_array_equal(got, expected)


def test_the_nonlinear_loop_halves_a_batch_that_runs_out_of_memory(monkeypatch, cnn):
    import tfsal.nonlinear as nonlinear

    images = np.random.default_rng(4).random((5, SIZE, SIZE, 3)).astype(np.float32)
    model = tfsal.Model(cnn, batch_size=4)
    options = dict(levels=[0.0, 0.5], steps_per_level=2)
    expected = tfsal.nonlinear_saliency(model, images, 1, **options)
    real, sizes = nonlinear._compiled_loop, []

    def tight(model, x, *rest):
        if len(x) > 1:
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")
        sizes.append(len(x))
        return real(model, x, *rest)

    monkeypatch.setattr(nonlinear, "_compiled_loop", tight)
    with pytest.warns(RuntimeWarning, match="out of memory with a batch of 4; retrying with 2"):
        got = tfsal.nonlinear_saliency(model, images, 1, **options)
    assert sizes == [1] * 5
    # Each item's loop is independent of its batch, up to the convolution kernels' float
    # rounding, which differs with the batch size.
    np.testing.assert_allclose(got.target_probability, expected.target_probability, atol=1e-5)
    np.testing.assert_allclose(got.maps, expected.maps, rtol=1e-3, atol=1e-6)
