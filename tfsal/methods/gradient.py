"""Vanilla gradient and Gradient × Input, and which input the "× input" methods multiply by.

Vanilla gradient (Simonyan et al. 2014; lecture notes eq. 1): ∂S_c/∂x, the gradient of the
target class score with respect to the pixel-space image.
Gradient × Input (Shrikumar et al. 2016; overview paper): x ⊙ ∂S_c/∂x, which equals ε-LRP for
ReLU networks and a one-step Integrated Gradients from a black baseline.

`multiply_by` (Gradient × Input, ε-LRP, RectGrad, DeepLIFT, Integrated Gradients): tfsal
differentiates with respect to the [0, 1] pixels x, through the model's preprocessing
x_in = P(x). "pixels" (the default) multiplies that gradient by x (by x − b for methods with
a baseline b). "model_input" returns the attribution with respect to the model's own input,
∂S/∂x_in ⊙ (x_in − b_in) with b_in = P(b) (b_in = 0 without a baseline), as code that feeds
preprocessed inputs computes it (the RectGrad authors' notebooks feed [−1, 1] images), each
model-input element attributed to the pixel element it is computed from (`multiplied_input`).
For an affine per-element preprocessing x_in = s ⊙ x + t (channels possibly permuted, as
"caffe" reverses RGB to BGR) the chain rule ∂S/∂x = s ⊙ ∂S/∂x_in relates the two:

    model_input = ∂S/∂x ⊙ (x − x0),   x0 = −t / s, the pixels P maps to the zero input

("tf": x0 = 0.5, so the map is ∂S/∂x · (x − 0.5), i.e. ∂S/∂x_in · (2x − 1)). Methods with a
baseline get ∂S/∂x ⊙ (x − b) either way: for them the two conventions coincide, and only the
baseline decides (the authors' zero baseline in model-input space is `model_input_zero`).
"""

from __future__ import annotations

import numpy as np

from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method

MULTIPLY_BY = ("pixels", "model_input")
_STRUCTURE_TOLERANCE = 1e-4  # relative: float32 rounding is ~1e-7, a mixing preprocessing ~1


@attribution_method
def vanilla_gradient(model, images, targets=None, *, score: str | None = None) -> np.ndarray:
    """Gradient of the target score with respect to the input pixels.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class; or a callable from
            the model's output to one value per image (`tfsal.targets`).
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
def gradient_x_input(model, images, targets=None, *, score: str | None = None,
                     multiply_by: str = "pixels") -> np.ndarray:
    """Gradient × Input: the input gradient multiplied element-wise by the input.

    Args:
        multiply_by: "pixels" (default): ∂S/∂x ⊙ x on the [0, 1] pixels; "model_input":
            ∂S/∂x_in ⊙ x_in on the preprocessed input, as the RectGrad authors' code (for "tf"
            preprocessing ∂S/∂x ⊙ (x − 0.5)); see the module docstring.
        Others, Returns and Raises as `vanilla_gradient` (also: TfsalError for a bad
        `multiply_by`, or "model_input" with a preprocessing that mixes pixels).

    Example:
        >>> a = tfsal.gradient_x_input(model, images, targets=3)
        >>> a.shape == images.shape
    """
    factor = multiplied_input(model, images, multiply_by=multiply_by)
    return (model.input_gradients(images, targets, score=score) * factor).astype(np.float32)


def check_multiply_by(multiply_by) -> str:
    if not isinstance(multiply_by, str) or multiply_by not in MULTIPLY_BY:
        raise TfsalError(f"expected multiply_by in {MULTIPLY_BY}, received {multiply_by!r}")
    return multiply_by


def multiplied_input(model, images, reference=None, *, multiply_by: str = "pixels",
                     affine: bool = False) -> np.ndarray:
    """What a "× input" method multiplies the (modified) pixel gradient ∂S/∂x by.

    "pixels": x − b (x without a reference b). "model_input": F with ∂S/∂x ⊙ F =
    ∂S/∂x_in ⊙ (P(x) − P(b)), element by element in pixel layout: for a preprocessing P whose
    Jacobian A at x has one non-zero per row and column (each model-input element computed
    from one pixel element, channels possibly permuted), ∂S/∂x = Aᵀ ∂S/∂x_in, so
    F = Πᵀ(P(x) − P(b)) / (Aᵀ1) with Πᵀ taking model-input elements back to their pixels
    (computed as Aᵀ(w / (A1)) with forward- and reverse-mode products, for any P).

    Args:
        model: a `tfsal.Model`; images, reference: (N, H, W, 3) pixels.
        affine: also require P affine between b and x (Integrated Gradients: its pixel path
            is the straight model-input path only then).

    Raises:
        TfsalError: for a bad `multiply_by`, or "model_input" with a preprocessing that changes
            the shape or mixes pixel elements (`affine`: or that is not affine).
    """
    check_multiply_by(multiply_by)
    images = np.asarray(images, np.float32)
    if multiply_by == "pixels" or model.preprocess is None:
        return images if reference is None else images - np.asarray(reference, np.float32)
    import tensorflow as tf

    def parts(pixels):
        x = tf.constant(pixels)
        with tf.autodiff.ForwardAccumulator(x, tf.ones_like(x)) as forward:
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                y = model._preprocess(x)
        if tuple(y.shape) != tuple(x.shape) or not y.dtype.is_floating:
            raise TfsalError(f"expected a preprocessing that maps each pixel value to one "
                             f"model-input value for multiply_by='model_input', received one "
                             f"from shape {tuple(x.shape)} to {tuple(y.shape)} ({y.dtype.name})")
        column = forward.jvp(y)

        def transpose(w):  # Aᵀ w
            g = tape.gradient(y, x, output_gradients=tf.cast(w, y.dtype))
            return tf.zeros_like(x) if g is None else g

        return y, (tf.zeros_like(y) if column is None else column), transpose

    y, column, transpose = parts(images)
    row = transpose(tf.ones_like(y))
    rng = np.random.default_rng(0)
    u, v = (rng.standard_normal(tuple(y.shape)).astype(np.float32) for _ in range(2))
    mixed = (transpose(u) * transpose(v)).numpy()
    one_to_one = transpose(u * v * column.numpy()).numpy()
    scale = max(np.abs(mixed).max(), np.abs(one_to_one).max(), 1e-30)
    if np.abs(mixed - one_to_one).max() > _STRUCTURE_TOLERANCE * scale:
        raise TfsalError(f"expected a preprocessing that computes each model-input value from "
                         f"one pixel value (per element, channels possibly permuted) for "
                         f"multiply_by='model_input'; {model.preprocess!r} mixes pixel values, "
                         f"so the model-input attribution has no per-pixel form")
    difference = y if reference is None else y - model._preprocess(
        tf.constant(np.asarray(reference, np.float32)))
    column = column.numpy()
    safe = np.where(column == 0, 1, column)
    in_pixels = transpose(np.where(column == 0, 0, difference.numpy() / safe)).numpy()
    row = row.numpy()
    factor = np.where(row == 0, 0, in_pixels / np.where(row == 0, 1, row)).astype(np.float32)
    if affine and reference is not None:
        _, _, at_reference = parts(np.asarray(reference, np.float32))
        same_slope = at_reference(tf.ones_like(y)).numpy()
        straight = row * (images - reference)
        if np.abs(same_slope - row).max() > _STRUCTURE_TOLERANCE * max(np.abs(row).max(), 1e-30) \
                or np.abs(straight - in_pixels).max() > _STRUCTURE_TOLERANCE * max(
                    np.abs(in_pixels).max(), 1e-30):
            raise TfsalError(f"expected an affine preprocessing for multiply_by='model_input' "
                             f"with a path method: along a straight pixel path "
                             f"{model.preprocess!r} does not follow the straight model-input "
                             f"path")
    return factor


def model_input_zero(model, images) -> np.ndarray:
    """The pixel images the model's preprocessing maps to the zero model input, P⁻¹(0), for
    an affine per-element preprocessing ("tf": 0.5 everywhere; "caffe": the ImageNet mean
    colour; None: 0). Code that feeds preprocessed inputs and leaves the baseline at its
    default of zeros (the RectGrad authors' Integrated Gradients and DeepLIFT) explains
    against this baseline.

    Raises:
        TfsalError: for a preprocessing that mixes pixels, or whose zero is not reached by one
            affine step (not affine).
    """
    from tfsal.images import as_batch
    from tfsal.loading import as_model

    model = as_model(model)
    images = as_batch(images)
    zero = images - multiplied_input(model, images, multiply_by="model_input")
    if model.preprocess is not None:
        import tensorflow as tf

        mapped = model._preprocess(tf.constant(zero)).numpy()
        scale = np.abs(model._preprocess(tf.constant(images)).numpy()).max()
        if np.abs(mapped).max() > _STRUCTURE_TOLERANCE * max(scale, 1e-30):
            raise TfsalError(f"expected an affine preprocessing for model_input_zero, received "
                             f"{model.preprocess!r}, which one affine step does not invert")
    return zero.astype(np.float32)
