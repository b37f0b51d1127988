"""Signed maps against hand-derived gradients; deletion curves against oracle models."""

import keras
import numpy as np
import pytest
from conftest import SIZE, toy_cnn

import tfsal
from tfsal import TfsalError, visualize
from tfsal.metrics import (
    FRACTIONS,
    allegiance_curve,
    deletion_curve,
    deletion_mask,
    insertion_curve,
)


def linear_model(classes=4, seed=0):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inp, keras.layers.Dense(classes)(keras.layers.Flatten()(inp)))


def test_signed_maps_match_hand_derived_gradients(images):
    model = linear_model()
    w = model.layers[-1].kernel.numpy().reshape(SIZE, SIZE, 3, 4)  # g_k = w[..., k]
    maps = tfsal.signed_maps(tfsal.Model(model, batch_size=3), images, [0, 1, 2, 3, 0])
    for i, t in enumerate([0, 1, 2, 3, 0]):
        g = w[..., t]
        others = np.delete(w, t, axis=-1)
        np.testing.assert_allclose(maps.standard[i], np.abs(g).max(-1), rtol=1e-5)
        np.testing.assert_allclose(maps.positive[i], np.maximum(g, 0).max(-1), rtol=1e-5)
        np.testing.assert_allclose(maps.negative[i], np.maximum(-g, 0).max(-1), rtol=1e-5)
        active = np.where((g[..., None] > others).all(-1), g, 0)
        inactive = np.where((g[..., None] < others).all(-1), g, 0)
        np.testing.assert_allclose(maps.active[i], np.abs(active).max(-1), rtol=1e-5)
        np.testing.assert_allclose(maps.inactive[i], np.abs(inactive).max(-1), rtol=1e-5)


def test_standard_is_the_max_of_positive_and_negative_and_batching_does_not_matter(images):
    user = toy_cnn()
    one = tfsal.signed_maps(tfsal.Model(user, batch_size=1), images)
    many = tfsal.signed_maps(tfsal.Model(user, batch_size=7), images)
    np.testing.assert_array_equal(one.standard, np.maximum(one.positive, one.negative))
    for field in ("standard", "positive", "negative", "active", "inactive"):
        np.testing.assert_allclose(getattr(one, field), getattr(many, field), rtol=1e-5,
                                   atol=1e-8)
    assert 0 < (one.active > 0).mean() < 1 and 0 < (one.inactive > 0).mean() < 1
    assert (one.active <= one.standard).all() and (one.inactive <= one.standard).all()


def region_model():
    """Class 0's logit is the brightness summed over a 4x4 region minus 4; class 1's is 0."""
    inp = keras.Input((SIZE, SIZE, 3))
    flat = keras.layers.Flatten()(inp)
    dense = keras.layers.Dense(2)
    out = dense(flat)
    model = keras.Model(inp, out)
    kernel = np.zeros((SIZE, SIZE, 3, 2), np.float32)
    kernel[:4, :4, :, 0] = 1.0 / 3
    dense.set_weights([kernel.reshape(-1, 2), np.array([-4.0, 0.0], np.float32)])
    return model


def test_allegiance_of_an_oracle_map_is_known():
    images = np.full((3, SIZE, SIZE, 3), 0.5, np.float32)
    images[:, :4, :4] = 1.0  # region brightness 16 > 4: class 0 everywhere
    model = tfsal.Model(region_model())
    assert (model.predicted_classes(images) == 0).all()
    maps = np.zeros((3, SIZE, SIZE))
    maps[:, :4, :4] = np.arange(1, 17).reshape(4, 4)  # graded inside, zero outside
    curve = allegiance_curve(model, images, maps, fill="black")
    # deleting more than 12 of the 16 region pixels drops the logit below 0: 16·p_n ≥ 13
    n = SIZE * SIZE
    deleted = np.minimum(np.round(np.asarray(FRACTIONS) * n), 16)
    expected = (16 - deleted > 4).astype(float)
    np.testing.assert_array_equal(curve.values, expected)
    assert curve.values[0] == 1.0
    assert curve.auc == pytest.approx(np.trapezoid(expected, FRACTIONS))
    white = allegiance_curve(model, images, maps, fill="white")
    assert (white.values == 1.0).all()  # white keeps the region bright


def test_deletion_mask_cuts_by_rank_and_never_deletes_zero_pixels():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 10, 10))
    maps[:, :5] = 0.0  # half the pixels carry no saliency
    for p in (0.0, 0.1, 0.3, 0.49, 0.9):
        mask = deletion_mask(maps, p)
        assert (mask.sum(axis=(1, 2)) == min(round(p * 100), 50)).all()
        assert not mask[:, :5].any()


def test_deletion_and_insertion_curves_start_where_they_should(images):
    model = tfsal.Model(toy_cnn())
    maps = visualize.reduce_channels(tfsal.vanilla_gradient(model, images, 1), "abs-max")
    start = model.predict(images, score="probability")[:, 1]
    deletion = deletion_curve(model, images, maps, 1, fill="black")
    assert deletion.values[0] == pytest.approx(start.mean(), rel=1e-5)
    insertion = insertion_curve(model, images, maps, 1, fill="black")
    black = model.predict(np.zeros_like(images), score="probability")[:, 1]
    assert insertion.values[0] == pytest.approx(black.mean(), rel=1e-5)
    assert deletion.per_image.shape == insertion.per_image.shape == (5, len(FRACTIONS))


@pytest.mark.parametrize("kwargs, message", [
    (dict(fill="grey"), "expected fill"), (dict(fill=1.5), "fill values in"),
    (dict(fractions=(0.5, 0.2)), "increasing fractions"), (dict(fractions=(0, 1.0)), "in [0, 1)"),
    (dict(fractions=(0.1,)), "at least two"), (dict(fill=np.zeros((2, 4, 4, 3))), "fill image"),
])
def test_bad_curve_arguments_raise(kwargs, message, images):
    maps = np.ones(images.shape[:3])
    with pytest.raises(TfsalError, match=message.replace("[", r"\[").replace(")", r"\)")):
        allegiance_curve(toy_cnn(), images, maps, **kwargs)


def test_maps_of_the_wrong_shape_raise(images):
    with pytest.raises(TfsalError, match="one value per pixel"):
        allegiance_curve(toy_cnn(), images, np.ones(images.shape))
    with pytest.raises(TfsalError, match="finite maps"):
        allegiance_curve(toy_cnn(), images, np.full(images.shape[:3], np.nan))
