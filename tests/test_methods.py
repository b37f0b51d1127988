"""Axioms and identities of the gradient methods, and the contract every method keeps."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import SIZE, assert_same_snapshot, nested_cnn, snapshot, toy_cnn

import tfsal
from tfsal import TfsalError
from tfsal.methods import METHODS
from tfsal.methods.integrated import SCHEDULES, path_schedule

# Small settings so the contract table stays fast.
FAST = {"smoothgrad": dict(n_samples=3, seed=0), "vargrad": dict(n_samples=3, seed=0),
        "integrated_gradients": dict(steps=4)}
CAM_FAMILY = {"cam", "grad_cam"}


def linear_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Dense(3, name="predictions")(keras.layers.Flatten()(inp))
    return keras.Model(inp, out)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_contract(name, images):
    """Shape, dtype, finiteness, batched == per-example, NumPy == tf input, user model untouched."""
    user = toy_cnn()
    before = snapshot(user, images)
    method, kwargs = METHODS[name], FAST.get(name, {})
    batched = method(tfsal.Model(user, batch_size=2), images, [0, 1, 2, 3, 0], **kwargs)
    single = np.concatenate([method(tfsal.Model(user, batch_size=1), images[i:i + 1], [t],
                                    **kwargs) for i, t in enumerate([0, 1, 2, 3, 0])])
    from_tf = method(user, tf.constant(images), [0, 1, 2, 3, 0], **kwargs)
    expected_shape = images.shape[:1] + (SIZE // 2, SIZE // 2) if name in CAM_FAMILY \
        else images.shape
    assert batched.shape == expected_shape and batched.dtype == np.float32
    assert np.isfinite(batched).all() and np.abs(batched).sum() > 0
    np.testing.assert_allclose(batched, single, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(batched, from_tf, rtol=1e-4, atol=1e-6)
    assert_same_snapshot(before, snapshot(user, images))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_user_model_untouched_after_a_failure_mid_call(name, images):
    user = toy_cnn()
    before = snapshot(user, images)
    calls = []

    def failing_preprocess(x):  # fails while the compiled function is being traced
        calls.append(1)
        raise RuntimeError("forced failure")

    with pytest.raises(RuntimeError, match="forced failure"):
        METHODS[name](tfsal.Model(user, preprocess=failing_preprocess), images, 0,
                      **FAST.get(name, {}))
    assert calls
    assert_same_snapshot(before, snapshot(user, images))


def test_gradient_x_input_is_gradient_times_pixels(cnn, images):
    np.testing.assert_allclose(tfsal.gradient_x_input(cnn, images, 1),
                               tfsal.vanilla_gradient(cnn, images, 1) * images, rtol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_ig_is_exact_for_a_linear_model(schedule, images):
    user = linear_model()
    w = user.get_layer("predictions").kernel.numpy()[:, 2].reshape(SIZE, SIZE, 3)
    ig = tfsal.integrated_gradients(user, images, 2, steps=3, schedule=schedule)
    np.testing.assert_allclose(ig, w * images, rtol=1e-5, atol=1e-7)
    base = np.full_like(images, 0.25)
    ig = tfsal.integrated_gradients(user, images, 2, baseline=base, steps=3, schedule=schedule)
    np.testing.assert_allclose(ig, w * (images - 0.25), rtol=1e-4, atol=1e-6)
    delta = tfsal.completeness_delta(user, images, ig, 2, baseline=base)
    np.testing.assert_allclose(delta, 0, atol=1e-4)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_integrate_polynomials(schedule):
    nodes, weights = path_schedule(schedule, 8)
    assert np.all((nodes >= 0) & (nodes <= 1))
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-12)
    exact = {"left": 1e-1, "right": 1e-1, "midpoint": 1e-2, "trapezoid": 1e-2,
             "gauss_legendre": 1e-12, "graded": 1e-2}[schedule]
    assert abs(np.sum(weights * nodes**2) - 1 / 3) < exact


@pytest.mark.parametrize("baseline", ["black", "white", "noise", "blur", 0.5])
def test_ig_completeness_on_a_relu_network(baseline, images):
    user = toy_cnn(softmax=False)
    ig = tfsal.integrated_gradients(user, images, 1, baseline=baseline, steps=64, seed=3)
    rel = tfsal.completeness_delta(user, images, ig, 1, baseline=baseline, seed=3, relative=True)
    assert np.all(rel < 0.05), rel  # random ReLU net: kinks bound the quadrature accuracy


def test_ig_noise_baseline_is_seeded(images):
    from tfsal.methods.integrated import make_baseline
    a, b = make_baseline(images, "noise", seed=1), make_baseline(images, "noise", seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, make_baseline(images, "noise", seed=2))
    assert a.min() >= 0 and a.max() <= 1


@pytest.mark.parametrize("method", [tfsal.vanilla_gradient, tfsal.gradient_x_input])
def test_smoothgrad_without_noise_equals_the_wrapped_method(method, cnn, images):
    sg = tfsal.smoothgrad(cnn, images, 2, method=method, n_samples=3, noise_level=0.0, seed=0)
    np.testing.assert_allclose(sg, method(cnn, images, 2), rtol=1e-5, atol=1e-8)
    sq = tfsal.smoothgrad(cnn, images, 2, method=method, n_samples=3, noise_level=0.0,
                          squared=True, seed=0)
    np.testing.assert_allclose(sq, method(cnn, images, 2) ** 2, rtol=1e-5, atol=1e-12)
    vg = tfsal.vargrad(cnn, images, 2, method=method, n_samples=3, noise_level=0.0, seed=0)
    np.testing.assert_allclose(vg, 0, atol=1e-10)


def test_smoothgrad_seeds(cnn, images):
    a = tfsal.smoothgrad(cnn, images, n_samples=4, seed=7)
    np.testing.assert_array_equal(a, tfsal.smoothgrad(cnn, images, n_samples=4, seed=7))
    b = tfsal.smoothgrad(cnn, images, n_samples=4, seed=np.random.default_rng(5))
    np.testing.assert_array_equal(b, tfsal.smoothgrad(cnn, images, n_samples=4,
                                                      seed=np.random.default_rng(5)))
    assert not np.allclose(a, tfsal.smoothgrad(cnn, images, n_samples=4, seed=8))


def test_smoothgrad_wraps_any_callable(cnn, images):
    calls = []

    def method(model, batch, targets):
        calls.append(len(batch))
        return np.ones_like(batch)

    out = tfsal.smoothgrad(cnn, images, 0, method=method, n_samples=3, seed=0)
    np.testing.assert_allclose(out, 1.0)
    assert sum(calls) == 3 * len(images)


def test_grad_cam_on_a_hand_built_feature_map(images):
    """Feature map A = the image (1×1 identity conv), GAP, dense w: Grad-CAM = ReLU(Σ_k w_kc A_k)/HW
    and CAM = Σ_k w_kc A_k."""
    inp = keras.Input((SIZE, SIZE, 3))
    feat = keras.layers.Conv2D(3, 1, use_bias=False, name="features")(inp)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(feat)
    out = keras.layers.Dense(2, name="predictions")(pooled)
    user = keras.Model(inp, out)
    w = np.array([[1.0, -2.0], [-3.0, 0.5], [2.0, 1.0]], np.float32)
    user.get_layer("predictions").set_weights([w, np.zeros(2, np.float32)])
    user.get_layer("features").set_weights([np.eye(3, dtype=np.float32)[None, None]])
    for c in (0, 1):
        weighted = images @ w[:, c]
        np.testing.assert_allclose(tfsal.grad_cam(user, images, c, layer="features"),
                                   np.maximum(weighted, 0) / SIZE**2, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(tfsal.cam(user, images, c), weighted, rtol=1e-5, atol=1e-6)
    assert tfsal.Model(user).resolve_layer(None) == "features"


def test_cam_and_grad_cam_agree_on_gap_models(images):
    user = nested_cnn()
    cam = tfsal.cam(user, images, 1)
    gc = tfsal.grad_cam(user, images, 1)
    np.testing.assert_allclose(gc, np.maximum(cam, 0) / SIZE**2, rtol=1e-4, atol=1e-7)


def test_cam_refuses_models_without_a_gap_head(images):
    with pytest.raises(TfsalError, match="GlobalAveragePooling2D"):
        tfsal.cam(linear_model(), images)


def test_grad_cam_refuses_non_spatial_layers(images):
    with pytest.raises(TfsalError, match="rank-4|feature map"):
        tfsal.grad_cam(linear_model(), images)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=0), "steps"), (dict(steps=2.5), "steps"), (dict(schedule="simpson"), "schedule"),
    (dict(baseline="grey"), "baseline"), (dict(baseline=np.zeros((2, 2))), "broadcastable"),
    (dict(schedule="trapezoid", steps=1), "steps"),
])
def test_bad_ig_settings_raise(kwargs, message, cnn, images):
    with pytest.raises(TfsalError, match=message):
        tfsal.integrated_gradients(cnn, images, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_samples=0), "n_samples"), (dict(noise_level=-0.1), "noise_level"),
    (dict(noise_level=float("nan")), "noise_level"), (dict(seed=-1), "seed"),
    (dict(seed="abc"), "seed"), (dict(method="vanilla"), "method"),
])
def test_bad_smoothgrad_settings_raise(kwargs, message, cnn, images):
    with pytest.raises(TfsalError, match=message):
        tfsal.smoothgrad(cnn, images, **kwargs)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_rejects_bad_images_and_targets(name, cnn, images):
    with pytest.raises(TfsalError):
        METHODS[name](cnn, images * 2, 0)
    with pytest.raises(TfsalError):
        METHODS[name](cnn, images, 4)
    with pytest.raises(TfsalError):
        METHODS[name](cnn, images, [0, 1])


# Public functions outside METHODS (other return types) keep the same promise.
OTHERS = {
    "layer_attributions": lambda m, x, t: tfsal.layer_attributions(m, x, t, method="rectgrad"),
    "nonlinear_saliency": lambda m, x, t: tfsal.nonlinear_saliency(
        m, x, t, levels=(0, 0.5), steps_per_level=1),
    "nonlinear_saliency_linear": lambda m, x, t: tfsal.nonlinear_saliency(
        m, x, t, levels=(0, 0.5), steps_per_level=1, linear=True),
    "selective_blur": lambda m, x, t: tfsal.selective_blur(m, x, np.ones(x.shape[:3]), t),
}


@pytest.mark.parametrize("name", sorted(OTHERS))
def test_user_model_untouched_by_other_public_functions(name, images):
    user = toy_cnn()
    before = snapshot(user, images)
    OTHERS[name](user, images, 1)
    assert_same_snapshot(before, snapshot(user, images))

    def failing_preprocess(x):
        raise RuntimeError("forced failure")

    with pytest.raises(RuntimeError, match="forced failure"):
        OTHERS[name](tfsal.Model(user, preprocess=failing_preprocess), images, 1)
    assert_same_snapshot(before, snapshot(user, images))


@pytest.mark.parametrize("wrapped", ["integrated_gradients", "deeplift", "rectgrad"])
def test_smoothgrad_wraps_methods_that_build_baselines_or_rules(wrapped, images):
    """Noisy copies leave [0, 1]; the wrapped method must accept them (through .compute)."""
    model = tfsal.Model(toy_cnn())
    out = tfsal.smoothgrad(model, images, 0, method=METHODS[wrapped], n_samples=2,
                           noise_level=0.3, seed=0)
    assert out.shape == images.shape and np.isfinite(out).all()
    still = tfsal.smoothgrad(model, images, 0, method=METHODS[wrapped], n_samples=2,
                             noise_level=0.0, seed=0)
    np.testing.assert_allclose(still, METHODS[wrapped](model, images, 0), rtol=1e-4, atol=1e-7)
