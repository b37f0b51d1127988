"""Declarative specs of the supported ImageNet models, and the ImageNet class names.

One JSON file per model beside this module (``xception.json``, ``vgg16.json``, ...) says how
to build it with ``keras.applications``, its input size and preprocessing, the last
convolutional layer for CAM / Grad-CAM, the form its ReLUs take (what backward-rule
overrides must reach), the file Keras caches its ImageNet weights in, and the TF-Hub
classification model of the same architecture where one exists. ``imagenet_class_index.json``
is Keras' own class index (source and licence: README.md in this folder).

It is one of the catalogues of named models `tfsal.load_model` consults
(`tfsal.loading.CATALOGS`): `find`, `keras_model` (the ImageNet weights from the Keras cache,
downloaded if missing) and `find_handle` (the TF-Hub handles of the specs).

Example:
    >>> spec = tfsal.hub_models.spec("xception")
    >>> spec.input_size, spec.preprocess, spec.last_conv_layer
    (299, 'tf', 'block14_sepconv2_act')
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from tfsal.checks import flag
from tfsal.errors import TfsalError

CLASS_INDEX_FILE = "imagenet_class_index.json"
PROBE_TIMEOUT = 10.0  # seconds to wait for the weights server before calling it offline

# As a catalogue of `tfsal.load_model`: what its models are called, the options they take.
WHAT = "an ImageNet model"
OPTIONS = ("weights", "download")


@dataclass(frozen=True)
class HubModel:
    """A TF-Hub ImageNet classifier of the same architecture (TF-Slim weights, not Keras').

    Attributes:
        handle: the tfhub.dev handle (it redirects to Kaggle Models).
        kaggle_handle: the same model's Kaggle Models handle.
        output: "logits" (the hub classifiers have no softmax).
        num_classes: 1001 for Google's ImageNet classifiers.
        background_class: whether class 0 is "background" (the 1000 ImageNet classes follow).
        preprocess: None: hub image models take RGB images in [0, 1], tfsal's pixel space.
        input_size: the expected height and width.
        note: how the hub model differs from the Keras one.
    """

    handle: str
    kaggle_handle: str
    output: str
    num_classes: int
    background_class: bool
    preprocess: str | None
    input_size: int
    note: str

    @property
    def class_names(self) -> tuple[str, ...]:
        """The hub model's class names, "background" first where it has that class."""
        names = imagenet_class_names()
        return ("background",) + names if self.background_class else names


@dataclass(frozen=True)
class ModelSpec:
    """What tfsal knows about one `keras.applications` ImageNet model.

    Attributes:
        name: the name `tfsal.load_model` accepts (e.g. "inception_v3").
        keras_module, keras_constructor: e.g. "keras.applications.xception", "Xception".
        input_size: height = width of the input.
        preprocess: "caffe" (BGR, mean-subtracted) or "tf" ([-1, 1]), as `tfsal.Model` takes it.
        last_conv_layer: the last convolutional feature map, for CAM / Grad-CAM.
        relu_form: how the ReLUs are written ("Activation('relu')", "fused activation='relu'",
            "ReLU(max_value=6)").
        head_layer: the softmax classification layer.
        labels: the label set ("imagenet").
        num_classes: 1000.
        weights_file, weights_url, weights_md5: the ImageNet weights (with top) as
            `keras.utils.get_file` caches them (md5 None where Keras checks none).
        cache_subdir: the folder under the Keras cache directory ("models").
        hub: the TF-Hub classifier of the same architecture, or None.
    """

    name: str
    keras_module: str
    keras_constructor: str
    input_size: int
    preprocess: str
    last_conv_layer: str
    relu_form: str
    head_layer: str
    labels: str
    num_classes: int
    weights_file: str
    weights_url: str
    weights_md5: str | None
    cache_subdir: str
    hub: HubModel | None

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the model's classes, in output order."""
        return imagenet_class_names()

    def build(self, weights=None):
        """The `keras.applications` model at the spec's input size, with its softmax head.

        Args:
            weights: None (random initialisation), "imagenet" (Keras downloads them) or the
                path of a weights file.

        Returns:
            a new functional `keras.Model`.
        """
        constructor = getattr(importlib.import_module(self.keras_module), self.keras_constructor)
        size = self.input_size
        return constructor(weights=None if weights is None else str(weights),
                           input_shape=(size, size, 3))

    def weights_path(self) -> Path:
        """Where Keras keeps this model's ImageNet weights (see `keras_cache_dir`)."""
        return keras_cache_dir() / self.cache_subdir / self.weights_file

    def weights_cached(self) -> bool:
        """Whether the ImageNet weights file is in the Keras cache."""
        return self.weights_path().is_file()


def keras_cache_dir() -> Path:
    """The Keras cache directory: $KERAS_HOME, else ~/.keras (/tmp/.keras if ~ is read-only).

    Keras applies the same rule but reads KERAS_HOME once, when it is imported; this reads it
    at every call, and tfsal hands the directory to Keras explicitly, so both agree.
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return Path(os.path.expanduser(home))


def available() -> tuple[str, ...]:
    """Names of the ImageNet model specs, sorted."""
    return tuple(sorted(entry.name[:-len(".json")] for entry in resources.files(__name__).iterdir()
                        if entry.name.endswith(".json") and entry.name != CLASS_INDEX_FILE))


def find(name: str) -> ModelSpec | None:
    """The spec called `name`, or None. Case, "_" and "-" do not matter, and the Keras
    constructor names match too ("InceptionV3", "inception-v3", "inception_v3")."""
    if not isinstance(name, str):
        return None
    key = _key(name)
    for known in available():
        found = spec(known)
        if key in (_key(known), _key(found.keras_constructor)):
            return found
    return None


def spec(name: str) -> ModelSpec:
    """The spec of an ImageNet model.

    Raises:
        TfsalError: for a name that is not in `available()`.
    """
    if name not in available():
        found = find(name)
        if found is None:
            raise TfsalError(f"expected an ImageNet model name in {available()}, "
                             f"received {name!r}")
        return found
    data = json.loads(resources.files(__name__).joinpath(f"{name}.json").read_text())
    return _parse(data)


def find_handle(handle: str) -> HubModel | None:
    """The `HubModel` of the spec with this tfhub.dev or Kaggle handle, else None."""
    key = handle.rstrip("/").lower()
    for name in available():
        hub = spec(name).hub
        if hub is not None and key in (hub.handle.lower(), hub.kaggle_handle.lower()):
            return hub
    return None


def keras_model(found: ModelSpec, *, weights="imagenet", download: bool = True):
    """The spec's Keras model with ImageNet weights, a given weights file, or none.

    Args:
        found: a spec (`find`, `spec`).
        weights: "imagenet" (from the Keras cache, downloaded by Keras if missing), None
            (untrained architecture) or the path of a weights file.
        download: False never touches the network.

    Raises:
        TfsalError: for weights that are neither cached nor downloadable, or a weights file
            of another model.
    """
    download = flag(download, "download")
    if weights is None:
        return found.build(weights=None)
    if isinstance(weights, str) and weights == "imagenet":
        path = _imagenet_weights(found, download)
    elif isinstance(weights, (str, Path)) and _is_file(weights):
        path = Path(weights)
    else:
        raise TfsalError(f"expected weights='imagenet', None or the path of an existing weights "
                         f"file, received {weights!r}")
    try:
        return found.build(weights=path)
    except Exception as exc:  # h5py / Keras errors for a file of another model or format
        raise TfsalError(f"expected a weights file of {found.keras_constructor}, received "
                         f"{path}: {exc}") from exc


def _is_file(path) -> bool:
    try:
        return Path(path).is_file()
    except OSError:  # e.g. a name longer than the file system allows
        return False


def _imagenet_weights(found: ModelSpec, download: bool) -> Path:
    """The cached ImageNet weights file, downloaded through Keras if missing.

    Keras downloads with urllib and no timeout, which can hang on a network that drops
    packets; so a missing file is only fetched after the server answered a short probe.
    """
    import keras

    target = found.weights_path()
    if not target.is_file():
        if not download:
            raise _missing_weights(found, target, "download=False")
        problem = _connection_problem(found.weights_url)
        if problem:
            raise _missing_weights(found, target, problem)
        target.parent.mkdir(parents=True, exist_ok=True)  # else Keras falls back to /tmp/.keras
    try:
        return Path(keras.utils.get_file(
            found.weights_file, found.weights_url, cache_subdir=found.cache_subdir,
            cache_dir=str(keras_cache_dir()), file_hash=found.weights_md5))
    except Exception as exc:  # URL errors, a bad hash; Keras removes partial downloads
        raise _missing_weights(found, target, str(exc)) from exc


def _missing_weights(found: ModelSpec, target: Path, reason: str) -> TfsalError:
    return TfsalError(
        f"expected the ImageNet weights of {found.name} in the Keras cache, received no usable "
        f"file {found.weights_file} at {target} (the cache is $KERAS_HOME or ~/.keras, "
        f"subfolder {found.cache_subdir}; not downloaded: {reason}). Fetch it from "
        f"{found.weights_url} to that path, or pass weights=<path of the file> (weights=None: "
        f"untrained)")


def _connection_problem(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why no TCP connection to the URL's host opens within `timeout` seconds (None: it does)."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return None
    except OSError as exc:  # DNS failure, refused, unreachable, timed out
        return f"no connection to {parts.hostname}:{port} (offline?): {exc}"


def imagenet_class_index() -> tuple[tuple[str, str], ...]:
    """The 1000 ImageNet classes as (WordNet id, name) pairs, in the Keras models' output order.

    Read from the shipped copy of Keras' ``imagenet_class_index.json`` (what
    `keras.applications.imagenet_utils.decode_predictions` downloads).
    """
    index = json.loads(resources.files(__name__).joinpath(CLASS_INDEX_FILE).read_text())
    return tuple(tuple(index[str(i)]) for i in range(len(index)))


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names in output order ("tench" ... "toilet_tissue").

    Two names occur twice ("crane": bird 134 and machine 517; "maillot": 638 and 639); the
    WordNet ids (`imagenet_wnids`) are unique.
    """
    return tuple(name for _, name in imagenet_class_index())


def imagenet_wnids() -> tuple[str, ...]:
    """The 1000 WordNet ids in output order ("n01440764" ... "n15075141")."""
    return tuple(wnid for wnid, _ in imagenet_class_index())


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def _parse(data: dict) -> ModelSpec:
    """A `ModelSpec` from the parsed JSON of one spec file."""
    weights, hub = data["weights"], data.get("hub")
    return ModelSpec(
        name=data["name"], keras_module=data["keras"]["module"],
        keras_constructor=data["keras"]["constructor"], input_size=int(data["input_size"]),
        preprocess=data["preprocess"], last_conv_layer=data["last_conv_layer"],
        relu_form=data["relu_form"], head_layer=data["head"]["layer"], labels=data["labels"],
        num_classes=int(data["num_classes"]), weights_file=weights["file"],
        weights_url=weights["url"], weights_md5=weights.get("md5"),
        cache_subdir=weights.get("cache_subdir", "models"),
        hub=HubModel(**hub) if hub else None)


__all__ = ["CLASS_INDEX_FILE", "OPTIONS", "PROBE_TIMEOUT", "WHAT", "HubModel", "ModelSpec",
           "available", "find", "find_handle", "imagenet_class_index", "imagenet_class_names",
           "imagenet_wnids", "keras_cache_dir", "keras_model", "spec"]
