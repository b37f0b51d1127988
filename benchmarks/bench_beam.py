"""Images per second of `tfsal explain` on Apache Beam (DirectRunner, in-process and 2 worker
processes) against the local command on the same images and model (a part of `make bench`).

The same 256 PNGs (64x64, the embedded shapes-cnn saved as a .keras file), vanilla gradient,
each run into a fresh output folder (nothing resumed), wall time end to end: loading the
model, reading and decoding the files, explaining, writing every map atomically. Both commands
run in this process through `tfsal.cli.main` (what `tfsal explain DIR` and `tfsal explain DIR
--runner DirectRunner` run); the local one with its per-image sheets of maps off (maps only: the
work Beam does; `--with-sheets` also times the command as users run it, drawing one matplotlib
figure per image). Each run's maps are counted once, then `_timing.interleaved` warms every
run up (imports, first traces) and times interleaved rounds; medians.

    python benchmarks/bench_beam.py [--n 256] [--rounds 7] [--scale 4] [--no-ig] [--quick]
                                    [--with-sheets] [--out FILE]

`--scale K` also times vanilla gradients of K×n images: the rate of the (K-1)·n images more is
each command's sustained rate, its fixed start-up taken out.

Needs the beam extra (pip install "tfsal[beam]"); without it the section says so.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _images(folder: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    from tfsal.data import make_dataset

    folder.mkdir(parents=True)
    for i, image in enumerate(make_dataset(n, seed=11).images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"{i:04d}.png")


def _local(model, images, out, *, sheets: bool, ig: bool = False) -> None:
    """`tfsal explain DIR`, in this process (`tfsal.cli.main`), its sheets off unless asked."""
    from unittest import mock

    from tfsal import cli, plots
    from tfsal.errors import TfsalError

    def no_sheet(*args, **kwargs):
        raise TfsalError("sheets off for the benchmark")

    with mock.patch.object(plots, "image_sheet", plots.image_sheet if sheets else no_sheet):
        status = cli.main(["explain", str(images), "--model", str(model), "--out", str(out),
                           *(["--method", "ig", "--param", "steps=16"] if ig else [])])
    assert status == 0, status


def _beam(model, images, out, options, *, ig: bool = False) -> None:
    """`tfsal explain DIR --runner DirectRunner [options]`, in this process as `_local`."""
    from tfsal import cli

    status = cli.main(["explain", str(images), "--model", str(model), "--out", str(out),
                       *(["--method", "ig", "--param", "steps=16"] if ig else []),
                       "--runner", "DirectRunner", *options])
    assert status == 0, status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--scale", type=int, default=4, metavar="K",
                        help="also time vanilla gradients of K×n images (0: not)")
    parser.add_argument("--no-ig", dest="ig", action="store_false",
                        help="leave out Integrated Gradients (16 steps)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 32 images, 1 round, no worker processes")
    parser.add_argument("--with-sheets", action="store_true",
                        help="also time the local command with its per-image sheets")
    parser.add_argument("--out", type=Path, default=None, help="write the markdown here")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rounds, args.scale = 32, 1, 2
    from _timing import interleaved, report

    try:
        import apache_beam  # noqa: F401
    except ImportError:
        report(f"{TITLE}\n\nNot measured: needs the beam extra (`pip install "
               f"\"tfsal[beam]\"`).\n", args.out)
        return 0

    import logging

    import tfsal.zoo

    logging.getLogger().setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="tfsal-bench-beam-"))
    try:
        model = work / "shapes.keras"
        tfsal.zoo.load("shapes-cnn").save(model)
        images = work / "images"
        _images(images, args.n)
        in_process, processes = ["--direct_num_workers=1"], [
            "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
        candidates = {
            LOCAL: lambda out: _local(model, images, out, sheets=False),
            BEAM: lambda out: _beam(model, images, out, in_process),
        }
        if not args.quick:  # seconds of process start-up each
            candidates[PROCESSES] = lambda out: _beam(model, images, out, processes)
        if args.ig:  # 16 gradient passes an image: the pipeline's fixed costs weigh less
            candidates[IG_LOCAL] = lambda out: _local(model, images, out, sheets=False, ig=True)
            candidates[IG_BEAM] = lambda out: _beam(model, images, out, in_process, ig=True)
        if args.scale > 1:  # the same images, each K times (other names: no resume)
            many = work / "many"
            many.mkdir()
            for k in range(args.scale):
                for png in images.glob("*.png"):
                    shutil.copyfile(png, many / f"{k}-{png.name}")
            candidates[SCALED_LOCAL] = lambda out: _local(model, many, out, sheets=False)
            candidates[SCALED_BEAM] = lambda out: _beam(model, many, out, in_process)
        if args.with_sheets:  # minutes on 2 cores: matplotlib draws one figure per image
            candidates[SHEETS] = lambda out: _local(model, images, out, sheets=True)
        for name, candidate in candidates.items():  # each writes a map of every image
            out = work / f"check-{abs(hash(name))}"
            candidate(out)
            expected = len(list((many if name.startswith("scaled") else images).glob("*.png")))
            assert len(list(out.rglob("*.npy"))) == expected, name
        runs = itertools.count()  # every call into a fresh output folder: nothing resumed

        def fresh(candidate):
            return lambda: candidate(work / f"out-{next(runs)}")

        medians = interleaved({name: fresh(c) for name, c in candidates.items()}, args.rounds,
                              slow=frozenset({SHEETS}))
        report(_report(args, medians), args.out)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


TITLE = "## Apache Beam (`tfsal explain --runner DirectRunner`)"
LOCAL, BEAM = "local command, maps only", "Beam DirectRunner, in-process"
PROCESSES = "Beam DirectRunner, 2 worker processes (multi_processing)"
IG_LOCAL, IG_BEAM = f"IG-16: {LOCAL}", f"IG-16: {BEAM}"
SCALED_LOCAL, SCALED_BEAM = f"scaled: {LOCAL}", f"scaled: {BEAM}"
SHEETS = "local command as users run it (with its matplotlib sheet per image)"
TARGET = 0.8  # the target: Beam in-process ≥ 0.8× the local command


def _report(args, medians: dict) -> str:
    import tensorflow as tf

    def row(name, base, target=False):
        ratio = medians[base] / medians[name]
        met = ("yes" if ratio >= TARGET else "no") if target else "—"
        return (f"| {name} | {medians[name]:.2f} | {args.n / medians[name]:.1f} | "
                f"{ratio:.2f}× | {f'≥ {TARGET}×' if target else '—'} | {met} |")

    lines = [
        TITLE, "",
        f"`benchmarks/bench_beam.py` (needs `pip install \"tfsal[beam]\"`): {args.n} PNGs of "
        f"64x64, the embedded shapes-cnn saved as `.keras`, vanilla gradient (the command's "
        f"default) unless said; both commands run in this process through `tfsal.cli.main`, "
        f"the local one with its per-image sheets off (maps only: the pipeline's work), each "
        f"into a fresh output folder; wall time end to end (model loading, reading and "
        f"decoding, explaining, every map written atomically); each run warmed up first "
        f"(imports, first traces), then the median of {args.rounds} interleaved rounds. "
        f"{os.cpu_count()} CPU cores, TensorFlow {tf.__version__}, Apache Beam "
        f"{_beam_version()}, Python {sys.version.split()[0]}; load average at the end "
        f"{os.getloadavg()[0]:.2f}, {datetime.date.today().isoformat()}.", "",
        "| run | seconds | images / s | relative to the local command (same method) | "
        "target | met |",
        "|---|---|---|---|---|---|",
        row(LOCAL, LOCAL), row(BEAM, LOCAL, target=True),
    ]
    if PROCESSES in medians:
        lines.append(row(PROCESSES, LOCAL))
    if IG_LOCAL in medians:
        lines += [row(IG_LOCAL, IG_LOCAL), row(IG_BEAM, IG_LOCAL, target=True)]
    if SHEETS in medians:
        lines.append(row(SHEETS, LOCAL))
    if SCALED_LOCAL in medians:
        extra = (args.scale - 1) * args.n
        local = extra / (medians[SCALED_LOCAL] - medians[LOCAL])
        beam = extra / (medians[SCALED_BEAM] - medians[BEAM])
        ratio = beam / local
        lines += [
            "",
            f"Sustained rate: the {extra} images more of a {args.scale}×{args.n}-image run "
            f"(local {medians[SCALED_LOCAL]:.2f} s, Beam {medians[SCALED_BEAM]:.2f} s end to "
            f"end: {medians[SCALED_LOCAL] / medians[SCALED_BEAM]:.2f}×), each command's "
            f"fixed start-up taken out (its {args.n}-image run's time less).",
            "",
            "| run | images / s | relative to the local command | target | met |",
            "|---|---|---|---|---|",
            f"| {LOCAL} | {local:.1f} | 1.00× | — | — |",
            f"| {BEAM} | {beam:.1f} | {ratio:.2f}× | ≥ {TARGET}× | "
            f"{'yes' if ratio >= TARGET else 'no'} |",
        ]
    return "\n".join(lines) + "\n"


def _beam_version() -> str:
    import apache_beam

    return apache_beam.__version__


if __name__ == "__main__":
    sys.exit(main())
