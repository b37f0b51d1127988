"""Loading SavedModels (plain, TF Serving layout, "hub:<dir>") and the loader's errors."""

import numpy as np
import pytest
import tensorflow as tf
from conftest import SIZE, toy_cnn

import tfsal
from tfsal import TfsalError

IMAGE = tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)


class Classifier(tf.Module):
    """A tf.Module around a Keras model with a float32 image signature."""

    def __init__(self, keras_model):
        super().__init__()
        self.keras_model = keras_model

    @tf.function(input_signature=[IMAGE])
    def __call__(self, images):
        return self.keras_model(images)


class TwoHeads(Classifier):
    """A signature returning a dict of two tensors."""

    @tf.function(input_signature=[IMAGE])
    def __call__(self, images):
        logits = self.keras_model(images)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


class FromBytes(tf.Module):
    """A signature taking encoded images (tf.string), as image-serving exports often do."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def __call__(self, encoded):
        return tf.zeros((tf.shape(encoded)[0], 4)) + tf.cast(tf.strings.length(encoded),
                                                             tf.float32)[:, None]


def _export(keras_model, path, exporter: str) -> None:
    if exporter == "keras_export":
        keras_model.export(path, verbose=False)
    else:
        module = Classifier(keras_model)
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Per exporter: a plain SavedModel of the reference logits model, and a TF Serving
    directory whose version 2 is the reference and version 1 a model with other weights."""
    root = tmp_path_factory.mktemp("saved")
    reference, other = toy_cnn(seed=0, softmax=False), toy_cnn(seed=7, softmax=False)
    paths = {}
    for exporter in ("keras_export", "tf_module"):
        _export(reference, root / exporter / "plain", exporter)
        _export(other, root / exporter / "serving" / "1", exporter)
        _export(reference, root / exporter / "serving" / "2", exporter)
        paths[exporter] = root / exporter
    return reference, other, paths


def _source(paths, exporter: str, route: str):
    base = paths[exporter]
    return {"plain": base / "plain", "serving": base / "serving",
            "hub": f"hub:{base / 'plain'}"}[route]


@pytest.mark.parametrize("route", ["plain", "serving", "hub"])
@pytest.mark.parametrize("exporter", ["keras_export", "tf_module"])
def test_saved_models_give_the_keras_scores_and_gradients(exported, images, exporter, route):
    reference, _, paths = exported
    expected = tfsal.Model(reference)
    loaded = tfsal.load_model(_source(paths, exporter, route))
    assert loaded.input_size == (SIZE, SIZE) and loaded.num_classes == 4
    np.testing.assert_allclose(loaded.predict(images), expected.predict(images), atol=1e-5)
    targets = np.array([0, 1, 2, 3, 0])
    np.testing.assert_allclose(tfsal.vanilla_gradient(loaded, images, targets),
                               tfsal.vanilla_gradient(expected, images, targets), atol=1e-5)


def test_serving_layout_takes_the_largest_version_unless_one_is_named(exported, images):
    reference, other, paths = exported
    serving = paths["tf_module"] / "serving"
    newest, first = tfsal.load_model(serving), tfsal.load_model(serving, version=1)
    assert (newest.name, first.name) == ("serving/2", "serving/1")
    np.testing.assert_allclose(first.predict(images), other(images).numpy(), atol=1e-5)
    np.testing.assert_allclose(newest.predict(images), reference(images).numpy(), atol=1e-5)
    assert np.abs(first.predict(images) - newest.predict(images)).max() > 1e-3
    with pytest.raises(TfsalError, match=r"version in \[1, 2\].*received 3"):
        tfsal.load_model(serving, version=3)
    with pytest.raises(TfsalError, match="TF Serving"):
        tfsal.load_model(paths["tf_module"] / "plain", version=1)


def test_keras_export_has_serve_and_serving_default(exported, images):
    reference, _, paths = exported
    served = tfsal.load_model(paths["keras_export"] / "plain", signature="serve")
    np.testing.assert_allclose(served.predict(images), reference(images).numpy(), atol=1e-5)
    with pytest.raises(TfsalError, match=r"\['serve', 'serving_default'\].*'predict'"):
        tfsal.load_model(paths["keras_export"] / "plain", signature="predict")


def test_an_object_without_signatures_is_called_directly(tmp_path, images):
    # TF-Hub classifiers before version 5 have only their __call__.
    user = toy_cnn(softmax=False)
    tf.saved_model.save(Classifier(user), str(tmp_path / "call_only"), signatures={})
    for source in (tmp_path / "call_only", f"hub:{tmp_path / 'call_only'}"):
        loaded = tfsal.load_model(source)
        np.testing.assert_allclose(loaded.predict(images), user(images).numpy(), atol=1e-5)
        assert loaded.input_size == (SIZE, SIZE)
    with pytest.raises(TfsalError, match="no output_key for the single output"):
        tfsal.load_model(tmp_path / "call_only", output_key="logits")


def test_several_outputs_need_an_output_key(tmp_path, images):
    user = toy_cnn(softmax=False)
    module = TwoHeads(user)
    tf.saved_model.save(module, str(tmp_path / "two"), signatures={"serving_default":
                                                                     module.__call__})
    for source in (tmp_path / "two", f"hub:{tmp_path / 'two'}"):
        with pytest.raises(TfsalError, match=r"\['logits', 'probabilities'\]"):
            tfsal.load_model(source)
    with pytest.raises(TfsalError, match="received 'scores'"):
        tfsal.load_model(tmp_path / "two", output_key="scores")
    logits = tfsal.load_model(tmp_path / "two", output_key="logits")
    np.testing.assert_allclose(logits.predict(images), user(images).numpy(), atol=1e-5)
    # The probabilities come from a Softmax op: its input gives the true logits back.
    probabilities = tfsal.load_model(tmp_path / "two", output_key="probabilities")
    assert probabilities.output_kind == "logits" and "Softmax" in repr(probabilities)
    np.testing.assert_allclose(probabilities.predict(images, score="probability"),
                               tf.nn.softmax(user(images)).numpy(), atol=1e-6)
    np.testing.assert_allclose(probabilities.predict(images), user(images).numpy(), atol=1e-5)


def test_a_bytes_signature_without_a_decoded_image_names_input_tensor(tmp_path):
    tf.saved_model.save(FromBytes(), str(tmp_path / "bytes"))
    for source in (tmp_path / "bytes", f"hub:{tmp_path / 'bytes'}"):
        with pytest.raises(TfsalError, match="decoded float.*input_tensor="):
            tfsal.load_model(source)


@pytest.mark.parametrize("source, message", [
    ("resnet51", "xception"),  # unknown names list the ImageNet models too
    ("hub:", "after 'hub:'"),
    ("hub:/nonexistent/model", "TF-Hub handle"),
])
def test_bad_sources_raise(source, message):
    with pytest.raises(TfsalError, match=message):
        tfsal.load_model(source)


@pytest.mark.parametrize("source, options", [
    ("shapes-cnn", dict(weights=None)),
    ("shapes-cnn", dict(version=1)),
    ("hub:/some/where", dict(version=2)),
    ("xception", dict(signature="serve")),
])
def test_options_that_do_not_apply_raise(source, options):
    with pytest.raises(TfsalError, match="expected only options that apply"):
        tfsal.load_model(source, **options)


def test_a_keras_model_refuses_saved_model_options(cnn):
    with pytest.raises(TfsalError, match="output_key='x'"):
        tfsal.load_model(cnn, output_key="x")


def test_load_model_is_one_function_everywhere():
    import tfsal.loading
    import tfsal.model

    assert tfsal.load_model is tfsal.loading.load_model
    assert tfsal.loading.as_model("shapes-cnn").name == "shapes-cnn"


def test_names_come_from_the_catalogues_in_their_order(monkeypatch):
    """Loading knows names only through `CATALOGS`: a catalogue's facts, options and names."""
    import sys
    import types

    found = types.SimpleNamespace(name="toy", preprocess="tf", class_names=("a", "b", "c", "d"))
    built = []
    fake = types.ModuleType("fake_catalogue")
    fake.WHAT, fake.OPTIONS = "a fake model", ("weights",)
    fake.available = lambda: ("toy", "shapes-cnn")
    fake.find = lambda name: found if name in fake.available() else None
    fake.keras_model = lambda facts, *, weights: built.append((facts, weights)) or toy_cnn()
    fake.find_handle = lambda handle: None
    monkeypatch.setitem(sys.modules, "fake_catalogue", fake)
    monkeypatch.setattr(tfsal.loading, "CATALOGS", ("tfsal.zoo", "fake_catalogue"))
    model = tfsal.load_model("toy", weights="given")
    assert built == [(found, "given")]
    assert (model.name, model.preprocess, model.class_names) == ("toy", "tf", found.class_names)
    shapes = tfsal.load_model("shapes-cnn")  # the zoo comes first
    assert shapes.class_names == tfsal.zoo.SHAPES_CNN.class_names and len(built) == 1
    with pytest.raises(TfsalError, match="apply to a fake model, received download=False"):
        tfsal.load_model("toy", download=False)
    with pytest.raises(TfsalError, match=r"a built-in model name \[.*\], a fake model name "
                                         r"\['toy', 'shapes-cnn'\].*received 'vgg16'"):
        tfsal.load_model("vgg16")  # no ImageNet catalogue listed: not a name any more


class HubLikeClassifier(tf.Module):
    """Like Google's TF-Hub ImageNet classifiers: any image size, 1001 logits."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 1001)), dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images):
        return tf.reduce_mean(images, axis=[1, 2]) @ self.kernel


def test_a_known_hub_handle_gets_its_classes_and_input_size(tmp_path, monkeypatch):
    import tensorflow_hub as hub

    tf.saved_model.save(HubLikeClassifier(), str(tmp_path / "hub_like"), signatures={})
    handle = "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5"
    requested = []  # the handle is resolved (downloaded) to a directory, scanned, loaded
    monkeypatch.setattr(hub, "resolve", lambda h: requested.append(h)
                        or str(tmp_path / "hub_like"))
    model = tfsal.load_model(f"hub:{handle}")
    assert requested == [handle] and model.name == f"hub:{handle}"
    assert model.input_size == (224, 224) and model.num_classes == 1001
    assert model.class_names[:3] == ("background", "tench", "goldfish")
    assert model.preprocess is None and model.output_kind == "logits"
    images = np.random.default_rng(1).random((2, 224, 224, 3)).astype(np.float32)
    grads = tfsal.vanilla_gradient(model, images, 1)
    assert grads.shape == images.shape and np.abs(grads).sum() > 0
    unknown = tfsal.load_model(f"hub:{tmp_path / 'hub_like'}")
    assert unknown.class_names is None and unknown.input_size is None


@pytest.mark.parametrize("download", ["no", 0, None])
def test_download_must_be_a_bool(download):
    with pytest.raises(TfsalError, match="expected download True or False"):
        tfsal.load_model("vgg16", download=download)


class TrainingFlag(tf.Module):
    """Like TF-Hub's TF2 classifiers: __call__ traced with training=True and False."""

    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 4)), dtype=tf.float32)

    @tf.function
    def __call__(self, images, training=False):
        logits = tf.reduce_mean(images, axis=[1, 2]) @ self.kernel
        return logits + 100.0 if training else logits


def test_a_hub_style_call_is_taken_in_inference_mode(tmp_path, images):
    module = TrainingFlag()
    spec = tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)
    module.__call__.get_concrete_function(spec, training=True)  # traced first
    module.__call__.get_concrete_function(spec, training=False)
    tf.saved_model.save(module, str(tmp_path / "flag"), signatures={})
    loaded = tfsal.load_model(f"hub:{tmp_path / 'flag'}")
    np.testing.assert_allclose(loaded.predict(images), module(tf.constant(images)).numpy(),
                               atol=1e-5)
