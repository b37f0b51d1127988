"""Targets beyond a class index: callable targets on any output (regression, multi-label,
segmentation), the output selector `output_key` of multi-output models, and the refusals of
the methods that need class scores (`tfsal.targets`)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SIZE, assert_same_snapshot, snapshot

import tfsal
import tfsal.model
from tfsal import TfsalError
from tfsal.loading import as_model

C = 2  # the segmentation class explained
MASK = np.zeros((SIZE, SIZE), np.float32)
MASK[3:9, 5:14] = 1.0


def region(out):
    """The segmentation score of class C summed over MASK, one value per image."""
    return tf.reduce_sum(out[..., C] * MASK, axis=[1, 2])


def label_3(out):
    return out[:, 3]


@pytest.fixture
def probe():
    return np.random.default_rng(7).random((3, SIZE, SIZE, 3)).astype(np.float32)


def _trunk(inp):
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv1")(inp)
    return keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv2")(x)


def segmenter(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Conv2D(4, 1, activation="softmax", name="classes")(_trunk(inp))
    return keras.Model(inp, out, name="segmenter")


def regressor(seed: int = 1, units: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(_trunk(inp))
    return keras.Model(inp, keras.layers.Dense(units, name="values")(pooled), name="regressor")


def multi_label(seed: int = 2) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(_trunk(inp))
    out = keras.layers.Dense(5, activation="sigmoid", name="labels")(pooled)
    return keras.Model(inp, out, name="multi_label")


def tape(model, images, function, preprocess=lambda x: x):
    """The hand-written gradient of Σ function(model(preprocess(x))) w.r.t. the pixels x."""
    x = tf.constant(images)
    with tf.GradientTape() as t:
        t.watch(x)
        total = tf.reduce_sum(function(model(preprocess(x))))
    return t.gradient(total, x).numpy()


def assert_close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(b).max()))


# ------------------------------------------------------------------ gradients = the tape
def test_a_regression_models_gradient_is_the_tape(probe):
    user = regressor()
    before = snapshot(user, probe)
    first = lambda out: out[:, 0]  # noqa: E731
    assert_close(tfsal.vanilla_gradient(user, probe, first), tape(user, probe, first))
    mixed = lambda out: out[:, 1] - 2.0 * out[:, 2]  # noqa: E731
    model = tfsal.Model(user, preprocess="tf")
    assert_close(tfsal.vanilla_gradient(model, probe, mixed),
                 tape(user, probe, mixed, preprocess=lambda x: 2.0 * x - 1.0))
    assert_close(tfsal.gradient_x_input(model, probe, mixed),
                 probe * tape(user, probe, mixed, preprocess=lambda x: 2.0 * x - 1.0))
    assert_close(model.target_scores(probe, mixed), mixed(user(2.0 * probe - 1.0)).numpy())
    # a single value per image, (N,): the callable passes it on
    squeezed = keras.Model(user.input, keras.layers.Reshape(())(
        keras.layers.Dense(1)(user.get_layer("values").output)))
    same = lambda out: out  # noqa: E731
    assert_close(tfsal.vanilla_gradient(squeezed, probe, same), tape(squeezed, probe, same))
    assert_same_snapshot(before, snapshot(user, probe))


def test_a_segmentation_region_target_is_the_tape_of_the_masked_sum(probe):
    user = segmenter()
    before = snapshot(user, probe)
    model = tfsal.Model(user)
    assert "callable targets only" in repr(model)
    # softmax kept: the callable sees the probabilities the model returns
    assert_close(tfsal.vanilla_gradient(model, probe, region), tape(user, probe, region))
    # Grad-CAM of the region at conv2: ReLU(Σ_k mean(∂f/∂A_k) A_k), A from a tape of its own
    trunk = keras.Model(user.input, user.get_layer("conv2").output)
    head = user.get_layer("classes")
    with tf.GradientTape() as t:
        features = trunk(tf.constant(probe))
        t.watch(features)
        total = tf.reduce_sum(region(head(features)))
    weights = tf.reduce_mean(t.gradient(total, features), axis=[1, 2])
    expected = np.maximum(np.einsum("nhwk,nk->nhw", features.numpy(), weights.numpy()), 0)
    assert_close(tfsal.grad_cam(model, probe, region, layer="conv2"), expected)
    assert_same_snapshot(before, snapshot(user, probe))


def test_a_multi_label_sigmoid_head_takes_label_callables(probe):
    user = multi_label()
    model = tfsal.Model(user)  # no output= needed for callable targets
    assert_close(tfsal.vanilla_gradient(model, probe, label_3), tape(user, probe, label_3))
    both = lambda out: out[:, 1] + out[:, 3]  # noqa: E731
    assert_close(tfsal.vanilla_gradient(model, probe, both),
                 tape(user, probe, lambda out: out[:, 1]) + tape(user, probe, label_3))
    # the label's logit, from its probability
    logit = lambda out: tf.math.log(out[:, 3]) - tf.math.log1p(-out[:, 3])  # noqa: E731
    pre = keras.Model(user.input, keras.layers.Dense(5, name="z")(user.layers[-2].output))
    pre.get_layer("z").set_weights(user.get_layer("labels").get_weights())
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, probe, logit),
                               tape(pre, probe, label_3), rtol=1e-3, atol=1e-5)
    with pytest.raises(TfsalError, match="multi-label sigmoid.*callable target"):
        tfsal.vanilla_gradient(model, probe, 3)


# ------------------------------------------------------------------ the output selector
def test_the_selected_head_is_the_model_of_that_head_alone(probe):
    keras.utils.set_random_seed(3)
    inp = keras.Input((SIZE, SIZE, 3))
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(_trunk(inp))
    classes = keras.layers.Dense(4, activation="softmax", name="classes")(pooled)
    values = keras.layers.Dense(2, name="values")(pooled)
    masks = keras.layers.Conv2D(4, 1, activation="softmax", name="masks")(
        keras.layers.Activation("linear", name="features")(inp))
    user = keras.Model(inp, [classes, values, masks], name="three_heads")
    before = [w.copy() for w in user.get_weights()], [o.numpy() for o in user(probe)]
    alone = {name: keras.Model(inp, head) for name, head in
             [("classes", classes), ("values", values), ("masks", masks)]}
    with pytest.raises(TfsalError, match=r"output_key= choosing one of its outputs \['classes', "
                                         r"'values', 'masks'\].*received 3 outputs"):
        tfsal.Model(user)
    with pytest.raises(TfsalError, match="output_key naming one of the outputs.*"
                                         "received output_key='nope'"):
        tfsal.Model(user, output_key="nope")
    by_name, by_index = tfsal.Model(user, output_key="classes"), tfsal.Model(user, output_key=0)
    expected = tfsal.vanilla_gradient(alone["classes"], probe, 2)  # logits recovered per head
    assert_close(tfsal.vanilla_gradient(by_name, probe, 2), expected)
    assert_close(tfsal.vanilla_gradient(by_index, probe, 2), expected)
    assert_close(tfsal.guided_backprop(by_name, probe, 2),
                 tfsal.guided_backprop(alone["classes"], probe, 2))
    np.testing.assert_array_equal(by_name.predicted_classes(probe),
                                  np.argmax(alone["classes"](probe), axis=1))
    loaded = tfsal.load_model(user, output_key="values")
    second = lambda out: out[:, 1]  # noqa: E731
    assert_close(tfsal.vanilla_gradient(loaded, probe, second),
                 tape(alone["values"], probe, second))
    masks_model = tfsal.Model(user, output_key=-1)
    assert_close(tfsal.vanilla_gradient(masks_model, probe, region),
                 tape(alone["masks"], probe, region))
    with pytest.raises(TfsalError, match=r"received output shape \(None, 16, 16, 4\)"):
        tfsal.vanilla_gradient(masks_model, probe, 0)
    # the user's model is unchanged: same weights, same outputs
    for a, b in zip(before[0], user.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(before[1], user(probe)):
        np.testing.assert_array_equal(a, b.numpy())
    single = regressor()
    with pytest.raises(TfsalError, match="expected no output_key.*received output_key='values'"):
        tfsal.load_model(single, output_key="values")


def test_a_callable_with_a_dict_of_outputs_and_a_dict_output_model(probe):
    user = segmenter()
    both = lambda x: {"masks": user(x), "mean": tf.reduce_mean(user(x), axis=[1, 2])}  # noqa
    picked = tfsal.Model(both, output_key="masks")
    assert_close(tfsal.vanilla_gradient(picked, probe, region), tape(user, probe, region))
    with pytest.raises(TfsalError, match=r"output_key= choosing one of its outputs"):
        tfsal.vanilla_gradient(tfsal.Model(both), probe, region)
    inp = keras.Input((SIZE, SIZE, 3))
    keyed = keras.Model(inp, {"seg": user(inp), "pooled": keras.layers.GlobalAveragePooling2D()(
        user(inp))})
    assert_close(tfsal.vanilla_gradient(tfsal.Model(keyed, output_key="seg"), probe, region),
                 tape(user, probe, region))


# ------------------------------------------------------------------ sampled and rule methods
def test_smoothgrad_of_a_callable_target_is_its_definition(probe):
    user = segmenter()
    model = tfsal.Model(user)
    n, level, seed = 3, 0.2, 5
    sigma = level * (probe.max(axis=(1, 2, 3)) - probe.min(axis=(1, 2, 3)))
    expected = np.mean([tape(user, probe + sigma[:, None, None, None] * np.random.default_rng(
        [seed, j]).standard_normal(probe.shape[1:], np.float32), region) for j in range(n)],
        axis=0)
    on_device = tfsal.smoothgrad(model, probe, region, n_samples=n, noise_level=level, seed=seed)
    assert_close(on_device, expected)

    def host(m, images, targets):  # not a plain-gradient method: the host loop (noisy
        return tfsal.vanilla_gradient.compute(m, images, targets)  # images leave [0, 1])

    assert_close(tfsal.smoothgrad(model, probe, region, method=host, n_samples=n, noise_level=level,
                 seed=seed), expected)
    assert tfsal.vargrad(model, probe, region, n_samples=n, seed=seed).min() >= 0
    assert_close(tfsal.smoothgrad(model, probe, region, n_samples=2, noise_level=0.0),
                 tfsal.vanilla_gradient(model, probe, region))


def test_integrated_gradients_of_a_linear_regression_is_exact(probe):
    keras.utils.set_random_seed(4)
    user = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(2)])
    kernel, bias = user.layers[-1].get_weights()
    second = lambda out: out[:, 1]  # noqa: E731
    ig = tfsal.integrated_gradients(user, probe, second, baseline="white", steps=4)
    w = kernel[:, 1].reshape(SIZE, SIZE, 3)
    assert_close(ig, (probe - 1.0) * w)
    # completeness: Σ IG = f(x) − f(baseline)
    np.testing.assert_allclose(
        ig.reshape(len(probe), -1).sum(1),
        (probe.reshape(len(probe), -1) - 1.0) @ kernel[:, 1], rtol=1e-4, atol=1e-4)
    delta = tfsal.completeness_delta(user, probe, ig, second, baseline="white")
    np.testing.assert_allclose(delta, 0, atol=1e-3)
    # SmoothGrad of a linear model is its weight row whatever the noise
    assert_close(tfsal.smoothgrad(user, probe, second, n_samples=3, seed=0),
                 np.broadcast_to(w, ig.shape))
    assert np.isfinite(bias).all()


def test_guided_backprop_of_a_callable_target_is_the_hand_derived_pass(probe):
    keras.utils.set_random_seed(5)
    user = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(6, activation="relu"), keras.layers.Dense(3)])
    (w1, b1), (w2, _) = user.layers[1].get_weights(), user.layers[2].get_weights()
    c = np.array([1.0, -2.0, 0.5], np.float32)
    target = lambda out: tf.reduce_sum(out * c, axis=1)  # noqa: E731
    x = probe.reshape(len(probe), -1)
    z = x @ w1 + b1
    r = np.broadcast_to(w2 @ c, z.shape)  # what reaches the hidden units
    guided = ((z > 0) * (r > 0) * r) @ w1.T
    assert_close(tfsal.guided_backprop(user, probe, target), guided.reshape(probe.shape))
    deconv = (np.maximum(r, 0)) @ w1.T
    assert_close(tfsal.deconvnet(user, probe, target), deconv.reshape(probe.shape))
    plain = ((z > 0) * r) @ w1.T
    assert_close(tfsal.vanilla_gradient(user, probe, target), plain.reshape(probe.shape))
    # ε-LRP and DeepLIFT run the callable's gradient through their rules too
    assert np.isfinite(tfsal.epsilon_lrp(user, probe, target)).all()
    lift = tfsal.deeplift(user, probe, target)
    np.testing.assert_allclose(lift.reshape(len(probe), -1).sum(1),
                               target(user(probe)).numpy() - target(user(0 * probe)).numpy(),
                               rtol=1e-4, atol=1e-5)


class _SavedSegmenter(tf.Module):
    def __init__(self, keras_model):
        super().__init__()
        self.model = keras_model

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        return self.model(images)


def test_a_saved_segmentation_model_gives_the_keras_numbers(probe, tmp_path):
    user = segmenter()
    module = _SavedSegmenter(user)
    tf.saved_model.save(module, str(tmp_path / "seg"),
                        signatures={"serving_default": module.__call__})
    loaded = tfsal.load_model(tmp_path / "seg")
    assert_close(tfsal.vanilla_gradient(loaded, probe, region), tape(user, probe, region))
    assert_close(tfsal.guided_backprop(loaded, probe, region),
                 tfsal.guided_backprop(user, probe, region))
    assert_close(tfsal.integrated_gradients(loaded, probe, region, steps=4),
                 tfsal.integrated_gradients(user, probe, region, steps=4))


# ------------------------------------------------------------------ refusals
@pytest.mark.parametrize("call, what", [
    (lambda m, x: tfsal.cam(m, x, label_3), "CAM.*row of the dense head"),
    (lambda m, x: tfsal.signed_maps(m, x, label_3), "signed maps.*every other class"),
    (lambda m, x: tfsal.nonlinear_saliency(m, x, label_3), "the nonlinear saliency loop.*softmax"),
    (lambda m, x: tfsal.fgsm(m, x, label_3), "attacks.*cross-entropy"),
    (lambda m, x: tfsal.bim(m, x, label_3, n_iter=1), "attacks"),
], ids=["cam", "signed_maps", "nonlinear", "fgsm", "bim"])
def test_methods_that_need_class_scores_refuse_a_callable(call, what, probe):
    model = tfsal.Model(regressor(units=5))
    with pytest.raises(TfsalError, match=f"expected class targets.*for {what}.*received a "
                                         f"callable target"):
        call(model, probe)


@pytest.mark.parametrize("function, received", [
    (lambda out: out[:, :2], r"shape \(N,\) for the output of shape \(None, 3\), "
                             r"received shape \(None, 2\)"),
    (lambda out: tf.reduce_sum(out), r"shape \(N,\).*received shape \(\)"),
    (lambda out: tf.reshape(out[:, :2], [-1]), r"received 6 values for 3 images"),
    (lambda out: tf.cast(out[:, 0], tf.int32), "a float tensor of shape \\(N,\\), received "
                                               "int32 values"),
    (lambda out: out[:, 7], r"output \(shape \(None, 3\)\).*raised ValueError"),
    (lambda out: tf.ones([3]), "values do not depend on them|received shape \\(3,\\)"),
    (lambda out: tf.zeros_like(out[:, 0]) + tf.stop_gradient(out[:, 0]),
     "values do not depend on them"),
], ids=["n_by_2", "scalar", "too_many", "integers", "raises", "constant", "detached"])
def test_a_callable_returning_the_wrong_values_is_refused(function, received, probe):
    model = tfsal.Model(regressor())
    with pytest.raises(TfsalError, match="expected a callable target.*" + received):
        tfsal.vanilla_gradient(model, probe, function)


def test_class_operations_on_other_outputs_say_pass_a_callable(probe):
    model = tfsal.Model(segmenter())
    for call in (lambda: tfsal.vanilla_gradient(model, probe),
                 lambda: tfsal.integrated_gradients(model, probe, 1, steps=2),
                 lambda: model.predict(probe), lambda: model.predicted_classes(probe),
                 lambda: model.num_classes):
        with pytest.raises(TfsalError, match=r"expected a model output of \(N, classes\).*"
                                             r"received output shape \(None, 16, 16, 4\).*"
                                             r"callable target"):
            call()
    with pytest.raises(TfsalError, match="expected score=None with a callable target.*"
                                         "received score='probability'"):
        tfsal.vanilla_gradient(model, probe, region, score="probability")
    with pytest.raises(TfsalError, match="expected score=None"):
        tfsal.smoothgrad(model, probe, region, n_samples=2, score="logit")


# ------------------------------------------------------------------ compiled functions
def test_the_same_callable_is_traced_once_and_another_anew(probe, monkeypatch):
    seen, trace = [], tfsal.model._trace
    monkeypatch.setattr(tfsal.model, "_trace", lambda f: seen.append(f) or trace(f))
    user = segmenter()
    calls = [lambda t: tfsal.vanilla_gradient(user, probe, t),
             lambda t: tfsal.smoothgrad(user, probe, t, n_samples=2, seed=0),
             lambda t: tfsal.integrated_gradients(user, probe, t, steps=2),
             lambda t: tfsal.guided_backprop(user, probe, t),
             lambda t: tfsal.grad_cam(user, probe, t)]
    first = [call(region) for call in calls]
    traced = len(seen)
    assert traced >= len(calls)
    again = [call(region) for call in calls]
    assert len(seen) == traced  # the same callable object: no retrace
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert as_model(user).tracing_count() == traced

    def other(out):
        return 2.0 * region(out)

    assert_close(tfsal.vanilla_gradient(user, probe, other), 2.0 * first[0])
    assert len(seen) == traced + 1  # another callable: its own function

    class Regions:
        def __init__(self, c):
            self.c = c

        def score(self, out):  # a bound method is a new object at every access
            return tf.reduce_sum(out[..., self.c] * MASK, axis=[1, 2])

    regions = Regions(C)
    assert_close(tfsal.vanilla_gradient(user, probe, regions.score), first[0])
    assert_close(tfsal.vanilla_gradient(user, probe, regions.score), first[0])
    assert len(seen) == traced + 2
    assert_close(tfsal.vanilla_gradient(user, probe, Regions(C).score), first[0])
    assert len(seen) == traced + 3  # another object's method: traced anew


def test_a_callable_target_resolves_once_for_its_images(probe):
    model = tfsal.Model(regressor())
    resolved = model.resolve_targets(probe, lambda out: out[:, 0])
    assert len(resolved) == len(probe) and len(resolved[1:]) == len(probe) - 1
    with pytest.raises(TfsalError, match="callable target resolved for 2 images, received "
                                         "one for 3"):
        model.resolve_targets(probe[:2], resolved)
    with pytest.raises(TfsalError, match="expected class targets.*for this computation"):
        np.asarray(resolved)
