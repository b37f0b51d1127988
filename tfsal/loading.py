"""Loading classifiers as `tfsal.Model` adapters.

`load_model` takes a Keras model, the name of a model in one of the catalogues listed in
`CATALOGS` (built-in models, `tfsal.zoo`; ImageNet models, `tfsal.hub_models`: the
`keras.applications` model with its ImageNet weights), a `.keras` / `.h5` file, a SavedModel
directory (also TF Serving's `<model>/<version>/` layout), or "hub:<handle>" for a TF-Hub model
(URL or local directory, through `tensorflow_hub.load`). Loading sits above the adapter and
below the catalogues' code: a catalogue is imported when a name is looked up, never by loading
itself, and knows nothing of loading (`Catalog`).

`as_model`, what every method calls, reuses one adapter per Keras model object for as long as
the model lives, so that a method called again on the same model does not trace again.

Loading is contained by default (`safe_mode=True`): Keras safe mode for model files (no
arbitrary code such as Lambda layers), and for SavedModels and hub handles a scan of
`saved_model.pb` before anything runs (`tfsal.containment`): a graph whose signatures or resource
initialisers call ops that touch files, the network or processes (`tf.io.write_file`,
`tf.io.read_file`, `tf.py_function`, ...) is refused. The scan is repeated on the loaded function
tfsal calls. Custom Keras classes come from `custom_objects` (see `custom_objects_from`).

A loaded SavedModel or hub object becomes a `tfsal.opgraph.OpGraph`: the graph of one of its
signatures (or of the object's `__call__`), inlined once and imported by name into each compiled
function, so every method works on it, backward rules and layer maps included. A signature that
takes encoded image bytes is fed at its decoded float image tensor (`input_tensor`).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
import sys
import threading
import warnings
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import tensorflow as tf

from tfsal import containment
from tfsal.errors import TfsalError
from tfsal.model import Model
from tfsal.opgraph import OpGraph

HUB_PREFIX = "hub:"
DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default key; Keras' export() writes it too
# The catalogues of named models, consulted in this order (the first that knows a name wins).
# Each is a module following `Catalog`, imported only when a name is looked up.
CATALOGS = ("tfsal.zoo", "tfsal.hub_models")

# Options that apply to some kinds of source only, with their defaults; safe_mode is left out
# because it only ever forbids something (Keras files, SavedModels and hub handles).
_SOURCE_OPTIONS = {"weights": "imagenet", "download": True, "signature": None,
                   "output_key": None, "version": None, "input_tensor": None,
                   "custom_objects": None}
_GRAPH_OPTIONS = ("signature", "output_key", "input_tensor")


class Catalog(Protocol):
    """What a catalogue of named models (a module listed in `CATALOGS`) provides."""

    WHAT: str  # what its models are called in messages, e.g. "a built-in model"
    OPTIONS: tuple[str, ...]  # the options of `load_model` its models take

    def available(self) -> tuple[str, ...]:
        """The names it knows."""

    def find(self, name: str):
        """The facts about the model called `name` (`.name`, `.preprocess`, `.class_names`),
        or None for a name it does not know."""

    def keras_model(self, found, **options):
        """A new Keras model of found facts, built with the given `OPTIONS`."""

    def find_handle(self, handle: str):
        """The facts about a TF-Hub handle (`.input_size`, `.class_names`), or None."""


def _catalogs() -> list[Catalog]:
    return [importlib.import_module(name) for name in CATALOGS]


def as_model(model, **kwargs) -> Model:
    """The adapter of anything `load_model` accepts, for the functions taking `model`.

    A `tfsal.Model` is returned as it is. A Keras model given without options gets the adapter
    of that model object, made on its first use and reused while the model lives (held
    without keeping it alive): calling a method again on it neither rebuilds nor retraces.
    Anything else, or a Keras model with options, is loaded anew by `load_model`.
    """
    import keras

    if isinstance(model, Model):
        if kwargs:
            raise TfsalError(f"expected no loading options for an existing tfsal.Model, "
                             f"received {sorted(kwargs)}")
        return model
    if isinstance(model, keras.Model) and not kwargs:
        return _ADAPTERS.adapter(model)
    return load_model(model, **kwargs)


@dataclass(frozen=True)
class _Reused:
    adapter: Model
    layers: tuple  # the model's layers when the adapter was made


class _AdapterCache:
    """One adapter per Keras model object, for as long as the model lives.

    Keyed by the model object itself, weakly (never by `id()`, whose numbers are reused once
    an object is freed). The cached adapters hold their model weakly
    (`Model.hold_model_weakly`): a value that referenced its key would keep the key alive
    forever. Callers get a `strong_copy`, which keeps the model alive while they use it (a
    model made in the call's argument list has no other owner) and shares the compiled
    functions, which refer to no adapter. Weights are variables read at every call, so
    assigning new ones needs no new adapter; a model whose layers changed since (a layer
    added to a Sequential) gets one.
    """

    def __init__(self):
        self._reused = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def adapter(self, keras_model) -> Model:
        layers = tuple(keras_model.layers)
        with self._lock:
            reused = self._reused.get(keras_model)
        if reused is None or len(reused.layers) != len(layers) \
                or any(a is not b for a, b in zip(reused.layers, layers)):
            reused = _Reused(load_model(keras_model).hold_model_weakly(), layers)
            with self._lock:
                self._reused[keras_model] = reused
        return reused.adapter.strong_copy()


_ADAPTERS = _AdapterCache()


def load_model(source, *, preprocess="auto", score="logit", output="auto", batch_size=32,
               class_names=None, safe_mode=True, weights="imagenet", download=True,
               signature=None, output_key=None, version=None, input_tensor=None,
               custom_objects=None) -> Model:
    """Load or wrap a classifier as a `tfsal.Model`.

    Args:
        source: a `tfsal.Model` (returned unchanged); a Keras model; a built-in model name
            (`tfsal.zoo.available()`); an ImageNet model name (`tfsal.hub_models.available()`,
            case-insensitive, Keras spellings such as "InceptionV3" too); a `.keras` / `.h5`
            file; a SavedModel directory, or a TF Serving model directory holding integer
            version subdirectories; or "hub:<handle>" (a TF-Hub URL or a local directory).
            Names come before paths: pass a `Path` (or "./name") for a directory with a name.
        preprocess: as for `Model`; "auto" takes a named model's own, None (images in [0, 1])
            for hub handles and everything else.
        score: default score of the adapter.
        output: "auto", "logits" or "probabilities": what the model returns (see `Model`; a
            loaded graph ending in Softmax is detected and its logits recovered).
        batch_size: images per compiled call.
        class_names: class names (default: a named model's own; for the TF-Hub handles in the
            ImageNet specs, "background" followed by the 1000 ImageNet names).
        safe_mode: True (default) refuses a model that can do more than compute: a `.keras` /
            `.h5` file needing arbitrary code (Keras safe mode: Lambda layers), and a
            SavedModel or hub handle whose graph calls ops that touch files, the network or
            processes (`tfsal.containment`; checked before anything is loaded). False loads
            it (with a warning naming such ops): only for models you trust.
        weights: ImageNet names only: "imagenet" (from the Keras cache, downloaded by Keras
            if missing), None (untrained architecture) or the path of a weights file.
        download: ImageNet names only: False never touches the network.
        signature: SavedModel / hub only: the signature to call. None: "serving_default" if
            the model has it, else the object's own `__call__`.
        output_key: which output of a model returning several to explain: for a SavedModel /
            hub handle, a signature's output key; for a Keras model (object or file), an
            output's name (output layer name, or key of a dict output) or index (see `Model`).
        version: TF Serving layout only: the version to load (default: the largest).
        input_tensor: SavedModel / hub only: the name of the float image tensor to feed (for
            signatures taking encoded image bytes; default: the first float (N, H, W, 3)
            tensor after the decoding).
        custom_objects: `.keras` / `.h5` files only: a dict name -> class or function for the
            custom layers (and functions) the file needs, as for `keras.models.load_model`
            (`custom_objects_from(module)` builds one from a module or .py file). A class
            registered under a package ("package>Name") is found by its plain name too.

    Returns:
        a `tfsal.Model`.

    Raises:
        TfsalError: for an unknown name, a missing path, an unloadable file, ImageNet weights
            that are neither cached nor downloadable, a signature without an image input (or a
            bytes signature whose decoded image cannot be found), an option that does not
            apply to the source, a Keras file needing a class that is neither registered nor
            in `custom_objects`, or (safe mode) a model that can do more than compute.

    Example:
        >>> model = tfsal.load_model("xception")  # keras.applications, ImageNet weights
        >>> maps = tfsal.vanilla_gradient(model, images)
    """
    import keras

    if isinstance(source, Model):
        return source
    common = dict(score=score, output=output, batch_size=batch_size)
    given = dict(weights=weights, download=download, signature=signature,
                 output_key=output_key, version=version, input_tensor=input_tensor,
                 custom_objects=custom_objects)
    pre = None if preprocess == "auto" else preprocess
    if isinstance(source, keras.Model):
        _check_options("a Keras model", given, ("output_key",))
        return Model(source, preprocess=pre, class_names=class_names, output_key=output_key,
                     **common)
    if not isinstance(source, (str, Path)):
        raise TfsalError("expected a tfsal.Model, a keras.Model, a model name, a path or "
                         f"'hub:<handle>', received {type(source).__name__}")
    if isinstance(source, str):
        named = _load_named(source, preprocess, class_names, safe_mode, given, common)
        if named is not None:
            return named
    return _load_path(Path(source), pre, class_names, safe_mode, given, common)


def _check_options(what: str, given: dict, allowed: tuple = ()) -> None:
    """Raise for options set away from their defaults that do not apply to `what`."""
    unused = [k for k, default in _SOURCE_OPTIONS.items()
              if k not in allowed and not _is_default(given[k], default)]
    if unused:
        received = ", ".join(f"{k}={given[k]!r}" for k in unused)
        raise TfsalError(f"expected only options that apply to {what}, received {received}")


def _is_default(value, default) -> bool:
    return value is default or (type(value) is type(default) and value == default)


def _load_named(source: str, preprocess, class_names, safe_mode, given,
                common) -> Model | None:
    """A hub handle, or a name one of the `CATALOGS` knows, as a `Model`; None for anything
    else."""
    if source.startswith(HUB_PREFIX):
        _check_options("a TF-Hub handle", given, _GRAPH_OPTIONS)
        return _load_hub(source, preprocess, class_names, safe_mode, given, common)
    for catalog in _catalogs():
        found = catalog.find(source)
        if found is not None:
            _check_options(catalog.WHAT, given, catalog.OPTIONS)
            keras_model = catalog.keras_model(found, **{k: given[k] for k in catalog.OPTIONS})
            pre = found.preprocess if preprocess == "auto" else preprocess
            return Model(keras_model, preprocess=pre,
                         class_names=class_names or found.class_names, name=found.name,
                         **common)
    return None


def _load_path(path: Path, preprocess, class_names, safe_mode, given, common) -> Model:
    """A `.keras` / `.h5` file or a SavedModel directory as a `Model`."""
    try:
        found = _saved_model_dir(path, given["version"])
        is_file = path.is_file()
    except OSError as exc:  # e.g. a name longer than the file system allows
        raise TfsalError(f"expected a model name or a readable path, received "
                         f"{str(path)[:80]!r}… ({exc.strerror})") from None
    if found is not None:
        _check_options("a SavedModel directory", given, _GRAPH_OPTIONS + ("version",))
        directory, name = found
        what = "a loadable SavedModel"
        _contain(_restore(lambda: containment.scan_saved_model(directory), what, directory),
                 str(directory), safe_mode)
        loaded = _restore(lambda: tf.saved_model.load(str(directory)), what, directory)
        graph = _loaded_graph(loaded, given, str(directory), safe_mode=safe_mode)
        return Model(graph, preprocess=preprocess, class_names=class_names, name=name, **common)
    if is_file and path.suffix in (".keras", ".h5"):
        _check_options("a Keras model file", given, ("custom_objects", "output_key"))
        return _load_keras_file(path, preprocess, class_names, safe_mode,
                                given["custom_objects"], dict(common,
                                                              output_key=given["output_key"]))
    names = ", ".join(f"{catalog.WHAT} name {list(catalog.available())}"
                      for catalog in _catalogs())
    raise TfsalError(f"expected {names}, a .keras file, a SavedModel directory or "
                     f"'hub:<handle>', received {str(path)!r}")


def _load_keras_file(path: Path, preprocess, class_names, safe_mode, custom_objects,
                     common) -> Model:
    import keras

    objects = _keras_custom_objects(path, custom_objects)
    try:
        loaded = keras.models.load_model(path, safe_mode=safe_mode, compile=False,
                                         custom_objects=objects)
    except Exception as exc:  # Keras raises many types; one clear message for all
        raise _keras_error(path, exc, safe_mode) from exc
    return Model(loaded, preprocess=preprocess, class_names=class_names, name=path.stem,
                 **common)


# Keras 3 ("Could not locate class 'X'") and legacy .h5 ("Unknown layer: 'X'") messages.
_MISSING = (re.compile(r"Could not locate (class|function) '([^']+)'"),
            re.compile(r"Unknown (\w+): '([^']+)'"))
_DUMPS = ("Full object config:", "\n\nconfig=")  # Keras appends whole configs


def _keras_error(path: Path, exc: Exception, safe_mode) -> TfsalError:
    """A short TfsalError for a Keras loading failure: the missing custom class named, the
    safe-mode hint only where safe mode refused something, no config dumps."""
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(str(seen))
        seen = seen.__cause__ or seen.__context__
    text = "\n".join(chain)
    for pattern in _MISSING:
        missing = pattern.search(text)
        if missing:
            kind = "function" if missing.group(1) == "function" else "class"
            name = missing.group(2)
            short = name.rsplit(">", 1)[-1]
            plural = "functions" if kind == "function" else "classes"
            return TfsalError(
                f"expected a Keras model file whose {plural} are all known, received {path} "
                f"needing the unregistered {kind} {name!r}: "
                f"pass custom_objects={{{short!r}: {short}}} (command line: --custom-objects "
                f"MODULE, a module or .py file defining it)")
    message = str(exc)
    if "Exception encountered: " in message:  # Keras wraps the cause in a config dump
        message = message.split("Exception encountered: ", 1)[1]
    for dump in _DUMPS:
        message = message.split(dump, 1)[0]
    message = " ".join(message.split()) or type(exc).__name__
    if len(message) > 300:
        message = message[:300] + "…"
    hint = " (it may need safe_mode=False / --unsafe-load, only if you trust the file)" \
        if safe_mode and "safe_mode" in text else ""
    return TfsalError(f"expected a loadable Keras model file, received {path}: "
                      f"{message}{hint}")


def _keras_custom_objects(path: Path, custom_objects) -> dict | None:
    """`custom_objects`, checked, plus the registered names ("package>Name") under which the
    file's config refers to the classes given by plain name."""
    if custom_objects is None:
        return None
    if not isinstance(custom_objects, dict) or not all(isinstance(k, str)
                                                       for k in custom_objects):
        raise TfsalError(f"expected custom_objects a dict name -> class or function, received "
                         f"{type(custom_objects).__name__}")
    objects = dict(custom_objects)
    for registered in _registered_names(path):
        short = registered.rsplit(">", 1)[-1]
        if registered not in objects and short in objects:
            objects[registered] = objects[short]
    return objects


def _registered_names(path: Path) -> set[str]:
    """The "package>Name" registered names in a `.keras` file's config (none for others:
    legacy `.h5` files name classes as they were registered)."""
    try:
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return set()  # not a .keras archive: Keras reports it
    found, stack = set(), [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            names = [item.get("registered_name")]
            if item.get("class_name") == "function":  # a function's name is its config
                names.append(item.get("config"))
            found.update(n for n in names if isinstance(n, str) and ">" in n)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def custom_objects_from(module: str) -> dict:
    """The public classes and functions of a module, by name: `custom_objects` for
    `load_model`.

    Args:
        module: a dotted module name ("my_package.layers") or the path of a `.py` file.
            Importing it runs its code (its `@keras.saving.register_keras_serializable`
            decorators too): only for code you trust.

    Returns:
        a dict name -> class or function: the names in the module's `__all__` if it has one,
        else its public classes and functions defined in it (or in its submodules).

    Raises:
        TfsalError: for a missing module or file, or one that fails to import.
    """
    text = str(module)
    if text.endswith(".py") or "/" in text or "\\" in text:
        loaded = _import_file(Path(text))
    else:
        loaded = _import_module(text)
    names = getattr(loaded, "__all__", None)
    if names is None:
        names = [n for n, obj in vars(loaded).items()
                 if not n.startswith("_") and _defined_in(obj, loaded.__name__)]
    found = {n: getattr(loaded, n, None) for n in names}
    return {n: obj for n, obj in found.items()
            if inspect.isclass(obj) or inspect.isfunction(obj)}


def _defined_in(obj, module: str) -> bool:
    """Whether `obj` was defined in `module` or one of its submodules (not imported)."""
    home = getattr(obj, "__module__", None)
    return isinstance(home, str) and (home == module or home.startswith(module + "."))


def _import_file(path: Path):
    if not path.is_file() or path.suffix != ".py":
        raise TfsalError(f"expected a module name or the path of an existing .py file, "
                         f"received {str(path)!r}")
    name = "tfsal_custom_objects_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(name, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[name] = loaded  # as a normal import does (dataclasses, pickling need it)
    try:
        spec.loader.exec_module(loaded)
    except Exception as exc:  # anything the module's code raises
        sys.modules.pop(name, None)
        raise TfsalError(f"expected a .py file that imports cleanly, received {path}: "
                         f"{type(exc).__name__}: {exc}") from exc
    return loaded


def _import_module(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise TfsalError(f"expected an importable module name or the path of a .py file, "
                             f"received {name!r} (no module named {exc.name!r})") from exc
        raise TfsalError(f"expected a module that imports cleanly, received {name!r}: "
                         f"{type(exc).__name__}: {exc}") from exc
    except Exception as exc:  # anything the module's code raises
        raise TfsalError(f"expected a module that imports cleanly, received {name!r}: "
                         f"{type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------------------- SavedModels
def _saved_model_dir(path: Path, version) -> tuple[Path, str] | None:
    """(SavedModel directory, display name) found at `path`, or None if it holds none.

    TF Serving keeps each version in an integer-named subdirectory
    (`<model>/<version>/saved_model.pb`); the largest is taken unless `version` names one.
    """
    if not path.is_dir():
        return None
    if (path / "saved_model.pb").exists():
        if version is not None:
            raise TfsalError(f"expected a TF Serving model directory (<model>/<version>/"
                             f"saved_model.pb) for version={version!r}, received the plain "
                             f"SavedModel directory {path}")
        return path, path.name
    versions = {int(d.name): d for d in path.iterdir()
                if d.name.isdigit() and (d / "saved_model.pb").exists()}
    if not versions:
        return None
    if version is None:
        version = max(versions)
    if version not in versions or isinstance(version, bool):
        raise TfsalError(f"expected a version in {sorted(versions)} of {path}, "
                         f"received {version!r}")
    return versions[version], f"{path.name}/{version}"


def _restore(load, what: str, where):
    """`load()`, with every loading failure as a TfsalError."""
    try:
        return load()
    except Exception as exc:  # TensorFlow and TF-Hub raise many types
        raise TfsalError(f"expected {what}, received {str(where)!r}: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from exc


def _load_hub(source: str, preprocess, class_names, safe_mode, given, common) -> Model:
    """'hub:<handle>' through `tensorflow_hub` (imported here only: it pulls in tf-keras): the
    handle resolved to a local directory (downloaded and cached for a URL), scanned, loaded."""
    handle = source[len(HUB_PREFIX):].strip()
    if not handle:
        raise TfsalError(f"expected a URL or a directory after {HUB_PREFIX!r}, received "
                         f"{source!r}")
    try:
        import tensorflow_hub as hub
    except ImportError as exc:
        raise TfsalError(f"expected the tensorflow-hub package for {source!r}, received "
                         f"ImportError: {exc}") from exc
    what = "a loadable TF-Hub handle (URL or SavedModel directory)"
    directory = str(_restore(lambda: hub.resolve(handle), what, handle))
    where = handle if directory == handle else f"{handle} ({directory})"
    _contain(_restore(lambda: containment.scan_saved_model(directory), what, where), where,
             safe_mode)
    loaded = _restore(lambda: hub.load(directory), what, where)
    graph = _loaded_graph(loaded, given, handle, safe_mode=safe_mode)
    known = _known_handle(handle)
    if known is not None and (graph.input_shape is None or None in graph.input_shape[1:3]):
        # The documented size: tfsal resizes image files to it and probes the class count.
        graph.input_shape = (None, known.input_size, known.input_size, 3)
    pre = None if preprocess == "auto" else preprocess  # hub image models take [0, 1] images
    names = class_names or (known.class_names if known is not None else None)
    return Model(graph, preprocess=pre, class_names=names, name=source, **common)


def _known_handle(handle: str):
    """What a catalogue knows about a TF-Hub handle (input size, class names), else None."""
    for catalog in _catalogs():
        found = catalog.find_handle(handle)
        if found is not None:
            return found
    return None


def _contain(findings, where: str, safe_mode) -> None:
    """Refuse (safe mode) or warn about a SavedModel whose graph has forbidden ops."""
    if not findings:
        return
    listed = containment.describe(findings)
    if safe_mode:
        raise TfsalError(f"expected a SavedModel whose graph only computes, received {where} "
                         f"whose graph calls ops that touch files, the network or processes: "
                         f"{listed}; load it with safe_mode=False (command line: --unsafe-load) "
                         f"only if you trust it")
    warnings.warn(f"loading {where} with safe_mode=False although its graph calls ops that "
                  f"touch files, the network or processes: {listed}", stacklevel=2)


def _loaded_graph(loaded, given, where: str, *, safe_mode=True) -> OpGraph:
    """The loaded object's image -> scores graph: the chosen signature (or `__call__`) and
    output, fed at its image input or at `input_tensor`. In safe mode the function is scanned
    too (the SavedModel was before loading; this also covers what the loader added)."""
    function, outputs = _endpoint(loaded, given["signature"], where)
    if safe_mode:
        _contain(containment.scan_function(function), where, safe_mode)
    key = _output_key(outputs, given["output_key"], where)
    selected = outputs if key is None else outputs[key]
    # Signatures describe outputs by TensorSpecs; the graph tensors come in flattened order.
    index = next(i for i, o in enumerate(tf.nest.flatten(outputs)) if o is selected)
    return OpGraph(function, function.outputs[index], input_tensor=given["input_tensor"],
                   keep_alive=loaded, where=where)


def _endpoint(loaded, signature, where: str):
    """(concrete function, its structured outputs) of the chosen signature."""
    signatures = dict(getattr(loaded, "signatures", None) or {})
    if signature is None and DEFAULT_SIGNATURE not in signatures and callable(loaded):
        return _callable_endpoint(loaded, where)
    name = DEFAULT_SIGNATURE if signature is None else signature
    if name not in signatures:
        hint = " (or signature=None for the object's own __call__)" if callable(loaded) else ""
        raise TfsalError(f"expected a signature in {sorted(signatures)}{hint} of {where}, "
                         f"received {name!r}")
    function = signatures[name]
    inputs = function.structured_input_signature[1]
    if len(inputs) != 1:
        raise TfsalError(f"expected a signature with one image input, received inputs "
                         f"{sorted(inputs)} in signature {name!r} of {where}")
    return function, function.structured_outputs


def _callable_endpoint(loaded, where: str):
    """The restored `__call__` of an object without a default signature (e.g. TF-Hub models)."""
    concrete = [c for c in getattr(loaded.__call__, "concrete_functions", ())
                if c.structured_input_signature[0]
                and isinstance(c.structured_input_signature[0][0], tf.TensorSpec)]
    if not concrete:
        raise TfsalError(f"expected a signature or a traced __call__ taking an image tensor, "
                         f"received neither in {where}")
    # Hub models trace __call__ with training=True and False: inference mode first.
    concrete.sort(key=lambda c: any(v is True for v in tf.nest.flatten(
        c.structured_input_signature)))
    return concrete[0], concrete[0].structured_outputs


def _output_key(outputs, output_key, where: str):
    """The key of the scores in a dict / sequence of outputs (None: a single tensor)."""
    if isinstance(outputs, dict):
        keys = sorted(outputs)
    elif isinstance(outputs, (list, tuple)):
        keys = list(range(len(outputs)))
    else:
        keys = None
    if keys is None:
        if output_key is not None:
            raise TfsalError(f"expected no output_key for the single output of {where}, "
                             f"received {output_key!r}")
        return None
    if output_key is None and len(keys) == 1:
        return keys[0]
    if output_key not in keys:
        raise TfsalError(f"expected output_key naming one of the outputs {keys} of {where}, "
                         f"received {output_key!r}")
    return output_key
