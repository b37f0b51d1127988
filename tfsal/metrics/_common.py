"""What the retraining experiments share: naming methods, per-pixel maps, data checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from tfsal.errors import TfsalError
from tfsal.images import check_images


@dataclass(frozen=True)
class ResolvedMethod:
    """One method of an experiment: its label, function, keyword arguments, and whether it
    thresholds its own maps (the built-in "rectgrad", run with zero_threshold=True as in the
    RectGrad authors' CIFAR experiments, which then skip the baselines' final threshold)."""

    label: str
    function: Callable | None
    kwargs: dict
    self_thresholded: bool = False
    maps: tuple | None = None  # precomputed (train maps, test maps), where allowed


def resolve_methods(methods, method_kwargs=None, *, reserved=(), seed: int = 0,
                    allow_maps: bool = False) -> list[ResolvedMethod]:
    """Methods given as names of `tfsal.methods.METHODS`, callables, or a mapping label → name
    or callable (or, with `allow_maps`, a pair of precomputed maps); `reserved` names (e.g.
    "random") pass through with no function. A method taking a `seed` (SmoothGrad, noise
    baselines) gets `seed` unless its kwargs set one."""
    import inspect

    from tfsal.methods import METHODS

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
        if isinstance(method, str):
            if method in reserved:
                resolved.append(ResolvedMethod(label, None, kwargs))
                continue
            if method not in METHODS:
                raise TfsalError(f"expected method names in {sorted(METHODS) + list(reserved)} "
                                 f"or callables, received {method!r}")
            own = method == "rectgrad"
            if own:
                kwargs = {"zero_threshold": True, **kwargs}
            method = METHODS[method]
        elif not callable(method):
            raise TfsalError(f"expected a method name or a callable for {label!r}, received "
                             f"{type(method).__name__}")
        else:
            own = False
        try:
            takes_seed = "seed" in inspect.signature(method).parameters
        except (TypeError, ValueError):  # builtins without a signature
            takes_seed = False
        if takes_seed:
            kwargs.setdefault("seed", int(seed))
        resolved.append(ResolvedMethod(label, method, kwargs, own))
    return resolved


def pixel_maps(attributions, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) float64 per-pixel maps: channels summed (the RectGrad authors' reduction);
    lower-resolution (N, h, w) maps (CAM family) upsampled bilinearly to `size`."""
    maps = np.asarray(attributions, np.float64)
    if maps.ndim == 4:
        maps = maps.sum(axis=-1)
    if maps.ndim != 3:
        raise TfsalError(f"expected attributions (N, H, W, C) or (N, h, w), received shape "
                         f"{maps.shape}")
    if maps.shape[1:] != tuple(size):
        from tfsal.visualize import upsample

        maps = np.asarray(upsample(maps, tuple(size)), np.float64)
    if not np.all(np.isfinite(maps)):
        raise TfsalError("expected finite attributions, received NaN or inf values")
    return maps


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
                           chunk: int = 256) -> list[np.ndarray]:
    """`function(model, chunk)` over slices of `images` (bounded memory for path methods)."""
    return [np.asarray(function(model, images[start:start + chunk], **kwargs))
            for start in range(0, len(images), chunk)]


def positive(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise TfsalError(f"expected {name} an int ≥ {minimum}, received {value!r}")
    return int(value)
