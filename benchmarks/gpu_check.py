"""One short check on a GPU: every tfsal method and the nonlinear loop on ResNet50 224²
(weights=None: timing only), as ratios to the GPU floor, with peak GPU memory and the host
round trips left in the traced functions.

    .venv/bin/python benchmarks/gpu_check.py [--batch 32] [--repeats 3] [--determinism]
                                             [--smoke]

The floor is one plain compiled gradient pass of the same batch (`_timing.floor_fn`). Each
method is called once (its trace, reported apart) and then `--repeats` times (the median is
reported); SmoothGrad, VarGrad and IG also against n floors, the nonlinear loop per step.
*Host ops*: Python-function ops (`tf.numpy_function` / `tf.py_function`: a copy to the host
and a synchronisation each) in every function the adapter traced for the method, nested
functions included. *Device path*: the method's loop ran as device-resident compiled
functions (`tfsal.devices`). `--determinism` enables op determinism first and checks that a
second call gives bit-identical results.

Without a GPU it says so and runs a tiny CPU smoke version (a small CNN, device paths
forced), then exits 0; `--smoke` runs that version anywhere. Not a test: nothing here asserts.
Expect 2-4 minutes on one H100 (most of it tracing ResNet50 once per method).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from contextlib import contextmanager

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import floor_fn  # noqa: E402

import tfsal  # noqa: E402
from tfsal import devices  # noqa: E402

HOST_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")
N_PATH = 50  # SmoothGrad / VarGrad samples, IG steps
PATH_METHODS = ("smoothgrad", "vargrad", "integrated_gradients")
LOOP = "nonlinear loop"


def op_types(concrete) -> list[str]:
    """The op types of a concrete function and of every function nested in it."""
    graph = concrete.graph.as_graph_def()
    types = [node.op for node in graph.node]
    for function in graph.library.function:
        types += [node.op for node in function.node_def]
    return types


def host_ops(concretes) -> int:
    """How many Python-function ops the functions hold (each a host round trip per call)."""
    return sum(op in HOST_OPS for concrete in concretes for op in op_types(concrete))


@contextmanager
def recorded(model: tfsal.Model):
    """Record (key, concrete function) of everything the adapter hands out meanwhile."""
    seen, compiled = [], model.compiled

    def record(key, build):
        seen.append((tuple(key), compiled(key, build)))
        return seen[-1][1]

    model.compiled = record
    try:
        yield seen
    finally:
        del model.compiled


@contextmanager
def forced_device_paths():
    """The device paths on a machine without a GPU (the smoke version)."""
    original = devices.device_loops
    devices.device_loops = lambda: True
    try:
        yield
    finally:
        devices.device_loops = original


def gpu_memory() -> dict | None:
    try:
        return tf.config.experimental.get_memory_info("GPU:0")
    except (ValueError, tf.errors.NotFoundError):
        return None


def reset_gpu_memory() -> None:
    if gpu_memory() is not None:
        tf.config.experimental.reset_memory_stats("GPU:0")


def calls(model, images, targets, n_path: int, loop: dict) -> dict:
    """What is timed: name -> a call returning an array."""
    options = {"smoothgrad": dict(n_samples=n_path, seed=0),
               "vargrad": dict(n_samples=n_path, seed=0),
               "integrated_gradients": dict(steps=n_path)}
    table = {name: (lambda method=method, name=name: method(model, images, targets,
                                                          **options.get(name, {})))
             for name, method in tfsal.METHODS.items()}
    table[LOOP] = lambda: tfsal.nonlinear_saliency(model, images, targets, **loop).maps
    return table


def check(model, floor, images, targets, *, n_path: int, loop: dict, repeats: int,
          determinism: bool) -> tuple[float, list[dict]]:
    """(floor seconds, one row per method)."""
    floor(images)  # trace
    floor_seconds = statistics.median(_seconds(lambda: floor(images)) for _ in range(repeats))
    steps = len(loop["levels"]) * loop["steps_per_level"]
    rows = []
    for name, call in calls(model, images, targets, n_path, loop).items():
        reset_gpu_memory()
        with recorded(model) as seen:
            start = time.perf_counter()
            first = call()
            first_seconds = time.perf_counter() - start
            seconds = statistics.median(_seconds(call) for _ in range(repeats))
            same = bool(np.array_equal(first, call())) if determinism else None
        memory = gpu_memory()
        keys = {key[0] for key, _ in seen if isinstance(key[0], str)}
        units = n_path if name in PATH_METHODS else steps if name == LOOP else 1
        rows.append(dict(
            name=name, seconds=seconds, first=first_seconds, ratio=seconds / floor_seconds,
            per_unit=seconds / (units * floor_seconds) if units > 1 else None,
            peak=None if memory is None else memory["peak"] / 2**20,
            host_ops=host_ops(dict(seen).values()), same=same,
            device=("sum_over_points" in keys if name in PATH_METHODS
                    else "nonlinear" in keys if name == LOOP else None)))
    return floor_seconds, rows


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def table(floor_seconds: float, rows: list[dict], n_path: int, steps: int) -> str:
    yes_no = {True: "yes", False: "no", None: "—"}
    lines = [f"floor (one plain gradient pass of the batch): {floor_seconds:.4f} s", "",
             "| method | seconds | × floor | per sample / step × floor | first call (s) | "
             "peak GPU MiB | host ops | device path | identical twice |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        unit = "—" if row["per_unit"] is None else f"{row['per_unit']:.3f}"
        peak = "—" if row["peak"] is None else f"{row['peak']:.0f}"
        lines.append(f"| {row['name']} | {row['seconds']:.4f} | {row['ratio']:.2f} | {unit} | "
                     f"{row['first']:.2f} | {peak} | {row['host_ops']} | "
                     f"{yes_no[row['device']]} | {yes_no[row['same']]} |")
    left = sum(row["host_ops"] for row in rows)
    lines += ["", f"per sample: SmoothGrad / VarGrad / IG against {n_path} floors; per step: "
              f"the nonlinear loop against {steps} floors",
              f"host round trips left in traced functions: {left}"
              + ("" if left else " (none)")]
    return "\n".join(lines)


def resnet50(batch: int):
    """(adapter, floor, images, targets): ResNet50 224², weights=None, "caffe" inputs."""
    import keras

    keras.utils.set_random_seed(0)
    user = keras.applications.ResNet50(weights=None)
    model = tfsal.Model(user, preprocess="caffe", batch_size=batch)
    images = np.random.default_rng(0).random((batch, 224, 224, 3), dtype=np.float32)
    targets = (np.arange(batch) % 1000).astype(np.int32)
    return model, floor_fn(user, model._preprocess, (224, 224)), images, targets


def small_cnn(batch: int):
    """(adapter, floor, images, targets) of a small CNN on 32² images, for the smoke run."""
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    user = keras.Model(inp, keras.layers.Dense(5, activation="softmax")(x))
    model = tfsal.Model(user, batch_size=batch)
    images = np.random.default_rng(0).random((batch, 32, 32, 3), dtype=np.float32)
    return model, floor_fn(user), images, (np.arange(batch) % 5).astype(np.int32)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--determinism", action="store_true",
                        help="enable op determinism and check two calls are identical")
    parser.add_argument("--smoke", action="store_true",
                        help="the tiny CPU version (a small CNN, device paths forced)")
    args = parser.parse_args(argv)
    if args.determinism:
        tf.config.experimental.enable_op_determinism()
    gpus = tf.config.list_physical_devices("GPU")
    smoke = args.smoke or not gpus
    if not gpus:
        print("no GPU visible to TensorFlow: running the tiny CPU smoke version instead "
              "(a small CNN, device paths forced)")
    else:
        details = tf.config.experimental.get_device_details(gpus[0])
        print(f"GPU: {details.get('device_name', gpus[0].name)}; TensorFlow {tf.__version__}"
              + ("; op determinism on" if args.determinism else ""))
    if smoke:
        batch, n_path, repeats = min(args.batch, 4), 4, min(args.repeats, 1)
        loop = dict(levels=(0.0, 0.5), steps_per_level=2)
        model, floor, images, targets = small_cnn(batch)
    else:
        batch, n_path, repeats = args.batch, N_PATH, args.repeats
        from tfsal.nonlinear import LEVELS, STEPS_PER_LEVEL

        loop = dict(levels=LEVELS, steps_per_level=STEPS_PER_LEVEL)
        model, floor, images, targets = resnet50(batch)
    print(f"{'small CNN 32²' if smoke else 'ResNet50 224²'}, batch {batch}, "
          f"{repeats} timed calls each after the first", flush=True)
    start = time.perf_counter()
    with forced_device_paths() if smoke else _nothing():
        floor_seconds, rows = check(model, floor, images, targets, n_path=n_path, loop=loop,
                                    repeats=repeats, determinism=args.determinism)
    print(table(floor_seconds, rows, n_path, len(loop["levels"]) * loop["steps_per_level"]))
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


@contextmanager
def _nothing():
    yield


if __name__ == "__main__":
    sys.exit(main())
