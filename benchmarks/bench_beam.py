"""Images per second of `tfsal explain` on Apache Beam (DirectRunner, in-process and 2 worker
processes) against the local command on the same images and model.

The same 256 PNGs (64x64, the embedded shapes-cnn saved as a .keras file), vanilla gradient,
each run into a fresh output folder (nothing resumed), wall time end to end: loading the
model, reading and decoding the files, explaining, writing every map atomically. Both commands
run in this process through `tfsal.cli.main` (what `tfsal explain DIR` and `tfsal explain DIR
--runner DirectRunner` run); the local one with its per-image sheets of maps off (maps only: the
work Beam does; `--with-sheets` also times the command as users run it, drawing one matplotlib
figure per image). Rounds are interleaved; medians.

    python benchmarks/bench_beam.py [--n 256] [--rounds 3] [--ig] [--with-sheets] [--out FILE]

Needs the beam extra (pip install "tfsal[beam]").
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from tfsal.data import make_dataset

    folder.mkdir(parents=True)
    for i, image in enumerate(make_dataset(n, seed=11).images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i:04d}.png")


def _local(model, images, out, *, sheets: bool, ig: bool = False) -> float:
    from unittest import mock

    from tfsal import cli, plots
    from tfsal.errors import TfsalError

    def no_sheet(*args, **kwargs):
        raise TfsalError("sheets off for the benchmark")

    start = time.perf_counter()
    with mock.patch.object(plots, "image_sheet", plots.image_sheet if sheets else no_sheet):
        status = cli.main(["explain", str(images), "--model", str(model), "--out", str(out),
                           *(["--method", "ig", "--param", "steps=16"] if ig else [])])
    elapsed = time.perf_counter() - start
    assert status == 0, status
    return elapsed


def _beam(model, images, out, options, *, ig: bool = False) -> float:
    """`tfsal explain DIR --runner DirectRunner [options]`, in this process as `_local`."""
    from tfsal import cli

    start = time.perf_counter()
    status = cli.main(["explain", str(images), "--model", str(model), "--out", str(out),
                       *(["--method", "ig", "--param", "steps=16"] if ig else []),
                       "--runner", "DirectRunner", *options])
    elapsed = time.perf_counter() - start
    assert status == 0, status
    written = len(list(Path(out).rglob("*.npy")))
    assert written == len(list(images.glob("*.png"))), written
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here")
    parser.add_argument("--ig", action="store_true",
                        help="also time Integrated Gradients (16 steps), locally and on Beam")
    parser.add_argument("--with-sheets", action="store_true",
                        help="also time the local command with its per-image sheets")
    args = parser.parse_args()

    import logging

    import tensorflow as tf

    import tfsal
    import tfsal.zoo

    logging.getLogger().setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="tfsal-bench-beam-"))
    try:
        model = work / "shapes.keras"
        tfsal.zoo.load("shapes-cnn").save(model)
        images = work / "images"
        _images(images, args.n)
        candidates = {
            "local command, maps only (sheets off: Beam's work)":
                lambda out: _local(model, images, out, sheets=False),
            "Beam DirectRunner, in-process":
                lambda out: _beam(model, images, out, ["--direct_num_workers=1"]),
            "Beam DirectRunner, 2 worker processes (multi_processing)":
                lambda out: _beam(model, images, out, [
                    "--direct_num_workers=2", "--direct_running_mode=multi_processing"]),
        }
        if args.ig:  # 16 gradient passes an image: the pipeline's fixed costs weigh less
            candidates["IG-16: local command, maps only"] = \
                lambda out: _local(model, images, out, sheets=False, ig=True)
            candidates["IG-16: Beam DirectRunner, in-process"] = \
                lambda out: _beam(model, images, out, ["--direct_num_workers=1"], ig=True)
        if args.with_sheets:  # minutes on 2 cores: matplotlib draws one figure per image
            candidates["local command as users run it (`tfsal explain DIR`, with its sheets)"] \
                = lambda out: _local(model, images, out, sheets=True)
        times = {name: [] for name in candidates}
        _local(model, images, work / "warm", sheets=False)  # imports, first traces
        for r in range(args.rounds):
            for name, candidate in candidates.items():
                out = work / f"out-{r}-{len(times[name])}-{abs(hash(name))}"
                times[name].append(candidate(out))
                shutil.rmtree(out, ignore_errors=True)
                print(f"round {r + 1}: {name}: {times[name][-1]:.2f} s", file=sys.stderr,
                      flush=True)
        load = os.getloadavg()
        medians = {name: statistics.median(t) for name, t in times.items()}
        reference = medians["local command, maps only (sheets off: Beam's work)"]
        lines = [
            f"{args.n} PNGs of 64x64, the embedded shapes-cnn (.keras), vanilla gradient, a "
            f"fresh output folder each run; wall time end to end (model loading included), "
            f"median of {args.rounds} interleaved rounds. {os.cpu_count()} CPU cores, "
            f"TensorFlow {tf.__version__}, Apache Beam {_beam_version()}, Python "
            f"{sys.version.split()[0]}; load average at the end {load[0]:.2f}.",
            "",
            "| run | seconds | images / s | relative to the local maps-only run (same method) |",
            "|---|---|---|---|",
        ]
        for name, seconds in medians.items():
            base = medians["IG-16: local command, maps only"] if name.startswith("IG") \
                else reference
            lines.append(f"| {name} | {seconds:.2f} | {args.n / seconds:.1f} | "
                         f"{base / seconds:.2f}× |")
        text = "\n".join(lines) + "\n"
        print(text)
        if args.out is not None:
            args.out.write_text(text)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


if __name__ == "__main__":
    sys.exit(main())
