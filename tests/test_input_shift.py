"""Input-shift invariance: the shift-compensated copy computes the same function, vanilla
gradient and Grad-CAM do not move, Gradient × Input and black-baseline IG do."""

import keras
import numpy as np
import pytest
from conftest import SIZE, assert_same_snapshot, nested_cnn, snapshot, toy_cnn

import tfsal
from tfsal import TfsalError
from tfsal.metrics import input_shift_invariance

SHIFT = np.array([0.1, -0.05, 0.2])


def valid_cnn(seed: int = 3) -> keras.Model:
    """No padding anywhere: plain bias compensation is exact."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="valid", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(8, 3, padding="valid", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(4, name="logits")(x)
    return keras.Model(inp, out, name="valid_cnn")


def mlp(seed: int = 4) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(name="flat"),
                             keras.layers.Dense(16, activation="relu", name="hidden"),
                             keras.layers.Dense(3, name="logits")], name="mlp")


def no_bias_cnn(seed: int = 5) -> keras.Model:
    """First convolution without a bias, followed by batch norm (the ResNet stem form)."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", use_bias=False, name="stem")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(4, activation="softmax", name="predictions")(x)
    model = keras.Model(inp, out, name="no_bias_cnn")
    bn = model.get_layer("bn")  # non-trivial inference statistics
    rng = np.random.default_rng(seed)
    bn.moving_mean.assign(rng.normal(0, 0.3, 6).astype(np.float32))
    bn.moving_variance.assign(rng.uniform(0.5, 2, 6).astype(np.float32))
    return model


@pytest.fixture
def small_images():
    # Values in [0.25, 0.75]: room for SHIFT without compression.
    return (0.25 + 0.5 * np.random.default_rng(1).random((4, SIZE, SIZE, 3))).astype(np.float32)


def _logits(model, images):
    return model.predict(images, score="logit").astype(np.float64)


@pytest.mark.parametrize("build, preprocess", [(valid_cnn, "tf"), (mlp, None),
                                               (toy_cnn, "tf"), (nested_cnn, "caffe"),
                                               (no_bias_cnn, "torch")])
def test_shifted_model_computes_the_same_function(build, preprocess, small_images):
    model = tfsal.Model(build(), preprocess=preprocess)
    result = input_shift_invariance(model, small_images, "vanilla", SHIFT, fit="require")
    scale = np.abs(_logits(model, small_images)).max()
    assert result.logit_error.max() <= 1e-5 * max(1.0, scale), result.logit_error
    assert result.border_corrected and not result.compressed


def test_input_space_shift_follows_the_preprocessing(small_images):
    for preprocess, expected in (("tf", 2 * SHIFT), (None, SHIFT),
                                 ("caffe", 255 * SHIFT[::-1]),
                                 ("torch", SHIFT / np.array([0.229, 0.224, 0.225]))):
        model = tfsal.Model(valid_cnn(), preprocess=preprocess)
        result = input_shift_invariance(model, small_images, "vanilla", SHIFT, fit="require")
        np.testing.assert_allclose(result.input_shift, expected, rtol=1e-5)


def test_plain_bias_compensation_is_exact_without_padding_and_not_with_it(small_images):
    valid = tfsal.Model(valid_cnn(), preprocess="tf")
    shifted = valid.shift_compensated(2 * SHIFT, border_correction=False)
    np.testing.assert_allclose(_logits(shifted, small_images + SHIFT.astype(np.float32)),
                               _logits(valid, small_images), atol=1e-5)
    same = tfsal.Model(toy_cnn(softmax=False), preprocess="tf")
    plain = input_shift_invariance(same, small_images, "vanilla", SHIFT, fit="require",
                                   border_correction=False)
    assert plain.logit_error.max() > 1e-4  # zero padding is not shifted: borders differ
    assert not plain.border_corrected


def test_vanilla_gradient_and_grad_cam_are_invariant_gradient_x_input_and_ig_are_not(
        small_images):
    model = tfsal.Model(toy_cnn(), preprocess="tf")
    invariant = {name: input_shift_invariance(model, small_images, name, SHIFT,
                                              fit="require")
                 for name in ("vanilla", "grad_cam", "guided_backprop")}
    for name, result in invariant.items():
        assert result.invariant, (name, result.relative_l2)
        assert result.relative_l2.max() < 1e-4, name
    variant = {name: input_shift_invariance(model, small_images, name, SHIFT, fit="require")
               for name in ("gradient_x_input", "integrated_gradients")}
    for name, result in variant.items():
        assert not result.invariant, name
        assert result.relative_l2.min() > 0.01, (name, result.relative_l2)


def test_smoothgrad_with_a_fixed_seed_is_invariant_to_a_grey_shift(small_images):
    # σ is a fraction of each image's value range: a shift equal in every channel keeps it,
    # a per-channel shift changes it (and with it the noise).
    model = tfsal.Model(toy_cnn(), preprocess="tf")
    kwargs = {"method_kwargs": {"n_samples": 4, "seed": 0}, "fit": "require"}
    grey = input_shift_invariance(model, small_images, tfsal.smoothgrad, 0.1, **kwargs)
    assert grey.relative_l2.max() < 1e-4
    coloured = input_shift_invariance(model, small_images, tfsal.smoothgrad, SHIFT, **kwargs)
    assert coloured.relative_l2.min() > 0.01


def test_compress_leaves_room_for_the_shift_and_require_refuses_full_range_images(images):
    model = tfsal.Model(toy_cnn(), preprocess="tf")
    full = images.copy()
    full[0, 0, 0] = [0.0, 1.0, 1.0]
    with pytest.raises(TfsalError, match=r"images \+ shift within \[0, 1\]"):
        input_shift_invariance(model, full, "vanilla", SHIFT, fit="require")
    result = input_shift_invariance(model, full, "vanilla", SHIFT)
    assert result.compressed and result.invariant
    cropped = input_shift_invariance(model, full, "gradient_x_input", SHIFT, border=3)
    assert cropped.border == 3 and not cropped.invariant


def test_the_users_model_is_unchanged(images):
    user = toy_cnn()
    before = snapshot(user, images)
    input_shift_invariance(tfsal.Model(user, preprocess="tf"), images, "rectgrad", SHIFT)
    input_shift_invariance(user, images, "vanilla", 0.2, border_correction=False)
    assert_same_snapshot(before, snapshot(user, images))


def test_bad_arguments_raise(images):
    model = tfsal.Model(toy_cnn(), preprocess="tf")
    with pytest.raises(TfsalError, match="expected shift a number or 3 numbers"):
        input_shift_invariance(model, images, "vanilla", [0.1, 0.2])
    with pytest.raises(TfsalError, match="expected shift"):
        input_shift_invariance(model, images, "vanilla", 1.5)
    with pytest.raises(TfsalError, match="expected a method name"):
        input_shift_invariance(model, images, "no_such_method", 0.1)
    with pytest.raises(TfsalError, match="expected fit"):
        input_shift_invariance(model, images, "vanilla", 0.1, fit="stretch")
    with pytest.raises(TfsalError, match="expected border"):
        input_shift_invariance(model, images, "vanilla", 0.1, border=SIZE)
    with pytest.raises(TfsalError, match="expected input_shift as 3"):
        model.shift_compensated([1.0, 2.0])


def test_unsupported_first_layers_raise(images):
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.BatchNormalization(name="bn_first")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2)(x)
    with pytest.raises(TfsalError, match=r"Conv2D, Dense or Flatten → Dense first layer.*"
                                         r"bn_first"):
        input_shift_invariance(keras.Model(inp, out), images, "vanilla", 0.1)
    dense = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(3, use_bias=False)])
    with pytest.raises(TfsalError, match="with a bias"):
        input_shift_invariance(dense, images, "vanilla", 0.1)
