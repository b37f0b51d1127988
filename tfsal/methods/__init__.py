"""Attribution methods: pure functions of a model adapter returning raw signed maps.

Every method has one name, its Python function's name (`NAMES`), used by the command line,
the output files and `METHODS`; `ALIASES` are other spellings accepted anywhere a method is
named (`resolve_method`). Importing this package is light: the names, the aliases and
`resolve_method` need no TensorFlow; the functions (and `METHODS`) load their modules, and
TensorFlow, on first use.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import sys
import types

from tfsal.errors import TfsalError

# The methods, by their one name (= the function's name), in the order of `METHODS`.
NAMES = ("vanilla_gradient", "gradient_x_input", "smoothgrad", "vargrad",
         "integrated_gradients", "cam", "grad_cam", "guided_backprop", "deconvnet", "rectgrad",
         "guided_grad_cam", "deeplift", "epsilon_lrp")

# Methods for models with keras.layers.MultiHeadAttention layers (vision transformers), in
# the order of `ATTENTION_METHODS`. Not in `NAMES`, the methods that apply to every image
# classifier (what iterating `METHODS` and `--method all` give); they are found by name
# (`resolve_method`, `METHODS["attention_rollout"]`, `tfsal explain --method`).
ATTENTION_NAMES = ("attention_map", "attention_rollout", "gradient_rollout", "token_grad_cam")

# Other spellings -> the name. Matched after lower-casing and turning "-" and spaces into "_"
# ("Grad-CAM" is grad_cam).
ALIASES = {
    "vanilla": "vanilla_gradient", "saliency": "vanilla_gradient",
    "gradient": "vanilla_gradient", "grad": "vanilla_gradient",
    "vanilla_grad": "vanilla_gradient",
    "gxi": "gradient_x_input", "grad_x_input": "gradient_x_input",
    "input_x_gradient": "gradient_x_input", "gradient_times_input": "gradient_x_input",
    "sg": "smoothgrad", "smooth_grad": "smoothgrad",
    "var_grad": "vargrad",
    "ig": "integrated_gradients", "integrated_gradient": "integrated_gradients",
    "class_activation_map": "cam",
    "gradcam": "grad_cam",
    "guided": "guided_backprop", "gbp": "guided_backprop", "guided_bp": "guided_backprop",
    "guided_backpropagation": "guided_backprop",
    "deconv": "deconvnet",
    "rect_grad": "rectgrad", "rectified_gradient": "rectgrad",
    "guided_gradcam": "guided_grad_cam", "ggcam": "guided_grad_cam",
    "deep_lift": "deeplift",
    "lrp": "epsilon_lrp", "eps_lrp": "epsilon_lrp", "elrp": "epsilon_lrp",
}

# Public function -> its module (loaded on first use).
_HOMES = {
    "vanilla_gradient": "gradient", "gradient_x_input": "gradient",
    "smoothgrad": "smoothgrad", "vargrad": "smoothgrad",
    "integrated_gradients": "integrated", "completeness_delta": "integrated",
    "make_baseline": "integrated", "path_schedule": "integrated",
    "cam": "cam", "grad_cam": "cam",
    "guided_backprop": "rectified", "deconvnet": "rectified", "rectgrad": "rectified",
    "guided_grad_cam": "rectified", "layer_attributions": "rectified",
    "deeplift": "relevance", "epsilon_lrp": "relevance",
    "attention_map": "attention", "attention_rollout": "attention",
    "gradient_rollout": "attention", "token_grad_cam": "attention", "token_grid": "attention",
}


def _canonical(name) -> str | None:
    if not isinstance(name, str):
        return None
    if name in NAMES or name in ATTENTION_NAMES:
        return name
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    return key if key in NAMES or key in ATTENTION_NAMES else ALIASES.get(key)


def resolve_method(name: str) -> str:
    """The one name of a method given by its name or an alias (case, "-" and spaces aside).

    Raises:
        TfsalError: for an unknown name, with the closest names ("did you mean …").

    Example:
        >>> resolve_method("ig"), resolve_method("Grad-CAM")
        ('integrated_gradients', 'grad_cam')
    """
    found = _canonical(name)
    if found is not None:
        return found
    if not isinstance(name, str):
        raise TfsalError(f"expected a method name (str), received {type(name).__name__}")
    guesses = suggest_methods(name)
    hint = f"; did you mean {' or '.join(guesses)}?" if guesses else ""
    raise TfsalError(f"expected a method name from {list(NAMES + ATTENTION_NAMES)} or an alias "
                     f"(tfsal methods), received {name!r}{hint}")


def suggest_methods(name: str) -> list[str]:
    """The methods whose names or aliases are closest to a mistyped `name` (difflib)."""
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    close = difflib.get_close_matches(key, [*NAMES, *ATTENTION_NAMES, *ALIASES], n=4,
                                      cutoff=0.6)
    return list(dict.fromkeys(_canonical(c) for c in close))


def aliases_of(name: str) -> list[str]:
    """The aliases of a method (given by any of its names)."""
    canonical = resolve_method(name)
    return [alias for alias, target in ALIASES.items() if target == canonical]


def method_parameters(method) -> dict[str, inspect.Parameter]:
    """A method's hyperparameters (the keyword parameters after model, images, targets), by
    name; `method` is a name, an alias or a function. A `**kwargs` parameter is left out
    (SmoothGrad and VarGrad pass it to the method they wrap)."""
    function = __getattr__("METHODS")[resolve_method(method)] if isinstance(method, str) \
        else method
    parameters = list(inspect.signature(function).parameters.values())
    return {p.name: p for p in parameters[3:]
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


class MethodTable(dict):
    """name -> method function, keyed by the methods' one names; looking up an alias (or
    `in`) finds its method too, iterating gives each method once. The attention methods are
    found by name but not iterated (`ATTENTION_NAMES`)."""

    def __missing__(self, key):
        found = _canonical(key)
        if found in ATTENTION_NAMES:
            return __getattr__(found)
        if found is None or found == key:
            raise KeyError(key)
        return self[found]

    def __contains__(self, key) -> bool:
        found = _canonical(key)
        return found is not None and (dict.__contains__(self, found) or found in ATTENTION_NAMES)

    def get(self, key, default=None):
        return self[key] if key in self else default


def __getattr__(name: str):
    if name in globals():  # called from this module, for a name already loaded
        return globals()[name]
    if name == "METHODS":
        value = MethodTable((n, __getattr__(n)) for n in NAMES)
    elif name == "ATTENTION_METHODS":
        value = {n: __getattr__(n) for n in ATTENTION_NAMES}
    elif name in _HOMES:
        value = getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps `tfsal.methods.cam` and `tfsal.methods.smoothgrad` the functions, as an eager
    import left them: importing the submodule of the same name does not replace them."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in _HOMES:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["ALIASES", "ATTENTION_METHODS", "ATTENTION_NAMES", "METHODS", "NAMES",
           "MethodTable", "aliases_of", "attention_map", "attention_rollout", "cam",
           "completeness_delta", "deconvnet", "deeplift", "epsilon_lrp", "grad_cam",
           "gradient_rollout", "gradient_x_input", "guided_backprop", "guided_grad_cam",
           "integrated_gradients", "layer_attributions", "make_baseline",
           "method_parameters", "path_schedule", "rectgrad", "resolve_method", "smoothgrad",
           "suggest_methods", "token_grad_cam", "token_grid", "vanilla_gradient", "vargrad"]
