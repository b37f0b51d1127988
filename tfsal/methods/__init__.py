"""Attribution methods: pure functions of a model adapter returning raw signed maps."""

from tfsal.methods.cam import cam, grad_cam
from tfsal.methods.gradient import gradient_x_input, vanilla_gradient
from tfsal.methods.integrated import (
                                      completeness_delta,
                                      integrated_gradients,
                                      make_baseline,
                                      path_schedule,
)
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
}

__all__ = ["METHODS", "cam", "completeness_delta", "grad_cam", "gradient_x_input",
           "integrated_gradients", "make_baseline", "path_schedule", "smoothgrad",
           "vanilla_gradient",
           "vargrad"]
