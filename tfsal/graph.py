"""Run a Keras functional or sequential model op by op, with hooks, without changing it.

Keras 3 executes a functional model by walking its node graph; `GraphRunner` walks the same
graph itself so that tfsal can, inside one differentiable trace:

- read the output (or input) of any layer, also of layers inside nested models (a pretrained
  base used as a layer is the common case), addressed by a path such as ``"base/block5_conv3"``;
- evaluate the output layer without its softmax (or the sigmoid of a single-unit binary head),
  giving true logits from the same weights;
- later, substitute activation functions with gradient-override versions.

The user's model is never mutated: layers are called as they are; the one layer whose softmax
(sigmoid) is dropped is evaluated through a shallow copy whose ``activation`` is replaced.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from tfsal.errors import TfsalError

_POOLING = (
    keras.layers.MaxPooling2D,
    keras.layers.AveragePooling2D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)


def is_graph_model(obj) -> bool:
    """True for models whose graph tfsal can walk (functional and sequential Keras models)."""
    return isinstance(obj, keras.Sequential) or (
        isinstance(obj, keras.Model) and hasattr(obj, "_run_through_graph") and obj._inputs
    )


# What tfsal accepts as a model's output, for every refusal of another one.
CLASS_VECTOR = ("(N, classes) logits or probabilities, or a single-unit sigmoid/logit (N, 1) "
                "binary head")


def _is_softmax(layer) -> bool:
    return _head_activation(layer) == "softmax"


def _head_activation(layer) -> str | None:
    """"softmax" or "sigmoid" for a layer applying that activation last, else None."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(getattr(layer, "activation", None), "__name__", None)
    return name if name in ("softmax", "sigmoid") else None


def _sequential_layers(model) -> list:
    return list(model.layers)


@dataclass
class _Run:
    """Per-call state: which paths to record and what was recorded."""

    capture_outputs: frozenset
    capture_inputs: frozenset
    linear_path: str | None
    intercept: Callable | None = None
    captured: dict = field(default_factory=dict)
    # attention-layer paths whose scores to record (under "path:attention")
    capture_attention: frozenset = frozenset()


class GraphRunner:
    """Executes a functional/sequential Keras model layer by layer (see the module docstring)."""

    def __init__(self, model: keras.Model):
        if not is_graph_model(model):
            raise TfsalError(
                "expected a functional or sequential Keras model (built, with known inputs), "
                f"received {type(model).__name__}"
            )
        if len(model.outputs) != 1:
            raise TfsalError(f"expected a model with one output, {CLASS_VECTOR}; received "
                             f"{len(model.outputs)} outputs")
        # Weak: the adapter that owns this runner decides whether the model is kept alive
        # (the adapters `tfsal.loading.as_model` reuses must not keep it alive).
        self._model = weakref.ref(model)
        self._layers = self._flatten(model, "")
        self.head_path = self._output_path(model, "")
        head = self.layer(self.head_path)
        # The head without its softmax or sigmoid: `run(logits=True)` evaluates it instead.
        self._linear_head = _without_softmax(head) if _head_activation(head) else None

    @property
    def model(self) -> keras.Model:
        """The walked model."""
        model = self._model()
        if model is None:
            raise TfsalError("expected the Keras model this graph runner walks, received one "
                             "that no longer exists (deleted)")
        return model

    # ----------------------------------------------------------------------------- structure
    def _flatten(self, model, prefix: str) -> list[tuple[str, object]]:
        out = []
        for layer in model.layers:
            if isinstance(layer, keras.layers.InputLayer):  # never called; nothing to observe
                continue
            path = prefix + layer.name
            if is_graph_model(layer):
                out.extend(self._flatten(layer, path + "/"))
            out.append((path, layer))
        return out

    def _output_path(self, model, prefix: str) -> str:
        if isinstance(model, keras.Sequential):
            layer = model.layers[-1]
        else:
            layer = model.outputs[0]._keras_history.operation
        path = prefix + layer.name
        return self._output_path(layer, path + "/") if is_graph_model(layer) else path

    @property
    def paths(self) -> list[str]:
        """Every layer path in execution order (nested layers before the model that holds them)."""
        return [p for p, _ in self._layers]

    def layer(self, path: str):
        """The layer object at an exact path."""
        for p, layer in self._layers:
            if p == path:
                return layer
        raise TfsalError(f"expected one of the layer paths {self.paths}, received {path!r}")

    def resolve(self, layer: str | int) -> str:
        """Turn a layer name, path or index into an exact path; ambiguity is an error."""
        if isinstance(layer, str) and layer.endswith(ATTENTION):
            return self.resolve_attention(layer[:-len(ATTENTION)]) + ATTENTION
        return _find_path(self.paths, layer, "layer")

    def head_is_softmax(self) -> bool:
        return _is_softmax(self.layer(self.head_path))

    def head_activation(self) -> str | None:
        """"softmax" or "sigmoid" if the output layer applies it last, else None."""
        return _head_activation(self.layer(self.head_path))

    def spatial_paths(self, keep=lambda layer: True) -> list[str]:
        """Paths, in execution order, of the layers (not models) with a rank-4 output that
        `keep` accepts."""
        return [path for path, layer in self._layers
                if not is_graph_model(layer) and _output_rank(layer) == 4 and keep(layer)]

    def last_feature_map(self) -> str:
        """Path of the last layer with a spatial (rank-4) output that is not a pooling layer."""
        paths = self.spatial_paths(lambda layer: not isinstance(layer, _POOLING))
        if not paths:
            raise TfsalError("expected a model with a convolutional (N, h, w, channels) feature "
                             "map, found no layer with a rank-4 output")
        return paths[-1]

    def after(self, path: str) -> list[tuple[str, object]]:
        """The layers executed after `path` (flattened order), models themselves excluded."""
        idx = self.paths.index(path)
        return [(p, lay) for p, lay in self._layers[idx + 1:] if not is_graph_model(lay)]

    # ----------------------------------------------------------------------------- attention
    @functools.cached_property
    def _attention(self) -> dict:
        """path -> (MultiHeadAttention layer, walked?) for every attention layer, in execution
        order: those the runner calls itself, and those inside layers it calls as a whole (a
        custom transformer block's `self.attention`), addressed as "block/attention"."""
        found = {}
        for path, layer in self._layers:
            if isinstance(layer, keras.layers.MultiHeadAttention):
                found[path] = (layer, True)
            elif not is_graph_model(layer):
                for inner, sub in _inner_attention_layers(layer, path + "/"):
                    found.setdefault(inner, (sub, False))
        return found

    def attention_paths(self) -> list[str]:
        """Paths of the `keras.layers.MultiHeadAttention` layers, in execution order (nested
        models and sub-layers of custom layers included)."""
        return list(self._attention)

    def resolve_attention(self, layer: str | int) -> str:
        """An attention layer's exact path from its name, path or index among the attention
        layers (`attention_paths`; -1 is the last)."""
        paths = self.attention_paths()
        if not paths:
            raise TfsalError(f"expected a model with keras.layers.MultiHeadAttention layers, "
                             f"received {self.model.name} without any (layers: "
                             f"{', '.join(self.paths)})")
        return _find_path(paths, layer, "attention layer")

    def _inner_attention(self, paths) -> dict:
        """path -> layer of the requested attention layers the runner does not call itself."""
        return {p: self._attention[p][0] for p in paths if not self._attention[p][1]}

    # ----------------------------------------------------------------------------- execution
    def run(self, x, *, capture_outputs=(), capture_inputs=(), logits=False, intercept=None):
        """Evaluate the model on the (preprocessed) tensor `x`.

        Args:
            x: model input tensor.
            capture_outputs: layer paths whose outputs to record.
            capture_inputs: layer paths whose (first) inputs to record.
            logits: evaluate the output layer without its softmax (or sigmoid).
            intercept: optional `intercept(path, layer, args, kwargs) -> output` that replaces
                the call of every layer except nested models and the logit head (the hook
                through which `tfsal.overrides` applies backward rules).

        Returns:
            (output tensor, dict path -> recorded tensor; input captures under "path:input").
        """
        if logits and self._linear_head is None:
            raise TfsalError("expected a model whose output layer applies softmax or sigmoid, "
                             "for logit recovery; this one does not (its outputs are used as "
                             "logits)")
        attention = frozenset(p[:-len(ATTENTION)] for p in capture_outputs
                              if p.endswith(ATTENTION))
        outputs = frozenset(p for p in capture_outputs if not p.endswith(ATTENTION))
        state = _Run(outputs, frozenset(capture_inputs), self.head_path if logits else None,
                     intercept, capture_attention=attention)
        # Attention layers inside layers that are not walked (a custom block's sub-layer) are
        # reached through a scoped patch of their `call`, undone before returning.
        with _recording_attention(self._inner_attention(attention), state):
            out = self._run_model(self.model, x, "", state)
        missing = [p for p in attention if p + ATTENTION not in state.captured]
        if missing:
            raise TfsalError(f"expected the attention layers {sorted(missing)} to be called "
                             f"by the model, received a run that never called them")
        return out, state.captured

    def _run_model(self, model, x, prefix: str, state: _Run):
        if isinstance(model, keras.Sequential):
            for layer in _sequential_layers(model):
                x = self._call(layer, prefix, state, x)
            return x
        out = model._run_through_graph(
            x, operation_fn=lambda op: (lambda *a, **k: self._call(op, prefix, state, *a, **k))
        )
        while isinstance(out, (list, tuple)) and len(out) == 1:
            out = out[0]
        return out

    def _call(self, op, prefix: str, state: _Run, *args, **kwargs):
        path = prefix + op.name
        if path in state.capture_inputs:
            state.captured[path + ":input"] = args[0]
        if is_graph_model(op):
            inner = args[0] if len(args) == 1 else list(args)
            out = self._run_model(op, inner, path + "/", state)
        elif path == state.linear_path:
            out = self._linear_head(*args)
        elif path in state.capture_attention:
            kwargs = {**kwargs, "return_attention_scores": True}
            called = state.intercept(path, op, args, kwargs) if state.intercept is not None \
                else op(*args, **kwargs)
            out, state.captured[path + ATTENTION] = called
        elif state.intercept is not None:
            out = state.intercept(path, op, args, kwargs)
        else:
            out = op(*args, **kwargs)
        if path in state.capture_outputs:
            state.captured[path] = out
        return out


# A captured path with this suffix is an attention layer's scores (N, heads, queries, keys).
ATTENTION = ":attention"


def _find_path(paths: list[str], layer: str | int, what: str) -> str:
    """The one path of `paths` that `layer` names: an index (negative from the end), an exact
    path, or a name ending exactly one path; anything else is an error."""
    a = "an" if what[0] in "aeiou" else "a"
    if isinstance(layer, int) and not isinstance(layer, bool):
        if not -len(paths) <= layer < len(paths):
            raise TfsalError(f"expected {a} {what} index in [{-len(paths)}, {len(paths)}), "
                             f"received {layer}")
        return paths[layer]
    if not isinstance(layer, str):
        raise TfsalError(f"expected {a} {what} name, path or index, received {layer!r}")
    if layer in paths:
        return layer
    matches = [p for p in paths if p.rsplit("/", 1)[-1] == layer]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise TfsalError(f"{what} name {layer!r} is ambiguous; expected one of {matches}")
    raise TfsalError(f"expected {a} {what} name or path of this model, received {layer!r}; "
                     f"{what}s are: {', '.join(paths)}")


def _inner_attention_layers(layer, prefix: str, depth: int = 0):
    """(path, layer) of the MultiHeadAttention layers inside a layer the runner calls whole."""
    if depth > 16:
        return
    for sub in layer._flatten_layers(include_self=False, recursive=False):
        path = prefix + sub.name
        if isinstance(sub, keras.layers.MultiHeadAttention):
            yield path, sub
        else:
            yield from _inner_attention_layers(sub, path + "/", depth + 1)


@contextlib.contextmanager
def _recording_attention(layers: dict, state: _Run):
    """While open: each given attention layer (path -> layer), called by the layer holding
    it, also returns its scores to `state.captured` (under "path:attention") and hands the
    caller its output alone. A scoped patch of the layer's `call` attribute, removed on exit
    (also after an exception); the layer's weights and outputs are those of a plain call."""
    patched = []
    try:
        for path, layer in layers.items():
            original = layer.call

            def call(*args, _original=original, _path=path, **kwargs):
                if kwargs.get("return_attention_scores"):
                    out = _original(*args, **kwargs)
                    state.captured[_path + ATTENTION] = out[1]
                    return out
                out, state.captured[_path + ATTENTION] = _original(
                    *args, **{**kwargs, "return_attention_scores": True})
                return out

            had_own = "call" in layer.__dict__
            object.__setattr__(layer, "call", call)
            patched.append((layer, had_own, original))
        yield
    finally:
        for layer, had_own, original in reversed(patched):
            if had_own:
                object.__setattr__(layer, "call", original)
            else:
                object.__delattr__(layer, "call")


def _output_rank(layer) -> int | None:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # never called, or called several times
        return None


def _without_softmax(layer):
    """A callable evaluating `layer` with its last activation (softmax, sigmoid) removed;
    `layer` itself is untouched."""
    if isinstance(layer, (keras.layers.Softmax, keras.layers.Activation)):
        return lambda x, *_, **__: x
    linear = linear_copy(layer)
    return lambda *args, **_: linear.call(*args)


def linear_copy(layer):
    """`layer` with a linear activation, as a bare shallow copy sharing its weight variables.

    The copy bypasses Keras' pickling-based `__reduce__`; only its `activation` attribute
    differs, so the user's layer is never touched.
    """
    linear = object.__new__(type(layer))
    linear.__dict__.update(layer.__dict__)
    object.__setattr__(linear, "activation", keras.activations.linear)
    return linear
