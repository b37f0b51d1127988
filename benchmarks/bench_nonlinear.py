"""Cost of the nonlinear saliency loop, as a ratio to the forward+backward floor.

    .venv/bin/python benchmarks/bench_nonlinear.py [--models embedded,resnet50] [--repeats 3]
                                                   [--out BENCHMARKS_NONLINEAR.md]

Per-step cost: the time of a whole trajectory of M items divided by its S steps, against the
floor (a plain compiled input gradient, `bench_methods.floor_fn`) of a batch of the same M
images, measured in the same process with interleaved rounds. Batching: M items in one call
against M calls of one item, per trajectory. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from _timing import environment  # noqa: E402
from bench_methods import build, floor_fn, interleaved, report  # noqa: E402

import tfsal  # noqa: E402

# (images, targets per image, levels, steps per level) per model: the embedded model runs the
# library defaults; ResNet50 a shorter loop that keeps this harness within minutes on 2 cores.
SETTINGS = {"embedded": (8, 2, tfsal.nonlinear.LEVELS, tfsal.nonlinear.STEPS_PER_LEVEL),
            "resnet50": (2, 2, (0.0, 0.5, 0.95), 4)}


def bench(name: str, repeats: int) -> list[str]:
    user, model = build(name)
    n_images, k, levels, steps = SETTINGS[name]
    h, w = model.input_size
    images = np.random.default_rng(0).random((n_images, h, w, 3), dtype=np.float32)
    targets = np.stack([np.arange(n_images) % 7, np.arange(n_images) % 7 + 1], 1)[:, :k]
    items = n_images * k
    model.batch_size = items
    floor = floor_fn(user, model)
    batch = np.repeat(images, k, axis=0)
    options = dict(levels=levels, steps_per_level=steps)
    n_steps = len(levels) * steps

    def one_at_a_time():
        for i in range(n_images):
            for t in targets[i]:
                tfsal.nonlinear_saliency(model, images[i:i + 1], int(t), **options)

    # the step's image work alone: rank selection, blur and update, no model call
    filters = tuple(tf.constant(f) for f in tfsal.nonlinear.blur_filters(
        batch.shape, tfsal.nonlinear._sigma(None, batch.shape)))
    advance = tf.function(lambda x, g: tfsal.nonlinear.advance(
        x, g, tf.constant(0.5), filters, tf.constant(2.0), tf.constant(1.0)), autograph=False)
    x, g = tf.constant(batch), tf.constant(floor(batch))

    times = interleaved({
        "floor": lambda: floor(batch),
        "image work": lambda: advance(x, g),
        "nonlinear": lambda: tfsal.nonlinear_saliency(model, images, targets, **options),
        "linear": lambda: tfsal.nonlinear_saliency(model, images, targets, linear=True,
                                                   **options),
        "one at a time": one_at_a_time,
    }, repeats)
    per_step = times["nonlinear"] / n_steps
    rows = [
        f"| {name} | floor, batch of {items} | {times['floor']:.4f} | 1.000 | — | — |",
        f"| {name} | nonlinear loop per step ({items} items, {n_steps} steps) | {per_step:.4f} | "
        f"{per_step / times['floor']:.3f} | ≤ 1.15× | "
        f"{'yes' if per_step / times['floor'] <= 1.15 else 'no'} |",
        f"| {name} | image work of a step alone (selection at level 0.5, blur, update) | "
        f"{times['image work']:.4f} | {times['image work'] / times['floor']:.3f} | — | — |",
        f"| {name} | linear loop per step (forward only after the first gradient) | "
        f"{times['linear'] / n_steps:.4f} | {times['linear'] / n_steps / times['floor']:.3f} | "
        "— | — |",
        f"| {name} | per trajectory, {items} in one call | {times['nonlinear'] / items:.4f} | "
        f"{times['nonlinear'] / times['one at a time']:.3f} of one at a time | < 1 | "
        f"{'yes' if times['nonlinear'] < times['one at a time'] else 'no'} |",
        f"| {name} | per trajectory, one item per call | {times['one at a time'] / items:.4f} | "
        "1.000 | — | — |",
    ]
    return rows


HEADER = """# Nonlinear saliency loop benchmarks

Machine: {machine}; load average {load}.
`benchmarks/bench_nonlinear.py`,
medians of {repeats} interleaved rounds. A step is one forward+backward of every item plus the
blur, the rank selection of the level's pixels and the update; the floor is a plain compiled
input gradient of the same batch. ResNet50 runs 224² images, `weights=None`, a 3-level ×
4-step loop; the embedded model the library defaults (8 levels × 10 steps). The last forward
pass (the probability at the final image) is included in the per-step figure.
"""

NOTES = """
What bounds the per-step ratio: a step is the floor's forward+backward plus image work that
does not shrink with the model (the *image work* row: the rank selection of the level's pixels
by NumPy's introselect, the separable Gaussian blur as two matrix products, the update and
clipping). On ResNet50 it is a few per cent of a step; on the 64² embedded model it is a
larger share, partly hidden when TensorFlow runs the blur (which needs only the current
image) alongside the model's backward pass.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="embedded,resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    lines = ["| model | measurement | seconds | ratio | target | met |",
             "|---|---|---|---|---|---|"]
    for name in args.models.split(","):
        print(f"benchmarking {name} ...", flush=True)
        lines += bench(name, args.repeats)
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    header = HEADER.format(machine=environment(), load=load, repeats=args.repeats)
    report(header + "\n" + "\n".join(lines) + "\n" + NOTES, args.out)


if __name__ == "__main__":
    main()
