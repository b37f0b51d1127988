"""tfsal: gradient-based saliency maps for TensorFlow / Keras 3 image classifiers.

Images are float32 RGB in [0, 1], shape (N, H, W, 3); every method is a pure function
`method(model, images, targets=None, **hyperparameters)` returning raw signed attributions.

`import tfsal` is light and has no side effects: the names below and the submodules
(`tfsal.metrics`, `tfsal.visualize`, `tfsal.plots`, `tfsal.evaluation`, ...) are imported,
with TensorFlow, on first use.
"""

from __future__ import annotations

import importlib
import pkgutil

from tfsal.errors import TfsalError

__version__ = "0.1.0"

# Public name -> the module defining it.
_EXPORTS = {
    **dict.fromkeys(("AttackResult", "bim", "fgsm"), "tfsal.attacks"),
    "load_model": "tfsal.loading",
    **dict.fromkeys(("ATTENTION_METHODS", "attention_map", "attention_rollout",
                     "gradient_rollout", "token_grad_cam"), "tfsal.methods"),
    **dict.fromkeys(("METHODS", "cam", "completeness_delta", "deconvnet", "deeplift",
                     "epsilon_lrp", "grad_cam", "gradient_x_input", "guided_backprop",
                     "guided_grad_cam", "integrated_gradients", "layer_attributions",
                     "make_baseline", "rectgrad", "resolve_method", "smoothgrad",
                     "vanilla_gradient", "vargrad"), "tfsal.methods"),
    "Model": "tfsal.model",
    **dict.fromkeys(("ClassSensitivity", "SelectiveBlur", "class_sensitivity", "selective_blur"),
                    "tfsal.metrics"),
    **dict.fromkeys(("Trajectory", "blur_below_level", "mask_below_level",
                     "nonlinear_saliency"), "tfsal.nonlinear"),
    **dict.fromkeys(("SignedMaps", "signed_maps"), "tfsal.signed"),
}


def _submodules() -> set[str]:
    return {info.name for info in pkgutil.iter_modules(__path__)}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif not name.startswith("__") and name in _submodules():
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__) | _submodules())


__all__ = [
    "ATTENTION_METHODS",
    "AttackResult",
    "ClassSensitivity",
    "METHODS",
    "Model",
    "SelectiveBlur",
    "SignedMaps",
    "Trajectory",
    "TfsalError",
    "attention_map",
    "attention_rollout",
    "bim",
    "blur_below_level",
    "cam",
    "class_sensitivity",
    "completeness_delta",
    "deconvnet",
    "deeplift",
    "epsilon_lrp",
    "fgsm",
    "grad_cam",
    "gradient_rollout",
    "gradient_x_input",
    "guided_backprop",
    "guided_grad_cam",
    "integrated_gradients",
    "layer_attributions",
    "load_model",
    "make_baseline",
    "mask_below_level",
    "nonlinear_saliency",
    "rectgrad",
    "resolve_method",
    "selective_blur",
    "signed_maps",
    "smoothgrad",
    "token_grad_cam",
    "vanilla_gradient",
    "vargrad",
]
