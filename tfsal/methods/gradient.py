"""Vanilla gradient and Gradient × Input.

Vanilla gradient (Simonyan et al. 2014; lecture notes eq. 1): ∂S_c/∂x, the gradient of the
target class score with respect to the pixel-space image.
Gradient × Input (Shrikumar et al. 2016; overview paper): x ⊙ ∂S_c/∂x, which equals ε-LRP for
ReLU networks and a one-step Integrated Gradients from a black baseline.
"""

from __future__ import annotations

import numpy as np

from tfsal.methods._base import attribution_method


@attribution_method
def vanilla_gradient(model, images, targets=None, *, score: str | None = None) -> np.ndarray:
    """Gradient of the target score with respect to the input pixels.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class.
        score: "logit" (default of the adapter), "probability" or "log_probability".

    Returns:
        float32 (N, H, W, 3), signed.

    Raises:
        TfsalError: for bad images, targets or score.

    Example:
        >>> g = tfsal.vanilla_gradient("shapes-cnn", images)
        >>> heat = tfsal.visualize.reduce_channels(g, "abs-max")
    """
    return model.input_gradients(images, targets, score=score)


@attribution_method
def gradient_x_input(model, images, targets=None, *, score: str | None = None) -> np.ndarray:
    """Gradient × Input: the input gradient multiplied element-wise by the pixel values.

    Args, Returns and Raises as `vanilla_gradient`.

    Example:
        >>> a = tfsal.gradient_x_input(model, images, targets=3)
        >>> a.shape == images.shape
    """
    return model.input_gradients(images, targets, score=score) * images
