"""Real ImageNet architectures (weights=None) at realistic sizes: the methods run and agree with
the reference facts (logits, last convolutional layer). Slow, but CI runs them."""

import keras
import numpy as np
import pytest

import tfsal

ARCHITECTURES = [
    # constructor, input size, preprocessing, last conv layer (REFERENCE.md)
    (keras.applications.VGG16, 64, "caffe", "block5_conv3"),
    (keras.applications.ResNet50, 128, "caffe", "conv5_block3_out"),
    (keras.applications.Xception, 71, "tf", "block14_sepconv2_act"),
    (keras.applications.InceptionV3, 139, "tf", "mixed10"),
]


@pytest.mark.slow
@pytest.mark.parametrize("build, size, preprocess, last_conv", ARCHITECTURES,
                         ids=[a[0].__name__ for a in ARCHITECTURES])
def test_methods_run_on_imagenet_architectures(build, size, preprocess, last_conv):
    keras.utils.set_random_seed(0)
    user = build(weights=None, input_shape=(size, size, 3))
    model = tfsal.Model(user, preprocess=preprocess, batch_size=4)
    images = np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32)

    logits = model.predict(images)
    probs = model.predict(images, score="probability")
    np.testing.assert_allclose(probs, np.asarray(user(model._preprocess(images))), atol=1e-5)
    np.testing.assert_allclose(probs, np.exp(logits) / np.exp(logits).sum(1, keepdims=True),
                               atol=1e-5)

    assert model.resolve_layer(None) == last_conv
    targets = [1, 998]
    grads = tfsal.vanilla_gradient(model, images, targets)
    ig = tfsal.integrated_gradients(model, images, targets, steps=4)
    cams = tfsal.grad_cam(model, images, targets)
    for maps in (grads, ig):
        assert maps.shape == images.shape and np.isfinite(maps).all() and np.abs(maps).sum() > 0
    feature = user.get_layer(last_conv).output.shape
    assert cams.shape == (2, feature[1], feature[2]) and np.isfinite(cams).all()
    # one batch of two equals the two images one at a time
    np.testing.assert_allclose(grads[1:], tfsal.vanilla_gradient(model, images[1:], 998),
                               rtol=1e-3, atol=1e-6)
