"""What every benchmark here shares: the floor, the timers, the environment line, the report.

The floor is a plain compiled `GradientTape` input gradient of one class score of the same
Keras model (preprocessing included), with nothing of tfsal in it. Timings are medians over
rounds in which every candidate runs once (interleaved, so drift hits them alike), each
candidate warmed up first.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def floor_fn(user, preprocess: Callable = lambda x: x, size: tuple[int, int] | None = None,
             target: int = 0, jit_compile: bool = False):
    """Input gradient of class `target`'s output of `user(preprocess(x))`, compiled, nothing
    of tfsal in it. Returns a NumPy-in, NumPy-out callable."""
    h, w = size or tuple(user.input_shape[1:3])

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)],
                 jit_compile=jit_compile)
    def floor(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            total = tf.reduce_sum(user(preprocess(x))[:, target])
        return tape.gradient(total, x)

    return lambda images: floor(tf.constant(images)).numpy()


def forward_fn(user, size: tuple[int, int] | None = None):
    """The compiled forward pass alone: what Grad-CAM cannot do without."""
    h, w = size or tuple(user.input_shape[1:3])

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)])
    def forward(x):
        return user(x)

    return lambda images: forward(tf.constant(images)).numpy()


def layer_floor_fn(user, layer: str, target: int = 0):
    """Grad-CAM's work with nothing of any library in it: the compiled forward pass and the
    gradient of class `target`'s output with respect to `layer`'s output (the backward pass
    stops there). Returns (activations, gradients) as NumPy."""
    import keras

    h, w = tuple(user.input_shape[1:3])
    both = keras.Model(user.inputs, [user.get_layer(layer).output, user.output])

    @tf.function(input_signature=[tf.TensorSpec([None, h, w, 3], tf.float32)])
    def layer_floor(x):
        with tf.GradientTape() as tape:
            features, out = both(x)
            total = tf.reduce_sum(out[:, target])
        return features, tape.gradient(total, features)

    return lambda images: [t.numpy() for t in layer_floor(tf.constant(images))]


def noisy_floor_fn(floor, n: int, batch: int, noise_level: float, seed: int = 0):
    """SmoothGrad's floor for one image: the n noise draws tfsal makes (NumPy, one generator
    per sample, drawn by one thread per core into one table, as tfsal draws them) and the
    floor on the same batches of noisy copies (batch, …, the rest), nothing else: no sums,
    no conversions, no checks."""
    from concurrent.futures import ThreadPoolExecutor

    def noisy_floor(image):
        sigma = noise_level * (image.max() - image.min())
        noise = np.empty((n,) + image.shape[1:], np.float32)

        def draw(j):
            np.random.default_rng([seed, j]).standard_normal(dtype=np.float32, out=noise[j])

        with ThreadPoolExecutor(min(n, os.cpu_count() or 1)) as pool:
            list(pool.map(draw, range(n)))
        noisy = image + sigma * noise
        return [floor(noisy[start:start + batch]) for start in range(0, n, batch)]

    return noisy_floor


def timed(fn, iterations: int = 1) -> float:
    """Seconds per call, averaged over `iterations` back-to-back calls."""
    start = time.perf_counter()
    for _ in range(iterations):
        fn()
    return (time.perf_counter() - start) / iterations


def interleaved(candidates: dict, repeats: int, min_round: float = 0.2,
                slow: frozenset = frozenset(), once: frozenset = frozenset(),
                slow_rounds: int | None = None) -> dict:
    """Median seconds per call over `repeats` rounds in which every candidate runs in turn.

    Each candidate is warmed up first; fast ones are repeated within a round until the round
    lasts ≥ `min_round` seconds, so millisecond calls are not at the mercy of timer and
    scheduler noise. Candidates named in `slow` were already warmed by the caller and take
    seconds: they skip the warm-up and run once per round, in the first `slow_rounds` rounds
    only (default: all). Those in `once` (already warmed, tens of seconds a call) run in the
    first round only.
    """
    slow_rounds = repeats if slow_rounds is None else slow_rounds
    iterations = {}
    for name, fn in candidates.items():
        if name in slow or name in once:
            iterations[name] = 1
            continue
        fn()
        iterations[name] = max(1, int(min_round / max(timed(fn), 1e-6)))
    samples = {name: [] for name in candidates}
    for round_ in range(repeats):
        for name, fn in candidates.items():
            if round_ == 0 or (name not in once and (name not in slow
                                                       or round_ < slow_rounds)):
                samples[name].append(timed(fn, iterations[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


def best_batch(floor, image: np.ndarray, batch_sizes=(8, 16, 32), repeats: int = 3):
    """(batch size, seconds per image) of the floor's cheapest batch size for `image`."""
    times = interleaved({b: (lambda b=b: floor(np.repeat(image, b, axis=0)))
                         for b in batch_sizes}, repeats)
    best = min(times, key=lambda b: times[b] / b)
    return best, times[best] / best


def environment() -> str:
    """One line: cores, CPU, versions."""
    import keras

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            names = [line.split(":", 1)[1].strip() for line in handle
                     if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return (f"{os.cpu_count()} CPU cores ({cpu}), Python {platform.python_version()}, "
            f"TensorFlow {tf.__version__}, Keras {keras.__version__}, NumPy {np.__version__}, "
            "no GPU")


def report(text: str, out: str | None) -> None:
    """Print the Markdown report and write it to `out` when given."""
    print(text)
    if out:
        with open(out, "w") as handle:
            handle.write(text)
