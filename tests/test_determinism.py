"""Op determinism (`tf.config.experimental.enable_op_determinism()`): every method, the
nonlinear loop and the signed maps run, twice with bit-identical results, on the host and the
device paths, and no traced function holds an op without a deterministic GPU kernel (the
radix select's bincounts). Determinism is process-global: the checks run in a subprocess."""

import json
import os
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))

SCRIPT = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import tensorflow as tf
from conftest import toy_cnn

import tfsal
from tfsal import devices
from tfsal.selection import best_selection

IMAGES = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
OPTIONS = {"smoothgrad": {"n_samples": 3, "seed": 0}, "vargrad": {"n_samples": 3, "seed": 0},
           "integrated_gradients": {"steps": 4}, "rectgrad": {"percentile": 50}}
LOOP = dict(levels=(0.0, 0.5, 0.95), steps_per_level=2)


def recording(model):
    # the adapter, recording the concrete functions it hands out (`Model.compiled`)
    model.seen, compiled = [], model.compiled

    def record(key, build):
        model.seen.append(compiled(key, build))
        return model.seen[-1]

    model.compiled = record
    return model


def op_types(model):
    # every op of every function the adapter traced, nested functions included
    types = set()
    for concrete in model.seen:
        graph = concrete.graph.as_graph_def()
        types |= {node.op for node in graph.node}
        for function in graph.library.function:
            types |= {node.op for node in function.node_def}
    return types


def run_all(model):
    out = {name: method(model, IMAGES, 1, **OPTIONS.get(name, {}))
           for name, method in tfsal.METHODS.items()}
    trajectory = tfsal.nonlinear_saliency(model, IMAGES, 1, **LOOP)
    out["nonlinear"] = np.concatenate([trajectory.probabilities.ravel(),
                                       trajectory.maps.ravel()])
    out["signed_maps"] = tfsal.signed_maps(model, IMAGES, 1).positive
    return out


report = {}
# Without determinism, RectGrad's 1536-value layer at q = 50 takes the radix select: the
# bincount the GPU cannot run deterministically (the control for the check below).
plain = recording(tfsal.Model(toy_cnn(seed=1)))
tfsal.rectgrad(plain, IMAGES, 1, percentile=50)
report["bincount_without_determinism"] = "DenseBincount" in op_types(plain)
report["selection_without_determinism"] = best_selection(200_000, 100_000)

tf.config.experimental.enable_op_determinism()
report["selection_with_determinism"] = best_selection(200_000, 100_000)
for path in ("host", "device"):
    devices.device_loops = (lambda on: lambda: on)(path == "device")
    model = recording(tfsal.Model(toy_cnn(seed=1)))
    first, second = run_all(model), run_all(model)
    report[path] = {name: bool(np.isfinite(first[name]).all() and np.abs(first[name]).max() > 0
                               and np.array_equal(first[name], second[name]))
                    for name in first}
    report[path + "_bincount"] = "DenseBincount" in op_types(model)
print("REPORT" + json.dumps(report))
"""


def test_every_method_runs_twice_identically_under_op_determinism():
    done = subprocess.run([sys.executable, "-c", SCRIPT, TESTS], capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT"):])
    assert report["bincount_without_determinism"]
    assert report["selection_without_determinism"] == "radix"
    assert report["selection_with_determinism"] == "top_k"
    for path in ("host", "device"):
        failed = [name for name, ok in report[path].items() if not ok]
        assert not failed, (path, failed)
        assert {"nonlinear", "signed_maps", "rectgrad", "smoothgrad"} <= set(report[path])
        assert not report[path + "_bincount"], path
