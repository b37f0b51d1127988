"""Reading images into a Beam pipeline, and writing outputs on any Beam file system.

An image travels as an `ImageInput`: its key (the output path under the run folder, as the
local command names it: the path relative to the pattern's fixed folder), its source (the
full path, or `<tfrecord file>#<name>`) and its encoded bytes. Decoding happens on the
workers, next to the model (`tfsal.beam.pipeline`), so an unreadable image is a dead letter
there, not a failed pipeline.

Writes are atomic: local paths through `tfsal.files.atomic_write` (temporary file next to
the target, fsync, rename); other file systems (gs://, s3://, hdfs://) write a temporary
name `.<name>.<random>.tmp` next to the target and `FileSystems.rename` it into place.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tfsal.errors import TfsalError
from tfsal.images import DEFAULT_MAX_PIXELS
from tfsal.runs import IMAGE_SUFFIXES

_WILDCARDS = "*?["
# Magic numbers of the encodings Pillow reads: a TFRecord holding them is raw image bytes,
# anything else is parsed as a tf.train.Example.
_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


@dataclass(frozen=True)
class ImageInput:
    """One encoded image: `key` names its outputs under the run folder, `source` says where it
    came from (in records and dead letters), `data` is the file's bytes."""

    key: str
    source: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


# ------------------------------------------------------------------------- paths
def is_local(path: str) -> bool:
    """True for paths of the local file system (no scheme, or file://)."""
    return FileSystems.get_scheme(path) in (None, "file")


def _local(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def absolute(path: str) -> str:
    """Local paths made absolute (workers may run elsewhere); others unchanged."""
    return os.path.abspath(_local(path)) if is_local(path) else path


def join(folder: str, *parts: str) -> str:
    if is_local(folder):
        return os.path.join(_local(folder), *parts)
    return FileSystems.join(folder, *parts)


def pattern_root(pattern: str) -> str:
    """The fixed folder of a glob, ending in a separator: keys are paths relative to it, so
    `photos/*.png` names its maps as `tfsal explain photos` does. A folder stands for every
    image below it (`folder/**`).

    Example:
        >>> pattern_root("gs://bucket/photos/2024-*/*.jpg")
        'gs://bucket/photos/'
    """
    pattern = absolute(pattern)
    first = min((pattern.find(c) for c in _WILDCARDS if c in pattern), default=-1)
    if first < 0:
        if is_local(pattern) and os.path.isdir(pattern):
            return pattern.rstrip(os.sep) + os.sep
        first = len(pattern)
    cut = max(pattern.rfind("/", 0, first), pattern.rfind(os.sep, 0, first))
    return pattern[:cut + 1]


def glob_of(pattern: str) -> str:
    """The glob actually matched: a local folder becomes `folder/**` (every image below it)."""
    pattern = absolute(pattern)
    if is_local(pattern) and os.path.isdir(pattern):
        return os.path.join(pattern, "**")
    return pattern


def read_bytes(path: str) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        if is_local(path):
            with open(_local(path), "rb") as handle:
                return handle.read()
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            return handle.read()
    except FileNotFoundError:
        return None
    except Exception:  # a remote file system's own "not found" error
        if not FileSystems.exists(path):
            return None
        raise


def exists(path: str) -> bool:
    return os.path.exists(_local(path)) if is_local(path) else FileSystems.exists(path)


def write_atomically(path: str, data: bytes, *, durable: bool = True) -> None:
    """Write `data` to `path` by temporary name + rename: readers see the old file or the
    whole new one, and a killed writer leaves at most a hidden `.tmp` file.

    `durable` (local files): flushed to disk before the rename (`tfsal.files.atomic_write`),
    so a power loss leaves the old file or the new one. Without it the rename is still atomic
    for every process, but after a power loss the file may be empty: for files whose loss
    only costs a recomputation (an image's record, read as absent when it does not parse).
    """
    if is_local(path):
        from tfsal.files import atomic_write

        with atomic_write(_local(path), durable=durable) as handle:
            handle.write(data)
        return
    folder, name = FileSystems.split(path)
    tmp = FileSystems.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        handle.write(data)
    try:
        FileSystems.rename([tmp], [path])
    except Exception:
        FileSystems.delete([tmp])
        raise


def write_if_changed(path: str, data: bytes) -> bool:
    """Write unless `path` already holds exactly `data` (a rerun then touches nothing)."""
    if read_bytes(path) == data:
        return False
    write_atomically(path, data)
    return True


def npy_bytes(array) -> bytes:
    """The bytes `tfsal.files.save_npy` writes for `array` (`np.save` of the array)."""
    import numpy as np

    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


# ------------------------------------------------------------------------- reading
class ReadImages(beam.PTransform):
    """Image files matching globs on any Beam file system, as `ImageInput`s.

    Args:
        patterns: a glob or a list of globs (`photos/*.png`, `gs://bucket/images/**`); a local
            folder stands for every image below it, as in `tfsal explain DIR`.
        exclude: a folder whose files are never inputs (the output folder, when it lies
            inside the images' folder).

    Only files with an image suffix (`tfsal.runs.IMAGE_SUFFIXES`) are read. A pattern that
    matches nothing reads nothing (a pattern without wildcards must exist).
    """

    def __init__(self, patterns, *, exclude: str | None = None):
        super().__init__()
        self.patterns = [patterns] if isinstance(patterns, str) else list(patterns)
        if not self.patterns:
            raise TfsalError("expected at least one image pattern, received none")
        self.exclude = None if exclude is None else absolute(exclude).rstrip("/" + os.sep)

    def expand(self, pipeline):
        # One matching step for every pattern (Impulse → match, filter: translating each
        # DoFn costs time on every runner), then the reads spread over the workers.
        patterns = [(glob_of(pattern), pattern_root(pattern)) for pattern in self.patterns]
        return (pipeline
                | "Start" >> beam.Impulse()
                | "Match" >> beam.ParDo(_MatchImages(patterns, self.exclude))
                | "Spread" >> beam.Reshuffle()  # a fusion break: the reads run in parallel
                | "Read" >> beam.MapTuple(_read_file))


def _is_image(path: str, exclude) -> bool:
    if exclude is not None and (path == exclude or path.startswith(exclude + "/")
                                or path.startswith(exclude + os.sep)):
        return False
    return os.path.splitext(path)[1].lower() in IMAGE_SUFFIXES


class _MatchImages(beam.DoFn):
    """(path, pattern root) of every image file each glob matches
    (`FileSystems.match`; a glob matching nothing reads nothing, as `fileio.MatchAll`), less
    the files of `exclude` and those inside a tfsal run folder (one holding `.tfsal-run.json`)
    below the pattern's folder: its sheets are PNGs, never inputs (as `tfsal explain DIR`
    skips them)."""

    def __init__(self, patterns: list, exclude: str | None):
        self.patterns, self.exclude = patterns, exclude

    def process(self, _) -> Iterator[tuple[str, str]]:
        seen: dict = {}
        for glob, root in self.patterns:
            for metadata in FileSystems.match([glob])[0].metadata_list:
                path = metadata.path
                if _is_image(path, self.exclude) and not _in_run_folder(path, root, seen):
                    yield path, root


def _in_run_folder(path: str, root: str, seen: dict) -> bool:
    from tfsal.runs import RUN_MARKER

    folder = path[:max(path.rfind("/"), path.rfind(os.sep))]
    while len(folder) >= len(root.rstrip("/" + os.sep)) and folder:
        if folder not in seen:
            seen[folder] = exists(join(folder, RUN_MARKER))
        if seen[folder]:
            return True
        cut = max(folder.rfind("/"), folder.rfind(os.sep))
        if cut <= 0:
            break
        folder = folder[:cut]
    return False


def _read_file(path: str, root: str) -> ImageInput:
    key = path[len(root):] if path.startswith(root) else os.path.basename(path)
    try:
        data = read_bytes(path)
    except Exception as exc:  # unreadable: an empty input, a dead letter when decoded
        return ImageInput(key, path, f"\0unreadable: {exc}".encode())
    return ImageInput(key, path, b"\0unreadable: the file vanished" if data is None else data)


class ReadImagesFromTFRecord(beam.PTransform):
    """Encoded images stored in TFRecord files, as `ImageInput`s.

    A record is either the encoded image itself (PNG, JPEG, GIF, BMP, TIFF, WebP bytes) or a
    serialised `tf.train.Example` holding it under `image_feature`. The key is the Example's
    `name_feature` (e.g. the original file name) where present, else `<record file
    name>/<sha256 of the bytes>` (stable across runs: resumes find it again).

    Args:
        pattern: glob of TFRecord files on any Beam file system.
        image_feature: the Example feature with the encoded image.
        name_feature: the Example feature with the image's name (optional).
    """

    def __init__(self, pattern: str, *, image_feature: str = "image/encoded",
                 name_feature: str | None = "image/filename"):
        super().__init__()
        self.pattern, self.image_feature, self.name_feature = \
            absolute(pattern), image_feature, name_feature

    def expand(self, pipeline):
        from apache_beam.io.tfrecordio import ReadAllFromTFRecord

        return (pipeline
                | "Pattern" >> beam.Create([self.pattern])
                | "Records" >> ReadAllFromTFRecord(with_filename=True)
                | "Images" >> beam.Map(_from_record, self.image_feature, self.name_feature))


def _from_record(named_record, image_feature, name_feature) -> ImageInput:
    filename, record = named_record
    data, name = record, None
    if not record.startswith(_MAGIC):
        import tensorflow as tf

        try:
            example = tf.train.Example.FromString(record)
            features = example.features.feature
            if image_feature in features:
                data = features[image_feature].bytes_list.value[0]
                if name_feature and name_feature in features and \
                        features[name_feature].bytes_list.value:
                    name = features[name_feature].bytes_list.value[0].decode(
                        "utf-8", "surrogateescape")
        except Exception:  # not an Example: the bytes go to the decoder, which says why
            pass
    key = _safe_key(name) if name else ""
    if not key:
        key = f"{os.path.basename(filename)}/{hashlib.sha256(data).hexdigest()}"
    return ImageInput(key, f"{filename}#{name or key}", data)


def _safe_key(name: str) -> str:
    """A name from a record as a path inside the run folder: no root, no `.` or `..` parts
    (a record's name never writes outside OUT)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    return "/".join(parts)


# ------------------------------------------------------------------------- decoding
class _NamedBytes(io.BytesIO):
    """Encoded bytes that print as their source, so decoder errors name the image."""

    def __init__(self, data: bytes, source: str):
        super().__init__(data)
        self.source = source

    def __str__(self) -> str:
        return self.source

    __repr__ = __str__


def decode_image(item: ImageInput, size, *, fit: str = "resize",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS):
    """(image float32 (H, W, 3) in [0, 1], note): `tfsal.images.load_image` of the bytes, so
    the same pixels and the same errors as the same file locally (TfsalError naming the
    source)."""
    from tfsal.images import load_image

    if item.data.startswith(b"\0unreadable: "):
        raise TfsalError(f"expected a readable image file, received {item.source} "
                         f"({item.data[13:].decode(errors='replace')})")
    return load_image(_NamedBytes(item.data, item.source), size, max_pixels=max_pixels, fit=fit)
