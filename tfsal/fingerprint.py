"""Run fingerprints: digests of everything a map depends on, so stored maps are reused only by a
run that would compute the same ones.

A map depends on the model's weights and structure, the preprocessing, what the model outputs
and which score is differentiated, the method and its parameters, the target rule and the
tfsal version. `model_digest` hashes the first four from the adapter itself (the weights'
values, not a file's name or date), so a model file rewritten in place gets a new digest.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

from tfsal.model import Model


def digest(payload, size: int = 16) -> str:
    """A hex digest of a JSON-able payload (`size` bytes)."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=size).hexdigest()


def model_digest(model: Model) -> str | None:
    """sha256 of the model's structure and weight values, with the adapter's settings that
    change scores (preprocessing, output kind, input size); None for an opaque callable
    without variables, whose computation tfsal cannot see."""
    h = hashlib.sha256()
    h.update(repr((_preprocess_identity(model.preprocess), model.output_note,
                   model.input_size, type(model.wrapped).__name__)).encode())
    if model.graph is not None:
        structure, values = model.graph.contents()
    else:
        structure = _keras_structure(model.wrapped)
        variables = getattr(model.wrapped, "weights", None) \
            or getattr(model.wrapped, "variables", None)
        if not variables:
            return None
        values = [(getattr(v, "path", None) or v.name, np.asarray(v)) for v in variables]
    h.update(structure)
    for name, value in values:
        h.update(f"{name}|{value.dtype.str}|{value.shape}|".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def _preprocess_identity(preprocess):
    """Preprocessing names as they are; for a callable, its code and constants."""
    code = getattr(preprocess, "__code__", None)
    if code is None:
        return preprocess if preprocess is None or isinstance(preprocess, str) \
            else type(preprocess).__qualname__
    return (code.co_code.hex(), repr(code.co_consts), code.co_names)


def _keras_structure(model) -> bytes:
    try:
        return model.to_json().encode()
    except Exception:  # subclassed models without get_config: their class stands for them
        return type(model).__qualname__.encode()
