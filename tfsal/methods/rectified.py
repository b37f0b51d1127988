"""Modified-backward-pass methods: Guided Backprop, Deconvnet, Rectified Gradient.

All three change only how the gradient passes activations (`tfsal.overrides`):
- Deconvnet (Zeiler & Fergus 2014): R ← max(R, 0).
- Guided Backprop (Springenberg et al. 2015): R ← 1[z > 0] · 1[R > 0] · R.
- RectGrad (Kim et al. 2019, rectified-gradient paper): R ← 1[a · R > τ] · R, τ the q-th
  percentile of the importance scores a · R of each sample at each layer; attribution =
  input × gradient, optionally thresholded at zero. Constant τ = 0 is Guided Backprop × input
  (Claim 2); 1[(a + ε) · R > 0] is Deconvnet × input (Claim 1). The padding trick and the
  proportional redistribution rule (PRR) for max-pooling are its Appendix C.
Guided Grad-CAM (Selvaraju et al. 2017) multiplies Guided Backprop by the upsampled Grad-CAM.
`layer_attributions` shows the attribution arriving at intermediate layers (its Figure 6).
"""

from __future__ import annotations

import numpy as np

from tfsal.checks import flag, number
from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method
from tfsal.methods.cam import grad_cam
from tfsal.methods.gradient import multiplied_input
from tfsal.overrides import Deconv, Guided, Rectified, Rule
from tfsal.selection import RANKS


@attribution_method
def guided_backprop(model, images, targets=None, *, score: str | None = None) -> np.ndarray:
    """Guided Backpropagation: the gradient with only positive signals passed back.

    Args:
        model: a Keras functional/sequential model adapter (`tfsal.Model` or loadable).
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class; or a callable from
            the model's output to one value per image (`tfsal.targets`).
        score: differentiated score ("logit" by default).

    Returns:
        float32 (N, H, W, 3), the guided gradient (not multiplied by the input).

    Raises:
        TfsalError: for opaque models (SavedModels) or models with no activation to override.

    Example:
        >>> g = tfsal.guided_backprop("shapes-cnn", images)
        >>> g.shape == images.shape
    """
    return model.input_gradients(images, targets, score=score, rule=Guided())


@attribution_method
def deconvnet(model, images, targets=None, *, score: str | None = None) -> np.ndarray:
    """Deconvnet: the activations pass the positive part of the gradient, whatever their input.

    Args, Returns and Raises as `guided_backprop`.

    Example:
        >>> d = tfsal.deconvnet(model, images, targets=3)
        >>> d.dtype == np.float32
    """
    return model.input_gradients(images, targets, score=score, rule=Deconv())


@attribution_method
def rectgrad(model, images, targets=None, *, percentile: float = 98, padding_trick: bool = True,
             prr: bool = False, zero_threshold: bool = False, threshold: float | None = None,
             score: str | None = None, rank: str = "authors",
             multiply_by: str = "pixels") -> np.ndarray:
    """Rectified Gradient: input × gradient with layer-wise importance thresholding.

    Args:
        model: a Keras functional/sequential model adapter (`tfsal.Model` or loadable).
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class; or a callable from
            the model's output to one value per image (`tfsal.targets`).
        percentile: q in [0, 100]; τ is the q-th percentile ("nearest") of a · R per sample and
            layer. Ignored when `threshold` is given.
        padding_trick: zero the border of the gradient arriving at SAME-padded convolutions.
        prr: proportional redistribution through max-pooling layers.
        zero_threshold: return max(x · R, 0) (the paper's CIFAR experiments) instead of x · R
            (its ImageNet figures).
        threshold: a constant τ for every layer instead of the percentile.
        score: differentiated score ("logit" by default, as in the paper).
        rank: which of the layer's n values is the "nearest" q-th percentile
            (`tfsal.selection.percentile_rank`). "authors" (default): the authors' TF1
            `tf.contrib.distributions.percentile`, i = round_half_even((n − 1)·(1 − q/100)) in
            float32, counted from the largest value; "numpy": `np.percentile(...,
            method="nearest")`, ascending rank round_half_even((n − 1)·(q/100)) in float64.
            They differ by one rank where the product is a half (q = 50 with n even, q = 90
            with n ≡ 16 mod 20, q = 98 with n ≡ 26 mod 100, ...).
        multiply_by: "pixels" (default): x · R on the [0, 1] pixels; "model_input": x_in · R_in
            on the preprocessed input, as the authors' code ([−1, 1] inputs: R · (x − 0.5) for
            "tf" preprocessing); see `tfsal.methods.gradient`. The zero threshold applies to
            the product chosen.

    Returns:
        float32 (N, H, W, 3), signed unless `zero_threshold`.

    Raises:
        TfsalError: for a percentile outside [0, 100], a non-finite threshold, a bad rank or
            multiply_by, opaque models, or models with no activation to override.

    Example:
        >>> r = tfsal.rectgrad("shapes-cnn", images, percentile=98, prr=True)
        >>> heat = tfsal.visualize.reduce_channels(r, "sum")
    """
    rule = rectified_rule(percentile=percentile, threshold=threshold,
                          padding_trick=padding_trick, prr=prr, rank=rank)
    zero_threshold = flag(zero_threshold, "zero_threshold")
    factor = multiplied_input(model, images, multiply_by=multiply_by)
    attribution = model.input_gradients(images, targets, score=score, rule=rule) * factor
    attribution = attribution.astype(np.float32)
    return np.maximum(attribution, 0) if zero_threshold else attribution


@attribution_method
def guided_grad_cam(model, images, targets=None, *, layer=None,
                    score: str | None = None) -> np.ndarray:
    """Guided Grad-CAM: Guided Backprop times Grad-CAM upsampled (bilinear) to the image.

    Args:
        layer: Grad-CAM's layer (None: the last convolutional feature map).
        Others as `guided_backprop`.

    Returns:
        float32 (N, H, W, 3).

    Example:
        >>> m = tfsal.guided_grad_cam(model, images, layer="last_conv")
        >>> m.shape == images.shape
    """
    import tensorflow as tf

    guided = guided_backprop.compute(model, images, targets, score=score)
    coarse = grad_cam.compute(model, images, targets, layer=layer, score=score)
    upsampled = tf.image.resize(coarse[..., None], images.shape[1:3], method="bilinear")
    return (guided * upsampled.numpy()).astype(np.float32)


@attribution_method
def layer_attributions(model, images, targets=None, *, method="rectgrad", layers=None,
                       score: str | None = None) -> dict[str, np.ndarray]:
    """The attribution arriving at intermediate layers: channel mean of activation × gradient.

    Reproduces the rectified-gradient paper's noise-accumulation figure: with the plain
    gradient the map grows noisier layer by layer towards the input, with RectGrad it does not.

    Args:
        method: "vanilla", "guided_backprop", "deconvnet", "rectgrad" (q = 98, padding trick,
            the authors' percentile rank), or a rule from `tfsal.overrides` (e.g.
            `Rectified(percentile=90, prr=True, rank="numpy")`).
        layers: layer names/paths/indices; None = every layer with a spatial output that applies
            an activation, from the input side up.
        score: differentiated score ("logit" by default).

    Returns:
        dict layer path -> float32 (N, h, w) of mean over channels of a ⊙ R.

    Raises:
        TfsalError: for an unknown method or layer.

    Example:
        >>> maps = tfsal.layer_attributions(model, images, method="vanilla")
        >>> list(maps)[:2]
    """
    rule = _LAYER_METHODS.get(method, method) if isinstance(method, str) else method
    if not (rule is None or isinstance(rule, Rule)):
        raise TfsalError(f"expected method in {sorted(_LAYER_METHODS)} or a tfsal.overrides "
                         f"rule, received {method!r}")
    if layers is None:
        layers = model.activation_layers()
    found = model.layers_gradients(images, targets, layers=layers, score=score, rule=rule)
    out = {}
    for path, (activations, gradients) in found.items():
        if activations.ndim != 4:
            raise TfsalError(f"expected layers with (N, h, w, channels) outputs, received "
                             f"{path!r} with shape {activations.shape}")
        out[path] = (activations * gradients).mean(axis=-1).astype(np.float32)
    return out


_LAYER_METHODS = {"vanilla": None, "guided_backprop": Guided(), "deconvnet": Deconv(),
                  "rectgrad": Rectified()}


def rectified_rule(*, percentile=98, threshold=None, padding_trick=True, prr=False,
                   rank="authors") -> Rectified:
    """A validated `Rectified` rule from RectGrad's hyperparameters."""
    padding_trick, prr = flag(padding_trick, "padding_trick"), flag(prr, "prr")
    if not isinstance(rank, str) or rank not in RANKS:
        raise TfsalError(f"expected rank in {RANKS}, received {rank!r}")
    if threshold is not None:
        threshold = number(threshold, "threshold", note="or None")
        return Rectified(percentile=None, threshold=threshold,  # rank: unused
                         padding_trick=padding_trick, prr=prr)
    percentile = number(percentile, "percentile", low=0, high=100)
    return Rectified(percentile=percentile, padding_trick=padding_trick, prr=prr,
                     rank=rank)
