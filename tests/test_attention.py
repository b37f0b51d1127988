"""Attention maps (tfsal.methods.attention): raw attention, rollout, gradient-weighted
rollout and token Grad-CAM against their definitions computed by hand on small models, the
user's model untouched, refusals, and the embedded ViT (accuracy, localisation)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfsal
from tfsal.errors import TfsalError
from tfsal.methods import (
    ATTENTION_METHODS,
    attention_map,
    attention_rollout,
    gradient_rollout,
    token_grad_cam,
)
from tfsal.zoo.shapes_vit import custom_layers

IMAGES = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)


def _two_layer_model(seed: int = 3):
    """8×8 images → 4×4 patches (2×2 grid) → class token → two self-attention layers with
    residual connections (2 heads each) → the class token → Dense(3). No normalisation, so
    the forward pass can be written out by hand below."""
    keras.utils.set_random_seed(seed)
    layers = custom_layers()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 4, strides=4, name="patches")(inputs)
    x = keras.layers.Reshape((4, 6), name="tokens")(x)
    x = layers["ClassToken"](name="cls_token")(x)
    x = layers["PositionEmbedding"](name="pos")(x)
    for i in (1, 2):
        y = keras.layers.MultiHeadAttention(2, 3, name=f"att{i}")(x, x)
        x = keras.layers.Add(name=f"res{i}")([x, y])
    x = keras.layers.Cropping1D((0, 4), name="cls")(x)
    x = keras.layers.Flatten(name="flat")(x)
    outputs = keras.layers.Dense(3, name="logits")(x)
    model = keras.Model(inputs, outputs)
    # a non-zero class token and larger weights: attention far from uniform
    for w in model.weights:
        w.assign(np.random.default_rng(seed).normal(0, 0.25, w.shape).astype(np.float32))
    return model


@pytest.fixture(scope="module")
def two_layer():
    return _two_layer_model()


def _embedded(model, images):
    """The tokens entering the first attention layer, from the model's own layers."""
    x = model.get_layer("patches")(images)
    x = model.get_layer("tokens")(x)
    return model.get_layer("pos")(model.get_layer("cls_token")(x))


def _scores_by_the_layers(model, images):
    """(A1, A2) (N, heads, 5, 5) from the layers' own `return_attention_scores`."""
    x = _embedded(model, images)
    out, a1 = model.get_layer("att1")(x, x, return_attention_scores=True)
    x = x + out
    _, a2 = model.get_layer("att2")(x, x, return_attention_scores=True)
    return np.asarray(a1, np.float64), np.asarray(a2, np.float64)


def _hand_attention(layer, x):
    """Multi-head self-attention written out from the layer's weights: (A, output)."""
    wq, bq = layer._query_dense.kernel, layer._query_dense.bias
    wk, bk = layer._key_dense.kernel, layer._key_dense.bias
    wv, bv = layer._value_dense.kernel, layer._value_dense.bias
    wo, bo = layer._output_dense.kernel, layer._output_dense.bias
    q = tf.einsum("btd,dhk->bthk", x, wq) + bq
    k = tf.einsum("btd,dhk->bthk", x, wk) + bk
    v = tf.einsum("btd,dhk->bthk", x, wv) + bv
    a = tf.nn.softmax(tf.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1]), axis=-1)
    context = tf.einsum("bhts,bshk->bthk", a, v)
    return a, tf.einsum("bthk,hkd->btd", context, wo) + bo


def _patch_grid(row):
    return row[:, 1:].reshape(len(row), 2, 2)


def test_raw_attention_is_the_layers_own_attention_weights(two_layer):
    a1, a2 = _scores_by_the_layers(two_layer, IMAGES)
    np.testing.assert_allclose(attention_map(two_layer, IMAGES, layer="att1", head=1),
                               _patch_grid(a1[:, 1, 0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention_map(two_layer, IMAGES, head="max"),  # last layer
                               _patch_grid(a2.max(axis=1)[:, 0]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(attention_map(two_layer, IMAGES, layer=0, token="mean"),
                               a1.mean(axis=1).mean(axis=1)[:, 1:].reshape(3, 2, 2),
                               rtol=1e-5, atol=1e-6)
    # the model's attention is far from uniform, so the comparisons above can fail
    assert np.ptp(a1[:, :, 0, 1:]) > 0.1


@pytest.mark.parametrize(("residual", "fusion"), [(0.5, "mean"), (0.0, "min"), (0.3, "max")])
def test_rollout_is_the_product_of_the_residual_attention_matrices(two_layer, residual, fusion):
    a1, a2 = _scores_by_the_layers(two_layer, IMAGES)

    def step(a):
        a = getattr(a, fusion)(axis=1)
        mixed = (1 - residual) * a + residual * np.eye(5)
        return mixed / mixed.sum(axis=-1, keepdims=True)

    by_hand = np.einsum("nij,njk->nik", step(a2), step(a1))
    got = attention_rollout(two_layer, IMAGES, residual=residual, head_fusion=fusion)
    assert got.shape == (3, 2, 2) and got.dtype == np.float32
    np.testing.assert_allclose(got, _patch_grid(by_hand[:, 0]), rtol=1e-5, atol=1e-7)
    # one layer: the rollout of that layer alone
    np.testing.assert_allclose(attention_rollout(two_layer, IMAGES, layers=["att1"],
                                                 residual=residual, head_fusion=fusion),
                               _patch_grid(step(a1)[:, 0]), rtol=1e-5, atol=1e-7)


def test_gradient_rollout_follows_its_definition_with_a_hand_written_tape(two_layer):
    targets = np.array([0, 2, 1])
    x0 = _embedded(two_layer, IMAGES)
    with tf.GradientTape() as tape:
        a1, out = _hand_attention(two_layer.get_layer("att1"), x0)
        x1 = x0 + out
        a2, out = _hand_attention(two_layer.get_layer("att2"), x1)
        x2 = x1 + out
        dense = two_layer.get_layer("logits")
        logits = tf.matmul(x2[:, 0], dense.kernel) + dense.bias
        total = tf.reduce_sum(tf.gather(logits, targets, batch_dims=1))
    g1, g2 = tape.gradient(total, [a1, a2])
    np.testing.assert_allclose(logits, two_layer(IMAGES), rtol=1e-4, atol=1e-5)  # same model
    own1, own2 = _scores_by_the_layers(two_layer, IMAGES)
    np.testing.assert_allclose(a1, own1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a2, own2, rtol=1e-5, atol=1e-6)

    relevance = np.broadcast_to(np.eye(5), (3, 5, 5))
    for a, g in ((a1, g1), (a2, g2)):
        weighted = np.maximum(np.asarray(g, np.float64) * np.asarray(a), 0).mean(axis=1)
        relevance = relevance + weighted @ relevance
    got = gradient_rollout(two_layer, IMAGES, targets)
    np.testing.assert_allclose(got, _patch_grid(relevance[:, 0]), rtol=1e-4, atol=1e-7)
    # a different class gives a different map: the target matters
    assert not np.allclose(gradient_rollout(two_layer, IMAGES, (targets + 1) % 3), got)


def test_token_grad_cam_on_a_hand_built_token_map():
    """Tokens X (N, 4, D) without a class token, logits = mean_t(X_t)·W + b: the gradient of
    class c at every token is W[:, c] / 4, so the map is ReLU(X_t · W[:, c] / 4)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(5, 4, strides=4, name="patches")(inputs)
    tokens = keras.layers.Reshape((4, 5), name="tokens")(x)
    pooled = keras.layers.GlobalAveragePooling1D(name="pool")(tokens)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(pooled))
    x = np.asarray(model.get_layer("tokens")(model.get_layer("patches")(IMAGES)))
    kernel = np.asarray(model.get_layer("head").kernel)
    targets = np.array([2, 0, 1])
    by_hand = np.maximum(np.einsum("ntk,kn->nt", x, kernel[:, targets]) / 4, 0)
    got = token_grad_cam(model, IMAGES, targets, layer="tokens")
    np.testing.assert_allclose(got, by_hand.reshape(3, 2, 2), rtol=1e-5, atol=1e-6)
    assert (got > 0).any() and (got == 0).any()  # both sides of the ReLU are exercised


def test_token_grad_cam_defaults_to_the_input_of_the_last_attention_layer(two_layer):
    targets = np.array([1, 1, 0])
    x0 = _embedded(two_layer, IMAGES)
    with tf.GradientTape() as tape:
        tape.watch(x0)
        _, out = _hand_attention(two_layer.get_layer("att1"), x0)
        x1 = x0 + out
        tape.watch(x1)
        _, out = _hand_attention(two_layer.get_layer("att2"), x1)
        dense = two_layer.get_layer("logits")
        logits = tf.matmul((x1 + out)[:, 0], dense.kernel) + dense.bias
        total = tf.reduce_sum(tf.gather(logits, targets, batch_dims=1))
    grads = np.asarray(tape.gradient(total, x1))[:, 1:]
    weights = grads.mean(axis=1)
    by_hand = np.maximum(np.einsum("ntk,nk->nt", np.asarray(x1)[:, 1:], weights), 0)
    got = token_grad_cam(two_layer, IMAGES, targets)  # res1: the input of att2
    np.testing.assert_allclose(got, by_hand.reshape(3, 2, 2), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(token_grad_cam(two_layer, IMAGES, targets, layer="res1"), got)


class _Block(keras.layers.Layer):
    """A custom transformer block holding its attention layer (as keras-hub's ViT does)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.attention = keras.layers.MultiHeadAttention(2, 3, name="mha")
        self.fail = False

    def build(self, input_shape):
        self.attention.build(input_shape, input_shape)

    def call(self, x):
        if self.fail:
            raise ValueError("boom")
        return x + self.attention(x, x)


def _custom_block_model():
    keras.utils.set_random_seed(4)
    layers = custom_layers()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(6, 4, strides=4, name="patches")(inputs)
    x = keras.layers.Reshape((4, 6), name="tokens")(x)
    x = layers["ClassToken"](name="cls_token")(x)
    x = _Block(name="block")(x)
    x = keras.layers.Cropping1D((0, 4))(x)
    return keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))


def test_attention_inside_a_custom_layer_is_captured_and_the_layer_restored():
    model = _custom_block_model()
    adapter = tfsal.Model(model)
    assert adapter.attention_layers() == ["block/mha"]
    block = model.get_layer("block")
    x = model.get_layer("cls_token")(model.get_layer("tokens")(model.get_layer("patches")(
        IMAGES)))
    _, a = block.attention(x, x, return_attention_scores=True)
    np.testing.assert_allclose(attention_map(adapter, IMAGES, layer="mha", head=0),
                               np.asarray(a)[:, 0, 0, 1:].reshape(3, 2, 2), rtol=1e-5,
                               atol=1e-6)
    assert gradient_rollout(adapter, IMAGES, 0).shape == (3, 2, 2)
    assert "call" not in vars(block.attention)  # the scoped patch is gone
    block.fail = True  # an exception inside the patched run also removes it
    with pytest.raises(ValueError):
        attention_rollout(tfsal.Model(model), IMAGES)
    assert "call" not in vars(block.attention)


def test_keras_hub_vit_attention_inside_its_encoder_blocks():
    """keras-hub's ViT keeps its MultiHeadAttention layers inside custom encoder blocks."""
    keras_hub = pytest.importorskip("keras_hub")
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2,
                                            num_heads=2, hidden_dim=16, mlp_dim=32)
    classifier = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=3,
                                                     preprocessor=None)
    model = tfsal.Model(classifier)
    paths = model.attention_layers()
    assert [p.rsplit("/", 2)[-2:] for p in paths] == [["transformer_block_1", "mha"],
                                                      ["transformer_block_2", "mha"]]
    images = np.random.default_rng(1).random((2, 32, 32, 3)).astype(np.float32)
    block = backbone.get_layer("vit_encoder").encoder_layers[0]
    x = block.layer_norm_1(backbone.get_layer("vit_patching_and_embedding")(images))
    _, a = block.mha(x, x, return_attention_scores=True)
    np.testing.assert_allclose(attention_map(model, images, layer=0, head=1),
                               np.asarray(a)[:, 1, 0, 1:].reshape(2, 4, 4), rtol=1e-5,
                               atol=1e-6)
    for method in (attention_rollout, gradient_rollout):
        maps = method(model, images, 0)
        assert maps.shape == (2, 4, 4) and np.isfinite(maps).all() and maps.max() > 0
    assert all("call" not in vars(block.mha) for block in
               backbone.get_layer("vit_encoder").encoder_layers)


def test_the_users_model_is_untouched(two_layer):
    weights = [w.copy() for w in two_layer.get_weights()]
    before = np.asarray(two_layer(IMAGES))
    with tf.GradientTape() as tape:
        x = tf.constant(IMAGES)
        tape.watch(x)
        grad_before = np.asarray(tape.gradient(tf.reduce_sum(two_layer(x)[:, 1]), x))
    for method in ATTENTION_METHODS.values():
        assert np.isfinite(method(two_layer, IMAGES, 1)).all()
    assert all(np.array_equal(a, b) for a, b in zip(weights, two_layer.get_weights()))
    np.testing.assert_array_equal(np.asarray(two_layer(IMAGES)), before)
    with tf.GradientTape() as tape:
        x = tf.constant(IMAGES)
        tape.watch(x)
        grad_after = np.asarray(tape.gradient(tf.reduce_sum(two_layer(x)[:, 1]), x))
    np.testing.assert_array_equal(grad_after, grad_before)
    assert all("call" not in vars(layer) for layer in two_layer.layers)


def test_models_without_attention_layers_are_refused():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    cnn = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))
    for method in ATTENTION_METHODS.values():
        with pytest.raises(TfsalError, match="MultiHeadAttention"):
            method(cnn, IMAGES, 0)
    opaque = tfsal.Model(lambda x: tf.reduce_mean(x, axis=(1, 2)), output="logits")
    with pytest.raises(TfsalError, match="plain-gradient methods"):
        attention_rollout(opaque, IMAGES)


def test_bad_options_are_refused(two_layer):
    with pytest.raises(TfsalError, match="head index"):
        attention_map(two_layer, IMAGES, head=2)
    with pytest.raises(TfsalError, match="head_fusion"):
        attention_rollout(two_layer, IMAGES, head_fusion="median")
    with pytest.raises(TfsalError, match="residual"):
        attention_rollout(two_layer, IMAGES, residual=1.5)
    with pytest.raises(TfsalError, match="attention layers are: att1, att2"):
        attention_map(two_layer, IMAGES, layer="att3")
    with pytest.raises(TfsalError, match="tokens, channels"):
        token_grad_cam(two_layer, IMAGES, 0, layer="patches")


def test_token_grid_splits_prefix_tokens_from_the_patch_grid():
    from tfsal.methods.attention import token_grid

    assert token_grid(65, (64, 64)) == (1, (8, 8))
    assert token_grid(64, (64, 64)) == (0, (8, 8))
    assert token_grid(51, (32, 64)) == (1, (5, 10))
    with pytest.raises(TfsalError, match="prefix tokens"):
        token_grid(75, (64, 64))


# ---------------------------------------------------------------- the embedded ViT
@pytest.fixture(scope="module")
def vit():
    return tfsal.load_model("shapes-vit")


@pytest.fixture(scope="module")
def held_out():
    from tfsal.data import make_dataset

    return make_dataset(200, seed=2)  # the training script's held-out seed


def test_the_embedded_vit_classifies_held_out_shapes(vit, held_out):
    accuracy = float(np.mean(vit.predicted_classes(held_out.images) == held_out.labels))
    assert accuracy >= 0.8, accuracy


def test_rollouts_of_the_embedded_vit_put_more_mass_on_the_object_than_a_uniform_map(
        vit, held_out):
    from tfsal.metrics import mass_inside
    from tfsal.visualize import upsample

    images, masks = held_out.images[:100], held_out.masks[:100]
    uniform = mass_inside(np.ones(masks.shape), masks).mean()
    for method in (attention_rollout, gradient_rollout):
        maps = upsample(method(vit, images), images.shape[1:3])
        inside = mass_inside(maps, masks).mean()
        assert inside > uniform + 0.05, (method.__name__, inside, uniform)


def test_the_command_explains_a_vit_with_the_attention_methods_by_name(vit, tmp_path):
    from PIL import Image

    from tfsal.cli import main
    from tfsal.data import make_dataset
    from tfsal.methods import METHODS, NAMES, resolve_method

    assert resolve_method("Token-Grad-CAM") == "token_grad_cam"
    assert METHODS["attention_rollout"] is attention_rollout
    assert "gradient_rollout" in METHODS and "gradient_rollout" not in list(METHODS)
    assert not set(NAMES) & {"attention_map", "attention_rollout"}  # not in --method all
    pixels = (make_dataset(1, seed=9).images[0] * 255).round().astype(np.uint8)
    Image.fromarray(pixels).save(tmp_path / "one.png")
    out = tmp_path / "out"
    assert main(["explain", str(tmp_path / "one.png"), "--model", "shapes-vit", "--method",
                 "attention_rollout", "--method", "gradient_rollout", "--out", str(out)]) == 0
    image = (pixels / 255.0).astype(np.float32)[None]
    for name, method in (("attention_rollout", attention_rollout),
                         ("gradient_rollout", gradient_rollout)):
        [npy] = out.glob(f"*/one.png.{name}.class*.npy")
        target = int(npy.name.rsplit("class", 1)[1].split(".")[0])
        np.testing.assert_allclose(np.load(npy), method(vit, image, target)[0], rtol=1e-5,
                                   atol=1e-7)
