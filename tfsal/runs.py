"""Folder runs (`tfsal explain`): which files are inputs, where each map is written, which maps
a resumed run may keep, and what is reported.

Layout under OUT:

    OUT/summary.json                   the latest run: every map, every failure (written when
                                       the run ends, fails or is interrupted)
    OUT/<run>/.tfsal-run.json          the fingerprint the run folder stands for
    OUT/<run>/records.jsonl            one line per map written, append-only
    OUT/<run>/<input path>.<method>.class<c>.npy   each raw map
    OUT/<run>/<input path>.maps.png                 one sheet per image: all its maps

`<run>` is the model's name and a digest of the run fingerprint (model weights, preprocessing,
output kind, score, target rule, tfsal version; `tfsal.fingerprint`), so another model or
setting never meets the maps of this one. `<input path>` mirrors the image's path relative to
the folder named (or to the common folder of everything named): unique, and independent of
whatever else is in the folder. A map on disk is kept by a resumed run only if a record says it
was made from an input with the same path and the same bytes (sha256).

Never written: any file that is an input. Never read as input: tfsal's run folders (found by
their marker file) and OUT itself when it sits inside an input folder.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import (
    append_lines,
    atomic_write,
    make_dirs,
    read_json_lines,
    save_json,
)
from tfsal.targets import class_label, rank_of

RUN_MARKER = ".tfsal-run.json"
RECORDS = "records.jsonl"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


class OutputError(Exception):
    """An output file could not be written (read-only folder, full disk): the run stops."""


def shown(text) -> str:
    """`text` printable on any stream: bytes of file names that are not UTF-8 (kept by Python
    as lone surrogates) become \\xNN escapes instead of a UnicodeEncodeError."""
    text = str(text)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates that do not stand for bytes
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# ---------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Input:
    """An image file to explain: its absolute path and its output path under the run folder."""

    path: str
    key: str


@dataclass(frozen=True)
class Problem:
    """A file that is not explained, and why."""

    path: str
    reason: str

    def entry(self) -> dict:
        return {"image": self.path, "error": self.reason}


def check_out(out: Path) -> Path:
    """OUT as an absolute path; a TfsalError before any work if it, or the folder it would be
    created in, is a file or cannot be written. Nothing is created."""
    out = Path(os.path.abspath(out))
    existing = out
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise TfsalError(f"expected --out a folder, received {shown(out)} where "
                         f"{shown(existing)} is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise TfsalError(f"expected --out a folder tfsal can write, received {shown(out)} "
                         f"({shown(existing)}: {exc.strerror or exc})") from None
    return out


def find_inputs(named: list[Path], out: Path) -> tuple[list[Input], list[Problem]]:
    """The image files named, or found in the folders named (recursively, in name order), and
    the files that cannot be inputs (broken or looping links, unreadable folders).

    Raises:
        TfsalError: a named path that does not exist, a folder inside a tfsal run folder, or
            no image at all.
    """
    folders, files = [], []
    for item in named:
        path = os.path.abspath(item)
        if not os.path.lexists(path):
            raise TfsalError(f"expected existing image files or folders, received the missing "
                             f"path {shown(item)}")
        (folders if os.path.isdir(path) else files).append(path)
    for folder in folders:
        inside = _run_folder_above(folder)
        if inside is not None:
            raise TfsalError(f"expected images outside tfsal's output, received {shown(folder)}"
                             f" inside the run folder {shown(inside)}")
    root = os.path.commonpath(folders + [os.path.dirname(f) for f in files])
    found, problems = [], []
    out_id = _identity(out)
    for folder in folders:
        _walk(folder, out_id, found, problems)
    for path in files:
        problem = _not_a_file(path)
        (problems.append(Problem(path, problem)) if problem else found.append(path))
    unique = {}
    for path in found:  # a file named twice, or reached by a link, is explained once
        unique.setdefault(os.path.realpath(path), path)
    inputs = sorted((Input(p, os.path.relpath(p, root)) for p in unique.values()),
                    key=lambda i: i.key)
    if not inputs and not problems:
        raise TfsalError(f"expected image files or folders holding images "
                         f"({', '.join(IMAGE_SUFFIXES)}), received none in "
                         f"{[shown(p) for p in named]}")
    return inputs, problems


def _identity(path) -> tuple | None:
    """(device, inode) of a folder, to recognise it under any name; None if it is missing."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def check_apart(out: Path, inputs: list[Input]) -> None:
    """Refuse an OUT that holds an input, for commands whose figures and tables sit directly in
    OUT (they could overwrite that input, and be read as images by the next run)."""
    top = os.path.realpath(out)
    for item in inputs:
        if os.path.realpath(item.path).startswith(top.rstrip(os.sep) + os.sep):
            raise TfsalError(f"expected --out apart from the images, received {shown(out)} "
                             f"holding the input {shown(item.path)}; choose another folder")


def _walk(folder: str, out_id, found: list, problems: list) -> None:
    """Image files under `folder`, without recursion (trees may be deeper than Python's
    recursion limit), skipping run folders and OUT when it lies inside."""
    stack = [folder]
    while stack:
        current = stack.pop()
        if os.path.exists(os.path.join(current, RUN_MARKER)) or (
                current != folder and _identity(current) == out_id):
            continue
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            problems.append(Problem(current, f"unreadable folder ({exc.strerror or exc})"))
            continue
        for entry in reversed(entries):  # the stack pops them in name order
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                problem = _not_a_file(entry.path)
                (problems.append(Problem(entry.path, problem)) if problem
                 else found.append(entry.path))


def _not_a_file(path: str) -> str | None:
    """Why `path` cannot be read as an image file (None: it can be tried)."""
    try:
        info = os.stat(path)
    except OSError as exc:
        if os.path.islink(path):
            kind = "a looping link" if exc.errno == errno.ELOOP else "a broken link"
            return f"{kind} (to {shown(os.readlink(path))})"
        return f"unreadable ({exc.strerror or exc})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return None


def _run_folder_above(path: str) -> str | None:
    """The tfsal run folder holding `path` (or being it), if any."""
    current = os.path.realpath(path)
    while True:
        if os.path.exists(os.path.join(current, RUN_MARKER)):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def file_digest(path: str) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------- the run folder
def run_folder_name(name: str, fingerprint: dict) -> str:
    """`<model>-<digest>`: the model's display name made safe for a file name, and a digest of
    the run fingerprint."""
    from tfsal.fingerprint import digest

    readable = "".join(c if c.isalnum() or c in "._-" else "_" for c in name)[:48]
    return f"{readable.strip('._') or 'model'}-{digest(fingerprint, 6)}"


def map_name(key: str, method_tag: str, target: int) -> str:
    """A raw map's file name under the run folder: `<input path>.<method>.class<c>.npy`."""
    return f"{key}.{method_tag}.class{int(target)}.npy"


class RunFolder:
    """The folder of one fingerprint under OUT: map file names, the records of what was
    written from which input, and the resume decision.

    Args:
        out: OUT (checked with `check_out`).
        name: the model's display name (the folder name's readable part).
        fingerprint: a JSON-able dict of everything the maps depend on.
        inputs: the run's inputs; no output may land on one of them.
    """

    def __init__(self, out: Path, name: str, fingerprint: dict, inputs: list[Input]):
        self.path = out / run_folder_name(name, fingerprint)
        self.fingerprint = fingerprint
        self._inputs = {os.path.realpath(i.path) for i in inputs}
        try:
            make_dirs(self.path)
            marker = self.path / RUN_MARKER
            if not marker.exists():
                save_json(fingerprint, marker)
        except OSError as exc:
            raise OutputError(f"could not create the run folder {shown(self.path)}: "
                              f"{exc.strerror or exc}") from None
        self._done = self._recorded()

    def _recorded(self) -> np.ndarray:
        """Sorted 64-bit digests of (map file, input path, input sha256) for every record:
        a compact index (8 bytes a map) however many maps the folder holds."""
        keys = [_record_key(r["npy"], r["source"], r["sha256"])
                for r in read_json_lines(self.path / RECORDS)
                if isinstance(r, dict) and {"npy", "source", "sha256"} <= r.keys()]
        return np.unique(np.asarray(keys, dtype=np.uint64))

    def map_file(self, item: Input, method_tag: str, target: int) -> Path:
        """The raw map's .npy (`map_name`)."""
        return self.path / map_name(item.key, method_tag, target)

    def sheet_file(self, item: Input) -> Path:
        """The image's one figure of all its maps: `<input path>.maps.png`."""
        return self.path / f"{item.key}.maps.png"

    def is_done(self, item: Input, sha256: str, npy: Path) -> bool:
        """True when the map exists and was written from this input's current bytes."""
        key = _record_key(self._relative(npy), item.path, sha256)
        i = np.searchsorted(self._done, key)
        return i < len(self._done) and self._done[i] == key and npy.exists()

    def check_writable(self, path: Path) -> str | None:
        """Why an output cannot be written to `path` (None: it can)."""
        if os.path.realpath(path) in self._inputs:
            return f"its output {shown(path)} is an input file, which is never overwritten"
        return None

    def record(self, entries: list[dict]) -> None:
        """Append the records of maps written (after the files are in place)."""
        append_lines(self.path / RECORDS, [json.dumps(
            {"npy": self._relative(e["files"][0]), "source": e["source"], "sha256": e["sha256"],
             "method": e["method"], "target": e["target"]}) for e in entries])

    def _relative(self, path) -> str:
        return os.path.relpath(path, self.path)


def _record_key(npy: str, source: str, sha256: str) -> int:
    text = f"{npy}\0{source}\0{sha256}".encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")


# ---------------------------------------------------------------------------- the summary
class Summary:
    """What one run did. Map entries go to an unnamed temporary file as they come (memory does
    not grow with the folder); `write` streams them into summary.json once."""

    def __init__(self, header: dict):
        self.header = header
        self.failed: list[dict] = []
        self.skipped: list[dict] = []
        self.notes: list[str] = []
        self.counts = {"written": 0, "existing": 0}
        self._maps = tempfile.TemporaryFile(mode="w+", encoding="utf-8")

    def add_maps(self, entries: list[dict]) -> None:
        for entry in entries:
            self.counts[entry["status"]] += 1
            self._maps.write(json.dumps(entry) + "\n")

    def write(self, path: Path, **extra) -> None:
        """Stream summary.json (atomically): the header, every map entry, failures, skips."""
        self._maps.flush()
        self._maps.seek(0)
        with atomic_write(path) as handle:
            head = {**self.header, **extra, "counts": dict(self.counts)}
            handle.write(json.dumps(head, indent=2)[:-2].encode() + b',\n  "maps": [')
            for i, line in enumerate(self._maps):
                handle.write((",\n    " if i else "\n    ").encode() + line.rstrip("\n").encode())
            tail = {"failed": self.failed, "skipped": self.skipped, "notes": self.notes}
            handle.write(b"\n  ],\n" + json.dumps(tail, indent=2)[2:].encode())
        self._maps.seek(0, os.SEEK_END)

    def close(self) -> None:
        self._maps.close()


# ---------------------------------------------------------------------------- the run
def method_tag(name: str, options: dict) -> str:
    """The method's part of a map's file name: its name, and a digest of its options if any."""
    from tfsal.fingerprint import digest

    return f"{name}-{digest(options, 4)}" if options else name


def targets_for(model, images: np.ndarray, rule: str, scores=None) -> list[np.ndarray]:
    """One (N,) int32 target array per requested rank ("top1", "top2", ...) or the class index
    given as text; `scores` (N, classes), if given, spare the prediction."""
    k = check_target_rule(rule, model.num_classes)
    if k is not None:
        order = np.argsort(-(model.predict(images) if scores is None else scores), axis=1,
                           kind="stable")
        return [order[:, r].astype(np.int32) for r in range(k)]
    return [model.resolve_targets(images, int(rule))]


def check_target_rule(rule: str, num_classes: int) -> int | None:
    """k of a rank rule "topk", None for a class index; a TfsalError for a rule a model of
    `num_classes` classes cannot serve (checked before any image is read)."""
    from tfsal.targets import resolve_targets

    k = rank_of(rule)
    if k is not None:
        if not 1 <= k <= num_classes:
            raise TfsalError(f"expected a target rule top1 … top{num_classes} for a model "
                             f"of {num_classes} classes, received {rule!r}")
        return k
    try:
        index = int(rule)
    except ValueError:
        raise TfsalError(f"expected a target a class index, top1 or top2, received {rule!r}") \
            from None
    resolve_targets(index, 1, num_classes)  # the class range, with the library's message
    return None


def run_fingerprint(model, target_rule: str) -> dict:
    """What every map of a run depends on, apart from the method (in each file's name)."""
    import secrets

    import tfsal
    from tfsal.fingerprint import model_digest

    weights = model_digest(model)
    return {"tfsal": tfsal.__version__, "model": weights or f"unverifiable-{secrets.token_hex(8)}",
            "score": model.score, "target": target_rule}


def explain_files(model, inputs: list[Input], methods: dict, *, out: Path, run: RunFolder,
                  summary: Summary, target_rule: str = "top1", overwrite: bool = False,
                  image_options=None, report=print) -> None:
    """Maps of every input by every method, batch by batch, into `run` (see the module
    docstring); `methods` maps a name to (function, options). Inputs that fail to load are
    recorded in `summary.failed`, methods the model cannot serve in `summary.skipped`;
    `image_options` go to `tfsal.images.load_image` (e.g. max_pixels).

    Raises:
        OutputError: when a map cannot be written (full disk, read-only folder).
    """
    from tfsal.images import load_image
    from tfsal.progress import Progress

    progress = Progress(len(inputs), "explain", unit="image")
    try:
        for start in range(0, len(inputs), model.batch_size):
            batch = inputs[start:start + model.batch_size]
            _explain_batch(model, batch, methods, run, summary, target_rule, overwrite,
                           image_options, report, progress, load_image)
            progress.update(len(batch))
    finally:
        progress.close()


def _explain_batch(model, batch, methods, run, summary, target_rule, overwrite, image_options,
                   report, progress, load_image):
    """Read one batch of inputs (failures recorded) and explain them, a group per size."""
    loaded = []
    progress.describe("reading images")
    for item in batch:
        try:
            sha256 = file_digest(item.path)
            image, note = load_image(item.path, model.input_size, **(image_options or {}))
        except (TfsalError, OSError) as exc:
            _fail(summary, item.path, str(exc), report)
            continue
        except Exception as exc:  # a decoder's own error type: still this file's failure
            _fail(summary, item.path, f"{type(exc).__name__}: {exc}", report)
            continue
        if note:
            report(f"{shown(item.path)}: {note}")
        loaded.append((item, sha256, image))
    # A model without a fixed input size takes each size as its own batch.
    for shape in dict.fromkeys(image.shape for _, _, image in loaded):
        group = [entry for entry in loaded if entry[2].shape == shape]
        _explain_group(model, group, methods, run, summary, target_rule, overwrite, report,
                       progress)


def _explain_group(model, group, methods, run, summary, target_rule, overwrite, report,
                   progress):
    """Every method and target for one batch of images of one size: the maps (.npy, written
    unless resumed), their records and summary entries, then one sheet per image."""
    from tfsal.files import save_npy

    images = np.stack([image for _, _, image in group])
    probabilities = model.predict(images, score="probability")
    panels = [{} for _ in group]  # per image: panel title -> (npy, map or None if on disk)
    fresh = [False] * len(group)
    for targets in targets_for(model, images, target_rule, scores=probabilities):
        for name, (method, options) in methods.items():
            if any(entry["method"] == name for entry in summary.skipped):
                continue
            progress.describe(name)
            tag = method_tag(name, options)
            npys = [run.map_file(item, tag, t) for (item, _, _), t in zip(group, targets)]
            todo = [i for i, ((item, sha, _), npy) in enumerate(zip(group, npys))
                    if overwrite or not run.is_done(item, sha, npy)]
            try:
                maps = method(model, images[todo], targets[todo], **options) if todo else []
            except TfsalError as exc:  # e.g. CAM on a model without a GAP + dense head
                summary.skipped.append({"method": name, "reason": str(exc)})
                continue
            computed = dict(zip(todo, maps))
            entries, written = [], []
            for i, ((item, sha, _), target) in enumerate(zip(group, targets)):
                p = float(probabilities[i, target])
                entry = {"image": item.path, "method": name, "target": int(target),
                         "label": class_label(model, target), "probability": round(p, 6),
                         "files": [str(npys[i]), str(run.sheet_file(item))],
                         "source": item.path, "sha256": sha,
                         "status": "written" if i in computed else "existing"}
                if i in computed:
                    problem = run.check_writable(npys[i]) or _write(
                        functools.partial(save_npy, computed[i], npys[i]), npys[i])
                    if problem:
                        _fail(summary, item.path, f"{name}: {problem}", report)
                        continue
                    written.append(entry)
                    fresh[i] = True
                panels[i][f"{name} · {entry['label']} ({p:.1%})"] = (npys[i], computed.get(i))
                entries.append(entry)
            run.record(written)
            summary.add_maps([{k: v for k, v in e.items() if k not in ("source", "sha256")}
                              for e in entries])
    progress.describe("sheets")
    for i, (item, _, image) in enumerate(group):
        sheet = run.sheet_file(item)
        if panels[i] and (fresh[i] or not sheet.exists()):
            problem = run.check_writable(sheet) or _write_sheet(
                model, item, image, panels[i], sheet, summary, report)
            if problem:
                _fail(summary, item.path, f"sheet: {problem}", report)


def _write_sheet(model, item, image, panels, sheet, summary, report) -> str | None:
    """The image's sheet of every map (a note, once, where matplotlib is missing)."""
    from tfsal import plots

    maps = {title: (value if value is not None else np.load(npy))
            for title, (npy, value) in panels.items()}
    title = f"{shown(os.path.basename(item.key))} — {model.name}"
    try:
        return _write(functools.partial(plots.image_sheet, image, maps, sheet, title=title),
                      sheet)
    except TfsalError as exc:  # no matplotlib: the maps are written, the sheets are not
        if not summary.notes:
            summary.notes.append(f"no sheets drawn: {exc}")
            report(f"no sheets drawn: {exc}")
        return None


def _write(write, path) -> str | None:
    """Run one output's `write()`; a name the file system refuses is that output's failure
    (returned), any other I/O error stops the run (OutputError)."""
    try:
        write()
    except OSError as exc:
        if exc.errno == errno.ENAMETOOLONG:
            return f"could not write {shown(path)} ({exc.strerror})"
        raise OutputError(f"could not write {shown(exc.filename or path)}: "
                          f"{exc.strerror or exc}") from None
    return None


def _fail(summary, path, reason, report) -> None:
    summary.failed.append({"image": path, "error": reason})
    report(f"{shown(path)}: skipped: {shown(reason)}", error=True)


