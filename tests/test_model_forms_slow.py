"""Every method on every model form, for the embedded model and the real ImageNet
architectures (weights=None, realistic sizes): the Keras model against its `model.export()`
SavedModel, the TF Serving layout, `hub:<dir>` and a PNG-bytes signature (see
tests/test_model_forms.py for the forms and the comparison).

The SavedModel runs every method. The bytes export is another graph (decoding, then the same
network once it is cut at the decoded image): the embedded model runs every method on it, the
ImageNet architectures one method of each mechanism (plain gradient, layer gradient, a
percentile rule with the padding trick and PRR, a reference rule), which keeps `make test` near
ten minutes. The Serving layout and `hub:<dir>` load the very same saved_model.pb through other
routes: they are checked to yield the identical inlined graph and bit-identical plain
gradients (the same weights).
"""

import keras
import numpy as np
import pytest
from test_model_forms import (
    TOLERANCE,
    assert_same_results,
    export_forms,
    load_form,
    relative_difference,
)

import tfsal

ARCHITECTURES = [
    # constructor, input size, preprocessing
    ("Xception", 71, "tf"),
    ("VGG16", 64, "caffe"),
    ("ResNet50", 128, "caffe"),
    ("InceptionV3", 139, "tf"),
    ("MobileNetV2", 96, "tf"),
]


MECHANISMS = (tfsal.vanilla_gradient, tfsal.grad_cam, tfsal.deeplift,
              lambda model, x, t: tfsal.rectgrad(model, x, t, prr=True))


def _check_every_form(user, preprocess, size, root, every_method_on_bytes=False):
    sources = export_forms(user, root, size, preprocess)
    keras_side = tfsal.Model(user, preprocess=preprocess)
    images = np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32)
    targets = np.array([1, 4])
    exported = load_form(sources, "saved_model", preprocess)
    for form in ("saved_model", "bytes"):
        loaded = exported if form == "saved_model" else load_form(sources, form, preprocess)
        assert loaded.resolve_layer(None).split(":")[0].endswith(
            _op_name(keras_side.resolve_layer(None), user))
        if form == "saved_model" or every_method_on_bytes:
            # layer maps: RectGrad's (a rule and every activation captured) is enough here
            assert_same_results(keras_side, loaded, images, targets, levels=(0.0, 0.5),
                                steps_per_level=1, layer_rules=("rectgrad",))
            continue
        for method in MECHANISMS:
            assert relative_difference(method(keras_side, images, targets),
                                       method(loaded, images, targets)) <= TOLERANCE
    for form in ("serving", "hub"):
        loaded = load_form(sources, form, preprocess)
        assert _without_debug_info(loaded) == _without_debug_info(exported)
        # the same graph: the same weights give the same numbers for every method
        assert relative_difference(tfsal.vanilla_gradient(exported, images, targets),
                                   tfsal.vanilla_gradient(loaded, images, targets)) == 0.0


def _without_debug_info(model):
    """The inlined graph, less the debug names of the functions it came from (numbered anew at
    each load)."""
    graph_def = type(model.graph._graph_def)()
    graph_def.CopyFrom(model.graph._graph_def)
    for node in graph_def.node:
        node.ClearField("experimental_debug_info")
    return graph_def


def _op_name(layer_path: str, user) -> str:
    """The scope of a Keras layer's output op in an export ("<layer>_1/<Op>")."""
    layer = user.get_layer(layer_path.rsplit("/", 1)[-1])
    op = {"relu": "Relu", "relu6": "Relu6"}.get(
        getattr(getattr(layer, "activation", None), "__name__", ""), None)
    if type(layer).__name__ == "ReLU":
        op = "Relu6" if layer.max_value == 6 else "Relu"
    if type(layer).__name__ == "Concatenate":
        op = "concat"
    return f"{layer.name}_1/{op}"


def test_the_embedded_model_on_every_form(tmp_path):
    from tfsal import zoo

    info = zoo.info("shapes-cnn")
    _check_every_form(zoo.load("shapes-cnn"), info.preprocess, info.input_size, tmp_path,
                      every_method_on_bytes=True)


@pytest.mark.slow
@pytest.mark.parametrize("name, size, preprocess", ARCHITECTURES,
                         ids=[a[0] for a in ARCHITECTURES])
def test_imagenet_architectures_on_every_form(tmp_path, name, size, preprocess):
    keras.utils.set_random_seed(0)
    user = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                             classes=10)
    _check_every_form(user, preprocess, size, tmp_path)
