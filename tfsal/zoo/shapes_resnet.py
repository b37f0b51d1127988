"""The second embedded model: a small residual network trained on the same shapes data.

A second architecture for the tables that compare methods "on the embedded CNN and a second
architecture": unlike shapes-cnn it has batch normalisation, skip connections (Add) and ReLUs
as separate `Activation` layers (the ResNet50 form). Inputs preprocessed "tf" ([-1, 1]).

    stem   Conv 3×3 (16) – BN – ReLU – MaxPool 2        64² → 32²
    block1 [Conv 3×3 – BN – ReLU – Conv 3×3 – BN] + identity – ReLU        16 ch, 32²
    block2 the same with stride 2 and a 1×1 conv + BN projection shortcut  32 ch, 16²
    block3 the same                                                        64 ch, 8²
    GAP – Dense softmax

The last block's output activation `block3_out` is the Grad-CAM layer; GAP + Dense make CAM
apply.
"""

from __future__ import annotations

from pathlib import Path

from tfsal.data import CLASS_NAMES
from tfsal.zoo.shapes_cnn import ModelInfo, with_shipped_weights

_HERE = Path(__file__).parent

SHAPES_RESNET = ModelInfo(
    name="shapes-resnet",
    input_size=64,
    preprocess="tf",
    class_names=CLASS_NAMES,
    last_conv_layer="block3_out",
    weights=_HERE / "shapes_resnet.weights.h5",
    metadata=_HERE / "shapes_resnet.json",
)


def build_shapes_resnet(num_classes: int = len(CLASS_NAMES), input_size: int = 64):
    """The untrained architecture (a functional Keras model)."""
    import keras

    layers = keras.layers
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = layers.Conv2D(16, 3, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    # Pool early: full-resolution residual blocks would triple the training time on CPU.
    x = layers.MaxPooling2D(name="stem_pool")(x)
    for block, (width, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
        name = f"block{block}"
        shortcut = x
        y = layers.Conv2D(width, 3, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_conv1")(x)
        y = layers.BatchNormalization(name=f"{name}_bn1")(y)
        y = layers.Activation("relu", name=f"{name}_relu1")(y)
        y = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
        y = layers.BatchNormalization(name=f"{name}_bn2")(y)
        if stride != 1 or x.shape[-1] != width:
            shortcut = layers.Conv2D(width, 1, strides=stride, use_bias=False,
                                     name=f"{name}_proj")(x)
            shortcut = layers.BatchNormalization(name=f"{name}_proj_bn")(shortcut)
        x = layers.Add(name=f"{name}_add")([y, shortcut])
        x = layers.Activation("relu", name=f"{name}_out")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes_resnet")


def load_shapes_resnet():
    """The architecture with the shipped trained weights."""
    return with_shipped_weights(SHAPES_RESNET, build_shapes_resnet,
                                "scripts/train_zoo.py --arch shapes-resnet")
