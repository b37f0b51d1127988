"""What the retraining experiments share: naming methods, computing maps in chunks, data checks."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tfsal.errors import TfsalError
from tfsal.images import check_images

# The RectGrad authors' experiments run RectGrad with its zero threshold (max(x·R, 0)) and then
# skip the baselines' final percentile threshold for it: the methods that threshold their own
# maps, with the keyword arguments that make them do so. An experiment asks for this policy by
# passing it to `resolve_methods`.
SELF_THRESHOLDING = {"rectgrad": {"zero_threshold": True}}


@dataclass(frozen=True)
class ResolvedMethod:
    """One method of an experiment: its label, function, keyword arguments, and whether it
    thresholds its own maps (per the experiment's `self_thresholding` policy)."""

    label: str
    function: Callable | None
    kwargs: dict
    self_thresholded: bool = False
    maps: tuple | None = None  # precomputed (train maps, test maps), where allowed


def resolve_methods(methods, method_kwargs=None, *, reserved=(), seed: int = 0,
                    allow_maps: bool = False,
                    self_thresholding: Mapping[str, Mapping] | None = None
                    ) -> list[ResolvedMethod]:
    """Methods given as names of `tfsal.methods.METHODS`, callables, or a mapping label → name
    or callable (or, with `allow_maps`, a pair of precomputed maps); `reserved` names (e.g.
    "random") pass through with no function. A method taking a `seed` (SmoothGrad, noise
    baselines) gets `seed` unless its kwargs set one. `self_thresholding` maps method names to
    the keyword arguments that make them threshold their own maps (below the method's
    kwargs); those methods come back `self_thresholded`."""
    from tfsal.methods import METHODS

    policy = dict(self_thresholding or {})
    if isinstance(methods, (str, bytes)) or callable(methods):
        methods = [methods]
    if isinstance(methods, Mapping):
        items = list(methods.items())
    else:
        try:
            entries = list(methods)
        except TypeError:
            raise TfsalError(f"expected methods as a list of names or callables, or a mapping "
                             f"label → method, received {type(methods).__name__}") from None
        items = [(m if isinstance(m, str) else getattr(m, "__name__", f"method{i}"), m)
                 for i, m in enumerate(entries)]
    if not items:
        raise TfsalError("expected at least one method, received none")
    extra = dict(method_kwargs or {})
    unknown = set(extra) - {label for label, _ in items}
    if unknown:
        raise TfsalError(f"expected method_kwargs keyed by method labels "
                         f"{[label for label, _ in items]}, received {sorted(unknown)}")
    resolved, seen = [], set()
    for label, method in items:
        if not isinstance(label, str) or label in seen:
            raise TfsalError(f"expected distinct string labels for the methods, received "
                             f"{label!r} twice or not a string")
        seen.add(label)
        kwargs = dict(extra.get(label, {}))
        if allow_maps and isinstance(method, tuple):
            if len(method) != 2:
                raise TfsalError(f"expected precomputed maps for {label!r} as a pair (train "
                                 f"maps, test maps), received {len(method)} items")
            resolved.append(ResolvedMethod(label, None, kwargs, maps=method))
            continue
        own = False
        if isinstance(method, str):
            if method in reserved:
                resolved.append(ResolvedMethod(label, None, kwargs))
                continue
            if method not in METHODS:
                raise TfsalError(f"expected method names in {sorted(METHODS) + list(reserved)} "
                                 f"or callables, received {method!r}")
            own = method in policy
            kwargs = {**policy.get(method, {}), **kwargs}
            method = METHODS[method]
        elif not callable(method):
            raise TfsalError(f"expected a method name or a callable for {label!r}, received "
                             f"{type(method).__name__}")
        if _takes_seed(method):
            kwargs.setdefault("seed", int(seed))
        resolved.append(ResolvedMethod(label, method, kwargs, own))
    return resolved


def _takes_seed(method: Callable) -> bool:
    try:
        return "seed" in inspect.signature(method).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False


def dataset(data, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) from a `ShapesDataset`-like object or an (images, labels) pair."""
    if hasattr(data, "images") and hasattr(data, "labels"):
        images, labels = data.images, data.labels
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        images, labels = data
    else:
        raise TfsalError(f"expected {name} as a ShapesDataset or an (images, labels) pair, "
                         f"received {type(data).__name__}")
    images = check_images(images)
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
        raise TfsalError(f"expected {name} labels as {len(images)} ints, received "
                         f"{labels.dtype} of shape {labels.shape}")
    return images, labels.astype(np.int64)


def attributions_in_chunks(function: Callable, model, images: np.ndarray, kwargs: dict,
                           chunk: int = 256) -> np.ndarray:
    """`function(model, chunk)` over slices of `images`, joined (bounded memory for path
    methods)."""
    return np.concatenate([np.asarray(function(model, images[start:start + chunk], **kwargs))
                           for start in range(0, len(images), chunk)])
