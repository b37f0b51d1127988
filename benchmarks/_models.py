"""The benchmarked models: ResNet50 and VGG16 at 224² (weights=None) and the embedded model.

`build(name)` gives the user's Keras model (softmax head, model-space inputs) and its tfsal
adapter, as a user would write them. `pixel_logits(name)` gives the same network as one flat
functional Keras model from pixel-space images in [0, 1] to logits: the preprocessing is its
first layer and the head has no softmax. That is the one model every library is handed in the
peer comparison, so all of them see the same input space (a black baseline is 0 for all), the
same score (the logit) and the same layer names — conventions that would otherwise differ
between libraries are matched by construction.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfsal  # noqa: E402

MODELS = ("resnet50", "vgg16", "embedded")
PREPROCESS = {"resnet50": "caffe", "vgg16": "caffe", "embedded": "tf"}
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def build(name: str) -> tuple[keras.Model, tfsal.Model]:
    """The user's Keras model (softmax head) and a tfsal adapter of it."""
    if name == "embedded":
        model = tfsal.load_model("shapes-cnn")
        return model.wrapped, model
    constructor = {"resnet50": keras.applications.ResNet50, "vgg16": keras.applications.VGG16}
    keras.utils.set_random_seed(0)
    user = constructor[name](weights=None)
    return user, tfsal.Model(user, preprocess="caffe", batch_size=32)


@keras.saving.register_keras_serializable("tfsal_bench")
class Preprocess(keras.layers.Layer):
    """Pixel space [0, 1] RGB -> a model's input space ("caffe" or "tf"), as a Keras layer."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        self.mode = mode

    def call(self, x):
        if self.mode == "caffe":
            return x[..., ::-1] * 255.0 - tf.constant(_CAFFE_MEAN_BGR)
        return x * 2.0 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


def pixel_logits(user: keras.Model, preprocess: str) -> keras.Model:
    """One flat functional model: pixels in [0, 1] -> preprocessing -> copies of the user's
    layers with the same weights -> the dense head without softmax (logits).

    The layers are copies, not shared: a layer shared by two models has two output nodes, and
    peers that build a sub-model from `model.get_layer(name).output` would get the wrong one.
    """
    head = user.layers[-1]
    if not isinstance(head, keras.layers.Dense):
        raise TypeError(f"expected a Dense head, found {type(head).__name__}")
    pixels = keras.Input(user.input_shape[1:], name="pixels")
    prepared = Preprocess(preprocess, name="preprocess")(pixels)

    def clone(layer):
        config = layer.get_config()
        if layer is head:
            config["activation"] = "linear"
        return layer.__class__.from_config(config)

    def call(layer, *args, **kwargs):
        args = tuple(prepared if a is pixels else a for a in args)
        return layer(*args, **kwargs)

    flat = keras.models.clone_model(user, input_tensors=pixels, clone_function=clone,
                                    call_function=call)
    for layer in user.layers:
        if layer.weights:
            flat.get_layer(layer.name).set_weights(layer.get_weights())
    return flat


def build_pixel(name: str) -> keras.Model:
    """`pixel_logits` of `build(name)`'s Keras model."""
    user, _ = build(name)
    return pixel_logits(user, PREPROCESS[name])
