"""tfsal on a SavedModel (the op-level path) against the Keras floor, ResNet50 224².

    .venv/bin/python benchmarks/bench_saved_model.py [--repeats 5] [--out part.md] [--quick]

The flat Keras model (pixels in [0, 1] → preprocessing → ResNet50 → logits, weights=None) is
exported with `model.export()`; the floor is a compiled `GradientTape` input gradient of the
Keras model, batch 1. Timed in interleaved rounds: the floor, and tfsal's vanilla gradient,
Guided Backprop, RectGrad and Grad-CAM on the loaded export (each through the graph imported
under the rule's `gradient_override_map`) and on the Keras model. Reported apart: the first-call
cost (loading, inlining the graph, the first trace) and the peak memory (VmHWM) after each
stage. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from _models import build_pixel  # noqa: E402
from _timing import environment, floor_fn, interleaved, report  # noqa: E402

import tfsal  # noqa: E402

RECTGRAD = dict(percentile=98, padding_trick=True, prr=True)
METHODS = {  # label, call, target ratio to the floor
    "vanilla gradient": (lambda m, x, t: tfsal.vanilla_gradient(m, x, t), 1.05),
    "Guided Backprop": (lambda m, x, t: tfsal.guided_backprop(m, x, t), 1.05),
    "RectGrad (q=98, padding trick, PRR)": (lambda m, x, t: tfsal.rectgrad(m, x, t, **RECTGRAD),
                                            1.5),
    "Grad-CAM": (lambda m, x, t: tfsal.grad_cam(m, x, t), 0.5),
}


def peak_mb() -> float:
    """The process's peak resident memory so far (VmHWM), MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats

    memory = [("Keras model built", peak_mb())]
    flat = build_pixel("resnet50")
    memory.append(("flat Keras model built", peak_mb()))
    image = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    target = 1
    floor = floor_fn(flat, target=target)
    floor(image)
    keras_side = tfsal.Model(flat, batch_size=1)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        flat.export(os.path.join(tmp, "resnet50"), verbose=False)
        export_seconds = time.perf_counter() - began
        memory.append(("exported", peak_mb()))
        began = time.perf_counter()
        loaded = tfsal.load_model(os.path.join(tmp, "resnet50"), batch_size=1)
        load_seconds = time.perf_counter() - began
        memory.append(("loaded and inlined (tfsal.load_model)", peak_mb()))
        first = {}
        for label, (method, _) in METHODS.items():
            for side, model in (("SavedModel", loaded), ("Keras", keras_side)):
                began = time.perf_counter()
                method(model, image, target)
                first[(side, label)] = time.perf_counter() - began
            memory.append((f"first calls of {label}", peak_mb()))
        candidates = {("floor", ""): lambda: floor(image)}
        for label, (method, _) in METHODS.items():
            for side, model in (("SavedModel", loaded), ("Keras", keras_side)):
                candidates[(side, label)] = lambda m=model, f=method: f(m, image, target)
        times = interleaved(candidates, repeats, min_round=0.5)
        agreement = {label: _relative(method(keras_side, image, target),
                                      method(loaded, image, target))
                     for label, (method, _) in METHODS.items()}
    f1 = times[("floor", "")]
    lines = ["## SavedModel path (op-level rules) on ResNet50 224²", "",
             f"{environment()}. Medians of {repeats} interleaved rounds, batch 1; the floor is "
             f"the Keras model's compiled tape gradient ({f1:.4f} s). Export took "
             f"{export_seconds:.1f} s; `tfsal.load_model` (restore + inline) {load_seconds:.1f} s.",
             "", "| method | SavedModel (s) | ratio | Keras path (s) | ratio | target | met | "
             "first call SavedModel / Keras (s) | max rel. difference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for label, (_, limit) in METHODS.items():
        saved, keras_time = times[("SavedModel", label)], times[("Keras", label)]
        met = "yes" if saved / f1 <= limit else "no"
        lines.append(f"| {label} | {saved:.4f} | {saved / f1:.3f} | {keras_time:.4f} | "
                     f"{keras_time / f1:.3f} | ≤ {limit}× | {met} | "
                     f"{first[('SavedModel', label)]:.2f} / {first[('Keras', label)]:.2f} | "
                     f"{agreement[label]:.1e} |")
    lines += ["", "Peak resident memory (VmHWM) after each stage:", "",
              "| stage | peak MB |", "|---|---|"]
    lines += [f"| {stage} | {mb:.0f} |" for stage, mb in memory]
    report("\n".join(lines) + "\n", args.out)


def _relative(expected, got) -> float:
    expected, got = np.asarray(expected, np.float64), np.asarray(got, np.float64)
    return float(np.abs(expected - got).max() / max(np.abs(expected).max(), 1e-30))


if __name__ == "__main__":
    main()
