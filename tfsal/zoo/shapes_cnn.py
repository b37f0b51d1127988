"""The embedded model: a small ReLU CNN trained on tfsal's generated shapes data.

Architecture (inputs preprocessed to [-1, 1], "tf" style): four 3×3 SAME convolutions
with fused ReLU, max-pooling between them, global average pooling and a dense
softmax head — so CAM, Grad-CAM and RectGrad's max-pool rule all apply. No batch
normalisation or dropout: the backward pass is plain conv / ReLU / max-pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tfsal.data import CLASS_NAMES
from tfsal.errors import TfsalError

_HERE = Path(__file__).parent


@dataclass(frozen=True)
class ModelInfo:
    """What tfsal needs to know about a built-in model.

    Attributes:
        preprocess: a `tfsal.Model` preprocessing name, or a callable.
        weights, metadata: the shipped weights and training record (None for a model whose
            weights are converted on first use from an optional dependency).
        data: what the model classifies: "shapes" (tfsal.data's generated shapes, whose object
            masks are known) or "photos" (natural RGB photos, ImageNet classes).
        extra: the pip extra of tfsal the model needs (`pip install "tfsal[<extra>]"`), or
            None for a model that ships inside the package.
        kind: "cnn" or "vit" (a vision transformer, explained by the attention methods too).
    """

    name: str
    input_size: int
    preprocess: object
    class_names: tuple
    last_conv_layer: str
    weights: Path | None
    metadata: Path | None
    data: str = "shapes"
    extra: str | None = None
    kind: str = "cnn"

    def facts(self) -> dict:
        """The training record written by scripts/train_zoo.py (empty if absent)."""
        if self.metadata is None or not self.metadata.exists():
            return {}
        return json.loads(self.metadata.read_text())


SHAPES_CNN = ModelInfo(
    name="shapes-cnn",
    input_size=64,
    preprocess="tf",
    class_names=CLASS_NAMES,
    last_conv_layer="last_conv",
    weights=_HERE / "shapes_cnn.weights.h5",
    metadata=_HERE / "shapes_cnn.json",
)


def build_shapes_cnn(num_classes: int = len(CLASS_NAMES), input_size: int = 64):
    """The untrained architecture (a functional Keras model)."""
    import keras

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = inputs
    # Narrow and one convolution per scale: trains to > 95 % in minutes on two CPU cores.
    for block, width in enumerate((16, 24, 48), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                name=f"conv{block}")(x)
        x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes_cnn")


def with_shipped_weights(info: ModelInfo, build, script: str):
    """`build()` with the trained weights shipped in the package (`script` makes them)."""
    if not info.weights.exists():
        raise TfsalError(f"expected the weights of {info.name} at {info.weights}, received a "
                         f"missing file (run {script})")
    model = build()
    model.load_weights(info.weights)
    return model


def load_shapes_cnn():
    """The architecture with the shipped trained weights."""
    return with_shipped_weights(SHAPES_CNN, build_shapes_cnn, "scripts/train_zoo.py")
