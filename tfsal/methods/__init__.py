"""Attribution methods: pure functions of a model adapter returning raw signed maps."""

from tfsal.methods.cam import cam, grad_cam
from tfsal.methods.gradient import gradient_x_input, vanilla_gradient
from tfsal.methods.integrated import (
                                      completeness_delta,
                                      integrated_gradients,
                                      make_baseline,
                                      path_schedule,
)
from tfsal.methods.rectified import (
                                     deconvnet,
                                     guided_backprop,
                                     guided_grad_cam,
                                     layer_attributions,
                                     rectgrad,
)
from tfsal.methods.relevance import deeplift, epsilon_lrp
from tfsal.methods.smoothgrad import smoothgrad, vargrad

# Name -> method, for the CLI and for loops over "every method".
METHODS = {
    "vanilla": vanilla_gradient,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "vargrad": vargrad,
    "integrated_gradients": integrated_gradients,
    "cam": cam,
    "grad_cam": grad_cam,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "rectgrad": rectgrad,
    "guided_grad_cam": guided_grad_cam,
    "deeplift": deeplift,
    "epsilon_lrp": epsilon_lrp,
}

__all__ = ["METHODS", "cam", "completeness_delta", "deconvnet", "deeplift", "epsilon_lrp",
           "grad_cam", "gradient_x_input", "guided_backprop", "guided_grad_cam",
           "integrated_gradients", "layer_attributions", "make_baseline", "path_schedule",
           "rectgrad", "smoothgrad", "vanilla_gradient", "vargrad"]
