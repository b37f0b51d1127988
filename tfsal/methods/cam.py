"""Class Activation Mapping and Grad-CAM (lecture notes, overview paper).

CAM (Zhou et al. 2016): for a network ending in global average pooling and a dense layer,
CAM_c(u, v) = Σ_k w_{k,c} · A_k(u, v), with A the feature map entering the pooling.
Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_k α_k · A_k) with α_k = mean_{u,v} ∂S_c/∂A_k(u, v),
for any feature map A (by default the last convolutional one, nested models included).
Both return maps at feature-map resolution (N, h, w); `tfsal.visualize.upsample` brings them to
image size.
"""

from __future__ import annotations

import numpy as np

from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method
from tfsal.targets import TargetFunction, needs_classes


@attribution_method
def cam(model, images, targets=None) -> np.ndarray:
    """Class Activation Map of the target class.

    Args:
        model: a `tfsal.Model` (or loadable) ending in GlobalAveragePooling2D + Dense.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class (a callable target is
            refused: CAM weights the feature maps by one class's row of the dense head; use
            `grad_cam`, which differentiates it).

    Returns:
        float32 (N, h, w), signed, at the feature map's resolution.

    Raises:
        TfsalError: if the model has no global-average-pool + dense head, or for a callable
            target.

    Example:
        >>> maps = tfsal.cam("shapes-cnn", images)
        >>> big = tfsal.visualize.upsample(maps, images.shape[1:3])
    """
    if isinstance(targets, TargetFunction):
        raise TfsalError(needs_classes(
            "CAM (it weights the feature maps by the target class's row of the dense head)",
            targets.function, instead="grad_cam differentiates a callable target at the same "
                                      "feature map"))
    gap_path, kernel = model.cam_head()
    features = model.layer_inputs(images, layer=gap_path)
    return np.einsum("nhwk,kn->nhw", features, kernel[:, targets]).astype(np.float32)


@attribution_method
def grad_cam(model, images, targets=None, *, layer=None, score: str | None = None) -> np.ndarray:
    """Grad-CAM of the target class at a convolutional layer.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class; or a callable from
            the model's output to one value per image (`tfsal.targets`), e.g. a segmentation
            class summed over a region.
        layer: layer name, nested path ("base/conv5_block3_out") or index; None finds the last
            convolutional feature map.
        score: differentiated score ("logit" by default, as in the paper).

    Returns:
        float32 (N, h, w), ≥ 0, at the layer's resolution.

    Raises:
        TfsalError: for an unknown layer or a layer without a spatial (rank-4) output.

    Example:
        >>> maps = tfsal.grad_cam(model, images, layer="last_conv")
        >>> maps.shape[0] == len(images)
    """
    activations, gradients = model.layer_gradients(images, targets, layer=layer, score=score)
    if activations.ndim != 4:
        raise TfsalError(f"expected a layer with a (N, h, w, channels) output for Grad-CAM, "
                         f"received output shape {activations.shape}")
    weights = gradients.mean(axis=(1, 2))
    return np.maximum(np.einsum("nhwk,nk->nhw", activations, weights), 0).astype(np.float32)
