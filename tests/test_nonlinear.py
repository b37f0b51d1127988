"""Nonlinear saliency maps: building blocks against SciPy, the loop's identities and contract."""

import numpy as np
import pytest
from conftest import toy_cnn
from scipy.ndimage import gaussian_filter

import tfsal
from tfsal import TfsalError

FAST = dict(levels=(0.0, 0.25, 0.5, 0.9), steps_per_level=2, step_size=5.0, blur_sigma=1.0)


@pytest.fixture
def norms(images):
    return np.random.default_rng(7).random(images.shape[:3]).astype(np.float32)  # distinct


@pytest.mark.parametrize("level", [0.0, 0.05, 0.5, 0.95, 1.0])
def test_blur_below_level_blurs_exactly_the_low_pixels_like_scipy(images, norms, level):
    out = tfsal.blur_below_level(images, norms, level, blur_sigma=1.5)
    reference = gaussian_filter(images, sigma=(0, 1.5, 1.5, 0), mode="reflect", truncate=4.0)
    below = lowest(norms, level)
    np.testing.assert_allclose(out[below], reference[below], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out[~below], images[~below])
    assert below.sum(axis=(1, 2)).tolist() == [int(np.round(norms[0].size * level))] * 5


def lowest(norms, level):
    """The round(level · H · W) lowest-norm pixels of each image, by rank (stable)."""
    flat = norms.reshape(len(norms), -1)
    ranks = np.argsort(np.argsort(flat, axis=1, kind="stable"), axis=1, kind="stable")
    return (ranks < np.round(level * flat.shape[1])).reshape(norms.shape)


def test_ties_do_not_change_how_many_pixels_are_blurred(images):
    zeros = np.zeros(images.shape[:3], np.float32)  # a saturated softmax: all-zero gradient
    out = tfsal.mask_below_level(images, zeros, 0.5, background=0.0)
    assert ((out == 0).all(axis=-1).mean(axis=(1, 2)) >= 0.5).all()


def test_mask_below_level_paints_the_background(images, norms):
    out = tfsal.mask_below_level(images, norms, 0.3, background=0.25)
    low = lowest(norms, 0.3)
    assert (out[low] == 0.25).all() and (out[~low] == images[~low]).all()


def _probability_gradient(model):
    """A sensitivity method: the target column of the softmax Jacobian (the loop's own)."""
    return lambda m, x, t: tfsal.vanilla_gradient(m, x, t, score="probability")


def test_compiled_loop_equals_the_stepwise_loop_driven_by_the_same_gradient(images):
    model = tfsal.Model(toy_cnn(), batch_size=8)
    compiled = tfsal.nonlinear_saliency(model, images, [0, 1, 2, 3, 0], **FAST)
    stepwise = tfsal.nonlinear_saliency(model, images, [0, 1, 2, 3, 0], **FAST,
                                        sensitivity=_probability_gradient(model))
    for field in ("probabilities", "blurred_fraction", "images", "maps", "best_image"):
        np.testing.assert_allclose(getattr(compiled, field), getattr(stepwise, field),
                                   rtol=1e-4, atol=1e-5, err_msg=field)
    np.testing.assert_array_equal(compiled.best_step, stepwise.best_step)


def test_a_fixed_gradient_gives_the_linear_variant(images):
    model = tfsal.Model(toy_cnn(), batch_size=8)
    targets = np.array([0, 1, 2, 3, 0])
    fixed = tfsal.vanilla_gradient(model, images, targets, score="probability")
    linear = tfsal.nonlinear_saliency(model, images, targets, linear=True, **FAST)
    frozen = tfsal.nonlinear_saliency(model, images, targets, **FAST,
                                      sensitivity=lambda m, x, t: fixed)
    np.testing.assert_allclose(linear.probabilities, frozen.probabilities, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(linear.maps, frozen.maps, rtol=1e-4, atol=1e-5)
    nonlinear = tfsal.nonlinear_saliency(model, images, targets, **FAST)
    assert linear.linear and not nonlinear.linear
    assert not np.allclose(linear.images, nonlinear.images)  # the gradient does change


def test_trajectory_contract(images):
    t = tfsal.nonlinear_saliency(toy_cnn(), images, 2, **FAST)
    steps = len(FAST["levels"]) * FAST["steps_per_level"]
    assert t.probabilities.shape == (5, steps + 1, 4)
    assert t.images.shape == t.maps.shape == (5, len(FAST["levels"])) + images.shape[1:]
    for arr in (t.images, t.maps, t.best_image, t.best_map):
        assert arr.min() >= 0 and arr.max() <= 1
    np.testing.assert_allclose(t.probabilities.sum(-1), 1, rtol=1e-5)
    np.testing.assert_allclose(t.probabilities[:, 0], tfsal.Model(toy_cnn()).predict(
        images, score="probability"), rtol=1e-5, atol=1e-7)
    rows = np.arange(5)
    np.testing.assert_allclose(t.target_probability[rows, t.best_step], t.best_probability)
    assert (t.best_probability >= t.target_probability[:, 0]).all()
    # the fraction of blurred pixels follows the levels exactly
    n = images.shape[1] * images.shape[2]
    expected = np.round(n * t.step_levels) / n
    np.testing.assert_allclose(t.blurred_fraction, np.broadcast_to(expected, (5, steps)),
                               atol=1e-6)
    np.testing.assert_allclose(1 - t.kept.mean(axis=(2, 3)),
                               np.broadcast_to(np.round(n * t.levels) / n, (5, 4)), atol=1e-6)
    still = tfsal.nonlinear_saliency(toy_cnn(), images, 2, **(FAST | dict(step_size=0.0)))
    masked = ~still.kept[:, -1]  # without a step, the last map is white where nothing was kept
    assert (still.maps[:, -1][masked] == 1.0).all() and (still.maps[:, -1][~masked] < 1).any()
    np.testing.assert_array_equal(t.top_classes(1)[..., 0], t.probabilities.argmax(-1))


def test_batched_equals_per_item_and_runs_repeat(images):
    user = toy_cnn()
    together = tfsal.nonlinear_saliency(tfsal.Model(user, batch_size=5), images, 1, **FAST)
    apart = tfsal.nonlinear_saliency(tfsal.Model(user, batch_size=1), images, 1, **FAST)
    again = tfsal.nonlinear_saliency(tfsal.Model(user, batch_size=5), images, 1, **FAST)
    for field in ("probabilities", "maps", "best_map"):
        np.testing.assert_allclose(getattr(together, field), getattr(apart, field), rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_array_equal(getattr(together, field), getattr(again, field))


def test_targets_per_image_make_items(images):
    t = tfsal.nonlinear_saliency(toy_cnn(), images[:2], np.array([[0, 1], [2, 3]]), **FAST)
    assert t.targets.tolist() == [0, 1, 2, 3] and t.image_index.tolist() == [0, 0, 1, 1]
    single = tfsal.nonlinear_saliency(toy_cnn(), images[1:2], 3, **FAST)
    np.testing.assert_allclose(t.probabilities[3], single.probabilities[0], rtol=1e-4,
                               atol=1e-6)


def test_without_blur_or_step_nothing_changes(images):
    t = tfsal.nonlinear_saliency(toy_cnn(), images, 0, levels=(0, 0), steps_per_level=3,
                                 step_size=0.0)
    np.testing.assert_array_equal(t.images[:, -1], images)
    np.testing.assert_allclose(t.probabilities, t.probabilities[:, :1].repeat(7, 1), rtol=1e-6)
    assert (t.best_step == 0).all()


@pytest.mark.parametrize("kwargs", [dict(levels=(0.5, 0.2)), dict(levels=(0, 1.5)),
                                    dict(levels=()), dict(levels="abc"),
                                    dict(steps_per_level=0), dict(step_size=float("nan")),
                                    dict(blur_sigma=-1.0), dict(blur_sigma=50.0),
                                    dict(background=2.0), dict(linear="yes")])
def test_bad_arguments_raise(images, kwargs):
    with pytest.raises(TfsalError, match="expected"):
        tfsal.nonlinear_saliency(toy_cnn(), images, 0, **kwargs)


def test_bad_targets_and_norms_raise(images, norms):
    with pytest.raises(TfsalError, match="expected"):
        tfsal.nonlinear_saliency(toy_cnn(), images, 9, **FAST)
    with pytest.raises(TfsalError, match="expected targets of shape"):
        tfsal.nonlinear_saliency(toy_cnn(), images, np.zeros((4, 2), int), **FAST)
    with pytest.raises(TfsalError, match="sensitivity_norm of shape"):
        tfsal.blur_below_level(images, norms[:, :3], 0.5)
    with pytest.raises(TfsalError, match="expected levels"):
        tfsal.mask_below_level(images, norms, 1.2)


def test_selective_blur_blurs_only_the_salient_pixels(images, norms):
    model = tfsal.Model(toy_cnn())
    result = tfsal.selective_blur(model, images, norms, [1, 1, 2, 2, 3], level=0.9,
                                  blur_sigma=1.0)
    salient = ~lowest(norms, 0.9)
    np.testing.assert_array_equal(result.blurred[~salient], images[~salient])
    assert not np.allclose(result.blurred[salient], images[salient])
    np.testing.assert_allclose(result.salient_fraction, salient.mean(axis=(1, 2)))
    np.testing.assert_allclose(result.after, model.predict(result.blurred, score="probability"))
    np.testing.assert_allclose(result.before, model.predict(images, score="probability"))
    assert not np.allclose(result.before, result.after)


def test_selective_blur_takes_the_trajectorys_kept_pixels(images):
    model = tfsal.Model(toy_cnn())
    t = tfsal.nonlinear_saliency(model, images, 1, **FAST)
    result = tfsal.selective_blur(model, images, t.kept[:, -1], t.targets, blur_sigma=1.0)
    np.testing.assert_allclose(result.salient_fraction, t.kept[:, -1].mean(axis=(1, 2)))
    np.testing.assert_array_equal(result.blurred[~t.kept[:, -1]], images[~t.kept[:, -1]])
    with pytest.raises(TfsalError, match="boolean mask of shape"):
        tfsal.selective_blur(model, images, t.kept[:, -1, :3], t.targets)
