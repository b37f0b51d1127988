"""DeepLIFT (Rescale rule) and ε-LRP, the rectified-gradient paper's comparison baselines.

Both are modified gradients times an input difference (Ancona et al. 2018), computed in pixel
space like every tfsal method:
- DeepLIFT Rescale (Shrikumar et al. 2017): each activation passes R · Δa / Δz, the ratio of
  its output and input differences between the image and the baseline; attribution =
  (x − baseline) ⊙ modified gradient. For networks of affine layers and activations the
  attributions sum to S(x) − S(baseline) ("summation to delta"). Max-pooling passes the plain
  gradient by default (as the RectGrad authors' DeepExplain and the DeepLIFT package do),
  which breaks the sum; `maxpool="rescale"` keeps it (`tfsal.overrides.Rescale`).
- ε-LRP (Bach et al. 2015): each activation passes R · a / (z + ε · sign(z)); attribution =
  x ⊙ modified gradient. For ReLU networks this is Gradient × Input up to ε.

`multiply_by` chooses the input multiplied: the pixels (default) or the model's preprocessed
input (the authors' code), see `tfsal.methods.gradient`.
"""

from __future__ import annotations

import numpy as np

from tfsal.checks import non_negative
from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method
from tfsal.methods.gradient import check_multiply_by, multiplied_input
from tfsal.methods.integrated import make_baseline
from tfsal.overrides import MAXPOOL_RULES, Epsilon, Rescale


@attribution_method
def deeplift(model, images, targets=None, *, baseline="black", score: str | None = None,
             seed=None, maxpool: str = "gradient", multiply_by: str = "pixels") -> np.ndarray:
    """DeepLIFT with the Rescale rule.

    Args:
        model: a Keras functional/sequential model adapter (`tfsal.Model` or loadable).
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class; or a callable from
            the model's output to one value per image (`tfsal.targets`).
        baseline: "black", "white", "noise", "blur", a scalar or an array (see `make_baseline`).
        score: differentiated score ("logit" by default).
        seed: randomness of the "noise" baseline.
        maxpool: how max-pooling (MaxPooling2D layers; MaxPool / MaxPoolV2 ops of loaded
            graphs) passes the multipliers. "gradient" (default, the authors' DeepExplain and
            the DeepLIFT package): the plain gradient, all to the window's largest input;
            summation-to-delta then fails. "rescale": each window's multiplier m is shared as
            m · s_k, s_k = the fraction of the straight path from the reference window to
            the image's window along which input k is the maximum (the path-averaged gradient
            of the window's max, the multi-input form of the Rescale rule: for one input it is
            Δy/Δx). Then Σ_k s_k Δx_k = Δy for every window and the attributions sum to
            S(x) − S(baseline) through max-pooling too. Other max-poolings (global, 1D, 3D)
            are refused with "rescale".
        multiply_by: "pixels" (default) or "model_input": the multipliers times x − b, or times
            x_in − b_in on the preprocessed input; the same map for affine per-element
            preprocessings (the chain rule), see `tfsal.methods.gradient`.

    Returns:
        float32 (N, H, W, 3), signed; sums to S(x) − S(baseline) for nets without max-pooling
        (with `maxpool="rescale"`: with max-pooling too).

    Raises:
        TfsalError: for a bad baseline, maxpool or multiply_by, opaque models, or models with
            no activation to override.

    Example:
        >>> d = tfsal.deeplift("shapes-cnn", images, baseline="black", maxpool="rescale")
        >>> d.sum(axis=(1, 2, 3))
    """
    if not isinstance(maxpool, str) or maxpool not in MAXPOOL_RULES:
        raise TfsalError(f"expected maxpool in {MAXPOOL_RULES}, received {maxpool!r}")
    check_multiply_by(multiply_by)
    reference = make_baseline(images, baseline, seed=seed)
    multipliers = model.input_gradients(images, targets, score=score,
                                        rule=Rescale(maxpool=maxpool), reference=reference)
    factor = multiplied_input(model, images, reference, multiply_by=multiply_by)
    return (multipliers * factor).astype(np.float32)


@attribution_method
def epsilon_lrp(model, images, targets=None, *, epsilon: float = 1e-4,
                score: str | None = None, multiply_by: str = "pixels") -> np.ndarray:
    """ε-LRP as a modified gradient times the input.

    Args:
        epsilon: the stabiliser ε > 0 (the paper's comparisons use 1e-4).
        multiply_by: "pixels" (default): x ⊙ R on the [0, 1] pixels; "model_input":
            x_in ⊙ R_in on the preprocessed input, as the authors' code; see
            `tfsal.methods.gradient`.
        Others as `deeplift`.

    Returns:
        float32 (N, H, W, 3), signed.

    Example:
        >>> r = tfsal.epsilon_lrp(model, images, epsilon=1e-4)
        >>> r.shape == images.shape
    """
    epsilon = non_negative(epsilon, "epsilon")
    if np.float32(epsilon) <= 0:  # ε = 0 divides 0 by 0 wherever a pre-activation is 0
        raise TfsalError(f"expected epsilon > 0 (representable in float32), received {epsilon!r}")
    factor = multiplied_input(model, images, multiply_by=multiply_by)
    rule = Epsilon(epsilon)
    return (model.input_gradients(images, targets, score=score, rule=rule) * factor).astype(
        np.float32)
