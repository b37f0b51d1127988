"""The embedded model: architecture, shipped weights, held-out accuracy, loading by name."""

import keras
import numpy as np
import pytest

import tfsal
from tfsal import TfsalError, zoo
from tfsal.data import make_dataset

FRESH_SEED = 777  # never used by scripts/train_zoo.py (train 1, test 2, validation 3)


def test_architecture_has_the_layers_methods_rely_on():
    model = zoo.build_shapes_cnn()
    names = [layer.name for layer in model.layers]
    assert {"gap", "last_conv", "predictions"} <= set(names)
    assert model.get_layer("predictions").activation is keras.activations.softmax
    assert any(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers)


def test_shipped_weights_are_small_and_load_by_name():
    assert zoo.SHAPES_CNN.weights.stat().st_size <= 5 * 2**20
    model = tfsal.load_model("shapes-cnn")
    assert model.preprocess == "tf" and model.input_size == (64, 64)
    # the label order the shipped weights were trained with (a hand value, not the registry's)
    assert model.class_names == ("circle", "square", "triangle", "star", "cross", "ring",
                                 "crescent", "arrow")
    assert model.runner.last_feature_map() == "last_conv"


def test_held_out_accuracy_at_least_95_percent():
    data = make_dataset(500, seed=FRESH_SEED)
    predicted = tfsal.load_model("shapes-cnn").predicted_classes(data.images)
    accuracy = np.mean(predicted == data.labels)
    assert accuracy >= 0.95, accuracy


def test_unknown_names_raise():
    with pytest.raises(TfsalError, match="shapes-cnn"):
        zoo.info("resnet9")


def test_integrated_gradients_complete_within_one_percent_on_the_trained_model():
    model = tfsal.load_model("shapes-cnn")
    images = make_dataset(8, seed=FRESH_SEED).images
    ig = tfsal.integrated_gradients(model, images, steps=50)
    rel = tfsal.completeness_delta(model, images, ig, relative=True)
    assert np.all(rel < 0.01), rel
