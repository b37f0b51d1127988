"""What the TensorFlow runtime offers the loops: a GPU, and whether ops must be deterministic.

SmoothGrad and Integrated Gradients keep their batches on the device everywhere (inputs
uploaded once, points and sums made by TensorFlow ops inside compiled functions, no copy back
until the result): a device→host copy and a synchronisation per batch would idle a GPU, and on
a CPU the compiled sums are as fast or faster than NumPy's. The nonlinear loop's level
selection differs: NumPy's introselect on a CPU (a host round trip per step, but cheaper
there than `top_k`, BENCHMARKS.md), TensorFlow's `top_k` where `device_loops()` (a GPU). Both paths
give the same numbers.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def device_loops() -> bool:
    """True where the loops should run wholly on the device: TensorFlow sees a GPU.

    The one switch between the host and device paths (today: the nonlinear loop's level
    selection); tests replace it (`monkeypatch`) to build and check the device paths on a
    machine without a GPU.
    """
    return bool(tf.config.list_logical_devices("GPU"))


def deterministic() -> bool:
    """True after `tf.config.experimental.enable_op_determinism()`: ops without a
    deterministic GPU kernel (bincounts) must be avoided in the functions traced from then on."""
    from tensorflow.python.framework.config import is_op_determinism_enabled

    return bool(is_op_determinism_enabled())


def upload(array: np.ndarray) -> tf.Tensor:
    """`array` as a tensor on the default device (the GPU where there is one), copied once.

    `tf.constant` alone leaves the data in host memory, to be copied again by every function
    call that reads it on the GPU; an `identity` placed on the device keeps one copy there.
    """
    return tf.identity(tf.convert_to_tensor(array))
