"""Every method runs on float16 and bfloat16 (mixed-precision) Keras models, with results close
to the float32 model's: attributions are returned (and summed, selected) in float32."""

import numpy as np
import pytest
from conftest import mixed_precision_pair

import tfsal

# Stated tolerance: cosine similarity with the float32 model's map of the same weights. Half
# precision changes gradients by ~1e-3 relative; the noise-sampling methods accumulate it.
MIN_COSINE = 0.95
OPTIONS = {"rectgrad": {"percentile": 80}, "smoothgrad": {"n_samples": 8, "seed": 0},
           "vargrad": {"n_samples": 8, "seed": 0}, "integrated_gradients": {"steps": 16}}


@pytest.fixture(scope="module", params=["mixed_float16", "mixed_bfloat16"])
def pair(request):
    """(mixed-precision model, float32 model with the same weights)."""
    mixed, plain = mixed_precision_pair(request.param)
    assert mixed.layers[1].compute_dtype != "float32"
    return mixed, plain


def _cosine(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


IMAGES = np.random.default_rng(5).random((3, 16, 16, 3)).astype(np.float32)


@pytest.mark.parametrize("name", list(tfsal.METHODS))
def test_every_method_on_a_mixed_precision_model(pair, name):
    mixed, plain = pair
    options = OPTIONS.get(name, {})
    got = tfsal.METHODS[name](mixed, IMAGES, 2, **options)
    expected = tfsal.METHODS[name](plain, IMAGES, 2, **options)
    assert got.dtype == np.float32 and np.isfinite(got).all()
    assert np.abs(expected).max() > 0
    assert _cosine(got, expected) >= MIN_COSINE, name


def test_the_radix_select_takes_half_precision_values():
    import tensorflow as tf

    from tfsal.overrides import per_sample_percentile
    from tfsal.selection import percentile_rank

    values = np.random.default_rng(0).normal(size=(2, 70_000))
    for dtype in (tf.float16, tf.bfloat16):
        half = tf.cast(values, dtype)
        exact = np.sort(tf.cast(half, tf.float32).numpy(), axis=1)[
            :, percentile_rank(70_000, 98)]
        for how in ("radix", "top_k"):
            tau = per_sample_percentile(half, 98, how)
            assert tau.dtype == dtype
            np.testing.assert_array_equal(tf.cast(tau, tf.float32).numpy().ravel(), exact)


def test_the_nonlinear_loop_and_signed_maps_on_a_mixed_precision_model(pair):
    mixed, plain = pair
    options = dict(levels=[0.0, 0.5], steps_per_level=2)
    got = tfsal.nonlinear_saliency(mixed, IMAGES, 2, **options)
    expected = tfsal.nonlinear_saliency(plain, IMAGES, 2, **options)
    np.testing.assert_allclose(got.target_probability, expected.target_probability, atol=0.02)
    signed, signed32 = tfsal.signed_maps(mixed, IMAGES, 2), tfsal.signed_maps(plain, IMAGES, 2)
    assert _cosine(signed.positive, signed32.positive) >= MIN_COSINE
