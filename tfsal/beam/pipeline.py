"""The explain pipeline: check what exists, explain the rest with RunInference, write maps and
per-image records, aggregate the metrics.

Layout under OUT (the local command's run folder, `tfsal.runs`, plus Beam's own files):

    OUT/<model>-<digest>/.tfsal-run.json                  the fingerprint (as `tfsal explain`)
    OUT/<model>-<digest>/<input path>.<method>.class<c>.npy   each raw map (same names, same bytes)
    OUT/<model>-<digest>/<input path>.record.json         the image's source, sha256, maps,
                                                          targets, probabilities and scores;
                                                          written after its maps
    OUT/<model>-<digest>/beam-summary.json, .csv          metrics over the data set
    OUT/<model>-<digest>/beam-failed.jsonl                the dead letters of the last run

An image is skipped ("existing") when its record matches its bytes (sha256) and lists every
requested method's maps with the requested scores, and those maps exist. A run killed at any
point leaves whole files (or hidden `.tmp` files) only; the next run redoes what has no record.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from tfsal.beam import io as bio
from tfsal.beam.handler import TfsalModelHandler, Todo, method_cost
from tfsal.beam.metrics import METRICS, SummaryCombineFn, check_metrics, summary_files
from tfsal.errors import TfsalError
from tfsal.images import DEFAULT_MAX_PIXELS
from tfsal.runs import map_name

RECORD_SUFFIX = ".record.json"
SUMMARY_JSON, SUMMARY_CSV, FAILED = "beam-summary.json", "beam-summary.csv", "beam-failed.jsonl"
NAMESPACE = "tfsal"
# Methods whose maps are random unless seeded: Beam fixes seed=0 where none is given, so a
# retried bundle rewrites the same bytes (the seed is then part of the maps' file names).
_STOCHASTIC = ("smoothgrad", "vargrad")


@dataclass(frozen=True)
class BeamRun:
    """Everything the workers need, as plain values (the model travels as its source).

    Build it with `prepare_run`, which loads the model once to fingerprint it."""

    source: str
    load_options: dict
    custom_objects: str | None
    model_name: str
    input_size: tuple | None
    digest: str | None
    fingerprint: dict
    folder: str  # OUT/<model>-<digest>
    methods: dict  # tag -> (name, options as shipped)
    target_rule: str = "top1"
    fit: str = "resize"
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    metrics: tuple = ()
    fill: str | float = "black"
    max_batch_size: int = 32
    max_batch_weight: int = 32 * 64
    share_across_processes: bool | str = "auto"
    overwrite: bool = False

    def handler(self) -> TfsalModelHandler:
        return TfsalModelHandler(
            self.source, load_options=self.load_options, custom_objects=self.custom_objects,
            methods=self.methods, target_rule=self.target_rule, metrics=self.metrics,
            fill=self.fill, expected_digest=self.digest, max_batch_size=self.max_batch_size,
            max_batch_weight=self.max_batch_weight,
            share_across_processes=self.share_across_processes)

    def ranks(self) -> int:
        from tfsal.targets import rank_of

        return rank_of(self.target_rule) or 1


def prepare_run(source, *, out, methods=("vanilla_gradient",), target: str = "top1",
                fit: str = "resize", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                metrics=(), fill="black", custom_objects: str | None = None,
                max_batch_weight: int | None = None, share_across_processes="auto",
                overwrite: bool = False, **load_options) -> BeamRun:
    """Load the model once (here, on the launcher), fingerprint it and create its run folder.

    Args:
        source: anything `tfsal.load_model` accepts by name or path; workers load it again.
        out: the output folder (local or any Beam file system, e.g. gs://bucket/out).
        methods: method names, or {name: options} (options as `tfsal explain --param` gives
            them; a wrapped method by name, e.g. {"smoothgrad": {"method": "guided_backprop"}}).
        target: "top1", "top2", ... or a class index as text.
        fit: "resize" or "crop", as `tfsal.images.load_image`.
        max_pixels: refuse larger images (None: no limit).
        metrics: per-image metrics (`tfsal.beam.METRICS`, or "all") aggregated in the summary.
        fill: deletion fill of the curve metrics.
        custom_objects: module name or .py file with a .keras file's custom layers.
        max_batch_weight: gradient passes per batch at most (default: 64 per image of a full
            batch).
        share_across_processes: share the loaded model between a worker's processes (True,
            False, "auto": where the worker has a GPU).
        overwrite: recompute maps that exist.
        **load_options: keyword arguments of `tfsal.load_model` (preprocess, score, output,
            batch_size, class_names, safe_mode, signature, output_key, version,
            input_tensor).

    Returns:
        a `BeamRun` for `ExplainImages` / `explain_pipeline`.

    Raises:
        TfsalError: for unknown methods, parameters, target rules or metrics, or a model that
            cannot be loaded.

    Example:
        >>> run = prepare_run("model.keras", out="gs://bucket/maps", methods=["ig"])
    """
    from tfsal.loading import custom_objects_from, load_model
    from tfsal.runs import RUN_MARKER, check_target_rule, run_fingerprint, run_folder_name

    shipped = _shipped_methods(methods)
    metrics = check_metrics(metrics)
    options = dict(load_options)
    if custom_objects is not None:
        options["custom_objects"] = custom_objects_from(custom_objects)
    model = load_model(str(source), **options)
    fingerprint = run_fingerprint(model, target)
    if fit != "resize":  # as `tfsal explain`: other pixels, other maps
        fingerprint["fit"] = fit
    weights = fingerprint["model"]
    check_target_rule(target, model.num_classes)
    out = bio.absolute(str(out))
    folder = bio.join(out, run_folder_name(model.name, fingerprint))
    marker = bio.join(folder, RUN_MARKER)  # as `tfsal.runs.RunFolder` (any file system)
    if not bio.exists(marker):
        bio.write_atomically(marker, json.dumps(fingerprint, indent=2).encode())
    batch_size = model.batch_size
    return BeamRun(
        source=str(source), load_options=dict(load_options), custom_objects=custom_objects,
        model_name=model.name, input_size=model.input_size,
        digest=None if weights.startswith("unverifiable-") else weights,
        fingerprint=fingerprint,
        folder=folder, methods=shipped, target_rule=target, fit=fit, max_pixels=max_pixels,
        metrics=metrics, fill=fill, max_batch_size=batch_size,
        max_batch_weight=max_batch_weight or batch_size * 64,
        share_across_processes=share_across_processes, overwrite=overwrite)


def _shipped_methods(methods) -> dict:
    """{tag: (name, options)} with wrapped methods by name; `tfsal.runs.method_tag` names
    them exactly as the local command does."""
    from tfsal.methods import method_parameters, resolve_method
    from tfsal.runs import method_tag

    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, dict):
        methods = {name: {} for name in methods}
    if not methods:
        raise TfsalError("expected at least one method, received none")
    shipped = {}
    for name, options in methods.items():
        if isinstance(options, tuple):  # the command line's (function, options)
            options = options[1]
        name = resolve_method(name)
        options = dict(options or {})
        if "method" in options and not isinstance(options["method"], str):
            wrapped = options["method"]
            options["method"] = getattr(wrapped, "name", None) or wrapped.__name__
        taken = method_parameters(name)
        unknown = [key for key in options if key not in taken
                   and name not in _STOCHASTIC]  # SmoothGrad passes the rest on
        if unknown:
            raise TfsalError(f"expected parameters of {name} ({', '.join(taken) or 'none'}), "
                             f"received {unknown}")
        if "seed" in taken and options.get("seed") is None and (
                name in _STOCHASTIC or options.get("baseline") == "noise"):
            options["seed"] = 0
        shipped[method_tag(name, options)] = (name, options)
    return shipped


# ------------------------------------------------------------------------- transforms
class _Check(beam.DoFn):
    """Existing (record matches) → "existing"; unreadable → "failed"; else a `Todo`."""

    def __init__(self, run: BeamRun):
        self.run = run
        self.existing = Metrics.counter(NAMESPACE, "existing")
        self.failed = Metrics.counter(NAMESPACE, "failed")

    def setup(self):
        self._costs: dict = {}  # the tags still missing → their gradient passes

    def process(self, item) -> Iterator[Any]:  # a Todo, or tagged outputs
        run = self.run
        sha256 = item.sha256
        previous = None if run.overwrite else _read_record(run, item.key)
        if previous is not None and previous.get("sha256") != sha256:
            previous = None  # the image changed: its old maps are not this input's
        done = _done_tags(run, previous)
        todo = tuple(tag for tag in run.methods if tag not in done)
        if not todo:
            self.existing.inc()
            yield beam.pvalue.TaggedOutput("existing", previous)
            return
        try:
            image, _ = bio.decode_image(item, run.input_size, fit=run.fit,
                                        max_pixels=run.max_pixels)
        except TfsalError as exc:
            self.failed.inc()
            yield beam.pvalue.TaggedOutput("failed", {"image": item.source, "error": str(exc)})
            return
        cost = self._costs.get(todo)
        if cost is None:
            cost = self._costs[todo] = sum(
                method_cost(*run.methods[tag]) for tag in todo) * run.ranks()
        yield Todo(item.key, item.source, sha256, image, todo, cost, previous)


def _read_record(run: BeamRun, key: str) -> dict | None:
    data = bio.read_bytes(bio.join(run.folder, key + RECORD_SUFFIX))
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def _done_tags(run: BeamRun, record: dict | None) -> set:
    """Method tags whose maps (every rank) exist with every requested score, or that the
    model cannot serve (recorded as skipped)."""
    if record is None:
        return set()
    done = set(record.get("skipped") or {})
    by_tag: dict = {}
    for entry in record.get("maps") or ():
        by_tag.setdefault(entry.get("tag"), []).append(entry)
    for tag, entries in by_tag.items():
        ranks = {entry.get("rank") for entry in entries}
        if ranks >= set(range(1, run.ranks() + 1)) and all(
                set(run.metrics) <= set(entry.get("scores") or {})
                and bio.exists(bio.join(run.folder, entry["npy"])) for entry in entries):
            done.add(tag)
    return done


class _Write(beam.DoFn):
    """Maps (temporary name + rename), then the image's record, which marks it done.

    Each image's files are written in that order by a writer thread while the bundle goes on,
    so writing overlaps the next batch's explaining: one thread for a local folder (the disk
    orders the writes anyway; more threads only contend with the reads and the explaining),
    several on gs://, s3://, ... where each file waits on the network. An image's record is
    output once its files are written (a step after this one may read them), in its own
    window; `finish_bundle` waits for the rest and raises the first failed write, so a bundle
    whose files are not all written fails (and is retried) as a whole. At most `_PENDING`
    images wait to be written, which bounds the maps held."""

    def __init__(self, run: BeamRun):
        self.run = run
        self.explained = Metrics.counter(NAMESPACE, "explained")
        self.maps = Metrics.counter(NAMESPACE, "maps_written")
        self.skipped = Metrics.counter(NAMESPACE, "methods_skipped")

    def setup(self):
        from concurrent.futures import ThreadPoolExecutor

        writers = 1 if bio.is_local(self.run.folder) else _REMOTE_WRITERS
        self._pool = ThreadPoolExecutor(writers, thread_name_prefix="tfsal-write")

    def start_bundle(self):
        self._pending: list = []  # (write, windowed record), oldest first; a failed bundle's
        # leftover writes finish on their own (each file whole, its record after its maps)

    def process(self, result, windowed=beam.DoFn.WindowedValueParam) -> Iterator[dict]:
        run, todo, out = self.run, result.example, result.inference
        previous = todo.previous or {}
        entries = {entry["npy"]: entry for entry in previous.get("maps") or ()}
        skipped = {**(previous.get("skipped") or {}), **out["skipped"]}
        files = []  # (path, bytes) of the maps
        for r, rank in enumerate(out["ranks"], 1):
            for tag, array in rank["maps"].items():
                npy = map_name(todo.key, tag, rank["target"])
                files.append((bio.join(run.folder, npy), bio.npy_bytes(array)))
                name, options = run.methods[tag]
                entries = {k: v for k, v in entries.items()
                           if not (v.get("tag") == tag and v.get("rank") == r)}
                entries[npy] = {"npy": npy, "method": name, "tag": tag, "rank": r,
                                "target": rank["target"], "label": rank["label"],
                                "probability": rank["probability"],
                                "scores": rank["scores"].get(tag, {})}
        record = {"key": todo.key, "source": todo.source, "sha256": todo.sha256,
                  "model": run.model_name, "run": bio.absolute(run.folder),
                  "maps": sorted(entries.values(), key=lambda e: (e["tag"], e["rank"])),
                  "skipped": dict(sorted(skipped.items()))}
        self._pending.append((self._pool.submit(
            _write_image, files, bio.join(run.folder, todo.key + RECORD_SUFFIX),
            json.dumps(record, indent=1, sort_keys=True).encode()), windowed.with_value(record)))
        # Counters on this thread: Beam keeps a bundle's metrics per thread.
        self.maps.inc(len(files))
        if out["skipped"]:
            self.skipped.inc(len(out["skipped"]))
        self.explained.inc()
        yield from self._written(_PENDING)

    def finish_bundle(self):
        yield from self._written(0)

    def teardown(self):
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    def _written(self, most: int):
        """The records (windowed values) of the images written, oldest first, waiting until
        at most `most` images remain to be written; a failed write raises here."""
        while self._pending and (len(self._pending) > most or self._pending[0][0].done()):
            future, record = self._pending.pop(0)
            future.result()
            yield record


# Writer threads for a remote run folder, and the images at most waiting to be written.
_REMOTE_WRITERS, _PENDING = 8, 64


def _write_image(files: list, record_path: str, record: bytes) -> None:
    """An image's maps, then its record: after the maps, which are on disk (fsync) by then, so
    a record lost to a power loss reads as absent and only costs recomputing this image."""
    for path, data in files:
        bio.write_atomically(path, data)
    bio.write_atomically(record_path, record, durable=False)


class ExplainImages(beam.PTransform):
    """`ImageInput`s → {"records": one dict per image explained or found done (its record),
    "failed": one dead letter {"image", "error"} per unreadable image}.

    Maps are written under `run.folder` as they are computed (RunInference with
    `TfsalModelHandler`). Counters (namespace "tfsal"): explained, existing, failed,
    maps_written, methods_skipped.
    """

    def __init__(self, run: BeamRun):
        super().__init__()
        self.run = run

    def expand(self, images):
        from apache_beam.ml.inference.base import RunInference

        checked = images | "Check" >> beam.ParDo(_Check(self.run)).with_outputs(
            "existing", "failed", main="todo")
        written = (checked.todo
                   | "Explain" >> RunInference(self.run.handler())
                   | "Write" >> beam.ParDo(_Write(self.run)))
        records = (written, checked.existing) | "Records" >> beam.Flatten()
        return {"records": records, "failed": checked.failed}


class WriteSummary(beam.PTransform):
    """{"records", "failed"} → beam-summary.json / .csv (metrics over the data set, by
    `SummaryCombineFn`) and beam-failed.jsonl in the run folder; each is rewritten only when
    its bytes change, so a rerun of a finished run writes nothing."""

    def __init__(self, run: BeamRun):
        super().__init__()
        self.run = run

    def expand(self, outputs):
        # One CombineFn over records and dead letters together, and one write: few
        # transforms (translating each DoFn costs time on every runner). The write runs on an
        # Impulse with the combined value as a side input, which defaults to the empty data
        # set's summary, so a run that reads no image still writes its (empty) summary.
        combine = _SummaryAndFailures(tags=self.run.methods, metrics=self.run.metrics)
        combined = ((outputs["records"], outputs["failed"])
                    | "Flatten" >> beam.Flatten()
                    | "Key" >> beam.Map(_keyed)
                    | "Combine" >> beam.CombinePerKey(combine))  # one (None, value)
        empty = None, combine.extract_output(combine.create_accumulator())
        return (outputs["records"].pipeline
                | "Start" >> beam.Impulse()
                | "WriteSummary" >> beam.Map(
                    _write_summary, self.run,
                    beam.pvalue.AsSingleton(combined, default_value=empty)))


def _keyed(element) -> tuple[None, Any]:
    return None, element


def _is_dead_letter(element) -> bool:
    """A dead letter is {"image", "error"}; a record has its key, sha256, maps, ..."""
    return isinstance(element, dict) and element.keys() == {"image", "error"}


class _SummaryAndFailures(beam.CombineFn):
    """Records and dead letters → ({summary}, [dead letters]): `SummaryCombineFn` over the
    records, the dead letters as a list."""

    def __init__(self, tags=None, metrics=None):
        self.summary = SummaryCombineFn(tags=tags, metrics=metrics)

    def create_accumulator(self):
        return self.summary.create_accumulator(), []

    def add_input(self, accumulator, element):
        summary, failed = accumulator
        if _is_dead_letter(element):
            failed.append(element)
            return summary, failed
        return self.summary.add_input(summary, element), failed

    def merge_accumulators(self, accumulators):
        accumulators = list(accumulators)
        return (self.summary.merge_accumulators([a[0] for a in accumulators]),
                [f for a in accumulators for f in a[1]])

    def extract_output(self, accumulator):
        return self.summary.extract_output(accumulator[0]), accumulator[1]


def _write_summary(_, run: BeamRun, combined: tuple) -> dict:
    summary, failed = combined[1]
    failed = sorted(failed, key=lambda f: (f["image"], f["error"]))
    payload = {"run_folder": bio.absolute(run.folder), "model": run.model_name,
               "fingerprint": run.fingerprint, "target": run.target_rule,
               "methods": {tag: {"method": name, "options": json.loads(
                   json.dumps(options, default=repr))} for tag, (name, options) in
                   run.methods.items()},
               "metrics_computed": list(run.metrics), "fill": run.fill,
               "failed": len(failed), **summary}
    data, table = summary_files(payload)
    bio.write_if_changed(bio.join(run.folder, SUMMARY_JSON), data)
    bio.write_if_changed(bio.join(run.folder, SUMMARY_CSV), table)
    bio.write_if_changed(bio.join(run.folder, FAILED),
                         "".join(json.dumps(f) + "\n" for f in failed).encode())
    return payload


def explain_pipeline(pipeline, run: BeamRun, *, patterns=None, tfrecords: str | None = None,
                     out: str | None = None) -> dict:
    """Read, explain and summarise: the whole job on `pipeline`.

    Args:
        pipeline: a `beam.Pipeline`.
        run: from `prepare_run`.
        patterns: image globs or folders (`ReadImages`), or
        tfrecords: a glob of TFRecord files of encoded images (`ReadImagesFromTFRecord`).
        out: OUT, never read as input when it lies inside an image folder.

    Returns:
        {"records", "failed", "summary"} PCollections.
    """
    if (patterns is None) == (tfrecords is None):
        raise TfsalError("expected image patterns or a TFRecord pattern, received "
                         + ("both" if patterns is not None else "neither"))
    if tfrecords is not None:
        images = pipeline | "ReadTFRecords" >> bio.ReadImagesFromTFRecord(tfrecords)
    else:
        images = pipeline | "ReadImages" >> bio.ReadImages(patterns, exclude=out)
    outputs = images | "ExplainImages" >> ExplainImages(run)
    summary = outputs | "WriteSummary" >> WriteSummary(run)
    return {**outputs, "summary": summary}


__all__ = ["METRICS", "BeamRun", "ExplainImages", "WriteSummary", "explain_pipeline",
           "prepare_run"]
