"""Writing output files so that an interrupted run, a crash or a power loss never leaves a
half-written or empty one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from pathlib import Path

import numpy as np


def make_dirs(path) -> None:
    """`mkdir -p` without recursion (pathlib's and `os.makedirs` recurse once per missing
    level, so a folder tree thousands of levels deep would raise RecursionError)."""
    path = Path(path)
    missing = []
    while not path.is_dir():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise


def _create_temporary(folder: Path, name: str) -> tuple[int, Path]:
    """A new file next to the target, opened with mode 0o666 so the kernel applies the user's
    umask (`tempfile.mkstemp` would make every output 0600)."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


@contextlib.contextmanager
def atomic_write(path, *, durable: bool = True):
    """Yield a binary handle to a temporary file next to `path`, renamed onto it on success.

    The data is flushed to disk (fsync) before the rename, so after a power loss `path` holds
    either its old content or the whole new one. `durable=False` skips the flushes: the rename
    is still atomic for every process, but after a power loss the file may be empty (for files
    whose loss only costs a recomputation). On any exception (including KeyboardInterrupt) the
    temporary file is removed and `path` is left as it was.
    """
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """fsync a folder so a rename into it survives a power loss (where the OS allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def append_lines(path, lines: list[str]) -> None:
    """Append text lines to `path` in one write and sync it: a crash can cut off only the last
    line, which readers skip (`read_json_lines`)."""
    if not lines:
        return
    data = "".join(line + "\n" for line in lines).encode()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        # A line cut off by a crash is ended first, so the new lines are not glued to it.
        if os.fstat(fd).st_size and os.pread(fd, 1, os.fstat(fd).st_size - 1) != b"\n":
            data = b"\n" + data
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json_lines(path):
    """The JSON objects of a JSON-lines file, skipping a line cut off by a crash."""
    try:
        handle = open(path, encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                yield json.loads(line)
            except ValueError:
                continue


def save_npy(array, path) -> Path:
    """`np.save` atomically; returns the path."""
    with atomic_write(path) as handle:
        np.save(handle, np.asarray(array))
    return Path(path)


def save_json(payload, path) -> Path:
    """Write JSON (indented) atomically; returns the path."""
    with atomic_write(path) as handle:
        handle.write(json.dumps(payload, indent=2).encode())
    return Path(path)
