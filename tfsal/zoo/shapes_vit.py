"""The third embedded model: a tiny vision transformer trained on the same shapes data.

For the attention methods (`tfsal.methods.attention`): a hand-written Keras 3 ViT whose
attention layers are `keras.layers.MultiHeadAttention`. Inputs preprocessed "tf" ([-1, 1]).
Its patch embedding is a small convolutional stem (a "hybrid" ViT), for a training budget
of about ten minutes of CPU: with the same recipe (scripts/train_vit.py, 16 000 images), a
stem of two stride-2 convolutions was at 56.5 % validation accuracy after 12 of 16 epochs, and
a linear 8×8 patch projection at 20 % after 2 (both stopped there).

    stem1–stem3      Conv 3×3 + ReLU (16, 32, 48), each with 2×2 max-pooling   64² → 8²
    patch_embedding  Conv 1×1 (64)            → 8×8 grid of 64 tokens (one per 8×8 cell)
    class_token      a learned token prepended        65 tokens (index 0: CLS)
    position_embedding  learned, added
    block{1,2,3}     pre-norm transformer block: x + MHA(LN(x)) (4 heads of 16),
                     then x + MLP(LN(x)) (64 → 128 GELU → 64); output `block{i}_out`
    final_norm – the CLS token (Cropping1D) – Dense softmax

No dropout. The attention layers are `block{i}_attention`; token Grad-CAM's default layer is
the input of the last one, `block3_norm1`.
"""

from __future__ import annotations

from pathlib import Path

from tfsal.data import CLASS_NAMES
from tfsal.errors import TfsalError
from tfsal.zoo.shapes_cnn import ModelInfo, with_shipped_weights

_HERE = Path(__file__).parent

PATCH = 8
DIM = 64
HEADS = 4
BLOCKS = 3
MLP = 128

SHAPES_VIT = ModelInfo(
    name="shapes-vit",
    input_size=64,
    preprocess="tf",
    class_names=CLASS_NAMES,
    last_conv_layer="patch_embedding",
    weights=_HERE / "shapes_vit.weights.h5",
    metadata=_HERE / "shapes_vit.json",
    kind="vit",
)


def _layers():
    """The two custom layers (a class token, a position embedding), defined on first use so
    that importing the zoo does not import Keras."""
    import keras

    @keras.saving.register_keras_serializable(package="tfsal")
    class ClassToken(keras.layers.Layer):
        """Prepends one learned token to a sequence (N, T, D) -> (N, T + 1, D)."""

        def build(self, input_shape):
            self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="zeros",
                                         name="token")

        def call(self, x):
            token = keras.ops.broadcast_to(keras.ops.cast(self.token, x.dtype),
                                           (keras.ops.shape(x)[0], 1, keras.ops.shape(x)[-1]))
            return keras.ops.concatenate([token, x], axis=1)

        def compute_output_shape(self, input_shape):
            n = None if input_shape[1] is None else input_shape[1] + 1
            return (input_shape[0], n, input_shape[2])

    @keras.saving.register_keras_serializable(package="tfsal")
    class PositionEmbedding(keras.layers.Layer):
        """Adds a learned embedding (T, D) to a sequence (N, T, D)."""

        def build(self, input_shape):
            self.embedding = self.add_weight(
                shape=(1, input_shape[1], input_shape[2]), name="embedding",
                initializer=keras.initializers.RandomNormal(stddev=0.02))

        def call(self, x):
            return x + keras.ops.cast(self.embedding, x.dtype)

    return ClassToken, PositionEmbedding


_CUSTOM = {}


def custom_layers() -> dict:
    """name -> class of the ViT's custom layers (for `keras.models.load_model`)."""
    if not _CUSTOM:
        token, position = _layers()
        _CUSTOM.update(ClassToken=token, PositionEmbedding=position)
    return dict(_CUSTOM)


def build_shapes_vit(num_classes: int = len(CLASS_NAMES), input_size: int = 64):
    """The untrained architecture (a functional Keras model)."""
    import keras

    if input_size % PATCH:
        raise TfsalError(f"expected an input size divisible by the patch size {PATCH}, "
                         f"received {input_size}")
    layers = custom_layers()
    grid = input_size // PATCH
    inputs = keras.Input((input_size, input_size, 3), name="image")
    # A convolutional patch embedding (the "hybrid" ViT of Dosovitskiy et al. 2021, §3.1):
    # three 3×3 ReLU convolutions with 2×2 max-pooling, then a 1×1 projection; each token
    # stands for its own 8×8 cell (receptive field 22×22 around it).
    x = inputs
    for i, width in enumerate((16, 32, 48), start=1):
        x = keras.layers.Conv2D(width, 3, padding="same", activation="relu",
                                name=f"stem{i}")(x)
        x = keras.layers.MaxPooling2D(name=f"stem{i}_pool")(x)
    x = keras.layers.Conv2D(DIM, 1, name="patch_embedding")(x)
    x = keras.layers.Reshape((grid * grid, DIM), name="patch_tokens")(x)
    x = layers["ClassToken"](name="class_token")(x)
    x = layers["PositionEmbedding"](name="position_embedding")(x)
    for i in range(1, BLOCKS + 1):
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        y = keras.layers.MultiHeadAttention(HEADS, DIM // HEADS, name=f"block{i}_attention")(y, y)
        x = keras.layers.Add(name=f"block{i}_residual1")([x, y])
        y = keras.layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        y = keras.layers.Dense(MLP, activation="gelu", name=f"block{i}_mlp1")(y)
        y = keras.layers.Dense(DIM, name=f"block{i}_mlp2")(y)
        x = keras.layers.Add(name=f"block{i}_out")([x, y])
    x = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")(x)
    x = keras.layers.Cropping1D((0, grid * grid), name="cls")(x)  # the class token alone
    x = keras.layers.Flatten(name="cls_flat")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="shapes_vit")


def load_shapes_vit():
    """The architecture with the shipped trained weights."""
    return with_shipped_weights(SHAPES_VIT, build_shapes_vit, "scripts/train_vit.py")
