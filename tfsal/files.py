"""Writing output files so that an interrupted run never leaves a half-written one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_write(path):
    """Yield a binary handle to a temporary file next to `path`, renamed onto it on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed and `path` is
    left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
