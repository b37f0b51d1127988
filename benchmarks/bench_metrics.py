"""Cost of an allegiance curve against the forward passes it needs, in the same process.

    .venv/bin/python benchmarks/bench_metrics.py [--n-images 100] [--repeats 5]

The curve needs one forward pass of the originals and one per fraction (13 on the reference
grid): the floor is 14 batched forward passes of the same images, compiled, nothing else.
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from bench_methods import interleaved  # noqa: E402

import tfsal  # noqa: E402
from tfsal.data import make_dataset  # noqa: E402
from tfsal.metrics import FRACTIONS, allegiance_curve  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = tfsal.load_model("shapes-cnn", batch_size=256)
    images = make_dataset(args.n_images, seed=4).images
    maps = tfsal.signed_maps(model, images).positive
    passes = len(FRACTIONS) + 1
    stacked = np.concatenate([images] * passes)
    times = interleaved({
        "floor": lambda: model.predicted_classes(stacked),
        "allegiance": lambda: allegiance_curve(model, images, maps),
    }, args.repeats)
    ratio = times["allegiance"] / times["floor"]
    print(f"| embedded | allegiance curve, {args.n_images} images × {len(FRACTIONS)} fractions | "
          f"{times['allegiance']:.4f} s | {ratio:.3f}× the {passes} forward passes "
          f"({times['floor']:.4f} s) | ≤ 1.2× | {'yes' if ratio <= 1.2 else 'no'} |")


if __name__ == "__main__":
    main()
