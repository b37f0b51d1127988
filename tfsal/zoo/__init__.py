"""Built-in models that ship with tfsal (small weight files inside the package)."""

from __future__ import annotations

from tfsal.errors import TfsalError
from tfsal.zoo.shapes_cnn import SHAPES_CNN, ModelInfo, build_shapes_cnn, load_shapes_cnn
from tfsal.zoo.shapes_resnet import SHAPES_RESNET, build_shapes_resnet, load_shapes_resnet
from tfsal.zoo.training import train_classifier

_REGISTRY = {SHAPES_CNN.name: (SHAPES_CNN, load_shapes_cnn),
             SHAPES_RESNET.name: (SHAPES_RESNET, load_shapes_resnet)}


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


__all__ = ["SHAPES_CNN", "SHAPES_RESNET", "ModelInfo", "available", "build_shapes_cnn",
           "build_shapes_resnet", "info", "load", "load_shapes_cnn", "load_shapes_resnet",
           "train_classifier"]
