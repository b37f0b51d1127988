"""Attack bounds and directions, and the class-sensitivity check."""

import keras
import numpy as np
import pytest
from conftest import SIZE, toy_cnn

import tfsal
from tfsal import TfsalError


def linear_model(seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, keras.layers.Dense(4)(keras.layers.Flatten()(inp)))


@pytest.mark.parametrize("attack", [tfsal.fgsm, tfsal.bim])
def test_attacks_stay_in_the_epsilon_ball_and_the_pixel_range(attack, images):
    result = attack(toy_cnn(), images, epsilon=0.05)
    assert np.abs(result.images - images).max() <= 0.05 + 1e-6
    assert result.images.min() >= 0 and result.images.max() <= 1
    assert result.images.dtype == np.float32 and result.images.shape == images.shape


def test_a_targeted_attack_raises_the_target_score_on_a_linear_model(images):
    model = tfsal.Model(linear_model())
    targets = np.array([3, 3, 3, 3, 3])
    before = model.predict(images, score="log_probability")[:, 3]
    for attack in (tfsal.fgsm, tfsal.bim):
        result = attack(model, images, targets, epsilon=0.02, targeted=True)
        after = model.predict(result.images, score="log_probability")[:, 3]
        assert (after > before).all()
    away = tfsal.fgsm(model, images, targets, epsilon=0.02)
    assert (model.predict(away.images, score="log_probability")[:, 3] < before).all()


def test_fgsm_is_one_bim_step_of_size_epsilon(images):
    model = tfsal.Model(toy_cnn())
    one = tfsal.fgsm(model, images, epsilon=0.03)
    step = tfsal.bim(model, images, epsilon=0.03, step_size=0.03, n_iter=1)
    np.testing.assert_array_equal(one.images, step.images)
    grad = model.input_gradients(images, one.targets, score="log_probability")
    np.testing.assert_allclose(one.images, np.clip(images - 0.03 * np.sign(grad), 0, 1),
                               atol=1e-7)


def test_attack_arguments_are_checked(images):
    with pytest.raises(TfsalError, match="explicit targets"):
        tfsal.fgsm(toy_cnn(), images, targeted=True)
    with pytest.raises(TfsalError, match="epsilon"):
        tfsal.fgsm(toy_cnn(), images, epsilon=-0.1)
    with pytest.raises(TfsalError, match="n_iter"):
        tfsal.bim(toy_cnn(), images, n_iter=0)


def test_class_sensitivity_is_one_when_the_map_ignores_the_class(images):
    model = tfsal.Model(linear_model())

    def same_map(m, x, t):  # a map that does not depend on the image or the class
        return np.broadcast_to(np.linspace(0, 1, SIZE * SIZE * 3).reshape(SIZE, SIZE, 3),
                               x.shape).copy()

    s = tfsal.class_sensitivity(model, images, same_map, tfsal.bim, epsilon=0.1,
                                step_size=0.02, n_iter=10)
    np.testing.assert_allclose(s.rank_correlation, 1.0)
    np.testing.assert_allclose(s.top_overlap, 1.0)
    # on a linear model the gradient of the new class differs from the old one's
    g = tfsal.class_sensitivity(model, images, tfsal.vanilla_gradient, tfsal.bim, epsilon=0.1,
                                step_size=0.02, n_iter=10)
    changed = g.attack.after != g.attack.before
    assert changed.any() and (g.rank_correlation[changed] < 0.99).all()
