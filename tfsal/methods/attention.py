"""Attention maps of vision transformers (lecture notes §2.3: maps embedded in the model).

For models with `keras.layers.MultiHeadAttention` layers (hand-written Keras 3 ViTs, nested
models, and attention layers inside custom blocks such as keras-hub's ViT encoder). The
attention weights A (N, heads, T, T) of a layer are captured in tfsal's own trace of the
model (the layer called with ``return_attention_scores=True``; the user's model unchanged).

- `attention_map`: the raw attention of one layer and head (or heads fused): the class
  token's row A[cls, patches], or, for models without a class token, the mean over the query
  tokens of each patch's column.
- `attention_rollout` (Abnar & Zuidema 2020, "Quantifying attention flow in transformers"):
  per layer Â = fuse_heads(A) (mean, max or min), A' = (1 − r)·Â + r·I (the residual
  connection, r = `residual`), rows renormalised to sum 1; R = A'_L ··· A'_2 · A'_1, and the
  class token's row of R over the patch tokens.
- `gradient_rollout` (Chefer, Gur & Wolf 2021, "Generic attention-model explainability for
  interpreting bi-modal and encoder-decoder transformers", eq. 5–6): per layer
  Ā = E_h[(∇A ⊙ A)⁺] with ∇A = ∂S_c/∂A the gradient of the target score; R = I, then
  R ← R + Ā·R layer by layer from the input side; the class token's row of R over the patches.
- `token_grad_cam`: Grad-CAM (Selvaraju et al. 2017) on the patch-token grid of a layer with a
  (N, T, D) output: α_k = mean over the patch tokens of ∂S_c/∂X_{t,k}, map = ReLU(Σ_k α_k X_t,k)
  per patch token. Its default layer is the input of the last attention layer: after it, the
  patch tokens reach a class-token head through no attention, and their gradient is zero.

Tokens: a layer's T tokens are P prefix tokens (a class token first, as in ViT and keras-hub,
then any others) followed by the h × w patch tokens in row-major order; the grid is found from
T and the image's aspect ratio (the smallest P ≤ 8 for which T − P patches tile the image).
With P = 0 there is no class token and the maps take the mean over the query tokens.

Every method returns raw float32 maps (N, h, w) on the patch grid, like CAM and Grad-CAM;
`tfsal.visualize.upsample` (and `render`) bring them to image size.
"""

from __future__ import annotations

import math

import numpy as np

from tfsal.errors import TfsalError
from tfsal.methods._base import attribution_method

HEAD_FUSIONS = ("mean", "max", "min")
TOKENS = ("auto", "cls", "mean")
_MAX_PREFIX = 8


@attribution_method
def attention_map(model, images, targets=None, *, layer=-1, head="mean",
                  token: str = "auto") -> np.ndarray:
    """Raw attention of one attention layer, on the patch grid.

    Args:
        model: a `tfsal.Model` (or loadable) with `keras.layers.MultiHeadAttention` layers.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: accepted for the common signature; the attention weights do not depend on
            the class.
        layer: attention layer name, path or index among the attention layers (-1: the last).
        head: a head index, or "mean", "max" or "min" over the heads.
        token: "cls" (the class token's attention to each patch), "mean" (the mean over
            all query tokens of the attention each patch receives) or "auto" (cls if the
            model has a class token, else mean).

    Returns:
        float32 (N, h, w), ≥ 0, on the patch grid.

    Raises:
        TfsalError: for a model without attention layers, an unknown layer or head, or a
            token layout that is not prefix tokens + a patch grid.

    Example:
        >>> maps = tfsal.methods.attention_map("shapes-vit", images, head=0)
        >>> big = tfsal.visualize.upsample(maps, images.shape[1:3])
    """
    path = model.resolve_attention_layers(layer)[0]
    scores = model.attention_scores(images, layers=path)[path]
    fused = _fuse_heads(scores, head)
    return _patch_row(fused, images.shape[1:3], token)


@attribution_method
def attention_rollout(model, images, targets=None, *, residual: float = 0.5,
                      head_fusion: str = "mean", layers=None,
                      token: str = "auto") -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): attention propagated through the layers.

    Args:
        model: a `tfsal.Model` (or loadable) with `keras.layers.MultiHeadAttention` layers.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: accepted for the common signature; rollout does not depend on the class.
        residual: weight r of the identity standing for the residual connection,
            A' = (1 − r)·A + r·I, in [0, 1] (0.5 in the paper; 0 multiplies the raw maps).
        head_fusion: how the heads of a layer are combined: "mean" (the paper), "max", "min".
        layers: the attention layers to roll out, input side first (None: all, in execution
            order); names, paths or indices.
        token: "cls", "mean" or "auto" (see `attention_map`).

    Returns:
        float32 (N, h, w), ≥ 0, on the patch grid.

    Raises:
        TfsalError: for a model without attention layers, a bad option or token layout, or
            layers whose token counts differ.

    Example:
        >>> maps = tfsal.methods.attention_rollout("shapes-vit", images)
        >>> maps.shape  # (N, 8, 8)
    """
    residual = _fraction(residual, "residual")
    _check_choice(head_fusion, HEAD_FUSIONS, "head_fusion")
    scores = model.attention_scores(images, layers=layers)
    rolled = None
    for path, a in scores.items():
        step = _with_residual(_fuse_heads(a, head_fusion), residual)
        rolled = step if rolled is None else _matmul(step, rolled, path)
    return _patch_row(rolled, images.shape[1:3], token)


@attribution_method
def gradient_rollout(model, images, targets=None, *, layers=None, score: str | None = None,
                     token: str = "auto") -> np.ndarray:
    """Gradient-weighted attention rollout (Chefer et al. 2021) of the target class.

    Args:
        model: a `tfsal.Model` (or loadable) with `keras.layers.MultiHeadAttention` layers.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class.
        layers: the attention layers, input side first (None: all); names, paths or indices.
        score: differentiated score ("logit" by default).
        token: "cls", "mean" or "auto" (see `attention_map`).

    Returns:
        float32 (N, h, w), ≥ 0, on the patch grid (the identity's contribution, which only
        the class token has in its own row, is not a patch and is left out).

    Raises:
        TfsalError: for a model without attention layers, or a bad option or token layout.

    Example:
        >>> maps = tfsal.methods.gradient_rollout("shapes-vit", images, targets=3)
        >>> maps.shape  # (N, 8, 8)
    """
    found = model.attention_gradients(images, targets, layers=layers, score=score)
    relevance = None
    for path, (a, grad) in found.items():
        weighted = np.maximum(grad.astype(np.float64) * a, 0).mean(axis=1)  # E_h[(∇A ⊙ A)⁺]
        if relevance is None:
            relevance = np.broadcast_to(np.eye(weighted.shape[-1]), weighted.shape).copy()
        relevance = relevance + _matmul(weighted, relevance, path)
    return _patch_row(relevance, images.shape[1:3], token)


@attribution_method
def token_grad_cam(model, images, targets=None, *, layer=None,
                   score: str | None = None) -> np.ndarray:
    """Grad-CAM on the patch tokens of a layer with a (N, tokens, channels) output.

    Args:
        model: a `tfsal.Model` (or loadable); a Keras model with token layers.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: int, int array (N,), or None for the predicted class.
        layer: layer name, nested path or index with a (N, T, D) output; None: the layer
            whose output enters the last attention layer (e.g. the last block's first
            LayerNormalization).
        score: differentiated score ("logit" by default).

    Returns:
        float32 (N, h, w), ≥ 0, on the patch grid.

    Raises:
        TfsalError: for a layer whose output is not (N, T, D) with T prefix + patch tokens,
            or, with layer=None, a model whose last attention layer's input is not a layer
            output tfsal can reach.

    Example:
        >>> maps = tfsal.methods.token_grad_cam("shapes-vit", images, layer="block2_out")
        >>> maps.shape  # (N, 8, 8)
    """
    path = _last_attention_input(model) if layer is None else layer
    tokens, gradients = model.layer_gradients(images, targets, layer=path, score=score)
    if tokens.ndim != 3:
        raise TfsalError(f"expected a layer with a (N, tokens, channels) output for token "
                         f"Grad-CAM, received output shape {tokens.shape} (grad_cam takes "
                         f"(N, h, w, channels) feature maps)")
    prefix, (h, w) = token_grid(tokens.shape[1], images.shape[1:3])
    patches, grads = tokens[:, prefix:], gradients[:, prefix:]
    weights = grads.mean(axis=1)  # α_k: mean over the patch tokens
    cam = np.maximum(np.einsum("ntk,nk->nt", patches, weights), 0)
    return cam.reshape(len(images), h, w).astype(np.float32)


# ------------------------------------------------------------------------------ helpers
def token_grid(n_tokens: int, image_size) -> tuple[int, tuple[int, int]]:
    """(prefix tokens P, patch grid (h, w)) for a sequence of `n_tokens` over an image of
    `image_size` (H, W): the smallest P ≤ 8 with T − P = h·w and h / w = H / W.

    Raises:
        TfsalError: if no such split exists.
    """
    height, width = int(image_size[0]), int(image_size[1])
    for prefix in range(min(_MAX_PREFIX, n_tokens - 1) + 1):
        n = n_tokens - prefix
        h = math.isqrt(max(n * height // width, 0))
        for rows in (h, h + 1):
            if rows > 0 and n % rows == 0 and rows * width == (n // rows) * height:
                return prefix, (rows, n // rows)
    raise TfsalError(f"expected tokens made of up to {_MAX_PREFIX} prefix tokens (a class "
                     f"token first) and a grid of patch tokens with the image's aspect ratio "
                     f"{height}x{width}, received {n_tokens} tokens")


def _fuse_heads(scores: np.ndarray, head) -> np.ndarray:
    """(N, heads, T, S) -> (N, T, S): one head, or the heads' mean, max or min."""
    if scores.ndim != 4:
        raise TfsalError(f"expected attention weights (N, heads, queries, keys), received "
                         f"shape {scores.shape} (attention over several axes is not supported)")
    heads = scores.shape[1]
    if isinstance(head, (int, np.integer)) and not isinstance(head, bool):
        if not -heads <= head < heads:
            raise TfsalError(f"expected a head index in [{-heads}, {heads}), received {head}")
        return scores[:, int(head)].astype(np.float64)
    _check_choice(head, HEAD_FUSIONS, "head", "a head index or one of")
    return getattr(np.asarray(scores, np.float64), head)(axis=1)


def _with_residual(a: np.ndarray, residual: float) -> np.ndarray:
    """A' = (1 − r)·A + r·I with rows renormalised to sum 1."""
    t, s = a.shape[-2:]
    if t != s:
        raise TfsalError(f"expected self-attention (as many queries as keys) for rollout, "
                         f"received {t} queries and {s} keys")
    mixed = (1.0 - residual) * a + residual * np.eye(t)
    return mixed / np.maximum(mixed.sum(axis=-1, keepdims=True), 1e-12)


def _matmul(later: np.ndarray, earlier: np.ndarray, path: str) -> np.ndarray:
    if later.shape[-1] != earlier.shape[-2]:
        raise TfsalError(f"expected attention layers over the same tokens, received "
                         f"{later.shape[-1]} tokens at {path} after {earlier.shape[-2]}")
    return later @ earlier


def _patch_row(matrix: np.ndarray, image_size, token: str) -> np.ndarray:
    """(N, T, T) token-to-token map -> (N, h, w): the class token's row (or the mean row)
    over the patch tokens."""
    _check_choice(token, TOKENS, "token")
    prefix, (h, w) = token_grid(matrix.shape[-1], image_size)
    if token == "cls" and prefix == 0:
        raise TfsalError(f"expected a model with a class token for token='cls', received "
                         f"{matrix.shape[-1]} tokens that are all patches ({h}x{w}); use "
                         f"token='mean' or 'auto'")
    use_cls = token == "cls" or (token == "auto" and prefix > 0)
    row = matrix[:, 0, prefix:] if use_cls else matrix[:, :, prefix:].mean(axis=1)
    return row.reshape(len(matrix), h, w).astype(np.float32)


def _last_attention_input(model) -> str:
    """The path of the layer whose output the last attention layer takes as its query."""
    paths = model.attention_layers()
    runner = model.runner
    last = paths[-1]
    layer = runner.layer(last) if last in runner.paths else None
    try:
        source = layer._inbound_nodes[0].arguments.keras_tensors[0]._keras_history.operation
    except (AttributeError, IndexError, TypeError):
        source = None
    found = [p for p in runner.paths if source is not None and runner.layer(p) is source]
    if len(found) != 1:
        raise TfsalError(f"expected layer= for token Grad-CAM: the input of the last attention "
                         f"layer {last} is not the output of a layer tfsal can reach; received "
                         f"layer=None (layers: {', '.join(runner.paths)})")
    return found[0]


def _fraction(value, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TfsalError(f"expected {name} a number in [0, 1], received {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise TfsalError(f"expected {name} a number in [0, 1], received {value}")
    return value


def _check_choice(value, choices, name: str, what: str = "one of") -> None:
    if not isinstance(value, str) or value not in choices:
        raise TfsalError(f"expected {name} {what} {choices}, received {value!r}")
