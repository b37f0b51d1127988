"""Every method on every model form: a Keras model, its `model.export()` SavedModel, the same
export in TF Serving's `<model>/<version>/` layout, `hub:<dir>`, and an export whose signature
takes PNG bytes (fed at its decoded image tensor).

The Keras path applies backward rules layer by layer (`tf.custom_gradient`), the loaded path
op by op (registered gradients under `gradient_override_map`): two independent
implementations, each the other's oracle. Real architectures: tests/test_model_forms_slow.py.
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfsal
from tfsal import TfsalError
from tfsal.overrides import Deconv, Epsilon, Guided, Rectified, Rescale, gradient_overrides

SIZE = 16
FORMS = ("saved_model", "serving", "hub", "bytes")
TOLERANCE = 1e-5  # relative to the largest magnitude of the Keras result

# Small settings of the sampling methods (the same seed on both sides).
OPTIONS = {"smoothgrad": dict(n_samples=3, seed=0), "vargrad": dict(n_samples=3, seed=0),
           "integrated_gradients": dict(steps=4)}


def every_activation_cnn(seed: int = 0) -> keras.Model:
    """Every activation the rules override, SAME and VALID convolutions, a depthwise
    convolution, max-pooling, and a GAP + softmax head."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv_relu")(inp)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="elu", name="conv_elu")(x)
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="selu", name="dw_selu")(x)
    x = keras.layers.Conv2D(8, 3, padding="valid", activation="tanh", name="conv_tanh")(x)
    x = keras.layers.Conv2D(8, 1, activation="sigmoid", name="conv_sigmoid")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="softplus", name="conv_softplus")(x)
    x = keras.layers.LeakyReLU(0.2, name="leaky")(x)
    x = keras.layers.ReLU(6.0, name="relu6")(x)
    x = keras.layers.SeparableConv2D(8, 3, padding="same", name="separable")(x)
    x = keras.layers.Activation("relu", name="last_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(5, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="every_activation")


class PngSignature(tf.Module):
    """TF Serving's usual image model: encoded images in, decoded and preprocessed inside."""

    def __init__(self, keras_model, size, preprocess):
        super().__init__()
        self.keras_model = keras_model
        self.size = size
        self.preprocess = preprocess

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def serve(self, encoded):
        def decode(data):
            image = tf.io.decode_png(data, channels=3)
            return tf.image.convert_image_dtype(image, tf.float32)

        images = tf.map_fn(decode, encoded, fn_output_signature=tf.TensorSpec(
            [self.size, self.size, 3], tf.float32))
        return {"probabilities": self.keras_model(self.preprocess(images))}


def export_forms(keras_model, root: Path, size: int, preprocess=None) -> dict:
    """The four loaded forms of `keras_model`, as `tfsal.load_model` sources."""
    keras_model.export(root / "saved", verbose=False)
    shutil.copytree(root / "saved", root / "serving" / "3")  # the same export, as Serving keeps it
    pixel_to_input = tfsal.model._preprocess_fn(preprocess)
    module = PngSignature(keras_model, size, pixel_to_input)
    tf.saved_model.save(module, str(root / "bytes"), signatures={"serving_default": module.serve})
    return {"saved_model": root / "saved", "serving": root / "serving",
            "hub": f"hub:{root / 'saved'}", "bytes": root / "bytes"}


def load_form(sources: dict, form: str, preprocess=None, **options) -> tfsal.Model:
    # The bytes export applies the model's preprocessing inside its graph.
    return tfsal.load_model(sources[form], preprocess=None if form == "bytes" else preprocess,
                            **options)


def relative_difference(expected, got) -> float:
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    assert expected.shape == got.shape
    return float(np.abs(expected - got).max() / max(np.abs(expected).max(), 1e-30))


def assert_same_results(keras_side: tfsal.Model, loaded: tfsal.Model, images, targets,
                        *, levels=(0.0, 0.5), steps_per_level=2,
                        layer_rules=("vanilla", "rectgrad", "guided_backprop")):
    """Every entry of METHODS, layer_attributions (with `layer_rules`), signed_maps and
    nonlinear_saliency agree to TOLERANCE."""
    for name, method in tfsal.METHODS.items():
        options = OPTIONS.get(name, {})
        try:
            expected = method(keras_side, images, targets, **options)
        except TfsalError:  # a method that does not apply (CAM on VGG16) must not on both
            with pytest.raises(TfsalError):
                method(loaded, images, targets, **options)
            continue
        got = method(loaded, images, targets, **options)
        assert relative_difference(expected, got) <= TOLERANCE, name
    for rule in layer_rules:
        expected = tfsal.layer_attributions(keras_side, images, targets, method=rule)
        got = tfsal.layer_attributions(loaded, images, targets, method=rule)
        assert len(expected) == len(got) > 0, rule
        for path, a in expected.items():
            candidates = _tensors_of(path, got)
            assert any(got[name].shape == a.shape
                       and relative_difference(a, got[name]) <= TOLERANCE
                       for name in candidates), (rule, path, candidates)
    expected, got = tfsal.signed_maps(keras_side, images), tfsal.signed_maps(loaded, images)
    for part in ("standard", "positive", "negative", "active", "inactive"):
        assert relative_difference(getattr(expected, part), getattr(got, part)) <= TOLERANCE
    options = dict(levels=list(levels), steps_per_level=steps_per_level)
    expected = tfsal.nonlinear_saliency(keras_side, images, targets, **options)
    got = tfsal.nonlinear_saliency(loaded, images, targets, **options)
    for part in ("probabilities", "best_image", "best_map"):
        assert relative_difference(getattr(expected, part), getattr(got, part)) <= TOLERANCE


def _tensors_of(layer_path: str, tensors) -> list[str]:
    """The tensor names whose op sits in the Keras layer's scope ("<layer>_1/Relu:0"); more
    than one where exports number scopes of similar names (InceptionV3's "activation_1")."""
    layer = re.escape(layer_path.rsplit("/", 1)[-1])
    found = [t for t in tensors if re.search(rf"/{layer}(_\d+)*/[^/]+:0$", t)]
    assert found, (layer_path, sorted(tensors)[:5])
    return found


@pytest.fixture(scope="module")
def forms(tmp_path_factory):
    user = every_activation_cnn()
    return user, export_forms(user, tmp_path_factory.mktemp("forms"), SIZE)


@pytest.fixture(scope="module")
def probe():
    return np.random.default_rng(3).random((3, SIZE, SIZE, 3)).astype(np.float32)


@pytest.mark.parametrize("form", FORMS)
def test_every_method_gives_the_keras_numbers_on_every_form(forms, probe, form):
    user, sources = forms
    loaded = load_form(sources, form)
    assert loaded.graph is not None and loaded.output_kind == "logits"
    assert_same_results(tfsal.Model(user), loaded, probe, np.array([0, 3, 4]))


@pytest.mark.parametrize("rule", [
    Guided(), Deconv(), Rectified(), Rectified(percentile=50, prr=True, padding_trick=False),
    Rectified(percentile=None, threshold=0.0), Rescale(), Epsilon(1e-3)], ids=repr)
def test_every_rule_on_every_activation_op_matches_the_layer_rule(forms, probe, rule):
    user, sources = forms
    keras_side, loaded = tfsal.Model(user), load_form(sources, "saved_model")
    reference = np.full_like(probe, 0.5) if rule.needs_reference else None
    expected = keras_side.input_gradients(probe, 2, rule=rule, reference=reference)
    got = loaded.input_gradients(probe, 2, rule=rule, reference=reference)
    plain = keras_side.input_gradients(probe, 2)
    assert relative_difference(expected, got) <= TOLERANCE
    assert relative_difference(plain, got) > 1e-3  # the rule changed something


def test_the_padding_trick_and_prr_reach_the_ops(forms, probe):
    user, sources = forms
    loaded = load_form(sources, "saved_model")
    keras_side = tfsal.Model(user)
    for rule in (Rectified(percentile=0.0, padding_trick=True),
                 Rectified(percentile=0.0, padding_trick=False, prr=True)):
        with_trick = loaded.input_gradients(probe, 1, rule=rule)
        without = loaded.input_gradients(probe, 1, rule=Rectified(percentile=0.0,
                                                                  padding_trick=False))
        assert relative_difference(without, with_trick) > 1e-3
        assert relative_difference(keras_side.input_gradients(probe, 1, rule=rule),
                                   with_trick) <= TOLERANCE


def test_rule_names_carry_their_parameters():
    a, b = gradient_overrides(Rectified(percentile=98.0)), gradient_overrides(Rectified(90.0))
    assert a["Relu"] != b["Relu"] and "98.0" in a["Relu"]
    assert "MaxPool" not in a and "MaxPool" in gradient_overrides(Rectified(prr=True))
    assert "Conv2D" not in gradient_overrides(Guided())


def _digest(directory: Path) -> dict:
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_rules_leave_the_loaded_object_other_functions_and_the_directory_unchanged(
        forms, probe):
    user, sources = forms
    before_files = _digest(sources["saved_model"])
    raw = tf.saved_model.load(str(sources["saved_model"]))
    signature = raw.signatures["serving_default"]

    @tf.function
    def other(x):  # another compiled function in the same process
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(user(x)[:, 1])
        return tape.gradient(total, x)

    def plain(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(next(iter(signature(x).values()))[:, 1])
        return tape.gradient(total, x).numpy()

    x = tf.constant(probe)
    loaded_before, other_before = plain(x), other(x).numpy()
    loaded = load_form(sources, "saved_model")
    for name in ("guided_backprop", "deconvnet", "rectgrad", "deeplift", "epsilon_lrp"):
        tfsal.METHODS[name](loaded, probe, 1)
    tfsal.rectgrad(loaded, probe, 1, prr=True, percentile=50)
    np.testing.assert_array_equal(plain(x), loaded_before)
    np.testing.assert_array_equal(other(x).numpy(), other_before)
    # the adapter's own plain gradient is the true gradient too
    np.testing.assert_allclose(loaded.input_gradients(probe, 1, score="probability"),
                               loaded_before, rtol=1e-5, atol=1e-8)
    assert _digest(sources["saved_model"]) == before_files


def test_a_softmax_export_gives_the_keras_probabilities_and_logit_gradients(forms, probe):
    user, sources = forms
    keras_side = tfsal.Model(user)
    for form in FORMS:
        loaded = load_form(sources, form)
        assert "Softmax" in repr(loaded)
        np.testing.assert_allclose(loaded.predict(probe, score="probability"),
                                   np.asarray(user(probe)), atol=1e-6)
        np.testing.assert_allclose(loaded.predict(probe), keras_side.predict(probe), atol=1e-5)
        assert relative_difference(keras_side.input_gradients(probe, 4),
                                   loaded.input_gradients(probe, 4)) <= TOLERANCE


def test_tensors_by_name(forms, probe):
    user, sources = forms
    loaded = load_form(sources, "saved_model")
    names = loaded.layer_names()
    last = loaded.resolve_layer(None)
    assert last in names and last.endswith("last_relu_1/Relu:0")
    assert loaded.resolve_layer("last_relu_1/Relu") == last  # a unique suffix of an op name
    assert loaded.resolve_layer(last[:-2]) == last  # the op name
    keras_cam = tfsal.grad_cam(tfsal.Model(user), probe, 1, layer="conv_tanh")
    graph_cam = tfsal.grad_cam(loaded, probe, 1, layer="conv_tanh_1/Tanh")
    assert relative_difference(keras_cam, graph_cam) <= TOLERANCE
    assert loaded.activation_layers() == [n for n in names if n.rsplit("/", 1)[-1].split(":")[0]
                                          in ("Relu", "Elu", "Selu", "Tanh", "Sigmoid",
                                              "Softplus", "LeakyRelu", "Relu6")]


def test_an_unknown_tensor_name_lists_the_candidates(forms, probe):
    _, sources = forms
    loaded = load_form(sources, "saved_model")
    with pytest.raises(TfsalError, match="candidates: .*last_relu_1/Relu:0"):
        tfsal.grad_cam(loaded, probe, 1, layer="no_such_tensor")
    with pytest.raises(TfsalError, match="ambiguous"):
        loaded.resolve_layer("Relu")
    with pytest.raises(TfsalError, match="input_tensor.*candidates"):
        load_form(sources, "bytes", input_tensor="no_such_tensor")


def test_input_tensor_names_the_decoded_image(forms, probe):
    user, sources = forms
    automatic = load_form(sources, "bytes")
    named = load_form(sources, "bytes", input_tensor=automatic.graph.fed_at)
    assert named.graph.fed_at == automatic.graph.fed_at
    np.testing.assert_array_equal(named.predict(probe), automatic.predict(probe))


class NoActivation(tf.Module):
    def __init__(self):
        super().__init__()
        self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 4)), dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        return tf.reduce_mean(images, axis=[1, 2]) @ self.kernel


def test_a_rule_on_a_graph_without_activations_raises(tmp_path, probe):
    module = NoActivation()
    tf.saved_model.save(module, str(tmp_path / "linear"),
                        signatures={"serving_default": module.__call__})
    loaded = tfsal.load_model(tmp_path / "linear")
    assert np.abs(tfsal.vanilla_gradient(loaded, probe, 1)).sum() > 0
    with pytest.raises(TfsalError, match="activations a backward rule can reach"):
        tfsal.guided_backprop(loaded, probe, 1)
    # its head is a global average pool (of the image itself) and a MatMul: CAM applies
    np.testing.assert_allclose(tfsal.cam(loaded, probe, 1),
                               probe @ module.kernel.numpy()[:, 1], rtol=1e-5, atol=1e-6)


class ProbabilitiesWithoutSoftmax(NoActivation):
    """Probabilities computed by hand: no Softmax op for tfsal to find."""

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        e = tf.exp(tf.nn.relu(tf.reduce_mean(images, axis=[1, 2])) @ self.kernel)
        return e / tf.reduce_sum(e, axis=1, keepdims=True)


def test_auto_refuses_probabilities_it_cannot_undo(tmp_path, probe):
    module = ProbabilitiesWithoutSoftmax()
    tf.saved_model.save(module, str(tmp_path / "probs"),
                        signatures={"serving_default": module.__call__})
    loaded = tfsal.load_model(tmp_path / "probs")  # refused for classes (not for callables)
    for class_use in (lambda: loaded.predict(probe), lambda: tfsal.vanilla_gradient(loaded, probe)):
        with pytest.raises(TfsalError, match="output='logits' or 'probabilities'"):
            class_use()
    given = tfsal.load_model(tmp_path / "probs", output="probabilities")
    assert "probabilities (given)" in repr(given)
    np.testing.assert_allclose(given.predict(probe, score="probability"),
                               module(tf.constant(probe)).numpy(), atol=1e-6)


def test_cli_explain_all_on_a_saved_model_skips_with_reasons(tmp_path, forms, probe, capsys):
    from PIL import Image

    from tfsal.cli import main

    _, sources = forms
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        Image.fromarray((probe[i] * 255).astype(np.uint8)).save(photos / f"p{i}.png")
    out = tmp_path / "maps"
    code = main(["explain", str(photos), "--model", str(sources["serving"]), "--version", "3",
                 "--method", "all", "--score", "logit", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert {m["method"] for m in summary["maps"]} == set(tfsal.METHODS)  # nothing skipped
    assert summary["skipped"] == []


@pytest.mark.parametrize("saved_as", ["export", "keras_file"])
def test_cli_skips_inapplicable_methods_and_runs_the_rest(tmp_path, probe, capsys, saved_as):
    from PIL import Image

    from tfsal.cli import main

    keras.utils.set_random_seed(0)
    flat_head = keras.Sequential([
        keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    if saved_as == "export":
        source = tmp_path / "flat"
        flat_head.export(source, verbose=False)
    else:
        source = tmp_path / "flat.keras"
        flat_head.save(source)
    Image.fromarray((probe[0] * 255).astype(np.uint8)).save(tmp_path / "p.png")
    out = tmp_path / "maps"
    code = main(["explain", str(tmp_path / "p.png"), "--model", str(source),
                 "--method", "all", "--out", str(out)])
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [s["method"] for s in summary["skipped"]] == ["cam"]
    assert "global-average-pool" in summary["skipped"][0]["reason"].replace(
        "GlobalAveragePooling2D", "global-average-pool")
    assert {m["method"] for m in summary["maps"]} == set(tfsal.METHODS) - {"cam"}
    assert "skipped cam:" in capsys.readouterr().out
    # a method asked for by name that does not apply is an error status, the rest still ran
    assert main(["explain", str(tmp_path / "p.png"), "--model", str(source), "--method", "cam",
                 "--method", "vanilla", "--out", str(tmp_path / "named")]) == 1
    named = json.loads((tmp_path / "named" / "summary.json").read_text())
    assert [m["method"] for m in named["maps"]] == ["vanilla_gradient"]
    assert Path(named["maps"][0]["files"][0]).exists()


def test_cli_nonlinear_on_a_softmax_export_matches_the_keras_file(tmp_path, forms, probe):
    from PIL import Image

    from tfsal.cli import main

    user, sources = forms
    user.save(tmp_path / "user.keras")
    Image.fromarray((probe[0] * 255).astype(np.uint8)).save(tmp_path / "p.png")
    found = {}
    for name, source in (("keras", tmp_path / "user.keras"), ("export", sources["saved_model"])):
        out = tmp_path / name
        assert main(["nonlinear", str(tmp_path / "p.png"), "--model", str(source),
                     "--levels", "0,0.5", "--steps-per-level", "2", "--out", str(out)]) == 0
        found[name] = [item["best_probability"] for item in
                       json.loads((out / "trajectory.json").read_text())["items"]]
    np.testing.assert_allclose(found["export"], found["keras"], rtol=1e-5)


class TwoOutputs(tf.Module):
    def __init__(self, keras_model):
        super().__init__()
        self.keras_model = keras_model

    @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
    def __call__(self, images):
        probabilities = self.keras_model(images)
        return {"probabilities": probabilities, "logits": tf.math.log(probabilities)}


def test_cli_two_output_export_with_output_key(tmp_path, forms, probe):
    from PIL import Image

    from tfsal.cli import main

    user, _ = forms
    module = TwoOutputs(user)
    tf.saved_model.save(module, str(tmp_path / "two"),
                        signatures={"serving_default": module.__call__})
    Image.fromarray((probe[0] * 255).astype(np.uint8)).save(tmp_path / "p.png")
    image = np.asarray(Image.open(tmp_path / "p.png"), np.float32)[None] / 255
    for key in ("probabilities", "logits"):
        out = tmp_path / key
        assert main(["explain", str(tmp_path / "p.png"), "--model", str(tmp_path / "two"),
                     "--output-key", key, "--method", "guided_backprop", "--target", "2",
                     "--out", str(out)]) == 0
        expected = tfsal.guided_backprop(tfsal.Model(user), image, 2)[0]
        maps = json.loads((out / "summary.json").read_text())["maps"]
        got = np.load(maps[0]["files"][0])
        if key == "logits":  # log-probabilities: the logits' gradient minus the softmax mix
            assert got.shape == expected.shape and np.isfinite(got).all()
        else:
            assert relative_difference(expected, got) <= TOLERANCE
    assert main(["explain", str(tmp_path / "p.png"), "--model", str(tmp_path / "two"),
                 "--out", str(tmp_path / "none")]) == 2  # two outputs, no key: an error
