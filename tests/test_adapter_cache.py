"""A Keras model given to a method directly: one adapter per model object, traced once, never
keeping the model alive (`tfsal.loading.as_model`)."""

import gc
import weakref

import keras
import numpy as np
import pytest
from conftest import SIZE, Subclassed, nested_cnn, sequential_cnn, toy_cnn

import tfsal
import tfsal.model
from tfsal import TfsalError
from tfsal.loading import as_model

TARGETS = np.array([0, 1, 2], np.int32)


@pytest.fixture
def traces(monkeypatch) -> list:
    """Every function tfsal traces, over all adapters."""
    seen, trace = [], tfsal.model._trace
    monkeypatch.setattr(tfsal.model, "_trace", lambda f: seen.append(f) or trace(f))
    return seen


def _subclassed():
    model = Subclassed()
    model(np.zeros((1, SIZE, SIZE, 3), np.float32))  # built
    return model


def _calls(images):
    """Methods covering every compiled function: scores, plain and rule gradients, layer
    gradients, and a loop compiled by its method (`Model.compiled`)."""
    return [lambda m: tfsal.vanilla_gradient(m, images, TARGETS),
            lambda m: tfsal.vanilla_gradient(m, images),  # predicted classes
            lambda m: tfsal.guided_backprop(m, images, TARGETS),
            lambda m: tfsal.grad_cam(m, images, TARGETS),
            lambda m: tfsal.nonlinear_saliency(m, images[:1], 0, levels=(0.5,),
                                               steps_per_level=2).probabilities]


def test_a_keras_model_given_twice_is_traced_once(traces, images):
    user = toy_cnn()
    first = [call(user) for call in _calls(images[:3])]
    traced = len(traces)
    assert traced >= 5  # one function per kind of call at least
    second = [call(user) for call in _calls(images[:3])]
    assert len(traces) == traced
    fresh = tfsal.Model(user)
    expected = [call(fresh) for call in _calls(images[:3])]
    assert len(traces) == 2 * traced  # a new adapter does trace: the count counts
    for a, b, c in zip(first, second, expected):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("make", [toy_cnn, nested_cnn, sequential_cnn, _subclassed])
def test_the_reused_adapter_does_not_keep_the_model_alive(make, images):
    user = make()
    tfsal.vanilla_gradient(user, images[:2])
    if make is not _subclassed:  # rules and layers need a walkable graph
        tfsal.guided_backprop(user, images[:2])
        tfsal.grad_cam(user, images[:2])
        tfsal.nonlinear_saliency(user, images[:1], 0, levels=(0.5,), steps_per_level=2)
    gone = weakref.ref(user)
    del user
    gc.collect()
    assert gone() is None


def test_a_model_made_in_the_call_lives_through_it(images):
    """The adapter handed out holds the model: here nothing else does."""
    got = tfsal.grad_cam(toy_cnn(seed=5), images, TARGETS[0])
    np.testing.assert_allclose(got, tfsal.grad_cam(tfsal.Model(toy_cnn(seed=5)), images,
                                                   TARGETS[0]), rtol=1e-5, atol=1e-7)


def test_assigned_weights_are_used(images):
    user, other = toy_cnn(seed=0), toy_cnn(seed=3)
    before = tfsal.vanilla_gradient(user, images, TARGETS[0])
    user.set_weights(other.get_weights())
    after = tfsal.vanilla_gradient(user, images, TARGETS[0])
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, tfsal.vanilla_gradient(tfsal.Model(other), images,
                                                             TARGETS[0]), rtol=1e-5, atol=1e-7)


def test_loading_options_bypass_the_reused_adapter(images):
    user = toy_cnn()
    as_model(user)
    shifted = as_model(user, preprocess="tf", score="probability")
    assert (shifted.preprocess, shifted.score) == ("tf", "probability")
    plain = as_model(user)
    assert (plain.preprocess, plain.score) == (None, "logit")
    np.testing.assert_allclose(
        shifted.input_gradients(images, 1),
        tfsal.Model(user, preprocess="tf", score="probability").input_gradients(images, 1),
        rtol=1e-5, atol=1e-8)


def test_a_sequential_changed_after_a_call_gets_a_new_adapter(images):
    user = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(4, name="dense")])
    tfsal.vanilla_gradient(user, images, 0)
    user.add(keras.layers.Dense(3, name="extra"))
    assert as_model(user).num_classes == 3
    np.testing.assert_allclose(tfsal.vanilla_gradient(user, images, 2),
                               tfsal.vanilla_gradient(tfsal.Model(user), images, 2),
                               rtol=1e-5, atol=1e-7)


def test_copies_share_compiled_functions_and_weak_adapters_report_a_deleted_model(images):
    user = toy_cnn()
    weak = tfsal.Model(user).hold_model_weakly()
    held = weak.strong_copy()
    held.input_gradients(images, 0)
    assert weak.tracing_count() == held.tracing_count() == 1  # a given target: no prediction
    np.testing.assert_array_equal(weak.input_gradients(images, 0), held.input_gradients(images, 0))
    del user, held
    gc.collect()
    with pytest.raises(TfsalError, match="no longer exists"):
        weak.wrapped  # noqa: B018
