"""The model adapter: one object that turns any classifier into scores and gradients.

`Model` owns everything between pixel-space images and numbers: the model's preprocessing
(composed inside the differentiable graph), the choice of score (logit, probability,
log-probability; logits recovered from softmax heads without touching the user's model),
target resolution, batching, and compiled `tf.function`s whose input signatures leave the
batch size and the target classes free, so neither retraces.

What is differentiated, the objective, is either a score of a class (class targets; the
output must be a class vector) or the values of a callable target on the model's raw output
(any output shape: regression, multi-label, segmentation; `tfsal.targets`). The objective is
part of every compiled function's key: one trace per score, rule and callable object.

Three kinds of model sit behind it: Keras functional/sequential graphs (walked layer by
layer, `tfsal.graph`), loaded SavedModel / TF Serving / TF-Hub graphs (imported op by op,
`tfsal.opgraph`), and any other callable (plain gradients only).

Methods never open a `GradientTape` themselves; they ask the adapter.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import sys
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfsal.checks import integer
from tfsal.errors import TfsalError
from tfsal.graph import CLASS_VECTOR, GraphRunner, is_graph_model
from tfsal.images import as_batch
from tfsal.opgraph import OpGraph
from tfsal.targets import TargetFunction, fed_indices, is_target_function, resolve_targets

SCORES = ("logit", "probability", "log_probability")
PREPROCESSING = ("caffe", "tf", "torch", "scale255", None)
# Images per compiled call at most: a batch holds every activation and gradient of all its
# images at once, so beyond a few thousand it only adds memory (and gets the process killed).
MAX_BATCH_SIZE = 4096
# A binary head's probabilities are clipped to [ε, 1 − ε] before their logit is taken.
_BINARY_EPSILON = 1e-7

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _preprocess_fn(preprocess) -> Callable[[tf.Tensor], tf.Tensor]:
    """Pixel space [0, 1] RGB -> the model's input space, as TensorFlow ops."""
    if callable(preprocess):
        return preprocess
    if preprocess is None:
        return lambda x: x
    if preprocess == "tf":
        return lambda x: x * 2.0 - 1.0
    if preprocess == "caffe":
        return lambda x: x[..., ::-1] * 255.0 - tf.constant(_CAFFE_MEAN_BGR)
    if preprocess == "torch":
        return lambda x: (x - tf.constant(_TORCH_MEAN)) / tf.constant(_TORCH_STD)
    if preprocess == "scale255":  # models that take 0..255 (and rescale by 1/255 inside)
        return lambda x: x * 255.0
    raise TfsalError(f"expected preprocess in {PREPROCESSING} or a callable, "
                     f"received {preprocess!r}")


def check_score(score: str) -> str:
    if not isinstance(score, str) or score not in SCORES:
        raise TfsalError(f"expected score in {SCORES}, received {score!r}")
    return score


class Chunker:
    """Runs calls over consecutive chunks of at most `size` items, recovering from running
    out of memory.

    A chunk whose call raises `tf.errors.ResourceExhaustedError` (CPU or GPU) is halved and
    retried, with a warning, down to one item; the smaller size is kept for the following
    chunks of this chunker. One item that still does not fit raises a TfsalError. Each item's
    result does not depend on the chunk it is computed in, so the results are those of an
    unhalved run.
    """

    def __init__(self, size: int):
        self.size = int(size)

    def run(self, call: Callable[[int, int], object], n: int) -> list:
        """[call(start, stop) for consecutive chunks covering range(n)], in order."""
        results, start = [], 0
        while start < n:
            stop = min(start + self.size, n)
            try:
                results.append(call(start, stop))
            except tf.errors.ResourceExhaustedError as exc:
                chunk = stop - start
                if chunk == 1:
                    raise TfsalError(
                        f"expected inputs that fit in memory, received one that runs out of "
                        f"memory even alone (a batch of 1): {_first_line(exc)}") from None
                self.size = chunk // 2
                warnings.warn(f"tfsal: out of memory with a batch of {chunk}; retrying with "
                              f"{self.size}", RuntimeWarning, stacklevel=_caller_level())
                continue
            start = stop
        return results


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_level() -> int:
    """The `stacklevel` of the first frame outside tfsal, seen from the function calling
    `warnings.warn` (which itself called this)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def _output_for(objective) -> str:
    """The `_forward` output an objective needs: the model's own for callable targets."""
    return "model" if isinstance(objective, _ByIdentity) else "classes"


def invalid_argument(exc: BaseException, shape) -> TfsalError:
    """The TfsalError of a compiled call's InvalidArgumentError: a callable target's values
    of the wrong count, or (mostly) images the model cannot process (e.g. too small)."""
    text = getattr(exc, "message", None) or str(exc)
    found = re.search(re.escape(_TARGET_VALUES) + r"[^\]]*\](?: \[[^\]]*\])*", text)
    if found:  # "[message] [count] [values for] [n] [images]" as the Assert op prints it
        return TfsalError(re.sub(r"\] \[", " ", found.group(0)).rstrip("]"))
    line = _first_line(exc)
    return TfsalError(f"expected images the model can process, received shape "
                      f"{tuple(shape)}: {line}")


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def _trace(function):
    """`function.get_concrete_function()`, with the ValueErrors Keras and TensorFlow raise
    while tracing (shape mismatches) as TfsalErrors."""
    try:
        return function.get_concrete_function()
    except TfsalError:
        raise
    except ValueError as exc:  # Keras shape errors while tracing, e.g. 1x1 images
        raise TfsalError(f"expected inputs the model can process: {_first_line(exc)}") \
            from None


def _attribute(model, name: str):
    """A shape attribute of the model, None where it has none (or it cannot be computed)."""
    try:
        return getattr(model, name, None)
    except Exception:  # Keras properties of models never built or called raise various types
        return None


def _several(shape) -> bool:
    """True for the shapes of a model with several inputs or outputs (a list of shapes)."""
    return isinstance(shape, list) or (isinstance(shape, tuple) and bool(shape)
                                       and isinstance(shape[0], (tuple, list)))


def _check_input_shape(shape) -> None:
    """Refuse a known input shape that is not (N, H, W, 3) images."""
    if _several(shape):
        raise TfsalError(f"expected a model taking (N, H, W, 3) images, received input shapes "
                         f"{[tuple(s) for s in shape]} ({len(shape)} inputs)")
    if isinstance(shape, tuple) and (len(shape) != 4 or shape[-1] not in (None, 3)):
        raise TfsalError(f"expected a model taking (N, H, W, 3) images, received input shape "
                         f"{shape} (a preprocess= callable may map the RGB images to another "
                         f"input)")


# Appended to every refusal of class targets or scores on an output that is no class vector.
_CALLABLE_HINT = ("; a callable target (targets=lambda out: ..., one value per image; see "
                  "tfsal.targets) explains any output")
# The start of the runtime check of a callable target's values (found again in the error).
_TARGET_VALUES = "expected a callable target returning one value per image"


def _not_a_class_vector(shape) -> str | None:
    """Why a known output shape is no class vector (None: it is one, or is unknown)."""
    if isinstance(shape, tuple) and (len(shape) != 2 or shape[-1] == 0):
        return f"expected a model output of {CLASS_VECTOR}, received output shape {shape}"
    return None


def _several_outputs(names, count: int) -> TfsalError:
    return TfsalError(f"expected a model with one output, {CLASS_VECTOR}, or output_key= "
                      f"choosing one of its outputs {list(names)} (a name or an index < "
                      f"{count}); received {count} outputs")


def _keras_head(model, output_key):
    """The Keras functional model restricted to the output `output_key` chooses: a new model
    over the same layers (the user's model is not changed); `model` itself when it has one
    output and no key is given."""
    outputs = list(getattr(model, "outputs", None) or [])
    structure = getattr(model, "output", None)
    names = list(structure) if isinstance(structure, dict) else \
        list(getattr(model, "output_names", None) or range(len(outputs)))
    if output_key is None:
        if len(outputs) > 1:
            raise _several_outputs(names, len(outputs))
        return model
    if len(outputs) <= 1:
        raise TfsalError(f"expected no output_key for the single output of {model.name}, "
                         f"received output_key={output_key!r}")
    if isinstance(output_key, (int, np.integer)) and not isinstance(output_key, bool) \
            and -len(outputs) <= output_key < len(outputs):
        chosen = outputs[int(output_key)]
    elif isinstance(output_key, str) and isinstance(structure, dict) and output_key in structure:
        chosen = structure[output_key]
    elif isinstance(output_key, str) and output_key in (getattr(model, "output_names", None)
                                                        or ()):
        chosen = outputs[list(model.output_names).index(output_key)]
    else:
        raise TfsalError(f"expected output_key naming one of the outputs {names} of "
                         f"{model.name} (or an index < {len(outputs)}), received "
                         f"output_key={output_key!r}")
    import keras

    return keras.Model(model.input, chosen, name=model.name)


def _class_vector(out):
    """The model's output as one (N, classes) tensor; anything else is refused (inside a
    trace, where every kind of model's output is seen)."""
    out = _single(out)
    try:
        out = tf.convert_to_tensor(out)
    except (TypeError, ValueError):
        raise TfsalError(f"expected a model output of {CLASS_VECTOR}, received "
                         f"{type(out).__name__}{_CALLABLE_HINT}") from None
    rank = out.shape.rank
    if rank is not None and (rank != 2 or out.shape[-1] == 0):
        raise TfsalError(f"expected a model output of {CLASS_VECTOR}, received output shape "
                         f"{tuple(out.shape.as_list())}{_CALLABLE_HINT}")
    return out


def _single(out, output_key=None):
    """The one output tensor of a model's outputs: the one `output_key` chooses from a dict or
    sequence of several, the only one otherwise (inside a trace)."""
    if output_key is not None:
        keys = list(out) if isinstance(out, dict) else \
            list(range(len(out))) if isinstance(out, (list, tuple)) else None
        if keys is None:
            raise TfsalError(f"expected no output_key for a model with a single output, "
                             f"received output_key={output_key!r}")
        if isinstance(out, dict) and output_key not in out and isinstance(
                output_key, (int, np.integer)) and 0 <= output_key < len(keys):
            output_key = keys[int(output_key)]  # an index into the dict's order
        if output_key not in keys:
            raise TfsalError(f"expected output_key naming one of the outputs {keys}, received "
                             f"output_key={output_key!r}")
        out = out[output_key]
    if isinstance(out, dict):
        if len(out) != 1:
            raise _several_outputs(sorted(out, key=str), len(out))
        out = next(iter(out.values()))
    while isinstance(out, (list, tuple)):
        if len(out) != 1:
            raise _several_outputs(range(len(out)), len(out))
        out = out[0]
    return out


class _ByIdentity:
    """A callable target's function as part of a compiled function's key: equal only to the
    same object (a user's callable may define `__eq__` or be unhashable) — for a bound method,
    made anew at every attribute access, the same function of the same object — held
    strongly so that its identity is never reused while the key lives."""

    __slots__ = ("function", "_parts")

    def __init__(self, function):
        self.function = function
        bound = getattr(function, "__self__", None) is not None and hasattr(function,
                                                                           "__func__")
        self._parts = (function.__self__, function.__func__) if bound else (function,)

    def __eq__(self, other) -> bool:
        return isinstance(other, _ByIdentity) and len(other._parts) == len(self._parts) \
            and all(a is b for a, b in zip(other._parts, self._parts))

    def __hash__(self) -> int:
        return hash(tuple(object.__hash__(part) for part in self._parts))

    def __repr__(self) -> str:
        return f"target {getattr(self.function, '__qualname__', type(self.function).__name__)}"


class Model:
    """Adapter around a model mapping images (N, H, W, 3) in [0, 1] to class scores, or to
    any output a callable target turns into one value per image.

    Args:
        model: a Keras 3 model (functional, sequential, nested or subclassed), a
            `tfsal.opgraph.OpGraph` (what `tfsal.load_model` makes of SavedModels and hub
            handles), or any callable taking the preprocessed batch and returning (N, classes)
            outputs. A model with one output unit, (N, 1), is a binary classifier with
            classes 0 and 1: the unit is the logit z of class 1 (after removing a sigmoid), and
            class 0 has logit −z, probability σ(−z) and log-probability log σ(−z).
            Other outputs — regression (N,) or (N, k) values, segmentation maps (N, H, W, C),
            a multi-label sigmoid head — are accepted, for callable targets only
            (`targets=lambda out: ...`, `tfsal.targets`): the callable receives the output
            exactly as the model returns it (no softmax or sigmoid removed) and returns one
            value per image, which is differentiated as it is (no `score`). Class targets,
            `score`, `predict` and `predicted_classes` on such a model raise a TfsalError
            saying so. Inputs other than (N, H, W, 3) images are refused.
        preprocess: "caffe" (VGG/ResNet), "tf" ([-1, 1]), "torch" (ImageNet mean/std),
            "scale255" ([0, 255]: x·255, for models that rescale by 1/255 themselves), None,
            or a callable from the [0, 1] tensor to the model's input.
        score: default score to differentiate: "logit", "probability" or "log_probability".
        output: what the model returns: "auto", "logits" or "probabilities". Whatever is
            given, a head ending in softmax (a Keras layer, or a Softmax op at the end of a
            loaded graph) is evaluated without it: true logits from the same weights; so is
            a single-unit head ending in sigmoid. "auto" refuses a sigmoid over several units
            (multi-label heads are not class vectors); on other non-Keras models it probes one
            batch and refuses outputs that look like probabilities (rows ≥ 0 summing to 1),
            and for callables a single column of values in [0, 1], asking for `output=`
            when class targets or scores are used (callable targets need no `output=`).
            "probabilities" on a single unit means σ(z).
        output_key: for a model with several outputs, the one to explain, for everything
            (classes, scores and callable targets): an output's name (a Keras output layer's
            name or the key of a dict output) or its index. A Keras functional model is
            walked as the model of that output alone (a new model over the same layers;
            yours is not changed); other callables have it picked from what they return.
            None (default) for a model with one output; a model with several and no key is
            refused. (`tfsal.load_model` also uses it for a SavedModel signature's outputs.)
        batch_size: images per compiled call, at most `MAX_BATCH_SIZE`; a batch that runs out
            of memory is halved and retried, with a warning.
        class_names: optional names of the classes.
        name: a display name.

    Example:
        >>> m = tfsal.Model(keras_model, preprocess="caffe")
        >>> grads = m.input_gradients(images, targets=None)
    """

    def __init__(self, model, *, preprocess=None, score="logit", output="auto", output_key=None,
                 batch_size=32, class_names=None, name=None):
        if not callable(model) and not isinstance(model, OpGraph):
            raise TfsalError("expected a Keras model, a loaded graph or a callable, received "
                             f"{type(model).__name__}")
        if output not in ("auto", "logits", "probabilities"):
            raise TfsalError(f"expected output in ('auto', 'logits', 'probabilities'), "
                             f"received {output!r}")
        batch_size = integer(batch_size, "batch_size", low=1, high=MAX_BATCH_SIZE,
                             note="a batch holds all its images' activations and gradients at "
                                  "once: larger ones only add memory")
        if output_key is not None and not isinstance(output_key, (str, int, np.integer)) \
                or isinstance(output_key, bool):
            raise TfsalError(f"expected output_key an output's name or index, received "
                             f"{output_key!r}")
        self.name = name or getattr(model, "name", type(model).__name__)
        self.output_key = output_key
        # The output key picked inside the trace (callables returning several outputs); a
        # Keras functional model is replaced by the model of the chosen output instead.
        self._picked = None
        if is_graph_model(model):
            model = _keras_head(model, output_key)
        elif isinstance(model, OpGraph) and output_key is not None:
            raise TfsalError(f"expected no output_key for the single output of the loaded "
                             f"graph {self.name} (tfsal.load_model's output_key chooses a "
                             f"signature's output), received output_key={output_key!r}")
        else:
            self._picked = output_key
        self._wrapped = lambda: model  # a strong reference (see `hold_model_weakly`)
        self.preprocess = preprocess
        self._preprocess = _preprocess_fn(preprocess)
        self.score = check_score(score)
        self.batch_size = int(batch_size)
        if class_names is not None and (isinstance(class_names, str)
                                        or not hasattr(class_names, "__iter__")):
            raise TfsalError(f"expected class_names a sequence of names, received "
                             f"{class_names!r}")
        self.class_names = tuple(class_names) if class_names is not None else None
        if not callable(preprocess):  # a callable may map the RGB images to another input
            _check_input_shape(_attribute(model, "input_shape"))
        self.runner = GraphRunner(model) if is_graph_model(model) else None
        self.graph = model if isinstance(model, OpGraph) else None
        shape = _attribute(model, "output_shape")
        if _several(shape):
            if self._picked is None:
                raise _several_outputs(range(len(shape)), len(shape))
            shape = shape[self._picked] if isinstance(shape, list) and isinstance(
                self._picked, (int, np.integer)) and -len(shape) <= self._picked < len(shape) \
                else None
            shape = tuple(shape) if isinstance(shape, (tuple, list)) else None
        # Why the output is no class vector (None: it is one, or not known yet): class targets
        # and scores raise it, callable targets work on any output.
        self._not_classes = _not_a_class_vector(shape)
        self._output_shape = shape if isinstance(shape, tuple) and len(shape) == 2 else None
        # True: one output unit, a binary classifier; None: not known before a call.
        self.binary = None if self._output_shape is None or self._output_shape[-1] is None \
            else self._output_shape[-1] == 1
        if self.graph is not None:
            activation = (self.graph.head or "").lower() or None
            where = f"{self.graph.head} op"
        else:
            activation = self.runner.head_activation() if self.runner is not None else None
            where = f"{activation} layer"
        binary = " (binary: classes 0/1)" if self.binary else ""
        if activation == "softmax" and self.binary:
            raise TfsalError(f"expected a softmax over several classes, received a single-unit "
                             f"softmax head ({where}), whose output is always 1; a binary "
                             f"classifier needs a sigmoid (or no) activation on its unit")
        if activation == "sigmoid" and not self.binary and output == "auto" \
                and self._not_classes is None:
            units = "an unknown number of" if self._output_shape is None else \
                self._output_shape[-1]
            self._not_classes = (
                f"multi-label sigmoid heads are not class vectors: expected {CLASS_VECTOR}, "
                f"received a sigmoid over {units} units ({where}) in {self.name}; pass "
                f"output='probabilities' (or 'logits') to take its values as class scores")
        # A softmax head, or the sigmoid of a binary one, is evaluated without it for class
        # scores: true logits from the same weights. (Callable targets see the output as the
        # model returns it.)
        self._logits_from_head = self._not_classes is None and (
            activation == "softmax" or (activation == "sigmoid" and bool(self.binary)))
        self.input_size = self._static_input_size(model)
        # key -> concrete function. Only the concrete functions are kept: they hold their
        # graph and the model's variables but not the traced Python function (which refers to
        # an adapter), so they may outlive any adapter sharing them (`strong_copy`).
        self._compiled: dict[tuple, object] = {}
        # A callable of unknown input size is probed at its first call instead.
        self._unprobed = False
        if self._not_classes is not None:
            self.output_kind = "logits" if output == "auto" else output
            self.output_note = "no class vector: callable targets only"
        elif self._logits_from_head:
            self.output_kind = "logits"
            self.output_note = f"logits from before the {where}{binary}"
        elif output != "auto":
            self.output_kind, self.output_note = output, f"{output} (given){binary}"
        else:
            self.output_kind, self.output_note = "logits", f"logits{binary}"
            if self.runner is None and self.input_size is not None:
                self._refuse_probabilities(self.input_size)
            elif self.runner is None and self.graph is None:
                self._unprobed = True

    def _refuse_probabilities(self, size, *, several_classes: bool = True) -> None:
        """For output="auto" on a model tfsal cannot see into: a probe batch, and a refusal
        of class targets and scores (`_not_classes`, raised when they are used) if its
        outputs look like probabilities (taking them as logits would be silently wrong): rows
        ≥ 0 summing to 1, or, for callables, one column of values in [0, 1] (also on a black
        and a white image). An output of another shape is recorded as no class vector."""
        h, w = size
        fn = self._fn(self._build_outputs)
        shape = fn.structured_outputs.shape
        if shape.rank is not None and (shape.rank != 2 or shape[-1] == 0):
            self._not_classes = _not_a_class_vector(tuple(shape.as_list()))
            return
        units = shape[-1]
        one_unit = self.graph is None and units in (1, None)
        if not (several_classes or one_unit):
            return
        probe = np.random.default_rng(0).random((2, h, w, 3)).astype(np.float32)
        rows = self._batched(fn, probe)
        if rows.ndim != 2 or rows.shape[1] == 0:
            self._not_classes = _not_a_class_vector((None,) + rows.shape[1:])
            return
        if several_classes and rows.shape[1] > 1 and np.all(rows >= 0) \
                and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3):
            self._not_classes = (
                f"expected output='logits' or 'probabilities' for {self.name}: its outputs are "
                f"rows ≥ 0 summing to 1 (probabilities?) and tfsal found no softmax to remove; "
                f"received output='auto'")
        if one_unit and rows.shape[1] == 1:
            extremes = np.stack([np.zeros((h, w, 3), np.float32), np.ones((h, w, 3), np.float32)])
            rows = np.concatenate([rows, self._batched(fn, extremes)])
            if np.all((rows >= 0) & (rows <= 1)):
                self._not_classes = (
                    f"expected output='logits' or 'probabilities' for {self.name}: its single "
                    f"output unit gives values in [0, 1] (sigmoid probabilities?) and tfsal "
                    f"found no sigmoid to remove; received output='auto'")

    def _check_classes(self, what: str = "class targets and scores") -> None:
        """Raise unless the output is a class vector (or not known yet: then the trace
        checks it)."""
        if self._not_classes is not None:
            raise TfsalError(f"{what} need a class vector: {self._not_classes}{_CALLABLE_HINT}")

    @property
    def wrapped(self):
        """The classifier behind the adapter: a Keras model, a loaded graph or a callable."""
        model = self._wrapped()
        if model is None:
            raise TfsalError(f"expected the model behind the adapter {self.name!r}, received "
                             f"one that no longer exists: the adapters reused for a Keras "
                             f"model given to a method do not keep it alive (tfsal.Model(...) "
                             f"does)")
        return model

    def hold_model_weakly(self) -> Model:
        """From now on, reference the wrapped model weakly: this adapter no longer keeps it
        alive, its `strong_copy`s do. For the adapters `tfsal.loading.as_model` keeps per
        Keras model object (one that kept its model alive would keep its entry forever).

        Returns:
            this adapter.
        """
        self._wrapped = weakref.ref(self.wrapped)
        return self

    def strong_copy(self) -> Model:
        """A shallow copy of this adapter that holds the model strongly and shares the
        compiled functions: what is traced through either is traced once for both."""
        model = self.wrapped
        held = copy.copy(self)
        held._wrapped = lambda: model
        return held

    def tracing_count(self) -> int:
        """How many functions were traced for this adapter (and the copies sharing its
        compiled functions): each once, at its first use, to a concrete function that cannot
        retrace. For tests and benchmarks."""
        return len(self._compiled)

    # ------------------------------------------------------------------ description
    def __repr__(self) -> str:
        kind = ("Keras graph" if self.runner is not None else
                "loaded graph" if self.graph is not None else "opaque callable")
        try:
            classes = self.num_classes
        except TfsalError:  # no class vector
            classes = None
        key = "" if self.output_key is None else f"output_key={self.output_key!r}, "
        return (f"tfsal.Model({self.name!r}, {kind}, preprocess={self.preprocess!r}, "
                f"score={self.score!r}, {key}outputs: {self.output_note}, classes={classes}, "
                f"input_size={self.input_size})")

    @staticmethod
    def _static_input_size(model) -> tuple[int, int] | None:
        shape = _attribute(model, "input_shape")
        if isinstance(shape, tuple) and len(shape) == 4 and None not in shape[1:3]:
            return int(shape[1]), int(shape[2])
        return None

    @functools.cached_property
    def num_classes(self) -> int:
        """Number of classes (from the output shape, or one probe call for opaque callables);
        2 for a binary (single-unit) head.

        Raises:
            TfsalError: for an output that is no class vector (see `Model`)."""
        self._check_classes("class counts")
        if self._output_shape is not None and self._output_shape[-1] is not None:
            units = int(self._output_shape[-1])
        else:
            h, w = self.input_size or (32, 32)
            out = self._batched(self._fn(self._build_outputs), np.zeros((1, h, w, 3), np.float32))
            if out.ndim != 2 or out.shape[-1] == 0:
                self._not_classes = _not_a_class_vector((None,) + out.shape[1:])
                self._check_classes("class counts")
            units = int(out.shape[-1])
            if self.binary is None:  # known now
                self.binary = units == 1
                if self.binary:
                    self.output_note += " (binary: classes 0/1)"
        return 2 if units == 1 else units

    def layer_names(self) -> list[str]:
        """Every layer path (nested models as "outer/inner"), in execution order; for loaded
        graphs, the names of the rank-4 tensors `layer=` can take."""
        return self._structure("layer access").paths

    def resolve_layer(self, layer: str | int | None) -> str:
        """A layer path (a tensor name for loaded graphs); None means the last convolutional
        feature map."""
        structure = self._structure("layer access")
        return structure.last_feature_map() if layer is None else structure.resolve(layer)

    def activation_layers(self) -> list[str]:
        """The layers (tensors) applying an activation a backward rule overrides, to a
        spatial (rank-4) map, from the input side up."""
        if self.graph is not None:
            return self.graph.activation_paths()
        from tfsal.overrides import activation_layers

        return activation_layers(self._structure("layer access"))

    def _structure(self, what: str, hint: str = ""):
        """The walkable structure: the Keras graph runner or the loaded graph."""
        if self.runner is None and self.graph is None:
            raise TfsalError(f"{what} needs a functional or sequential Keras model or a loaded "
                             f"SavedModel / hub graph; received {type(self.wrapped).__name__}, "
                             f"whose layers cannot be reached{hint}")
        return self.runner if self.runner is not None else self.graph

    def _require_runner(self, what: str, hint: str = "") -> GraphRunner:
        """The Keras graph runner, for surgery on Keras layers (no loaded-graph equivalent)."""
        if self.runner is None:
            raise TfsalError(f"{what} needs a functional or sequential Keras model; received "
                             f"{type(self.wrapped).__name__}, whose layers cannot be reached"
                             f"{hint}")
        return self.runner

    def cam_head(self) -> tuple[str, np.ndarray]:
        """For CAM: the global-average-pool layer's path and the head's kernel (channels, classes).

        For a binary (single-unit) head the kernel w of class 1 becomes (channels, 2): [−w, w].

        Raises:
            TfsalError: unless the model ends in GlobalAveragePooling2D followed by one Dense
                layer (Dropout and a separate softmax in between are allowed).
        """
        self._check_classes("CAM's class weights")
        path, kernel = self._cam_head()
        if self.binary and kernel.ndim == 2 and kernel.shape[1] == 1:
            kernel = np.concatenate([-kernel, kernel], axis=1)
        return path, kernel

    def _cam_head(self) -> tuple[str, np.ndarray]:
        if self.graph is not None:
            return self.graph.cam_head()
        import keras

        runner = self._require_runner("CAM")
        gaps = [p for p in runner.paths
                if isinstance(runner.layer(p), keras.layers.GlobalAveragePooling2D)]
        tail = runner.after(gaps[-1]) if gaps else []
        passive = (keras.layers.Dropout, keras.layers.Activation, keras.layers.Softmax)
        dense = [lay for _, lay in tail if isinstance(lay, keras.layers.Dense)]
        if not gaps or len(dense) != 1 or any(
                not isinstance(lay, passive + (keras.layers.Dense,)) for _, lay in tail):
            found = ", ".join(f"{p} ({type(lay).__name__})" for p, lay in (tail or runner.after(
                runner.paths[max(0, len(runner.paths) - 4)])))
            raise TfsalError("expected a GlobalAveragePooling2D + Dense head for CAM, received "
                             f"a model ending in {found}; use grad_cam instead")
        return gaps[-1], np.asarray(dense[0].kernel)

    # ------------------------------------------------------------------ graph pieces
    def _forward(self, images, capture_outputs=(), capture_inputs=(), rule=None,
                 reference=None, *, output: str = "classes"):
        """Pixel images -> (outputs, captured layer tensors), inside a trace, with the
        backward `rule` applied (None: plain gradients) and its reference images if it needs
        them (DeepLIFT).

        `output`: "classes" (default): the class vector, logits recovered from a softmax (or
        binary sigmoid) head, any other output refused; "head": the same tensor unchecked
        (probes of the output's shape); "model": the output as the model returns it, its
        final activation kept (what callable targets receive).
        """
        logits = self._logits_from_head and output != "model"
        x = self._preprocess(images)
        if rule is not None:
            self._structure(
                "backward rules (guided backprop, deconvnet, rectgrad, deeplift, epsilon_lrp)",
                hint="; use a plain-gradient method (vanilla, gradient_x_input, smoothgrad, "
                     "integrated_gradients)")
        if self.graph is not None:
            out, captured = self.graph.run(
                x, capture_outputs=capture_outputs, capture_inputs=capture_inputs,
                logits=logits, rule=rule,
                reference=None if reference is None else self._preprocess(reference))
        elif self.runner is None:
            out, captured = self.wrapped(x), {}
        else:
            overrider = self._overrider(rule, reference, logits)
            out, captured = self.runner.run(x, capture_outputs=capture_outputs,
                                            capture_inputs=capture_inputs,
                                            logits=logits, intercept=overrider)
            if overrider is not None:
                overrider.check_reached()
        out = _single(out, self._picked)
        return (_class_vector(out) if output == "classes" else out), captured

    def _overrider(self, rule, reference, logits):
        """The Keras-layer interceptor applying `rule` in this trace (None: plain gradients).

        Rules that need reference activations (DeepLIFT) first run the reference images.
        """
        if rule is None:
            return None
        from tfsal.overrides import Overrider

        recorded = None
        if rule.needs_reference:
            recorded = Overrider(rule, record=True)
            self.runner.run(self._preprocess(reference), intercept=recorded, logits=logits)
        return Overrider(rule, references=recorded)

    def _gradients(self, tape, total, sources):
        """d total / d sources. Ops imported from a loaded graph are invisible to the tape,
        so those graphs are differentiated symbolically (which also applies their rules)."""
        if self.graph is not None:
            return tf.gradients(total, sources)
        return tape.gradient(total, sources)

    def _rule_gradients(self, images, targets, objective, rule, reference, capture=()):
        """Forward + backward in one trace: (gradient w.r.t. images and captures, the
        differentiated values (N,)). `objective`: a score name (class `targets`) or a callable
        target (`objective`)."""
        with tf.GradientTape() as tape:
            tape.watch(images)
            out, captured = self._forward(images, capture_outputs=capture, rule=rule,
                                          reference=reference, output=_output_for(objective))
            selected = self._selected(out, targets, objective)
            # Samples are independent: the gradient of the sum is each sample's gradient.
            total = tf.reduce_sum(selected)
        features = [captured[path] for path in capture]
        gradients = self._gradients(tape, total, [images] + features)
        if gradients[0] is None and isinstance(objective, _ByIdentity):
            raise TfsalError("expected a callable target computed from the model's outputs, "
                             "received one whose values do not depend on them")
        return gradients[0], features, gradients[1:], selected

    def _selected(self, out, targets, objective):
        """Inside a trace: the (N,) values differentiated: each target class's score, or a
        callable target's values."""
        if isinstance(objective, _ByIdentity):
            return self._target_values(out, objective.function)
        return tf.gather(self._scores(out, objective), targets, batch_dims=1)

    def _target_values(self, out, function):
        """Inside a trace: a callable target's values on the model's output, checked to be
        floating numbers of shape (N,) (statically, and their count at run time)."""
        shape = tuple(out.shape.as_list()) if out.shape.rank is not None else "unknown"
        try:
            values = function(out)
        except TfsalError:
            raise
        except Exception as exc:  # the user's code, any error
            cause = _first_line(exc).split(" for '{{node")[0]  # TF appends the whole op
            raise TfsalError(f"expected a callable target mapping the model's output (shape "
                             f"{shape}) to one value per image, received one that raised "
                             f"{type(exc).__name__}: {cause}") from None
        try:
            values = tf.convert_to_tensor(values)
        except (TypeError, ValueError):
            raise TfsalError(f"{_TARGET_VALUES}, a float tensor of shape (N,), received "
                             f"{type(values).__name__}") from None
        if not values.dtype.is_floating:
            raise TfsalError(f"{_TARGET_VALUES}, a float tensor of shape (N,), received "
                             f"{values.dtype.name} values")
        batch = out.shape[0] if out.shape.rank else None
        if values.shape.rank is not None and (values.shape.rank != 1
                                              or values.shape[0] != batch):
            raise TfsalError(f"{_TARGET_VALUES}, shape (N,) for the output of shape {shape}, "
                             f"received shape {tuple(values.shape.as_list())}")
        count, n = tf.size(values), tf.shape(out)[0]
        check = tf.debugging.Assert(tf.equal(count, n), [
            f"{_TARGET_VALUES}, shape (N,) for the output of shape {shape}, received", count,
            "values for", n, "images"])
        with tf.control_dependencies([check]):
            return tf.reshape(values, [-1])

    def _scores(self, outputs, score: str):
        """All-class scores of the requested kind from the raw outputs."""
        if outputs.shape[-1] == 1:
            return self._binary_scores(outputs[:, 0], score)
        if self.output_kind == "logits":
            if score == "logit":
                return outputs
            return tf.nn.softmax(outputs) if score == "probability" else tf.nn.log_softmax(outputs)
        return outputs if score == "probability" else tf.math.log(tf.maximum(outputs, 1e-30))

    def _binary_scores(self, unit, score: str):
        """Scores of classes 0 and 1, (N, 2), from a binary head's unit: the logit z of class 1
        (class 0: −z), or its probability σ(z) with output="probabilities"."""
        if self.output_kind == "probabilities":
            if score == "probability":
                return tf.stack([1.0 - unit, unit], axis=1)
            if score == "log_probability":
                return tf.math.log(tf.maximum(tf.stack([1.0 - unit, unit], axis=1), 1e-30))
            p = tf.clip_by_value(unit, _BINARY_EPSILON, 1.0 - _BINARY_EPSILON)
            unit = tf.math.log(p) - tf.math.log1p(-p)  # the logit log(p / (1 − p))
        if score == "logit":
            return tf.stack([-unit, unit], axis=1)
        if score == "probability":
            return tf.stack([tf.sigmoid(-unit), tf.sigmoid(unit)], axis=1)
        return tf.stack([tf.math.log_sigmoid(-unit), tf.math.log_sigmoid(unit)], axis=1)

    def _score(self, score: str | None) -> str:
        """The score to use (default: the adapter's), checked against what the model outputs."""
        self._check_classes("class scores")
        score = check_score(self.score if score is None else score)
        if score == "logit" and self.output_kind == "probabilities" and self.binary is None:
            self.num_classes  # noqa: B018 (one probe call tells whether the head is binary)
        if score == "logit" and self.output_kind == "probabilities" and not self.binary:
            raise TfsalError("expected a model whose logits are reachable for score='logit', "
                             "received one that outputs probabilities only; use "
                             "score='probability' or 'log_probability'")
        return score

    def _signature(self, reference: bool = False):
        h, w = self.input_size or (None, None)
        images = tf.TensorSpec([None, h, w, 3], tf.float32)
        return [images, tf.TensorSpec([None], tf.int32)] + ([images] if reference else [])

    def _fn(self, build: Callable, *args):
        """The concrete function of the builder method `build` for `args`, built and traced
        once per adapter.

        The builders make `tf.function`s without autograph: nothing here branches on tensors,
        and errors raised while tracing (a TfsalError from a rule that reaches no layer) reach
        the caller unwrapped.

        Calls go to the concrete function of the fixed input signature: it skips the
        per-call signature matching of `tf.function` (as much as a small model's whole
        backward pass on CPU, BENCHMARKS.md) and makes a retrace impossible. Every backward rule
        gets its own function, so no trace ever mixes a rule with plain gradients.
        """
        return self.compiled((build.__func__, *args), lambda: build(*args))

    def compiled(self, key: tuple, build: Callable):
        """The concrete function of `build()` (a tf.function with an input signature), built
        and traced once per adapter and `key`. Also for methods that compile their own loops
        around `traced_gradients` (e.g. the nonlinear saliency loop)."""
        key = tuple(key)
        concrete = self._compiled.get(key)
        if concrete is None:
            concrete = self._compiled[key] = _trace(build())
        return concrete

    def objective(self, targets, score: str | None = None):
        """What compiled functions differentiate for resolved `targets`, as a part of their
        key: the checked score name (None: the adapter's) for class targets; for a callable
        target (a `TargetFunction`) its callable, compared by identity (the same object
        reuses the compiled functions, another one traces anew).

        Raises:
            TfsalError: for a bad score, class targets on an output that is no class vector,
                or a score given with a callable target (its values are differentiated as
                they are).
        """
        if isinstance(targets, TargetFunction):
            if score is not None:
                raise TfsalError(f"expected score=None with a callable target (its values are "
                                 f"differentiated as they are), received score={score!r}")
            return _ByIdentity(targets.function)
        return self._score(score)

    def traced_gradients(self, images, targets, *, score=None):
        """Inside a trace: (gradient of each target's value w.r.t. the images, the values it
        comes from: all-class scores (N, classes) for class targets, the (N,) values of a
        callable target).

        The building block for compiled loops; eager callers use `input_gradients`.

        Args:
            score: a score name (None: the adapter's), or what `objective` returns (a
                callable target's key; `targets` are then unused).
        """
        objective = score if isinstance(score, _ByIdentity) else self._score(score)
        with tf.GradientTape() as tape:
            tape.watch(images)
            out, _ = self._forward(images, output=_output_for(objective))
            if isinstance(objective, _ByIdentity):
                scores = self._target_values(out, objective.function)
                total = tf.reduce_sum(scores)
            else:
                scores = self._scores(out, objective)
                total = tf.reduce_sum(tf.gather(scores, targets, batch_dims=1))
        gradient = self._gradients(tape, total, [images])[0]
        if gradient is None and isinstance(objective, _ByIdentity):
            raise TfsalError("expected a callable target computed from the model's outputs, "
                             "received one whose values do not depend on them")
        return gradient, scores

    def traced_scores(self, images, *, score: str | None = None):
        """Inside a trace: all-class scores of the chosen kind."""
        out, _ = self._forward(images)
        return self._scores(out, self._score(score))

    def _build_outputs(self):
        """What the model returns (logits recovered from a softmax head), all classes; not
        checked to be a class vector (the probes that find out use it)."""
        def outputs(images):
            return self._forward(images, output="head")[0]
        return tf.function(outputs, input_signature=self._signature()[:1], autograph=False)

    def _build_values(self, objective):
        def values(images, targets):
            out, _ = self._forward(images, output=_output_for(objective))
            return self._selected(out, targets, objective)
        return tf.function(values, input_signature=self._signature(), autograph=False)

    def _build_scores(self, score):
        def scores(images):
            return self._scores(self._forward(images)[0], score)
        return tf.function(scores, input_signature=self._signature()[:1], autograph=False)

    def _build_input_gradients(self, objective, rule):
        # Two fixed signatures, no defaults: a default argument makes every call of the
        # concrete function re-bind its inputs at every call.
        def input_gradients(images, targets):
            grads, _, _, selected = self._rule_gradients(images, targets, objective, rule, None)
            return grads, selected

        def input_gradients_from(images, targets, reference):
            grads, _, _, selected = self._rule_gradients(images, targets, objective, rule,
                                                         reference)
            return grads, selected

        if rule is not None and rule.needs_reference:
            return tf.function(input_gradients_from, input_signature=self._signature(True),
                               autograph=False)
        return tf.function(input_gradients, input_signature=self._signature(), autograph=False)

    def _build_layer_gradients(self, objective, layers, rule):
        def layer_gradients(images, targets):
            _, features, grads, selected = self._rule_gradients(images, targets, objective, rule,
                                                                 None, capture=layers)
            return tuple(features), tuple(grads), selected
        return tf.function(layer_gradients, input_signature=self._signature(), autograph=False)

    def _build_layer_inputs(self, layer):
        def layer_inputs(images):
            _, captured = self._forward(images, capture_inputs=(layer,))
            return captured[layer + ":input"]
        return tf.function(layer_inputs, input_signature=self._signature()[:1], autograph=False)

    def check_size(self, images) -> None:
        """Raise unless `images` have the model's fixed input size (if it has one)."""
        if self.input_size is not None and tuple(images.shape[1:3]) != self.input_size:
            raise TfsalError(f"expected images of size {self.input_size[0]}x{self.input_size[1]} "
                             f"(the model's input), received {images.shape[1]}x{images.shape[2]}")

    def _batched(self, fn, images: np.ndarray, *arrays: np.ndarray, classes: bool = True):
        """Call `fn` over chunks of `batch_size` of images (and arrays aligned with them);
        concatenate each returned part (nested tuples are flattened). A chunk that runs out
        of memory is halved and retried (`Chunker`). `classes`: `fn` computes class scores
        (False: a callable target's values, which need no probe of the output)."""
        self.check_size(images)
        if classes and self._unprobed:  # a callable of unknown input size, at its first call
            self._unprobed = False
            self._refuse_probabilities(images.shape[1:3], several_classes=False)
            self._check_classes()

        def call(start, stop):
            chunk = slice(start, stop)
            try:
                out = fn(tf.constant(images[chunk]), *(tf.constant(a[chunk]) for a in arrays))
            except tf.errors.InvalidArgumentError as exc:  # e.g. too small for the model's convs
                raise invalid_argument(exc, images.shape) from None
            # Half-precision results (mixed-precision models' activations) come back as
            # float32: NumPy cannot compute with bfloat16, and sums in float16 lose precision.
            return [np.asarray(tf.cast(t, tf.float32) if t.dtype in (tf.float16, tf.bfloat16)
                               else t) for t in tf.nest.flatten(out)]

        parts = Chunker(self.batch_size).run(call, len(images))
        joined = tuple(np.concatenate(p, axis=0) for p in zip(*parts))
        return joined if len(joined) > 1 else joined[0]

    # ------------------------------------------------------------------ public numbers
    def predict(self, images, *, score: str | None = None) -> np.ndarray:
        """All-class scores (N, classes) of the chosen kind (default: the adapter's score)."""
        score = self._score(score)
        return self._batched(self._fn(self._build_scores, score), as_batch(images))

    def predicted_classes(self, images) -> np.ndarray:
        """Arg-max class of every image, (N,) int32 (binary heads: 1 where z > 0)."""
        self._check_classes("predicted classes")
        score = "logit" if self.output_kind == "logits" else "probability"
        return np.argmax(self._batched(self._fn(self._build_scores, score),
                                       as_batch(images)),
                         axis=-1).astype(np.int32)

    def resolve_targets(self, images, targets) -> np.ndarray | TargetFunction:
        """Validated int32 targets (N,); None (or "top1") becomes the predicted classes,
        "top2", "top3", ... each image's second, third, ... best class
        (`tfsal.targets.resolve_targets`). A callable target becomes a
        `tfsal.targets.TargetFunction` for the N images (returned as it is when already one)."""
        images = as_batch(images)
        if isinstance(targets, TargetFunction):
            if len(targets) != len(images):
                raise TfsalError(f"expected a callable target resolved for {len(images)} "
                                 f"images, received one for {len(targets)}")
            return targets
        if is_target_function(targets):
            return TargetFunction(targets, len(images))
        self._check_classes("class targets")
        score = "logit" if self.output_kind == "logits" else "probability"
        return resolve_targets(targets, len(images), self.num_classes,
                               predict=lambda: self.predicted_classes(images),
                               scores=lambda: self._batched(
                                   self._fn(self._build_scores, score), images))

    def target_scores(self, images, targets=None, *, score: str | None = None) -> np.ndarray:
        """The score of each image's target class, (N,) float32; for a callable target, its
        values."""
        images = as_batch(images)
        targets = self.resolve_targets(images, targets)
        if isinstance(targets, TargetFunction):
            objective = self.objective(targets, score)
            return self._batched(self._fn(self._build_values, objective), images,
                                 fed_indices(targets), classes=False)
        return np.take_along_axis(self.predict(images, score=score), targets[:, None], 1)[:, 0]

    def input_gradients(self, images, targets=None, *, score: str | None = None, rule=None,
                        reference=None, return_scores: bool = False):
        """Gradient of each target score with respect to the pixel-space images.

        Args:
            rule: a backward rule from `tfsal.overrides` (None: the true gradient).
            reference: reference images (N, H, W, 3), for rules that need them (DeepLIFT).

        Returns:
            (N, H, W, 3) float32; with `return_scores`, a tuple (gradients, scores (N,)).
        """
        images = as_batch(images)
        targets = self.resolve_targets(images, targets)
        objective = self.objective(targets, score)
        extra = ()
        if rule is not None and rule.needs_reference:
            if reference is None or np.shape(reference) != images.shape:
                raise TfsalError(f"expected reference images of shape {images.shape} for "
                                 f"{type(rule).__name__}, received "
                                 f"{None if reference is None else np.shape(reference)}")
            extra = (np.asarray(reference, np.float32),)
        grads, scores = self._batched(self._fn(self._build_input_gradients, objective, rule),
                                      images, fed_indices(targets), *extra,
                                      classes=not isinstance(objective, _ByIdentity))
        return (grads, scores) if return_scores else grads

    def layer_gradients(self, images, targets=None, *, layer=None, score: str | None = None,
                        rule=None):
        """Activations of `layer` and the gradient of each target score with respect to them.

        Args:
            layer: name, nested path ("base/conv5") or index; None = last conv feature map.
            rule: a backward rule from `tfsal.overrides` (None: the true gradient).

        Returns:
            (activations, gradients), each shaped like the layer's output.
        """
        found = self.layers_gradients(images, targets, layers=[layer], score=score, rule=rule)
        return next(iter(found.values()))

    def layers_gradients(self, images, targets=None, *, layers, score: str | None = None,
                         rule=None) -> dict:
        """`layer_gradients` for several layers from one forward and backward pass.

        Returns:
            dict layer path -> (activations, gradients), in the order given.
        """
        images = as_batch(images)
        targets = self.resolve_targets(images, targets)
        if isinstance(layers, (str, int, np.integer)):
            layers = [layers]
        try:
            layers = list(layers)
        except TypeError:
            raise TfsalError(f"expected layers a list of layer names, paths or indices, "
                             f"received {layers!r}") from None
        paths = tuple(dict.fromkeys(self.resolve_layer(layer) for layer in layers))
        objective = self.objective(targets, score)
        flat = self._batched(self._fn(self._build_layer_gradients, objective, paths, rule),
                             images, fed_indices(targets),
                             classes=not isinstance(objective, _ByIdentity))
        k = len(paths)
        return {path: (flat[i], flat[k + i]) for i, path in enumerate(paths)}

    def layer_inputs(self, images, *, layer) -> np.ndarray:
        """The tensor arriving at `layer` (its first input)."""
        path = self.resolve_layer(layer)
        return self._batched(self._fn(self._build_layer_inputs, path), as_batch(images))

    # ---- surgery: copies of the Keras model, changed; the user's model is never touched
    def clone(self, *, name: str | None = None) -> Model:
        """A copy of this adapter over a copy of the Keras model with its own weights (same
        values), preprocessing, score, output kind, batch size and class names.

        Raises:
            TfsalError: for a model that is not a functional or sequential Keras model, or one
                `keras.models.clone_model` cannot copy.
        """
        from tfsal.surgery import clone_keras_model

        self._require_runner("copying the model")
        return self._rewrapped(clone_keras_model(self.wrapped), name or self.name)

    def input_space_shift(self, shift, *, probe) -> np.ndarray:
        """δ (3,) with pre(x + shift) = pre(x) + δ: what a constant pixel shift per channel
        becomes after the preprocessing ("tf": 2·shift, "caffe": 255·shift in BGR order).

        Args:
            shift: 3 numbers, the pixel-space shift of each RGB channel.
            probe: images (N, H, W, 3) on which δ is measured, with a mid-grey image.

        Raises:
            TfsalError: for a preprocessing that changes the image shape or does not map a
                constant pixel shift to a constant input shift (not affine per channel).
        """
        shift = np.asarray(shift, np.float32).reshape(-1)
        if shift.shape != (3,) or not np.all(np.isfinite(shift)):
            raise TfsalError(f"expected shift as 3 finite numbers, received {shift.tolist()}")
        probe = as_batch(probe)
        x = np.concatenate([probe, np.full_like(probe, 0.5)])
        moved = self._preprocess(tf.constant(x + shift))
        delta = np.asarray(moved, np.float64) - np.asarray(self._preprocess(tf.constant(x)),
                                                           np.float64)
        if delta.shape != x.shape:
            raise TfsalError(f"expected a preprocessing that keeps the image shape {x.shape}, "
                             f"received {delta.shape}")
        per_channel = delta.reshape(-1, 3)
        mean = per_channel.mean(axis=0)
        if not np.allclose(per_channel, mean, atol=1e-4 * max(1.0, np.abs(mean).max())):
            raise TfsalError("expected a preprocessing that maps a constant pixel shift to a "
                             "constant input shift (affine per channel), received one whose "
                             f"shift varies by {np.ptp(per_channel, axis=0).max():.3g} across "
                             "pixels")
        return mean

    def shift_compensated(self, input_shift, *, border_correction: bool = True) -> Model:
        """A copy whose first layer absorbs a constant shift of the model's input, such that
        copy(x + s) = self(x) for pixel shifts s with pre(x + s) = pre(x) + input_shift
        (`input_space_shift`); `tfsal.surgery` has the formulas.

        Args:
            input_shift: (3,) shift per channel in the model's input space.
            border_correction: also correct the borders of a SAME-padded first Conv2D, where
                taps fall on the unshifted zero padding (exact); False: the plain bias
                compensation, approximate at the borders.

        Raises:
            TfsalError: for a bad shift, an unsupported first layer (anything but Conv2D,
                Dense, or Flatten → Dense with a bias) or a model that cannot be copied.
        """
        from tfsal.surgery import shift_compensated_copy

        self._require_runner("the input-shift experiment")
        delta = np.asarray(input_shift, np.float64).reshape(-1)
        if delta.shape != (3,) or not np.all(np.isfinite(delta)):
            raise TfsalError(f"expected input_shift as 3 finite numbers, received "
                             f"{np.asarray(input_shift).tolist()}")
        copy = shift_compensated_copy(self.wrapped, delta, border_correction=border_correction)
        return self._rewrapped(copy, f"{self.name}_shifted")

    def randomized_layers(self, *, seed: int = 0):
        """Cascading re-initialisation (Adebayo et al. 2018) of a copy: an iterator of
        (layer path, copy) after each layer with weights is redrawn in turn, from the output
        towards the input, cumulatively. Kernels are drawn from N(0, std of the original
        values), 1-D weights (biases) set to 0, all from one generator seeded by `seed`.

        The copy is one adapter, changed in place between steps (compiled once): use each
        step's maps before advancing.

        Raises:
            TfsalError: for a model that is not a functional or sequential Keras model, or has
                no weights (raised here, before any step).
        """
        from tfsal.surgery import reinitialize, weighted_layers

        runner = self._require_runner("re-initialising layers (the randomisation check)")
        copy = self.clone()
        layers = weighted_layers(copy.runner)[::-1]
        if not layers:
            raise TfsalError(f"expected a model with weights to randomise, received "
                             f"{runner.model.name} without any")
        rng = np.random.default_rng(seed)

        def cascade():
            for path in layers:
                reinitialize(copy.runner.layer(path), rng)
                yield path, copy

        return cascade()

    def _rewrapped(self, keras_model, name: str) -> Model:
        """An adapter over `keras_model` (a changed copy of this one's) with these settings."""
        output = "auto" if self.output_kind == "logits" else self.output_kind
        return Model(keras_model, preprocess=self.preprocess, score=self.score, output=output,
                     batch_size=self.batch_size, class_names=self.class_names, name=name)

    # ---- attention: the scores of keras.layers.MultiHeadAttention layers
    # (tfsal.methods.attention). Their gradients come from `layers_gradients` with the layer
    # path + ":attention" (`attention_gradients`), in the same trace as every other gradient.
    def attention_layers(self) -> list[str]:
        """Paths of the model's `keras.layers.MultiHeadAttention` layers, in execution order
        (also those inside nested models and inside custom layers, e.g. "block1/attention").

        Raises:
            TfsalError: for a model whose layers tfsal cannot reach (loaded SavedModel / hub
                graphs, opaque callables) or one without attention layers.
        """
        runner = self._require_runner(
            "attention maps", hint="; plain-gradient methods (vanilla_gradient, smoothgrad, "
                                   "integrated_gradients) work on any model")
        paths = runner.attention_paths()
        if not paths:
            runner.resolve_attention(-1)  # raises, naming the model's layers
        return paths

    def resolve_attention_layers(self, layers) -> tuple[str, ...]:
        """Exact attention-layer paths from names, paths or indices (None: all of them)."""
        paths = self.attention_layers()
        if layers is None:
            return tuple(paths)
        if isinstance(layers, (str, int, np.integer)):
            layers = [layers]
        runner = self.runner
        return tuple(dict.fromkeys(
            runner.resolve_attention(int(layer) if isinstance(layer, np.integer) else layer)
            for layer in layers))

    def attention_scores(self, images, *, layers=None) -> dict:
        """The attention weights of attention layers (the softmax rows each query token
        spreads over the key tokens), as their layers compute them in the forward pass.

        Args:
            layers: attention-layer names, paths or indices (None: every attention layer).

        Returns:
            dict path -> float32 (N, heads, queries, keys), in execution order.
        """
        paths = self.resolve_attention_layers(layers)
        found = self._batched(self._fn(self._build_attention_scores, paths), as_batch(images))
        found = found if isinstance(found, tuple) else (found,)
        return dict(zip(paths, found))

    def attention_gradients(self, images, targets=None, *, layers=None,
                            score: str | None = None) -> dict:
        """Attention weights and the gradient of each target score with respect to them.

        Returns:
            dict path -> (scores, gradients), each float32 (N, heads, queries, keys).
        """
        from tfsal.graph import ATTENTION

        paths = self.resolve_attention_layers(layers)
        found = self.layers_gradients(images, targets, layers=[p + ATTENTION for p in paths],
                                      score=score)
        return {p: found[p + ATTENTION] for p in paths}

    def _build_attention_scores(self, paths):
        from tfsal.graph import ATTENTION

        def attention_scores(images):
            _, captured = self._forward(images, capture_outputs=tuple(p + ATTENTION
                                                                      for p in paths))
            return tuple(captured[p + ATTENTION] for p in paths)
        return tf.function(attention_scores, input_signature=self._signature()[:1],
                           autograph=False)
