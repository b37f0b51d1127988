"""DeepLIFT (Rescale rule) and ε-LRP, the rectified-gradient paper's comparison baselines.

Both are modified gradients times an input difference (Ancona et al. 2018), computed in pixel
space like every tfsal method:
- DeepLIFT Rescale (Shrikumar et al. 2017): each activation passes R · Δa / Δz, the ratio of
  its output and input differences between the image and the baseline; attribution =
  (x − baseline) ⊙ modified gradient. For networks of affine layers and activations the
  attributions sum to S(x) − S(baseline) ("summation to delta").
- ε-LRP (Bach et al. 2015): each activation passes R · a / (z + ε · sign(z)); attribution =
  x ⊙ modified gradient. For ReLU networks this is Gradient × Input up to ε.
"""

from __future__ import annotations

import numpy as np

from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method, non_negative
from tfsal.methods.integrated import make_baseline
from tfsal.overrides import Epsilon, Rescale


@attribution_method
def deeplift(model, images, targets=None, *, baseline="black", score: str | None = None,
             seed=None) -> np.ndarray:
    """DeepLIFT with the Rescale rule.

    Args:
        model: a Keras functional/sequential model adapter (`tfsal.Model` or loadable).
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class.
        baseline: "black", "white", "noise", "blur", a scalar or an array (see `make_baseline`).
        score: differentiated score ("logit" by default).
        seed: randomness of the "noise" baseline.

    Returns:
        float32 (N, H, W, 3), signed; sums to S(x) − S(baseline) for nets without max-pooling.

    Raises:
        TfsalError: for a bad baseline, opaque models, or models with no activation to override.

    Example:
        >>> d = tfsal.deeplift("shapes-cnn", images, baseline="black")
        >>> d.sum(axis=(1, 2, 3))
    """
    reference = make_baseline(images, baseline, seed=seed)
    multipliers = model.input_gradients(images, targets, score=score, rule=Rescale(),
                                        reference=reference)
    return (multipliers * (images - reference)).astype(np.float32)


@attribution_method
def epsilon_lrp(model, images, targets=None, *, epsilon: float = 1e-4,
                score: str | None = None) -> np.ndarray:
    """ε-LRP as a modified gradient times the input.

    Args:
        epsilon: the stabiliser ε > 0 (the paper's comparisons use 1e-4).
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
    rule = Epsilon(epsilon)
    return model.input_gradients(images, targets, score=score, rule=rule) * images
