"""Backward rules against hand-derived passes, NumPy references and the paper's claims."""

from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import assert_same_snapshot, nested_cnn, snapshot, toy_cnn

import tfsal
from tfsal import TfsalError
from tfsal.overrides import Deconv, Guided, Rectified, Rule, per_sample_percentile

# ----------------------------------------------------------------- a two-layer model by hand
H = 3  # images (N, 3, 3, 3) -> 27 inputs -> 6 hidden units -> 4 logits


def two_layer(form: str = "fused", seed: int = 0) -> keras.Model:
    """x -> Dense(6) -> ReLU (in the given form) -> Dense(4) logits."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((H, H, 3))
    flat = keras.layers.Flatten()(inp)
    if form == "fused":
        hidden = keras.layers.Dense(6, activation="relu", name="hidden")(flat)
    else:
        z = keras.layers.Dense(6, name="hidden")(flat)
        act = keras.layers.Activation("relu") if form == "activation" else keras.layers.ReLU()
        hidden = act(z)
    return keras.Model(inp, keras.layers.Dense(4, name="out")(hidden))


def hand_pass(model, x, target):
    """NumPy forward of `two_layer`: W1, z, a, and R = the gradient arriving at a."""
    w1, b1 = model.get_layer("hidden").get_weights()
    w2, _ = model.get_layer("out").get_weights()
    z = x.reshape(len(x), -1) @ w1 + b1
    return w1, z, np.maximum(z, 0), np.broadcast_to(w2[:, target], z.shape)


def to_input(w1, r_hidden):
    return (r_hidden @ w1.T).reshape(-1, H, H, 3)


@pytest.fixture
def small():
    return np.random.default_rng(3).random((4, H, H, 3)).astype(np.float32)


@pytest.mark.parametrize("form", ["fused", "activation", "relu_layer"])
def test_guided_deconv_and_rectgrad_match_hand_derived_passes(form, small):
    model, t = two_layer(form), 2
    w1, z, a, r = hand_pass(model, small, t)
    np.testing.assert_allclose(tfsal.guided_backprop(model, small, t),
                               to_input(w1, r * (z > 0) * (r > 0)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tfsal.deconvnet(model, small, t),
                               to_input(w1, np.maximum(r, 0)), rtol=1e-5, atol=1e-6)
    for q in (0, 40, 70, 98):  # NumPy's rank (at q = 70 the authors' default picks another)
        tau = np.percentile(a * r, q, axis=1, method="nearest", keepdims=True)
        expected = to_input(w1, r * (a * r > tau)) * small
        np.testing.assert_allclose(tfsal.rectgrad(model, small, t, percentile=q, rank="numpy"),
                                   expected, rtol=1e-5, atol=1e-6)
    expected = to_input(w1, r * (a * r > 0.01)) * small
    np.testing.assert_allclose(tfsal.rectgrad(model, small, t, threshold=0.01), expected,
                               rtol=1e-5, atol=1e-6)


def test_deeplift_and_epsilon_lrp_match_hand_derived_passes(small):
    model, t = two_layer(), 1
    w1, z, a, r = hand_pass(model, small, t)
    base = np.full_like(small, 0.3)
    _, z0, a0, _ = hand_pass(model, base, t)
    dz = z - z0
    m = np.where(np.abs(dz) > 1e-5, (a - a0) / np.where(np.abs(dz) > 1e-5, dz, 1), z > 0)
    np.testing.assert_allclose(tfsal.deeplift(model, small, t, baseline=0.3),
                               to_input(w1, r * m) * (small - 0.3), rtol=1e-4, atol=1e-6)
    eps = 1e-2
    m = a / (z + eps * np.where(z >= 0, 1, -1))
    np.testing.assert_allclose(tfsal.epsilon_lrp(model, small, t, epsilon=eps),
                               to_input(w1, r * m) * small, rtol=1e-4, atol=1e-6)


def test_deeplift_sums_to_the_score_difference_and_lrp_is_gradient_times_input(images):
    # Without max-pooling the Rescale rule is exact: average pooling instead.
    inp = keras.Input(images.shape[1:])
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu")(x)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inp, out)
    for baseline in ("black", "white", 0.4):
        attr = tfsal.deeplift(model, images, 0, baseline=baseline)
        delta = tfsal.completeness_delta(model, images, attr, 0, baseline=baseline)
        np.testing.assert_allclose(delta, 0, atol=1e-4)
    lrp = tfsal.epsilon_lrp(model, images, 0, epsilon=1e-9)
    np.testing.assert_allclose(lrp, tfsal.gradient_x_input(model, images, 0), rtol=1e-3,
                               atol=1e-6)


# ----------------------------------------------------------------- the paper's claims
def test_claim_2_constant_zero_threshold_is_guided_backprop_times_input(images):
    model = toy_cnn()
    rect = tfsal.rectgrad(model, images, threshold=0.0, zero_threshold=True,
                          padding_trick=False, prr=False)
    guided = tfsal.guided_backprop(model, images)
    np.testing.assert_allclose(rect, np.maximum(guided * images, 0), rtol=1e-5, atol=1e-7)
    assert (rect > 0).mean() > 0.05  # not trivially zero


@dataclass(frozen=True)
class ShiftedRule(Rule):
    """Claim 1's propagation rule: 1[(a + ε) · R > 0] · R."""

    epsilon: float = 1e-3

    def activation_backward(self, grad, z, a, derivative, reference):
        return tf.where((a + self.epsilon) * grad > 0, grad, tf.zeros_like(grad))


def test_claim_1_shifted_rule_is_deconvnet(images):
    model = tfsal.Model(toy_cnn())
    shifted = model.input_gradients(images, rule=ShiftedRule())
    np.testing.assert_allclose(np.maximum(shifted * images, 0),
                               np.maximum(tfsal.deconvnet(model, images) * images, 0),
                               rtol=1e-5, atol=1e-7)
    assert not np.allclose(tfsal.deconvnet(model, images), tfsal.guided_backprop(model, images))


# ----------------------------------------------------------------- padding trick and PRR
def _pass_all():
    return dict(threshold=-1e30, padding_trick=False, prr=False)


def test_prr_redistributes_in_proportion_to_the_window(images):
    """Relu (passing everything) -> MaxPool(3, stride 2, same) -> dense: NumPy reference."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((7, 7, 3))
    x = keras.layers.Activation("relu")(inp)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    out = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    small = images[:2, :7, :7] * 0.9 + 0.1
    dy = model.layers[-1].kernel.numpy()[:, 1].reshape(4, 4, 3)
    expected = np.zeros_like(small)
    for n in range(2):
        for i in range(4):
            for j in range(4):
                rows = slice(max(2 * i - 1, 0), min(2 * i + 2, 7))  # SAME: pad 1 before
                cols = slice(max(2 * j - 1, 0), min(2 * j + 2, 7))
                window = small[n, rows, cols]
                expected[n, rows, cols] += window * dy[i, j] / window.sum(axis=(0, 1))
    opts = _pass_all() | dict(prr=True)
    got = tfsal.rectgrad(model, small, 1, **opts) / small
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    plain = tfsal.rectgrad(model, small, 1, **_pass_all()) / small
    np.testing.assert_allclose(plain, tfsal.vanilla_gradient(model, small, 1), rtol=1e-5,
                               atol=1e-7)


def test_padding_trick_zeroes_the_border_of_the_conv_output_gradient(images):
    keras.utils.set_random_seed(5)
    inp = keras.Input((6, 6, 3))
    conv = keras.layers.Conv2D(1, 3, padding="same", activation="relu", use_bias=False)
    out = keras.layers.Dense(2)(keras.layers.Flatten()(conv(inp)))
    model = keras.Model(inp, out)
    x = images[:2, :6, :6]
    kernel = conv.kernel.numpy()[..., 0]  # (3, 3, 3)
    r = model.layers[-1].kernel.numpy()[:, 0].reshape(6, 6)  # gradient at the conv output
    expected = np.zeros((6, 6, 3))
    for i in range(1, 5):  # interior output positions only
        for j in range(1, 5):
            for di in range(3):
                for dj in range(3):
                    expected[i + di - 1, j + dj - 1] += r[i, j] * kernel[di, dj]
    got = tfsal.rectgrad(model, x, 0, **_pass_all() | dict(padding_trick=True)) / x
    np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), rtol=1e-4, atol=1e-6)


def test_tiny_feature_maps_do_not_crash(images):
    keras.utils.set_random_seed(6)
    inp = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)  # 2x2
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)  # 1x1
    x = keras.layers.Conv2D(4, 1, padding="same", activation="relu")(x)
    out = keras.layers.Dense(3)(keras.layers.Flatten()(x))
    model = keras.Model(inp, out)
    small = images[:3, :4, :4]
    got = tfsal.rectgrad(model, small, 0, percentile=50, prr=True)
    assert got.shape == small.shape and np.isfinite(got).all()


# ----------------------------------------------------------------- percentile, reach, safety
def test_per_sample_percentile_is_numpys_nearest():
    values = np.random.default_rng(1).normal(size=(3, 5, 4, 7)).astype(np.float32)
    values[1, :2] = 0  # dead units count
    for q in (0, 1, 20, 50, 97.5, 98, 100):
        got = per_sample_percentile(tf.constant(values), q, rank="numpy").numpy().ravel()
        want = np.percentile(values.reshape(3, -1), q, axis=1, method="nearest")
        np.testing.assert_array_equal(got, want)


def test_rectgrad_does_not_depend_on_the_batch(images):
    model = toy_cnn()
    together = tfsal.rectgrad(tfsal.Model(model, batch_size=5), images, 1)
    apart = np.concatenate([tfsal.rectgrad(model, images[i:i + 1], 1) for i in range(5)])
    np.testing.assert_allclose(together, apart, rtol=1e-5, atol=1e-7)


def test_every_activation_form_is_reached(small):
    for activation in ("relu6", "elu", "selu", "sigmoid", "tanh", "softplus", "leaky_relu"):
        keras.utils.set_random_seed(0)
        inp = keras.Input((H, H, 3))
        hidden = keras.layers.Dense(6, activation=activation)(keras.layers.Flatten()(inp))
        model = keras.Model(inp, keras.layers.Dense(4)(hidden))
        plain = tfsal.vanilla_gradient(model, small, 0)
        assert not np.allclose(tfsal.deconvnet(model, small, 0), plain), activation
    inp = keras.Input((H, H, 3))
    hidden = keras.layers.ReLU(max_value=6.0)(keras.layers.Dense(6)(keras.layers.Flatten()(inp)))
    model = keras.Model(inp, keras.layers.Dense(4)(hidden))
    plain = tfsal.vanilla_gradient(model, small, 0)
    assert not np.allclose(tfsal.deconvnet(model, small, 0), plain)


def test_a_rule_that_reaches_nothing_raises(small):
    inp = keras.Input((H, H, 3))
    hidden = keras.layers.Dense(6, activation="swish")(keras.layers.Flatten()(inp))
    model = keras.Model(inp, keras.layers.Dense(4)(hidden))
    for method in (tfsal.rectgrad, tfsal.guided_backprop, tfsal.deeplift):
        with pytest.raises(TfsalError, match="found none"):
            method(model, small, 0)


def test_saved_models_get_rules_and_opaque_callables_refuse_them(tmp_path, images):
    user = toy_cnn()
    tf.saved_model.save(user, str(tmp_path / "sm"))
    loaded = tfsal.load_model(tmp_path / "sm")
    np.testing.assert_allclose(tfsal.rectgrad(loaded, images, 0),
                               tfsal.rectgrad(tfsal.Model(user), images, 0), atol=1e-7)
    opaque = tfsal.Model(lambda x: user(x))
    assert np.isfinite(tfsal.vanilla_gradient(opaque, images, 0)).all()
    with pytest.raises(TfsalError, match="SavedModel / hub graph.*plain-gradient"):
        tfsal.rectgrad(opaque, images, 0)


def test_no_trace_leaks_between_rules_and_plain_gradients(images):
    user = toy_cnn()
    model = tfsal.Model(user)
    plain = tfsal.vanilla_gradient(model, images, 1)
    rect = tfsal.rectgrad(model, images, 1)
    guided = tfsal.guided_backprop(model, images, 1)
    np.testing.assert_array_equal(tfsal.vanilla_gradient(model, images, 1), plain)
    np.testing.assert_array_equal(tfsal.rectgrad(model, images, 1), rect)
    fresh = tfsal.Model(user)  # a new adapter: plain gradients first, after rules elsewhere
    np.testing.assert_array_equal(tfsal.vanilla_gradient(fresh, images, 1), plain)
    assert not np.allclose(guided, plain) and not np.allclose(rect / images, plain)


@dataclass(frozen=True)
class FailingRule(Rule):
    def activation_backward(self, grad, z, a, derivative, reference):
        raise RuntimeError("forced failure in a backward rule")


def test_user_model_untouched_after_a_failing_rule(images):
    user = nested_cnn()
    before = snapshot(user, images)
    model = tfsal.Model(user)
    with pytest.raises(RuntimeError, match="forced failure"):
        model.input_gradients(images, 0, rule=FailingRule())
    assert_same_snapshot(before, snapshot(user, images))
    np.testing.assert_array_equal(model.input_gradients(images, 0),
                                  tfsal.Model(user).input_gradients(images, 0))


def test_nested_models_are_reached(images):
    """The rule reaches the base model's layers: equal to the same network built flat."""
    nested = nested_cnn()
    base = nested.get_layer("base")
    inp = keras.Input(images.shape[1:])
    x = inp
    for layer in base.layers[1:]:
        x = layer(x)
    x = nested.get_layer("gap")(x)
    flat = keras.Model(inp, nested.get_layer("predictions")(x))
    for method in (tfsal.rectgrad, tfsal.guided_backprop, tfsal.deeplift):
        np.testing.assert_allclose(method(nested, images, 2), method(flat, images, 2),
                                   rtol=1e-5, atol=1e-7)
    assert not np.allclose(tfsal.guided_backprop(nested, images, 2),
                           tfsal.vanilla_gradient(nested, images, 2))


def test_layer_attributions_channel_mean_of_activation_times_gradient(images):
    model = tfsal.Model(toy_cnn())
    maps = tfsal.layer_attributions(model, images, 1, method="vanilla")
    assert list(maps) == ["conv1", "relu2"]
    acts, grads = model.layer_gradients(images, 1, layer="conv1")
    np.testing.assert_allclose(maps["conv1"], (acts * grads).mean(-1), rtol=1e-6)
    rect = tfsal.layer_attributions(model, images, 1, method="rectgrad")
    assert not np.allclose(rect["conv1"], maps["conv1"])
    np.testing.assert_allclose(rect["relu2"], maps["relu2"], rtol=1e-6)  # nothing above it
    custom = tfsal.layer_attributions(model, images, 1, method=Rectified(percentile=10.0))
    assert custom["conv1"].shape == (5, 16, 16)
    with pytest.raises(TfsalError, match="expected method"):
        tfsal.layer_attributions(model, images, 1, method="bogus")


def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam(images):
    model = toy_cnn()
    ggc = tfsal.guided_grad_cam(model, images, 0)
    guided = tfsal.guided_backprop(model, images, 0)
    cam = tfsal.grad_cam(model, images, 0)
    up = tf.image.resize(cam[..., None], (16, 16)).numpy()
    np.testing.assert_allclose(ggc, guided * up, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("kwargs", [dict(percentile=101), dict(percentile=float("nan")),
                                    dict(threshold=float("inf")), dict(prr="yes"),
                                    dict(zero_threshold=1)])
def test_bad_rectgrad_hyperparameters_raise(kwargs, images):
    with pytest.raises(TfsalError, match="expected"):
        tfsal.rectgrad(toy_cnn(), images, 0, **kwargs)


def test_rules_are_hashable_distinct_keys():
    assert Rectified() == Rectified() and hash(Guided()) == hash(Guided())
    assert Rectified(percentile=90.0) != Rectified() and Deconv() != Guided()


def test_threshold_sweep_rows(images):
    from tfsal.reproduce.rectified_gradient import sweep_table, threshold_sweep

    masks = np.zeros(images.shape[:3], bool)
    masks[:, 4:12, 4:12] = True
    rows = threshold_sweep(toy_cnn(), images, masks, percentiles=(20, 98))
    assert [r.percentile for r in rows] == [20, 98]
    assert rows[0].similarity == pytest.approx(1.0)
    assert rows[1].nonzero < rows[0].nonzero  # a higher threshold passes fewer units
    assert all(0 <= r.mass_inside <= 1 for r in rows)
    assert "| 98 |" in sweep_table(rows, 0.25)


@pytest.mark.parametrize("how", ["top_k", "numpy", "radix"])
@pytest.mark.parametrize("shape", [(2, 70000), (3, 64, 64, 20), (2, 5, 7)])
def test_every_selection_algorithm_gives_numpys_nearest_percentile(shape, how):
    from tfsal.selection import percentile_rank, select

    rng = np.random.default_rng(2)
    values = (rng.normal(size=shape) * (rng.random(shape) > 0.5)).astype(np.float32)
    values[0] = np.round(values[0] * 4) / 4  # many ties
    values[-1] *= -1e-30  # tiny magnitudes, signs flipped
    flat = values.reshape(len(values), -1)
    n = flat.shape[1]
    for q in (0, 0.01, 20, 50, 98, 99.99, 100):
        index = percentile_rank(n, q, "numpy")
        got = tf.function(lambda f, i=index: select(f, i, how))(tf.constant(flat)).numpy()
        want = np.percentile(flat, q, axis=1, method="nearest")
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(
            per_sample_percentile(tf.constant(values), q, rank="numpy").numpy().ravel(), want)


def test_rectify_on_a_large_layer_matches_numpy():
    """q = 20 takes the compiled radix select, q = 98 a partial sort."""
    from tfsal.overrides import _rectify_compiled, rectify

    rng = np.random.default_rng(5)
    a = np.maximum(rng.normal(size=(2, 40, 40, 16)), 0).astype(np.float32)
    r = rng.normal(size=a.shape).astype(np.float32)
    for q in (20, 98):
        tau = np.percentile((a * r).reshape(2, -1), q, axis=1, method="nearest")
        want = np.where(a * r > tau[:, None, None, None], r, 0)
        got = tf.function(lambda g, x, q=q: rectify(g, x, q, "numpy"))(tf.constant(r),
                                                                        tf.constant(a))
        np.testing.assert_array_equal(got.numpy(), want)
        # the radix select inside one XLA cluster, whatever q would pick
        got = _rectify_compiled(tf.constant(r), tf.constant(a), float(q), "radix", "numpy")
        np.testing.assert_array_equal(got.numpy(), want)
