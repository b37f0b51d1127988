"""Conventions that make tfsal bit-faithful to the source papers' code.

1. RectGrad's percentile rank: the authors' TF1 `tf.contrib.distributions.percentile`
   ("nearest", float32, counted from the top) by default, NumPy's as an option.
2. Which input the "× input" methods multiply: the [0, 1] pixels (default) or the model's
   preprocessed input (the authors' notebooks feed [−1, 1] images).
3. DeepLIFT through max-pooling: the plain gradient (default, as DeepExplain and the DeepLIFT
   package) or `maxpool="rescale"`, which keeps summation-to-delta, layer by layer and op by op.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfsal
from tfsal import TfsalError
from tfsal.methods.gradient import model_input_zero, multiplied_input
from tfsal.overrides import Rescale, _window_path_shares, gradient_overrides, per_sample_percentile
from tfsal.selection import percentile_rank

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SIZE = 12


# ------------------------------------------------------------------- 1. percentile rank
def tf1_nearest_value(values: np.ndarray, q) -> np.ndarray:
    """TF 1.x contrib `percentile(values, q, axis=1, interpolation="nearest")`, emulated
    independently: q and the row length as float32 tensors, `1. - q / 100.`, `(d - 1) * frac`,
    `tf.round` (half to even) in float32, then that index of the descending `top_k` sort."""
    f32 = np.float32
    d = f32(values.shape[1])
    frac = np.subtract(f32(1.0), np.divide(f32(q), f32(100.0), dtype=f32), dtype=f32)
    index = np.rint(np.multiply(np.subtract(d, f32(1.0), dtype=f32), frac, dtype=f32))
    assert index.dtype == np.float32
    descending = -np.sort(-values, axis=1)
    return descending[:, int(index)]


SIZES = sorted(set(range(1, 240)) | {256, 496, 516, 1016, 4096, 4116, 25088, 65536, 65556,
                                     100026, 100126, 802816})
QS = (0, 0.01, 1, 12.5, 20, 25, 37.5, 50, 60, 62.5, 70, 75, 87.5, 90, 95, 97.5, 98, 99, 99.99,
      100)


def test_percentile_rank_follows_each_rule_for_many_sizes_and_percentiles():
    for n in SIZES:
        ascending = np.arange(n, dtype=np.float64)[None]  # value == ascending rank
        for q in QS:
            assert percentile_rank(n, q, "authors") == tf1_nearest_value(ascending, q)[0], (n, q)
            assert percentile_rank(n, q, "numpy") == np.percentile(
                ascending[0], q, method="nearest"), (n, q)
    assert percentile_rank(100, 50) == percentile_rank(100, 50, "authors")  # the default


@pytest.mark.parametrize("q, differs", [
    (50, lambda n: n % 2 == 0),
    (90, lambda n: n % 20 == 16),  # VGG16's block3 at 224 px: 56·56·256 = 802816
    (98, lambda n: n % 100 == 26)])
def test_the_rules_pick_adjacent_ranks_exactly_in_the_known_families(q, differs):
    for n in range(1, 3001):
        a, b = percentile_rank(n, q, "authors"), percentile_rank(n, q, "numpy")
        assert (a != b) == differs(n) and abs(a - b) <= 1, (n, q, a, b)
    assert percentile_rank(802816, 90, "authors") == percentile_rank(802816, 90, "numpy") - 1


@pytest.mark.parametrize("how", [None, "top_k", "numpy", "radix"])
@pytest.mark.parametrize("n", [16, 26, 126, 2116])
def test_per_sample_percentile_values_follow_both_rules(how, n):
    rng = np.random.default_rng(n)
    values = (rng.normal(size=(3, n)) * (rng.random((3, n)) > 0.3)).astype(np.float32)
    values[1] = np.round(values[1] * 3) / 3  # ties
    for q in (50, 90, 98):
        authors = per_sample_percentile(tf.constant(values), q, how).numpy().ravel()
        np.testing.assert_array_equal(authors, tf1_nearest_value(values, q))
        numpy = per_sample_percentile(tf.constant(values), q, how, rank="numpy").numpy().ravel()
        np.testing.assert_array_equal(numpy, np.percentile(values, q, axis=1, method="nearest"))


def dense_relu(units: int, seed: int = 0) -> keras.Model:
    """x -> Dense(units) -> ReLU (every unit active: bias 5) -> Dense(4) logits."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((3, 3, 3))
    hidden = keras.layers.Dense(units, activation="relu", bias_initializer=keras.initializers
                                .Constant(5.0), name="hidden")(keras.layers.Flatten()(inp))
    return keras.Model(inp, keras.layers.Dense(4, name="out")(hidden))


@pytest.mark.parametrize("units, q", [(6, 50), (16, 90), (26, 98)])
def test_default_rectgrad_thresholds_at_the_authors_rank(units, q):
    model = dense_relu(units)
    x = np.random.default_rng(1).random((3, 3, 3, 3)).astype(np.float32)
    w1, b1 = model.get_layer("hidden").get_weights()
    w2 = model.get_layer("out").get_weights()[0]
    a = np.maximum(x.reshape(3, -1) @ w1 + b1, 0)
    r = np.broadcast_to(w2[:, 2], a.shape)
    assert (a > 0).all()

    def expected(tau):
        return ((r * (a * r > tau[:, None])) @ w1.T).reshape(x.shape) * x

    by_authors = expected(tf1_nearest_value(a * r, q))
    by_numpy = expected(np.percentile(a * r, q, axis=1, method="nearest"))
    assert np.abs(by_authors - by_numpy).max() > 1e-3  # the ranks differ here
    options = dict(percentile=q, padding_trick=False)
    np.testing.assert_allclose(tfsal.rectgrad(model, x, 2, **options), by_authors,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tfsal.rectgrad(model, x, 2, rank="numpy", **options), by_numpy,
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(TfsalError, match="rank"):
        tfsal.rectgrad(model, x, 2, rank="tfp")


# ------------------------------------------------------------------- 2. which input
def relu_cnn(seed: int = 0, bias: bool = True, pool: str = "max") -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", use_bias=bias)(inp)
    x = (keras.layers.MaxPooling2D if pool == "max" else keras.layers.AveragePooling2D)(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=bias)(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(4, use_bias=bias)(x))


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(2).random((3, SIZE, SIZE, 3)).astype(np.float32)


PREPROCESS = {"tf": lambda x: x * 2.0 - 1.0,
              "caffe": lambda x: x[..., ::-1] * 255.0 - tf.constant([103.939, 116.779, 123.68]),
              "torch": lambda x: (x - tf.constant([0.485, 0.456, 0.406]))
              / tf.constant([0.229, 0.224, 0.225])}


def model_input_gradient(keras_model, preprocess, x, target):
    """∂logit/∂x_in at x_in = P(x), by a tape on the model input itself; and x_in."""
    x_in = tf.constant(PREPROCESS[preprocess](tf.constant(x)))
    with tf.GradientTape() as tape:
        tape.watch(x_in)
        total = tf.reduce_sum(keras_model(x_in)[:, target])
    return tape.gradient(total, x_in).numpy(), x_in.numpy()


@pytest.mark.parametrize("preprocess", ["tf", "caffe", "torch"])
def test_model_input_gradient_x_input_is_the_model_input_attribution(preprocess, pixels):
    user = relu_cnn()
    model = tfsal.Model(user, preprocess=preprocess)
    grad_in, x_in = model_input_gradient(user, preprocess, pixels, 1)
    direct = grad_in * x_in
    if preprocess == "caffe":  # BGR model input, back to the pixels' RGB order
        direct = direct[..., ::-1]
    ours = tfsal.gradient_x_input(model, pixels, 1, multiply_by="model_input")
    np.testing.assert_allclose(ours, direct, rtol=1e-4, atol=1e-5 * np.abs(direct).max())
    assert np.abs(ours - tfsal.gradient_x_input(model, pixels, 1)).max() > 0.1 * np.abs(
        ours).max()


def test_tf_preprocessing_hand_derived(pixels):
    """x_in = 2x − 1: ∂S/∂x_in = ∂S/∂x / 2, so the map is ∂S/∂x / 2 · (2x − 1); the same
    factor for ε-LRP and RectGrad (their modified gradients), and the zero threshold on it."""
    model = tfsal.Model(relu_cnn(), preprocess="tf")
    factor = (2 * pixels - 1) / 2
    grad = tfsal.vanilla_gradient(model, pixels, 0)
    np.testing.assert_allclose(tfsal.gradient_x_input(model, pixels, 0, multiply_by="model_input"),
                               grad * factor, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(multiplied_input(model, pixels, multiply_by="model_input"), factor,
                               rtol=1e-6, atol=1e-7)
    lrp = tfsal.epsilon_lrp(model, pixels, 0, multiply_by="model_input")
    np.testing.assert_allclose(lrp, tfsal.epsilon_lrp(model, pixels, 0) / pixels * factor,
                               rtol=1e-3, atol=1e-6)
    rule = tfsal.overrides.Rectified()
    rect = model.input_gradients(pixels, 0, rule=rule)
    np.testing.assert_allclose(tfsal.rectgrad(model, pixels, 0, multiply_by="model_input"),
                               rect * factor, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        tfsal.rectgrad(model, pixels, 0, multiply_by="model_input", zero_threshold=True),
        np.maximum(rect * factor, 0), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(model_input_zero(model, pixels), np.full_like(pixels, 0.5))


def test_completeness_identities(pixels):
    """A bias-free ReLU network is positively homogeneous in its input, so (Euler)
    Σ ∂S/∂x_in · x_in = S(x) − S(x_in = 0): complete with "model_input", not with "pixels".
    Path methods give the same map either way for affine preprocessing (chain rule)."""
    model = tfsal.Model(relu_cnn(bias=False, pool="avg"), preprocess="tf")
    score = model.target_scores(pixels, 3)
    assert np.abs(model.target_scores(model_input_zero(model, pixels), 3)).max() < 1e-6
    for method, options in ((tfsal.gradient_x_input, {}), (tfsal.epsilon_lrp, {"epsilon": 1e-9})):
        total = method(model, pixels, 3, multiply_by="model_input", **options).sum(axis=(1, 2, 3))
        np.testing.assert_allclose(total, score, rtol=1e-4)
        pixel_total = method(model, pixels, 3, **options).sum(axis=(1, 2, 3))
        assert np.abs(pixel_total - score).max() > 1e-2 * np.abs(score).max()
    for baseline in ("black", 0.3):
        for method, options in ((tfsal.deeplift, {}), (tfsal.integrated_gradients, {"steps": 8})):
            pix = method(model, pixels, 3, baseline=baseline, **options)
            inp = method(model, pixels, 3, baseline=baseline, multiply_by="model_input",
                         **options)
            np.testing.assert_allclose(inp, pix, rtol=1e-4, atol=1e-6 * np.abs(pix).max())
    # the authors' IG / DeepLIFT baseline: zero model input
    zero = model_input_zero(model, pixels)
    lift = tfsal.deeplift(model, pixels, 3, baseline=zero, multiply_by="model_input")
    np.testing.assert_allclose(lift.sum(axis=(1, 2, 3)), score, rtol=1e-4)


def test_caffe_and_callable_zero_inputs(pixels):
    model = tfsal.Model(relu_cnn(), preprocess="caffe")
    zero = model_input_zero(model, pixels[:1])
    np.testing.assert_allclose(zero[0, 0, 0], np.array([123.68, 116.779, 103.939]) / 255,
                               rtol=1e-5)
    lite = tfsal.Model(relu_cnn(), preprocess=lambda x: (x * 255.0 - 127.0) / 128.0)
    np.testing.assert_allclose(model_input_zero(lite, pixels[:1]), 127 / 255, rtol=1e-5)


def test_model_input_refuses_what_has_no_per_pixel_form(pixels):
    mix = tf.constant(np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]], np.float32))
    mixing = tfsal.Model(relu_cnn(), preprocess=lambda x: tf.tensordot(x, mix, 1))
    with pytest.raises(TfsalError, match="mixes pixel values"):
        tfsal.gradient_x_input(mixing, pixels, 0, multiply_by="model_input")
    np.testing.assert_array_equal(tfsal.gradient_x_input(mixing, pixels, 0),
                                  tfsal.vanilla_gradient(mixing, pixels, 0) * pixels)
    gamma = tfsal.Model(relu_cnn(), preprocess=lambda x: tf.sqrt(x + 0.1))
    with pytest.raises(TfsalError, match="affine"):
        tfsal.integrated_gradients(gamma, pixels, 0, steps=2, multiply_by="model_input")
    # per element but not affine: ∂S/∂x_in · x_in = ∂S/∂x · P(x) / P'(x)
    got = tfsal.gradient_x_input(gamma, pixels, 0, multiply_by="model_input")
    want = tfsal.vanilla_gradient(gamma, pixels, 0) * 2 * (pixels + 0.1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    with pytest.raises(TfsalError, match="multiply_by"):
        tfsal.gradient_x_input(mixing, pixels, 0, multiply_by="input")


def test_rectgrad_reproduction_uses_the_authors_conventions(pixels):
    from tfsal.reproduce.rectified_gradient import threshold_sweep

    model = tfsal.Model(relu_cnn(), preprocess="tf")
    masks = np.zeros(pixels.shape[:3], bool)
    masks[:, 3:9, 3:9] = True
    default = threshold_sweep(model, pixels, masks, percentiles=(50, 98))
    assert default == threshold_sweep(model, pixels, masks, percentiles=(50, 98),
                                      multiply_by="model_input", rank="authors")
    assert default != threshold_sweep(model, pixels, masks, percentiles=(50, 98),
                                      multiply_by="pixels")


# ------------------------------------------------------------------- 3. DeepLIFT max-pool
def relative_gap(model, images, target, baseline, attribution) -> np.ndarray:
    return tfsal.completeness_delta(model, images, attribution, target, baseline=baseline,
                                    relative=True)


def pooled_cnn(seed: int = 3) -> keras.Model:
    """conv + ReLU + MaxPool(2) + conv + ReLU + MaxPool(3, stride 2, SAME) + dense."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(5)(x), name="pooled")


@pytest.fixture(scope="module")
def pooled():
    return pooled_cnn()


def test_rescale_max_pool_keeps_summation_to_delta(pooled, pixels):
    model = tfsal.Model(pooled, preprocess="tf")
    worst_default = 0.0
    for baseline in ("black", "white", 0.3):
        exact = tfsal.deeplift(model, pixels, 2, baseline=baseline, maxpool="rescale")
        assert np.abs(relative_gap(model, pixels, 2, baseline, exact)).max() < 1e-4
        default = tfsal.deeplift(model, pixels, 2, baseline=baseline)
        worst_default = max(worst_default, np.abs(relative_gap(model, pixels, 2, baseline,
                                                               default)).max())
    assert worst_default > 0.1  # the documented default: the plain gradient breaks the sum


def test_rescale_max_pool_is_the_gradient_without_max_pooling(pixels):
    model = tfsal.Model(relu_cnn(pool="avg"))
    np.testing.assert_array_equal(tfsal.deeplift(model, pixels, 1, maxpool="rescale"),
                                  tfsal.deeplift(model, pixels, 1))
    with pytest.raises(TfsalError, match="maxpool"):
        tfsal.deeplift(model, pixels, 1, maxpool="scale")


def test_window_path_shares_are_path_averaged_gradients():
    """Against a fine midpoint sum of the argmax along the path (first index wins ties)."""
    rng = np.random.default_rng(4)
    k, n = 4, 400
    x0 = rng.integers(-2, 3, (n, k)).astype(np.float32)  # many ties and parallel lines
    x = x0 + rng.integers(-2, 3, (n, k)).astype(np.float32)
    x[:50] = x0[:50]  # no change: all to the reference's first maximum
    views = [tf.constant(x[:, i].reshape(1, n, 1, 1)) for i in range(k)]
    views0 = [tf.constant(x0[:, i].reshape(1, n, 1, 1)) for i in range(k)]
    masks = [tf.ones((1, n, 1, 1), tf.bool)] * k
    shares = np.stack([s.numpy().ravel() for s in _window_path_shares(views, views0, masks)], 1)
    alphas = (np.arange(20000) + 0.5) / 20000
    path = x0[:, None] + alphas[None, :, None] * (x - x0)[:, None]
    expected = np.stack([(path.argmax(axis=2) == i).mean(axis=1) for i in range(k)], 1)
    np.testing.assert_allclose(shares, expected, atol=2e-4)
    np.testing.assert_allclose(shares.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose((shares * (x - x0)).sum(axis=1), x.max(1) - x0.max(1), atol=1e-5)


def test_rescale_refuses_other_max_poolings(pixels):
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalMaxPooling2D()(x)))
    with pytest.raises(TfsalError, match="GlobalMaxPooling2D"):
        tfsal.deeplift(model, pixels, 0, maxpool="rescale")
    assert np.isfinite(tfsal.deeplift(model, pixels, 0)).all()


class PoolNet(tf.Module):
    """conv -> ReLU -> MaxPool, MaxPoolV2 (ksize / strides as inputs) or MaxPool3D -> dense,
    as a SavedModel signature."""

    def __init__(self, kind):
        super().__init__()
        rng = np.random.default_rng(5)
        self.kernel = tf.Variable(rng.normal(size=(3, 3, 3, 6)).astype(np.float32) * 0.3)
        self.dense = tf.Variable(rng.normal(size=(6 * 36, 4)).astype(np.float32) * 0.1)
        self.kind = kind

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def serve(self, x):
        a = tf.nn.relu(tf.nn.conv2d(x, self.kernel, 1, "SAME") - 0.2)
        if self.kind == "3d":
            p = tf.nn.max_pool3d(a[..., None], [1, 2, 2, 1, 1], [1, 2, 2, 1, 1], "VALID")[..., 0]
        elif self.kind == "v2":
            p = tf.raw_ops.MaxPoolV2(input=a, ksize=[1, 2, 2, 1], strides=[1, 2, 2, 1],
                                     padding="VALID")
        else:
            p = tf.nn.max_pool2d(a, 2, 2, "VALID")
        return {"logits": tf.matmul(tf.reshape(p, [-1, 6 * 36]), self.dense)}


def test_rescale_max_pool_op_by_op(pooled, pixels, tmp_path):
    """Loaded graphs: MaxPool ops give the Keras numbers, MaxPoolV2 the MaxPool ones (PRR
    too), MaxPool3D is refused."""
    pooled.export(tmp_path / "keras", verbose=False)
    keras_side = tfsal.Model(pooled, preprocess="tf")
    loaded = tfsal.load_model(tmp_path / "keras", preprocess="tf")
    assert "MaxPool" in gradient_overrides(Rescale(maxpool="rescale"))
    assert "MaxPool" not in gradient_overrides(Rescale())
    expected = tfsal.deeplift(keras_side, pixels, 1, maxpool="rescale")
    got = tfsal.deeplift(loaded, pixels, 1, maxpool="rescale")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert np.abs(relative_gap(loaded, pixels, 1, "black", got)).max() < 1e-4
    models = {}
    for kind in ("v1", "v2", "3d"):
        module = PoolNet(kind)
        tf.saved_model.save(module, str(tmp_path / kind),
                            signatures={"serving_default": module.serve})
        models[kind] = tfsal.load_model(tmp_path / kind)
    with pytest.raises(TfsalError, match="MaxPool3D"):
        tfsal.deeplift(models["3d"], pixels, 1, maxpool="rescale")
    exact = tfsal.deeplift(models["v2"], pixels, 1, maxpool="rescale", baseline="white")
    assert np.abs(relative_gap(models["v2"], pixels, 1, "white", exact)).max() < 1e-4
    np.testing.assert_allclose(exact, tfsal.deeplift(models["v1"], pixels, 1, maxpool="rescale",
                                                     baseline="white"), rtol=1e-5, atol=1e-7)
    default = tfsal.deeplift(models["v2"], pixels, 1, baseline="white")
    assert np.abs(relative_gap(models["v2"], pixels, 1, "white", default)).max() > 1e-2
    prr = tfsal.rectgrad(models["v2"], pixels, 1, prr=True, percentile=50)
    np.testing.assert_allclose(prr, tfsal.rectgrad(models["v1"], pixels, 1, prr=True,
                                                   percentile=50), rtol=1e-5, atol=1e-7)
    assert np.abs(prr - tfsal.rectgrad(models["v2"], pixels, 1, percentile=50)).max() > 1e-4
