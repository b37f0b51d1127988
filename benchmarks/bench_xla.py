"""Does XLA (`jit_compile=True`) make the gradient cheaper on this CPU?

    .venv/bin/python benchmarks/bench_xla.py [--models resnet50,embedded] [--repeats 3]
                                             [--out part.md] [--quick]

Per model: the floor (plain compiled input gradient) and tfsal's own compiled input-gradient
function (the graph `tfsal.Model` builds), each as a `tf.function` without and with
`jit_compile=True`, at batch 1 and batch 16/32 — medians of interleaved rounds, in the same
process. Also reported: the first call (trace + XLA compilation) and the first call at a batch
size not seen before (XLA compiles one executable per input shape; a plain function does not
retrace, its signature leaves the batch free). Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _models import build_pixel  # noqa: E402
from _timing import floor_fn, interleaved, report, timed  # noqa: E402

import tfsal  # noqa: E402

BATCH = {"resnet50": 16, "vgg16": 16, "embedded": 32}


def tfsal_fn(model: tfsal.Model, jit: bool):
    """tfsal's input-gradient graph for score "logit", compiled with or without XLA."""
    plain = model._build_input_gradients("logit", None, None)
    fn = tf.function(plain.python_function, input_signature=plain.input_signature,
                     autograph=False, jit_compile=jit)
    return lambda x, t: fn(tf.constant(x), tf.constant(t))[0].numpy()


def bench(name: str, repeats: int, quick: bool) -> list[str]:
    flat = build_pixel(name)
    model = tfsal.Model(flat)
    batch = 4 if quick else BATCH[name]
    one = np.random.default_rng(0).random((1, *flat.input_shape[1:]), dtype=np.float32)
    many = np.repeat(one, batch, axis=0)
    odd = np.repeat(one, 3, axis=0)
    fns = {("floor", False): floor_fn(flat), ("floor", True): floor_fn(flat, jit_compile=True)}
    for jit in (False, True):
        run = tfsal_fn(model, jit)
        fns[("tfsal", jit)] = lambda x, run=run: run(x, np.zeros(len(x), np.int32))
    first, new_shape, agree = {}, {}, {}
    for key, fn in fns.items():
        first[key] = timed(lambda fn=fn: fn(one))
        fn(many)
        new_shape[key] = timed(lambda fn=fn: fn(odd))
    for what in ("floor", "tfsal"):
        plain, xla = fns[(what, False)](many), fns[(what, True)](many)
        agree[what] = float(np.abs(plain - xla).max() / np.abs(plain).max())
    candidates = {}
    for (what, jit), fn in fns.items():
        candidates[(what, jit, 1)] = lambda fn=fn: fn(one)
        candidates[(what, jit, batch)] = lambda fn=fn: fn(many)
    times = interleaved(candidates, repeats)
    lines = []
    for what in ("floor", "tfsal"):
        for b in (1, batch):
            plain, xla = times[(what, False, b)], times[(what, True, b)]
            lines.append(f"| {name} | {what} | {b} | {plain / b:.4f} | {xla / b:.4f} | "
                         f"{xla / plain:.2f} | {first[(what, True)]:.2f} "
                         f"({first[(what, False)]:.2f}) | {new_shape[(what, True)]:.3f} "
                         f"({new_shape[(what, False)]:.3f}) | {agree[what]:.1e} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="resnet50,embedded")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    lines = ["## XLA (`jit_compile=True`)", "",
             "Seconds per image without and with XLA, same process, medians of "
             f"{args.repeats} interleaved rounds (`benchmarks/bench_xla.py`). *First call*: "
             "trace + compilation, XLA (plain). *New batch size*: the first call at batch 3 "
             "after batches 1 and 16/32 — XLA compiles a new executable per shape, the plain "
             "function reuses its trace. *Max difference*: |plain − XLA| / max |plain|.", "",
             "| model | function | batch | plain (s/image) | XLA (s/image) | XLA / plain | "
             "first call, s | new batch size, s | max difference |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        print(f"xla: {name} ...", flush=True)
        lines += bench(name, args.repeats, args.quick)
    report("\n".join(lines) + "\n", args.out)


if __name__ == "__main__":
    main()
