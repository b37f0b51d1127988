"""A resumable record of a long experiment: each finished training's accuracy and each
method's pixel ranks, valid only for the settings and data that produced them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import atomic_write


class Checkpoint:
    """Accuracies in a JSON file `path` and ranks in an .npz next to it (a no-op without a
    path). A file written with other settings is refused, not overwritten."""

    def __init__(self, path, settings: dict):
        self.path = None if path is None else Path(path)
        self.settings = json.loads(json.dumps(settings))  # as it reads back
        self.values: dict = {}
        if self.path is not None and self.path.exists():
            try:
                stored = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                raise TfsalError(f"expected a readable ROAR/KAR checkpoint, received "
                                 f"{self.path} ({exc})") from None
            if stored.get("settings") != self.settings:
                raise TfsalError(f"expected a checkpoint written with these settings and "
                                 f"data, received {self.path} from other ones (delete it or "
                                 f"choose another path)")
            self.values = dict(stored.get("accuracies", {}))

    def _ranks_path(self) -> Path:
        tag = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()
        return self.path.with_name(f"{self.path.stem}.{tag[:12]}.ranks.npz")

    def ranks(self) -> dict:
        """label -> [train ranks, test ranks] recorded for these settings (or {})."""
        if self.path is None or not self._ranks_path().exists():
            return {}
        with np.load(self._ranks_path()) as stored:
            labels = {key.rsplit("/", 1)[0] for key in stored.files}
            return {label: [stored[f"{label}/train"].astype(np.int64),
                            stored[f"{label}/test"].astype(np.int64)] for label in labels}

    def save_ranks(self, ranks: dict) -> None:
        if self.path is None:
            return
        arrays = {f"{label}/{part}": r.astype(np.int32)
                  for label, pair in ranks.items() for part, r in zip(("train", "test"), pair)}
        with atomic_write(self._ranks_path()) as handle:
            np.savez(handle, **arrays)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str) -> float:
        return float(self.values[key])

    def save(self, key: str, value: float) -> float:
        """Record `value` under `key` (write-then-rename: an interruption leaves a whole
        file); returns it as a float."""
        self.values[key] = float(value)
        if self.path is not None:
            with atomic_write(self.path) as handle:
                handle.write(json.dumps({"settings": self.settings,
                                         "accuracies": self.values}, indent=1).encode())
        return float(value)


def fingerprint(*arrays) -> str:
    """A short digest of the arrays' bytes (which data a checkpoint belongs to)."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]
