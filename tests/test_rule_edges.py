"""Backward rules and signed maps where random weights never go: ties, exact zeros, 2-pixel
feature maps, activations other than ReLU, the two ways a rule reaches a model, and RectGrad
against the independent op-level reference (tests/test_rectgrad_reference.py), fast."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import toy_cnn
from test_rectgrad_reference import _reference_rectgrad

import tfsal

H = 3  # two-layer models: (N, 3, 3, 3) images -> 27 inputs -> 6 hidden units -> 4 logits


def two_layer(activation: str, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((H, H, 3))
    hidden = keras.layers.Dense(6, activation=activation, name="hidden")(
        keras.layers.Flatten()(inp))
    return keras.Model(inp, keras.layers.Dense(4, name="out")(hidden))


def hand_pass(model, x, target):
    """NumPy: W1, the pre-activation z, and R = the gradient arriving at the hidden output."""
    w1, b1 = model.get_layer("hidden").get_weights()
    w2, _ = model.get_layer("out").get_weights()
    z = x.reshape(len(x), -1).astype(np.float64) @ w1 + b1
    return w1, z, np.broadcast_to(w2[:, target], z.shape)


def to_input(w1, r_hidden):
    return (r_hidden @ w1.T).reshape(-1, H, H, 3)


@pytest.fixture
def small():
    return np.random.default_rng(3).random((4, H, H, 3)).astype(np.float32)


# ------------------------------------------------------------------ signed maps: ties
def test_signed_maps_ties_are_neither_active_nor_inactive():
    """1[g_t > g_k for every k ≠ t] is strict: a channel where another class has the same
    gradient is in neither map, even where it is the largest or the smallest."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 3))
    dense = keras.layers.Dense(4)
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    kernel = np.random.default_rng(1).normal(size=(4, 4, 3, 4)).astype(np.float32)
    kernel[0, :, :, 1] = kernel[0, :, :, 0]  # row 0: classes 0 and 1 tie everywhere
    kernel[1] = 0.0  # row 1: every class's gradient is 0
    dense.set_weights([kernel.reshape(-1, 4), np.zeros(4, np.float32)])
    images = np.random.default_rng(2).random((2, 4, 4, 3)).astype(np.float32)
    maps = tfsal.signed_maps(tfsal.Model(model, batch_size=2), images, [0, 1])
    for i, t in enumerate([0, 1]):
        g, others = kernel[..., t], np.delete(kernel, t, axis=-1)
        # the data reaches the edge: on row 0 the tied gradient is the largest of all
        # classes in some channels and the smallest in others
        assert (g[0][..., None] >= others[0]).all(-1).any()
        assert (g[0][..., None] <= others[0]).all(-1).any()
        active = np.where((g[..., None] > others).all(-1), g, 0)
        inactive = np.where((g[..., None] < others).all(-1), g, 0)
        np.testing.assert_allclose(maps.active[i], np.abs(active).max(-1), rtol=1e-5)
        np.testing.assert_allclose(maps.inactive[i], np.abs(inactive).max(-1), rtol=1e-5)
        assert (maps.active[i, :2] == 0).all() and (maps.inactive[i, :2] == 0).all()
        assert maps.active[i, 2:].any() and maps.inactive[i, 2:].any()


# ------------------------------------------------------------------ activations beyond ReLU
DERIVATIVES = {"tanh": lambda z: 1 - np.tanh(z) ** 2,
               "elu": lambda z: np.where(z > 0, 1.0, np.exp(np.minimum(z, 0))),
               "sigmoid": lambda z: np.exp(-z) / (1 + np.exp(-z)) ** 2}
FORWARD = {"tanh": np.tanh, "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
           "sigmoid": lambda z: 1 / (1 + np.exp(-z))}


@pytest.mark.parametrize("activation", sorted(DERIVATIVES))
def test_guided_and_deconv_differ_where_the_definitions_do(activation, small):
    """Guided: R · f'(z) · 1[R > 0]; Deconvnet: max(R, 0). Every target, so that units with
    R > 0 and z < 0 (where the two differ) occur."""
    model = two_layer(activation)
    differ = False
    for t in range(4):
        w1, z, r = hand_pass(model, small, t)
        differ |= ((z < 0) & (r > 0)).any()
        guided = to_input(w1, r * DERIVATIVES[activation](z) * (r > 0))
        np.testing.assert_allclose(tfsal.guided_backprop(model, small, t), guided, rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(tfsal.deconvnet(model, small, t),
                                   to_input(w1, np.maximum(r, 0)), rtol=1e-4, atol=1e-6)
    assert differ


@pytest.mark.parametrize("activation", ["tanh", "elu"])
def test_epsilon_lrp_stabiliser_takes_the_sign_of_z(activation, small):
    """ε-LRP: R · a / (z + ε · sign(z)); with tanh / ELU, a ≠ 0 where z < 0."""
    model, eps = two_layer(activation), 0.05
    w1, z, r = hand_pass(model, small, 1)
    assert (z < 0).any()
    m = FORWARD[activation](z) / (z + eps * np.where(z >= 0, 1, -1))
    np.testing.assert_allclose(tfsal.epsilon_lrp(model, small, 1, epsilon=eps),
                               to_input(w1, r * m) * small, rtol=1e-4, atol=1e-6)


def test_relu_at_exactly_zero_passes_nothing():
    """ReLU's derivative at z = 0 is 0 (TensorFlow's, and 1[z > 0] in the definitions): a black
    image through zero biases puts every unit at exactly 0, so Guided Backprop is 0 there."""
    model = two_layer("relu")
    black = np.zeros((1, H, H, 3), np.float32)
    _, z, _ = hand_pass(model, black, 0)
    assert (z == 0).all()
    for t in range(4):
        assert not tfsal.guided_backprop(model, black, t).any()
        assert not tfsal.vanilla_gradient(model, black, t).any()
    assert tfsal.deconvnet(model, black, 0).any()  # Deconvnet ignores z: not trivially zero


# ------------------------------------------------------------------ DeepLIFT's max-pool ties
def test_deeplift_rescaled_max_pool_sums_to_delta_on_tied_windows():
    """Windows whose inputs are equal, with equal references: every input is the maximum along
    the whole path, and the window's multiplier must still be counted once."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Activation("relu")(inp)  # identity on [0, 1]: a rule site
    x = keras.layers.MaxPooling2D(2)(x)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    blocks = np.random.default_rng(0).uniform(0.5, 1.0, (2, 2, 2, 3)).astype(np.float32)
    images = np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2)  # constant 2x2 windows
    attr = tfsal.deeplift(model, images, 1, baseline=0.2, maxpool="rescale")
    delta = tfsal.completeness_delta(model, images, attr, 1, baseline=0.2)
    np.testing.assert_allclose(delta, 0, atol=1e-5)
    assert np.abs(attr).sum() > 0.1


# ------------------------------------------------------------------ the padding trick's edges
def tiny_maps_model(size=(2, 6)) -> keras.Model:
    """SAME convolutions whose outputs all have a side of at most 2 pixels (2 x 6, then 2 x 3)."""
    keras.utils.set_random_seed(7)
    inp = keras.Input((*size, 3))
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.Conv2D(4, (1, 2), strides=(1, 2), padding="same", name="conv2")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="predictions")(x))


@pytest.mark.parametrize("size", [(2, 6), (6, 2), (2, 2)])
def test_padding_trick_leaves_maps_with_a_side_of_two_or_less_alone(size):
    """The trick zeroes a one-pixel border of maps larger than 2 x 2 in both directions; on
    narrower maps it would zero everything, so they pass unchanged (H or W ≤ 2)."""
    model = tiny_maps_model(size)
    images = np.random.default_rng(1).random((3, *size, 3)).astype(np.float32)
    passing = dict(threshold=-1e30, prr=False)  # RectGrad passing every unit
    with_trick = tfsal.rectgrad(model, images, 1, padding_trick=True, **passing)
    without = tfsal.rectgrad(model, images, 1, padding_trick=False, **passing)
    np.testing.assert_allclose(with_trick, without, rtol=1e-6, atol=1e-8)
    assert np.abs(with_trick).max() > 0


def test_saved_model_path_masks_only_same_padded_convolutions(tmp_path):
    """Keras layers and op-level registrations are each other's oracle: a VALID convolution
    keeps its border in both."""
    keras.utils.set_random_seed(8)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, padding="valid", activation="relu")(inp)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(3)(x))
    images = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
    tf.saved_model.save(model, str(tmp_path / "sm"))
    loaded = tfsal.load_model(tmp_path / "sm")
    settings = dict(threshold=-1e30, padding_trick=True, prr=False)
    keras_path = tfsal.rectgrad(model, images, 2, **settings)
    np.testing.assert_allclose(tfsal.rectgrad(loaded, images, 2, **settings), keras_path,
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(keras_path, tfsal.gradient_x_input(model, images, 2))


# ------------------------------------------------------------------ against the reference
@pytest.mark.parametrize("prr", [False, True])
def test_rectgrad_matches_the_independent_reference_on_a_tiny_cnn(prr):
    """The op-level reference (gradients registered per op type, as the authors' TF1 code)
    shares no code with tfsal; the slow tests compare the two on ImageNet architectures."""
    model = toy_cnn()
    images = np.random.default_rng(4).random((2, 16, 16, 3)).astype(np.float32)
    targets = np.array([1, 3])
    for percentile in (60, 98):
        ref = _reference_rectgrad(model, "tf", images, targets, percentile=percentile,
                                  padding_trick=True, prr=prr)
        ours = tfsal.rectgrad(tfsal.Model(model, preprocess="tf"), images, targets,
                              percentile=percentile, padding_trick=True, prr=prr, rank="numpy")
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_rectgrad_matches_the_reference_on_two_pixel_maps():
    model = tiny_maps_model((2, 6))
    images = np.random.default_rng(5).random((2, 2, 6, 3)).astype(np.float32)
    ref = _reference_rectgrad(model, "tf", images, [0, 2], percentile=50, padding_trick=True,
                              prr=False)
    ours = tfsal.rectgrad(tfsal.Model(model, preprocess="tf"), images, [0, 2], percentile=50,
                          rank="numpy")
    assert np.abs(ref).max() > 0
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
