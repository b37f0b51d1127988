"""Peak memory of SmoothGrad and Integrated Gradients as n_samples / steps grow.

    .venv/bin/python benchmarks/bench_memory.py [--models embedded,resnet50]
                                                [--sizes 8,32,128,512] [--out part.md] [--quick]

One fresh Python process per model and implementation: build the model, note the resident
set size (RSS), then make one call for one image per n, in increasing order, reading the
process's RSS high-water mark (`VmHWM`, which sees TensorFlow's allocations; tracemalloc would
not) after each. tfsal runs with batch_size = 32: its peak must stop growing once n exceeds 32.
Peers are measured on the embedded model, where their one-batch designs stay cheap to run.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
warnings.filterwarnings("ignore", category=UserWarning)  # peers' Keras 3 structure warnings
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

BATCH = 32
IMPLS = {  # name -> (library, method)
    "floor": ("floor", ""),
    "tfsal SmoothGrad": ("tfsal", "smoothgrad"),
    "tfsal IG": ("tfsal", "integrated_gradients"),
    "xplique SmoothGrad": ("xplique", "smoothgrad"),
    "xplique IG": ("xplique", "integrated_gradients"),
    "tf-explain SmoothGrad": ("tf-explain", "smoothgrad"),
    "tf-explain IG": ("tf-explain", "integrated_gradients"),
    "saliency IG": ("saliency", "integrated_gradients"),
    "tf-keras-vis SmoothGrad": ("tf-keras-vis", "smoothgrad"),
}
PEER_MODELS = ("embedded",)


def status_mb(key: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def caller(flat, impl: str, n: int):
    """A no-argument callable making one call of `impl` with n samples / steps."""
    import numpy as np

    import tfsal

    image = np.random.default_rng(0).random((1, *flat.input_shape[1:]), dtype=np.float32)
    library, method = IMPLS[impl]
    if library == "tfsal":
        model = caller.adapters.setdefault(id(flat), tfsal.Model(flat, batch_size=BATCH))
        option = "n_samples" if method == "smoothgrad" else "steps"
        return lambda: getattr(tfsal, method)(model, image, 0, **{option: n})
    if library == "floor":
        from _timing import floor_fn

        floor = caller.floors.setdefault(id(flat), floor_fn(flat))
        return lambda: floor(np.repeat(image, n, axis=0))
    from _peers import FACTORIES

    peer = FACTORIES[library](flat, dict(n_path=n, noise_level=0.15, batch_size=BATCH,
                                         layer=None, methods=(method,)))
    if method not in peer.impls:
        raise RuntimeError(peer.error or peer.missing.get(method))
    return lambda: peer.impls[method].call(image, 0)


caller.adapters, caller.floors = {}, {}


def child(model_name: str, impl: str, sizes: list[int]) -> dict:
    """Runs in a fresh process: {n: [rise MB, peak MB]} or {n: error}."""
    from _models import PREPROCESS, build, pixel_logits

    user, _ = build(model_name)
    flat = pixel_logits(user, PREPROCESS[model_name])
    del user
    base = status_mb("VmRSS")
    results = {}
    for n in sizes:  # increasing: the high-water mark after call k is call k's peak if it grew
        try:
            caller(flat, impl, n)()
        except Exception as exc:
            from _peers import short_error

            results[n] = short_error(exc)
            continue
        peak = status_mb("VmHWM")
        results[n] = [peak - base, peak]
    return results


def measure(model_name: str, impl: str, sizes: list[int]) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", model_name,
                          impl, ",".join(map(str, sizes))], stdout=subprocess.PIPE, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        return {n: f"process exited {out.returncode}" for n in sizes}
    return {int(n): v for n, v in json.loads(lines[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="embedded,resnet50")
    parser.add_argument("--sizes", default="8,32,128,512")
    parser.add_argument("--resnet50-sizes", default="8,32,128",
                        help="ResNet50's sizes (n = 512 would cost ~2 min of gradients on 2 "
                        "cores per method; 128 = four batches already shows the plateau)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "IMPLS", "SIZES"))
    args = parser.parse_args()
    if args.child:
        sizes = [int(n) for n in args.child[2].split(",")]
        print(json.dumps(child(args.child[0], args.child[1], sizes)))
        return
    from _timing import report

    lines = ["## Peak memory of SmoothGrad and IG as n_samples / steps grow", "",
             "Peak resident set size of a fresh process per implementation, above its RSS once "
             "the model is built, in MB (the absolute peak in brackets), after one call for "
             "one image with each n in increasing order (the first includes tracing); tfsal, "
             f"xplique and saliency run batches of {BATCH}. *floor, batch n*: one plain "
             "gradient call of n copies of the image — what holding every point in one batch "
             "costs (`benchmarks/bench_memory.py`).", ""]
    for model_name in args.models.split(","):
        sizes = args.resnet50_sizes if model_name == "resnet50" else args.sizes
        sizes = [int(s) for s in ("8,32,64" if args.quick else sizes).split(",")]
        impls = ["floor", "tfsal SmoothGrad", "tfsal IG"]
        if model_name in PEER_MODELS:
            impls += [name for name in IMPLS if name not in impls]
        lines += [f"### {model_name}", "",
                  "| implementation | " + " | ".join(f"n = {n}" for n in sizes) + " |",
                  "|---|" + "---|" * len(sizes)]
        for impl in impls:
            print(f"memory: {model_name} {impl}", flush=True)
            # one batch of n ResNet50 images beyond 32 would need many GB: not run
            run_sizes = [n for n in sizes if impl != "floor" or model_name != "resnet50"
                         or n <= BATCH]
            results = measure(model_name, impl, run_sizes)
            cells = ["not run" if n not in results else results[n] if isinstance(results[n], str)
                     else f"+{results[n][0]:.0f} ({results[n][1]:.0f})" for n in sizes]
            label = "floor, batch n" if impl == "floor" else impl
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
