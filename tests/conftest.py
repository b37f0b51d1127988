"""Shared toy models and images. Small, seeded, fast; real architectures live under `slow`."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

SIZE = 16


def toy_cnn(seed: int = 0, softmax: bool = True, size: int = SIZE) -> keras.Model:
    """Conv-ReLU-pool-conv-GAP-dense, deterministic weights."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(4, activation="softmax" if softmax else None, name="predictions")(x)
    return keras.Model(inp, out, name="toy_cnn")


def mixed_precision_pair(policy: str, seed: int = 3) -> tuple[keras.Model, keras.Model]:
    """(toy_cnn built under the mixed-precision `policy`, a float32 toy_cnn with its weights)."""
    keras.mixed_precision.set_global_policy(policy)
    try:
        mixed = toy_cnn(seed=seed)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    plain = toy_cnn(seed=seed)
    plain.set_weights(mixed.get_weights())
    return mixed, plain


def nested_cnn(seed: int = 1) -> keras.Model:
    """A 'pretrained base used as a layer' model: base (functional) inside an outer model."""
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((SIZE, SIZE, 3))
    b = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="b_conv1")(base_in)
    b = keras.layers.Conv2D(7, 3, padding="same", activation="relu", name="b_conv2")(b)
    base = keras.Model(base_in, b, name="base")
    inp = keras.Input((SIZE, SIZE, 3))
    x = base(inp)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    out = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out, name="outer")


def sequential_cnn(seed: int = 2) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((SIZE, SIZE, 3)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="s_conv"),
        keras.layers.Flatten(name="flat"),
        keras.layers.Dense(5, name="dense"),
        keras.layers.Softmax(name="softmax"),
    ], name="seq")


class Subclassed(keras.Model):
    """A subclassed model: its layers cannot be walked, only called."""

    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(3, 3, padding="same", activation="relu")
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(4)

    def call(self, x):
        return self.head(self.pool(self.conv(x)))


def snapshot(model: keras.Model, probe: np.ndarray):
    """Weights, outputs and plain input gradients of the user's model, for bit-identity checks."""
    x = tf.constant(probe)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = model(x)
        total = tf.reduce_sum(out[:, 0])
    grad = tape.gradient(total, x)
    return ([w.copy() for w in model.get_weights()], out.numpy(), grad.numpy(),
            [type(lay).__name__ + str(getattr(lay, "activation", "")) for lay in model.layers])


def assert_same_snapshot(a, b):
    for wa, wb in zip(a[0], b[0]):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])
    assert a[3] == b[3]


@pytest.fixture
def images():
    return np.random.default_rng(0).random((5, SIZE, SIZE, 3)).astype(np.float32)


@pytest.fixture
def cnn():
    return toy_cnn()
