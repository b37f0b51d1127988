"""The adapter's surgery (`Model.clone`, `input_space_shift`, `shift_compensated`,
`randomized_layers`): copies that change while the user's model never does; and metrics that
reach models only through the adapter."""

import ast
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SIZE, Subclassed, assert_same_snapshot, snapshot, toy_cnn

import tfsal
from tfsal import TfsalError


def biased_cnn() -> keras.Model:
    """toy_cnn with nonzero biases (Keras initialises them to 0, which would hide a bias that
    is not re-initialised)."""
    model = toy_cnn()
    for layer in model.layers:
        if getattr(layer, "bias", None) is not None:
            layer.bias.assign(np.full(layer.bias.shape, 0.5, np.float32))
    return model


def test_clone_scores_alike_with_weights_of_its_own(images):
    user = toy_cnn()
    before = snapshot(user, images)
    model = tfsal.Model(user, preprocess="tf", class_names=list("abcd"), batch_size=7)
    copy = model.clone()
    assert copy.wrapped is not user and copy.name == model.name
    assert (copy.preprocess, copy.class_names, copy.batch_size, copy.output_kind) == \
        ("tf", tuple("abcd"), 7, "logits")
    np.testing.assert_array_equal(copy.predict(images), model.predict(images))
    copy.wrapped.get_layer("conv1").kernel.assign(np.zeros((3, 3, 3, 6), np.float32))
    assert not np.allclose(copy.predict(images), model.predict(images))
    assert_same_snapshot(before, snapshot(user, images))


def test_randomized_layers_redraws_one_more_layer_per_step_as_documented(images):
    user = biased_cnn()
    before = snapshot(user, images)
    original = {layer.name: layer.get_weights() for layer in user.layers}
    # By hand: one generator, output side first; kernels N(0, std of the old kernel), biases 0.
    rng = np.random.default_rng(3)
    expected = {name: [rng.normal(0.0, original[name][0].std(), original[name][0].shape)
                       .astype(np.float32), np.zeros_like(original[name][1])]
                for name in ("predictions", "conv2", "conv1")}
    seen = []
    for path, copy in tfsal.Model(user).randomized_layers(seed=3):
        seen.append(path)
        for name, weights in original.items():
            now = copy.wrapped.get_layer(name).get_weights()
            for a, b in zip(now, expected[name] if name in seen else weights):
                np.testing.assert_array_equal(a, b)
    assert seen == ["predictions", "conv2", "conv1"]
    assert_same_snapshot(before, snapshot(user, images))


def test_randomized_layers_refuses_before_any_step():
    with pytest.raises(TfsalError, match="functional or sequential Keras model"):
        tfsal.Model(Subclassed()).randomized_layers()
    weightless = keras.Sequential([keras.Input((SIZE, SIZE, 3)),
                                   keras.layers.GlobalAveragePooling2D()])
    with pytest.raises(TfsalError, match="model with weights to randomise"):
        tfsal.Model(weightless).randomized_layers()


def test_input_space_shift_is_the_preprocessings_and_must_be_constant(images):
    shift = np.array([0.1, -0.05, 0.2])
    for preprocess, expected in (("tf", 2 * shift), ("caffe", 255 * shift[::-1]),
                                 ("scale255", 255 * shift)):
        model = tfsal.Model(toy_cnn(), preprocess=preprocess)
        np.testing.assert_allclose(model.input_space_shift(shift, probe=images[:1]), expected,
                                   rtol=1e-5)
    squared = tfsal.Model(toy_cnn(), preprocess=lambda x: x * x)
    with pytest.raises(TfsalError, match="affine per channel"):
        squared.input_space_shift(shift, probe=images[:1])


def test_shift_compensated_needs_a_keras_graph_and_leaves_the_user_model(images):
    user = toy_cnn()
    before = snapshot(user, images)
    model = tfsal.Model(user, preprocess="tf")
    shifted = model.shift_compensated([0.2, 0.2, 0.2])
    assert shifted.name == "toy_cnn_shifted" and shifted.wrapped is not user
    np.testing.assert_allclose(shifted.predict(images + 0.1), model.predict(images), atol=1e-4)
    assert_same_snapshot(before, snapshot(user, images))
    with pytest.raises(TfsalError, match="functional or sequential Keras model"):
        tfsal.Model(Subclassed()).shift_compensated([0.2, 0.2, 0.2])


def test_metrics_measure_through_the_adapter_only():
    """No metric imports the zoo, the data generator, Keras or TensorFlow, the experiments or
    the surgery, nor reaches into the adapter's private parts or its Keras graph."""
    forbidden = ("tfsal.zoo", "tfsal.data", "tfsal.experiments", "tfsal.surgery", "keras",
                 "tensorflow")
    folder = Path(tfsal.__file__).parent / "metrics"
    found = []
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Attribute) and node.attr in (
                    "wrapped", "runner", "_preprocess", "_require_runner"):
                names = [f".{node.attr}"]
            else:
                continue
            found += [f"{path.name}:{node.lineno} {name}" for name in names
                      if name.startswith(forbidden) or name.startswith(".")]
    assert not found, found
