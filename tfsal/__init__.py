"""tfsal: gradient-based saliency maps for TensorFlow / Keras 3 image classifiers.

Images are float32 RGB in [0, 1], shape (N, H, W, 3); every method is a pure function
`method(model, images, targets=None, **hyperparameters)` returning raw signed attributions.
"""

from tfsal.attacks import AttackResult, ClassSensitivity, bim, class_sensitivity, fgsm
from tfsal.errors import TfsalError
from tfsal.loading import load_model
from tfsal.methods import (
    METHODS,
    cam,
    completeness_delta,
    deconvnet,
    deeplift,
    epsilon_lrp,
    grad_cam,
    gradient_x_input,
    guided_backprop,
    guided_grad_cam,
    integrated_gradients,
    layer_attributions,
    make_baseline,
    rectgrad,
    smoothgrad,
    vanilla_gradient,
    vargrad,
)
from tfsal.model import Model
from tfsal.nonlinear import (
    SelectiveBlur,
    Trajectory,
    blur_below_level,
    mask_below_level,
    nonlinear_saliency,
    selective_blur,
)
from tfsal.signed import SignedMaps, signed_maps

__version__ = "0.1.0"

__all__ = [
    "AttackResult",
    "ClassSensitivity",
    "METHODS",
    "Model",
    "SelectiveBlur",
    "SignedMaps",
    "Trajectory",
    "TfsalError",
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
    "selective_blur",
    "signed_maps",
    "smoothgrad",
    "vanilla_gradient",
    "vargrad",
]
