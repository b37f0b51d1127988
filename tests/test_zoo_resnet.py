"""The second embedded model (shapes-resnet): architecture, shipped weights, held-out accuracy,
and the methods the comparison tables run on it."""

import keras
import numpy as np

import tfsal
from tfsal import zoo
from tfsal.data import make_dataset
from tfsal.metrics import input_shift_invariance

FRESH_SEED = 777  # never used by scripts/train_zoo.py (train 1, test 2, validation 3)


def test_architecture_is_residual_with_batch_norm_and_separate_relus():
    model = zoo.build_shapes_resnet()
    kinds = {type(layer).__name__ for layer in model.layers}
    assert {"Add", "BatchNormalization", "Activation", "GlobalAveragePooling2D"} <= kinds
    names = [layer.name for layer in model.layers]
    assert {"block3_out", "gap", "predictions"} <= set(names)
    assert model.get_layer("predictions").activation is keras.activations.softmax
    assert all(layer.activation is keras.activations.linear for layer in model.layers
               if isinstance(layer, keras.layers.Conv2D))  # ReLUs are Activation layers


def test_registered_small_and_loads_by_name():
    assert "shapes-resnet" in zoo.available()
    info = zoo.info("shapes-resnet")
    assert info.weights.stat().st_size < 2**20
    # (the shipped JSON's accuracy is not asserted: test_held_out_accuracy_at_least_90_percent
    # measures it on fresh images)
    model = tfsal.load_model("shapes-resnet")
    assert model.preprocess == "tf" and model.input_size == (64, 64)
    assert model.class_names == info.class_names
    assert model.runner.last_feature_map() == info.last_conv_layer == "block3_out"


def test_held_out_accuracy_at_least_90_percent():
    data = make_dataset(300, seed=FRESH_SEED)
    predicted = tfsal.load_model("shapes-resnet").predicted_classes(data.images)
    assert np.mean(predicted == data.labels) >= 0.9


def test_rectgrad_grad_cam_and_cam_run_on_it():
    model = tfsal.load_model("shapes-resnet")
    images = make_dataset(4, seed=FRESH_SEED).images
    rect = tfsal.rectgrad(model, images)
    assert rect.shape == images.shape and np.isfinite(rect).all() and np.abs(rect).max() > 0
    for maps in (tfsal.grad_cam(model, images), tfsal.cam(model, images)):
        assert maps.shape == (4, 8, 8) and np.isfinite(maps).all() and np.abs(maps).max() > 0


def test_input_shift_compensation_is_exact_through_the_bias_free_stem():
    model = tfsal.load_model("shapes-resnet")
    images = make_dataset(4, seed=FRESH_SEED).images
    result = input_shift_invariance(model, images, "vanilla", 0.1)
    assert result.logit_error.max() <= 1e-4 * result.logit_scale.max()
    assert result.invariant
