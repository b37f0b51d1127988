"""The adapter: preprocessing, logits recovery, scores, compiled functions, layer access."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SIZE, Subclassed, nested_cnn, sequential_cnn, toy_cnn

import tfsal
from tfsal import TfsalError


def _tape_gradient(fn, images, target):
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = tf.reduce_sum(fn(x)[:, target])
    return tape.gradient(y, x).numpy()


def test_recovered_logits_equal_the_pre_softmax_values(cnn, images):
    model = tfsal.Model(cnn)
    head = cnn.get_layer("predictions")
    features = keras.Model(cnn.inputs, head.input)(images)
    expected = features.numpy() @ head.kernel.numpy() + head.bias.numpy()
    np.testing.assert_allclose(model.predict(images), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(images, score="probability"), cnn(images).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(model.predict(images, score="log_probability"),
                               np.log(cnn(images).numpy()), atol=1e-5)
    assert model.output_kind == "logits"


@pytest.mark.parametrize("build", [nested_cnn, sequential_cnn])
def test_logits_recovered_for_nested_and_sequential_heads(build, images):
    user = build()
    model = tfsal.Model(user)
    probs = user(images).numpy()
    logits = model.predict(images)
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probs, atol=1e-6)
    # true logits, not log-probabilities: they do not log-sum-exp to zero
    assert np.abs(np.log(np.exp(logits).sum(axis=1))).max() > 1e-3


def test_vanilla_gradient_equals_hand_written_tape_through_preprocessing(images):
    user = toy_cnn(softmax=False)
    model = tfsal.Model(user, preprocess="caffe")
    mean = np.array([103.939, 116.779, 123.68], np.float32)

    def by_hand(x):
        return user(x[..., ::-1] * 255.0 - mean)

    np.testing.assert_allclose(tfsal.vanilla_gradient(model, images, 2),
                               _tape_gradient(by_hand, images, 2), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("preprocess, by_hand", [
    ("tf", lambda x: x * 2 - 1),
    ("torch", lambda x: (x - np.array([0.485, 0.456, 0.406], np.float32))
     / np.array([0.229, 0.224, 0.225], np.float32)),
    (None, lambda x: x),
    (lambda x: x * 3.0, lambda x: x * 3.0),
])
def test_preprocessing_is_inside_the_graph(preprocess, by_hand, images):
    user = toy_cnn(softmax=False)
    model = tfsal.Model(user, preprocess=preprocess)
    np.testing.assert_allclose(model.predict(images), user(by_hand(images)).numpy(), rtol=1e-5,
                               atol=1e-6)


def test_new_targets_and_batch_sizes_do_not_retrace(cnn, images):
    model = tfsal.Model(cnn, batch_size=2)
    for targets in (0, 1, [3, 2, 1, 0, 0], None):
        model.input_gradients(images, targets)  # batches of 2, 2, 1
    model.input_gradients(images[:3], 2)
    # Two compiled functions (the predicted class for targets=None, the gradients), each
    # traced once.
    assert model.tracing_count() == 2


def test_scores_and_targets(cnn, images):
    model = tfsal.Model(cnn)
    predicted = model.predicted_classes(images)
    np.testing.assert_array_equal(predicted, np.argmax(cnn(images).numpy(), axis=1))
    np.testing.assert_array_equal(model.resolve_targets(images, None), predicted)
    scores = model.target_scores(images, 1, score="probability")
    np.testing.assert_allclose(scores, cnn(images).numpy()[:, 1], atol=1e-6)


def test_layer_gradients_reach_nested_layers(images):
    user = nested_cnn()
    model = tfsal.Model(user)
    assert "base/b_conv2" in model.layer_names()
    assert model.resolve_layer(None) == "base/b_conv2"
    assert model.resolve_layer("b_conv1") == "base/b_conv1"
    acts, grads = model.layer_gradients(images, 0, layer="base/b_conv2")
    expected = user.get_layer("base").get_layer("b_conv2")
    inner = keras.Model(user.get_layer("base").inputs, expected.output)
    np.testing.assert_allclose(acts, inner(images).numpy(), rtol=1e-5, atol=1e-6)
    # GAP + dense head: ∂logit_0/∂A_k(u, v) = w_k0 / (h·w) at every position
    head = user.get_layer("predictions").kernel.numpy()
    np.testing.assert_allclose(grads, np.broadcast_to(head[:, 0] / SIZE**2, grads.shape),
                               rtol=1e-5)


def test_subclassed_models_give_gradients_but_no_layers(images):
    user = Subclassed()
    user(images[:1])
    model = tfsal.Model(user)
    assert model.num_classes == 4
    grads = tfsal.vanilla_gradient(model, images, 1)
    np.testing.assert_allclose(grads, _tape_gradient(user, images, 1), rtol=1e-5, atol=1e-7)
    with pytest.raises(TfsalError, match="layer access"):
        tfsal.grad_cam(model, images)


def test_probability_only_callables_refuse_logit_score(cnn, images):
    model = tfsal.Model(lambda x: cnn(x), output="probabilities")
    with pytest.raises(TfsalError, match="score='probability'"):
        tfsal.vanilla_gradient(model, images, 0)
    grads = tfsal.vanilla_gradient(model, images, 0, score="probability")
    assert np.isfinite(grads).all() and np.abs(grads).sum() > 0


def test_keras_file_round_trip(cnn, images, tmp_path):
    path = tmp_path / "m.keras"
    cnn.save(path)
    model = tfsal.load_model(path)
    np.testing.assert_allclose(model.predict(images, score="probability"), cnn(images).numpy(),
                               atol=1e-6)


def test_saved_model_directory_gives_the_same_gradients(images, tmp_path):
    user = toy_cnn(softmax=False)
    user.export(tmp_path / "export", verbose=False)
    model = tfsal.load_model(tmp_path / "export")
    np.testing.assert_allclose(model.predict(images), user(images).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, images, 1),
                               _tape_gradient(user, images, 1), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(preprocess="bgr"), "preprocess"),
    (dict(score="logits"), "score"),
    (dict(batch_size=0), "batch_size"),
    (dict(output="softmax"), "output"),
])
def test_bad_adapter_options_raise(cnn, kwargs, message):
    with pytest.raises(TfsalError, match=message):
        tfsal.Model(cnn, **kwargs)


@pytest.mark.parametrize("source", ["no-such-model", 42, "/nonexistent/model.keras"])
def test_bad_sources_raise(source):
    with pytest.raises(TfsalError, match="expected"):
        tfsal.load_model(source)


def test_unknown_layers_name_the_candidates(cnn, images):
    with pytest.raises(TfsalError, match="conv1"):
        tfsal.grad_cam(cnn, images, layer="conv9")
    with pytest.raises(TfsalError, match="index"):
        tfsal.grad_cam(cnn, images, layer=99)


def test_wrong_image_size_for_the_model(cnn):
    with pytest.raises(TfsalError, match="16x16"):
        tfsal.vanilla_gradient(cnn, np.zeros((1, 20, 20, 3), np.float32))


def _lambda_model():
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    x = keras.layers.Conv2D(3, 3, activation="relu")(x)
    out = keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def test_a_model_needing_arbitrary_code_is_refused_then_loaded_with_the_opt_in(tmp_path,
                                                                               images):
    from tfsal.cli import main

    path = tmp_path / "lambda.keras"
    _lambda_model().save(path)
    with pytest.raises(TfsalError, match="safe_mode=False / --unsafe-load"):
        tfsal.load_model(path)
    loaded = tfsal.load_model(path, safe_mode=False)
    assert np.isfinite(tfsal.vanilla_gradient(loaded, images, 0)).all()
    image = tmp_path / "x.png"
    from PIL import Image
    Image.fromarray((images[0] * 255).astype(np.uint8)).save(image)
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(path), "--out", str(out)]) == 2
    assert main(["explain", str(image), "--model", str(path), "--out", str(out),
                 "--unsafe-load", "--target", "0"]) == 0


def test_images_too_small_for_the_model_raise_tfsal_error():
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(2, 5)(inp)  # needs at least 5x5 pixels
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    with pytest.raises(TfsalError, match="the model can process"):
        tfsal.vanilla_gradient(model, np.zeros((1, 2, 2, 3), np.float32), 0)
