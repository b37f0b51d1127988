"""The ImageNet model specs, the shipped class names, and loading the models by name."""

import contextlib
import hashlib
import importlib
import inspect
import shutil
import socket

import keras
import numpy as np
import pytest
from keras.src.applications import imagenet_utils
from keras.src.utils import file_utils

import tfsal
from tfsal import TfsalError, hub_models

NAMES = ("inception_v3", "mobilenet_v2", "resnet50", "vgg16", "xception")
# REFERENCE.md, "ImageNet model facts"
FACTS = {
    "vgg16": (224, "caffe", "block5_conv3", "fused activation='relu'"),
    "resnet50": (224, "caffe", "conv5_block3_out", "Activation('relu')"),
    "xception": (299, "tf", "block14_sepconv2_act", "Activation('relu')"),
    "inception_v3": (299, "tf", "mixed10", "Activation('relu')"),
    "mobilenet_v2": (224, "tf", "out_relu", "ReLU(max_value=6)"),
}
# file_hash of imagenet_class_index.json in keras.applications.imagenet_utils.decode_predictions
KERAS_CLASS_INDEX_MD5 = "c2c37ea517e94d9795004a39431a14cb"


def _no_network(*_args, **_kwargs):
    pytest.fail("the loader opened a network connection")


# ------------------------------------------------------------------------------------ specs
def test_every_model_has_a_spec_with_the_reference_facts():
    assert hub_models.available() == NAMES
    for name in NAMES:
        spec = hub_models.spec(name)
        assert (spec.input_size, spec.preprocess, spec.last_conv_layer, spec.relu_form) \
            == FACTS[name]
        assert spec.name == name and spec.labels == "imagenet" and spec.num_classes == 1000
        assert spec.keras_module == f"keras.applications.{name}"
        assert spec.head_layer == "predictions" and spec.cache_subdir == "models"
        assert spec.weights_url.startswith("https://storage.googleapis.com/tensorflow/"
                                           "keras-applications/")
        assert spec.weights_url.endswith("/" + spec.weights_file)
        assert spec.class_names == hub_models.imagenet_class_names()


def test_hub_handles_are_logit_classifiers_with_a_background_class():
    with_hub = {name for name in NAMES if hub_models.spec(name).hub is not None}
    assert with_hub == {"inception_v3", "mobilenet_v2", "resnet50"}
    for name in with_hub:
        hub = hub_models.spec(name).hub
        assert hub.handle.startswith("https://tfhub.dev/google/imagenet/")
        assert hub.kaggle_handle.startswith("https://www.kaggle.com/models/google/")
        assert (hub.output, hub.num_classes, hub.background_class, hub.preprocess) \
            == ("logits", 1001, True, None)
        assert hub.input_size == hub_models.spec(name).input_size
        assert hub.class_names[:2] == ("background", "tench") and len(hub.class_names) == 1001


@pytest.mark.parametrize("alias, name", [
    ("InceptionV3", "inception_v3"), ("XCEPTION", "xception"), ("MobileNetV2", "mobilenet_v2"),
    ("mobilenet-v2", "mobilenet_v2"), ("ResNet50", "resnet50"), ("VGG16", "vgg16")])
def test_names_match_whatever_the_spelling(alias, name):
    assert hub_models.find(alias).name == name
    assert hub_models.spec(alias).name == name


@pytest.mark.parametrize("name", ["resnet101", "", "shapes-cnn", 3])
def test_unknown_names_raise(name):
    assert hub_models.find(name) is None
    with pytest.raises(TfsalError, match=r"expected an ImageNet model name in \('inception_v3'"):
        hub_models.spec(name)


def test_specs_are_frozen():
    spec = hub_models.spec("vgg16")
    with pytest.raises(AttributeError):
        spec.input_size = 32


@pytest.mark.parametrize("name", NAMES)
def test_preprocessing_matches_keras_preprocess_input(name):
    spec = hub_models.spec(name)
    raw = np.random.default_rng(3).uniform(0, 255, (2, 6, 5, 3)).astype(np.float32)
    keras_pre = importlib.import_module(spec.keras_module).preprocess_input
    expected = np.asarray(keras_pre(raw.copy()))
    flatten = tfsal.Model(lambda x: keras.ops.reshape(x, (-1, 6 * 5 * 3)),
                          preprocess=spec.preprocess)
    ours = flatten.predict(raw / 255.0).reshape(raw.shape)
    np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-4)
    assert np.ptp(expected) > 1.5  # not a vacuous comparison


# ------------------------------------------------------------------------------ class names
def test_class_index_is_keras_file_byte_for_byte():
    from importlib import resources

    shipped = resources.files("tfsal.hub_models").joinpath("imagenet_class_index.json")
    assert hashlib.md5(shipped.read_bytes()).hexdigest() == KERAS_CLASS_INDEX_MD5
    assert KERAS_CLASS_INDEX_MD5 in inspect.getsource(imagenet_utils)


def test_class_names_and_wnids():
    names, wnids = hub_models.imagenet_class_names(), hub_models.imagenet_wnids()
    assert isinstance(names, tuple) and len(names) == len(wnids) == 1000
    assert len(set(wnids)) == 1000 and all(w.startswith("n") and len(w) == 9 for w in wnids)
    anchors = {0: ("n01440764", "tench"), 1: ("n01443537", "goldfish"),
               207: ("n02099601", "golden_retriever"), 281: ("n02123045", "tabby"),
               817: ("n04285008", "sports_car"), 999: ("n15075141", "toilet_tissue")}
    for index, (wnid, name) in anchors.items():
        assert (wnids[index], names[index]) == (wnid, name)
    # Keras' names repeat twice: crane (bird 134, machine 517) and maillot (638, 639)
    repeated = {n for n in names if names.count(n) > 1}
    assert repeated == {"crane", "maillot"} and len(set(names)) == 998
    assert hub_models.imagenet_class_index()[134] == ("n02012849", "crane")


# -------------------------------------------------------------------------- weights cache
def test_the_cache_path_follows_keras_home_at_call_time(monkeypatch, tmp_path):
    spec = hub_models.spec("resnet50")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert hub_models.keras_cache_dir() == tmp_path
    assert spec.weights_path() == tmp_path / "models" / spec.weights_file
    assert not spec.weights_cached()
    spec.weights_path().parent.mkdir()
    spec.weights_path().write_bytes(b"")
    assert spec.weights_cached()
    monkeypatch.delenv("KERAS_HOME")
    assert hub_models.keras_cache_dir().name == ".keras"


@pytest.mark.parametrize("name", NAMES)
def test_offline_without_cached_weights_names_the_file_path_and_url(monkeypatch, tmp_path,
                                                                     name):
    def offline(*_args, **_kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution (simulated)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(socket, "create_connection", offline)
    monkeypatch.setattr(keras.utils, "get_file", _no_network)  # no download attempted
    spec = hub_models.spec(name)
    with pytest.raises(TfsalError) as raised:
        tfsal.load_model(name)
    message = str(raised.value)
    assert spec.weights_file in message and spec.weights_url in message
    assert str(tmp_path / "models" / spec.weights_file) in message
    assert "offline" in message and "weights=None" in message


def test_download_false_never_touches_the_network(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(socket, "create_connection", _no_network)
    monkeypatch.setattr(keras.utils, "get_file", _no_network)
    with pytest.raises(TfsalError, match="vgg16_weights_tf_dim_ordering_tf_kernels.h5.*"
                                         "download=False"):
        tfsal.load_model("vgg16", download=False)


def test_a_failed_download_becomes_the_same_error(monkeypatch, tmp_path):
    calls = []

    def failing_get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno 101] unreachable")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: contextlib.nullcontext())
    monkeypatch.setattr(keras.utils, "get_file", failing_get_file)
    spec = hub_models.spec("xception")
    with pytest.raises(TfsalError, match="URL fetch failure") as raised:
        tfsal.load_model("Xception")
    assert str(spec.weights_path()) in str(raised.value)
    # Keras is pointed at tfsal's cache directory, with the spec's file name and hash
    assert calls == [(spec.weights_file, spec.weights_url,
                      dict(cache_subdir="models", cache_dir=str(tmp_path),
                           file_hash=spec.weights_md5))]


@pytest.mark.parametrize("weights", ["/no/such/weights.h5", 5, "ImageNet"])
def test_bad_weights_arguments_raise(weights):
    with pytest.raises(TfsalError, match="expected weights='imagenet', None or the path"):
        tfsal.load_model("resnet50", weights=weights)


def test_models_command_lists_the_imagenet_specs(monkeypatch, tmp_path, capsys):
    from tfsal.cli import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cached = hub_models.spec("mobilenet_v2").weights_path()
    cached.parent.mkdir()
    cached.write_bytes(b"")
    assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
             if line.split() and line.split()[0] in NAMES}
    assert set(lines) == set(NAMES)
    assert "input 299x299, preprocess 'tf', 1000 classes" in lines["xception"]
    assert "preprocess 'caffe'" in lines["vgg16"]
    assert "weights cached" in lines["mobilenet_v2"]
    assert "not cached" in lines["resnet50"]


# ------------------------------------------------------------------------- architectures
@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_every_spec_builds_with_the_facts_it_states(monkeypatch, name):
    """One build per model: Keras asks for exactly the spec's weights file (recorded, not
    fetched), and the network has the spec's size, CAM layer, head, ReLU form and classes."""
    requested = []
    monkeypatch.setattr(file_utils, "get_file", lambda fname, origin, **kw: requested.append(
        (fname, origin, kw.get("file_hash"), kw.get("cache_subdir"))) or "unused.h5")
    monkeypatch.setattr(keras.Model, "load_weights", lambda self, path, **kw: None)
    spec = hub_models.spec(name)
    user = spec.build(weights="imagenet")
    assert requested == [(spec.weights_file, spec.weights_url, spec.weights_md5, "models")]
    model = tfsal.Model(user, preprocess=spec.preprocess, class_names=spec.class_names)
    size = spec.input_size
    assert model.input_size == (size, size) and model.num_classes == 1000
    assert model.resolve_layer(spec.last_conv_layer) == spec.last_conv_layer
    assert len(user.get_layer(spec.last_conv_layer).output.shape) == 4
    assert user.get_layer(spec.head_layer).activation is keras.activations.softmax
    assert model.output_kind == "logits"  # the softmax head is evaluated without its softmax
    assert _relu_form(user) == spec.relu_form
    scores = model.predict(np.full((1, size, size, 3), 0.5, np.float32))
    assert scores.shape == (1, 1000) and np.isfinite(scores).all()


def _relu_form(user) -> str:
    """How the model writes its ReLUs, in the specs' words."""
    layers = user.layers
    if any(isinstance(lay, keras.layers.ReLU) and lay.max_value == 6 for lay in layers):
        return "ReLU(max_value=6)"
    if any(isinstance(lay, keras.layers.Activation)
           and lay.activation is keras.activations.relu for lay in layers):
        return "Activation('relu')"
    if any(isinstance(lay, keras.layers.Conv2D)
           and lay.activation is keras.activations.relu for lay in layers):
        return "fused activation='relu'"
    return "none"


@pytest.mark.slow
def test_a_name_loads_given_and_cached_weights(monkeypatch, tmp_path):
    """MobileNetV2 (the smallest; Keras checks no hash for it): weights=None, a weights file,
    and the file in the Keras cache all load, the last without touching the network."""
    untrained = tfsal.load_model("mobilenet_v2", weights=None)
    assert untrained.name == "mobilenet_v2" and untrained.preprocess == "tf"
    assert untrained.class_names[0] == "tench" and len(untrained.class_names) == 1000
    saved = tmp_path / "weights.h5"
    untrained.wrapped.save(saved)  # the legacy HDF5 layout of Keras' ImageNet files
    images = np.random.default_rng(0).random((2, 224, 224, 3)).astype(np.float32)
    expected = untrained.predict(images)
    np.testing.assert_allclose(tfsal.load_model("mobilenet_v2", weights=saved).predict(images),
                               expected, atol=1e-5)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(socket, "create_connection", _no_network)
    cached = hub_models.spec("mobilenet_v2").weights_path()
    cached.parent.mkdir(parents=True)
    shutil.copy(saved, cached)
    from_cache = tfsal.load_model("MobileNetV2")
    np.testing.assert_allclose(from_cache.predict(images), expected, atol=1e-5)
