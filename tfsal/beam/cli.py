"""`tfsal explain PATTERN... --runner RUNNER [Beam options]`: the explain command as a Beam
pipeline. The options mean what they mean without --runner (`tfsal.cli` checks them with the
same functions before handing them here); options the command does not know go to Beam's
`PipelineOptions`."""

from __future__ import annotations

import re
import sys

from tfsal.errors import TfsalError

_RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner", "PrismRunner",
            "PortableRunner")
# argparse's `type=Path` turns gs://bucket into gs:/bucket: the scheme's // is restored.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")


def location(value) -> str:
    """A path or URL given on the command line, as Beam's file systems read it."""
    return _SCHEME.sub(r"\1://", str(value))


def explain_on_beam(args, methods: dict, *, preprocess, class_names, image_options) -> int:
    """Run `tfsal explain` on Beam; returns the exit status (1 if any image failed).

    `args` are the command's; `methods` ({name: (function, options)}), `preprocess`,
    `class_names` and `image_options` come checked from `tfsal.cli` (this module does not
    import it: the command imports this one)."""
    from tfsal.beam.pipeline import explain_pipeline, prepare_run
    from tfsal.images import DEFAULT_MAX_PIXELS
    from tfsal.runs import shown

    if args.runner is None:
        raise TfsalError("expected --runner (e.g. DirectRunner) with --metric or --tfrecord, "
                         "received none")
    if args.runner not in _RUNNERS and not args.runner.endswith("Runner"):
        raise TfsalError(f"expected a Beam runner such as {', '.join(_RUNNERS)}, received "
                         f"{args.runner!r}")
    if args.tfrecord and len(args.images) != 1:
        raise TfsalError(f"expected one TFRecord pattern with --tfrecord, received "
                         f"{len(args.images)}")
    given = {option: getattr(args, option) for option in
             ("signature", "output_key", "version", "input_tensor")
             if getattr(args, option) is not None}
    out = location(args.out)
    max_pixels = image_options.get("max_pixels", DEFAULT_MAX_PIXELS)
    run = prepare_run(
        location(args.model), out=out, methods=methods, target=args.target, fit=args.fit,
        max_pixels=max_pixels, metrics=args.metric or (), custom_objects=args.custom_objects,
        overwrite=args.overwrite, preprocess=preprocess, batch_size=args.batch_size,
        safe_mode=not args.unsafe_load, output=args.output, score=args.score,
        class_names=class_names, **given)
    pipeline = make_pipeline(args.runner, args.beam_options)
    patterns = [location(p) for p in args.images]
    runner = args.runner + (" (Beam's FnApiRunner)" if args.runner == "DirectRunner" else "")
    print(f"explaining {', '.join(patterns)} on {runner} into {shown(run.folder)}", flush=True)
    if args.tfrecord:
        explain_pipeline(pipeline, run, tfrecords=patterns[0], out=out)
    else:
        explain_pipeline(pipeline, run, patterns=patterns, out=out)
    result = pipeline.run()
    result.wait_until_finish()
    counts = counters(result)
    print(f"explained {counts.get('explained', 0)} image(s), kept {counts.get('existing', 0)} "
          f"existing, {counts.get('failed', 0)} failed (see beam-failed.jsonl), "
          f"{counts.get('maps_written', 0)} map(s) written; summary: "
          f"{shown(run.folder)}/beam-summary.json", flush=True)
    if counts.get("failed", 0):
        print(f"{counts['failed']} image(s) could not be read", file=sys.stderr)
    return 1 if counts.get("failed", 0) else 0


def make_pipeline(runner: str, beam_options=()):
    """A Beam pipeline on `runner`, with Beam's own options (`--name=value`).

    DirectRunner runs as Beam's FnApiRunner, as Beam's DirectRunner runs a batch pipeline where
    Prism is absent (the same runner, with the options handed to its workers the same way):
    in this process, or in `--direct_num_workers` threads or processes
    (`--direct_running_mode`). Beam's DirectRunner first tries Prism, which downloads a Go
    binary on first use (a failed attempt where there is no network) and ignores those two
    options; name PrismRunner to run on Prism, and `--streaming` keeps Beam's choice."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

    options = PipelineOptions([f"--runner={runner}", *beam_options])
    if runner != "DirectRunner" or options.view_as(StandardOptions).streaming:
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision),
                         options=options)


def counters(result) -> dict:
    """{name: value} of the "tfsal" counters of a finished pipeline (committed values, else
    attempted ones where a runner does not commit)."""
    from apache_beam.metrics.metric import MetricsFilter

    found = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace("tfsal"))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        found[counter.key.metric.name] = found.get(counter.key.metric.name, 0) + (value or 0)
    return found
