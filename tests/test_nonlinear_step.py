"""The nonlinear loop against an independent NumPy / SciPy re-implementation of its Methods
section, on a model whose sensitivity has a closed form.

The compiled loop and the step-by-step loop share `advance`, so comparing them with each other
cannot see a mistake inside it; here nothing is shared with tfsal. For softmax(x · W + b) the
sensitivity (the target column of the Jacobian) is ∂p_t/∂x = p_t · (W_t − Σ_k p_k · W_k).
"""

import keras
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

import tfsal

SIZE, CLASSES = 16, 4
SETTINGS = dict(levels=(0.0, 0.1, 0.3), steps_per_level=2, step_size=4.0, blur_sigma=1.0,
                background=0.9)


@pytest.fixture(scope="module")
def softmax_regression():
    keras.utils.set_random_seed(11)
    inp = keras.Input((SIZE, SIZE, 3))
    dense = keras.layers.Dense(CLASSES, activation="softmax")
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    kernel, bias = (w.astype(np.float64) for w in dense.get_weights())
    return model, kernel.reshape(SIZE, SIZE, 3, CLASSES), bias


def probabilities(x, kernel, bias):
    logits = np.einsum("nhwc,hwck->nk", x.astype(np.float64), kernel) + bias
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sensitivity(x, targets, kernel, bias):
    """∂p_t/∂x = p_t (W_t − Σ_k p_k W_k), (N, H, W, 3)."""
    p = probabilities(x, kernel, bias)
    mean_w = np.einsum("nk,hwck->nhwc", p, kernel)
    rows = np.arange(len(x))
    return p[rows, targets][:, None, None, None] * (np.moveaxis(kernel[..., targets], -1, 0)
                                                    - mean_w)


def step(x, s, level, sigma, h, background):
    """One step of the paper's loop: blur / mask the round(level · H · W) pixels of lowest
    ‖s‖ (ties by position), add h · s, clip to [0, 1]."""
    norm = np.sqrt((s**2).sum(axis=-1)).reshape(len(x), -1)
    count = int(np.round(level * norm.shape[1]))
    ranks = np.argsort(np.argsort(norm, axis=1, kind="stable"), axis=1, kind="stable")
    below = (ranks < count).reshape(x.shape[:3])[..., None]
    blurred = gaussian_filter(x, sigma=(0, sigma, sigma, 0), mode="reflect", truncate=4.0)
    image = np.clip(np.where(below, blurred, x) + h * s, 0, 1)
    image_map = np.clip(np.where(below, background, x) + h * s, 0, 1)
    return image, image_map, ~below[..., 0]


def numpy_trajectory(x, targets, kernel, bias, *, linear=False):
    levels, steps = SETTINGS["levels"], SETTINGS["steps_per_level"]
    frozen = sensitivity(x, targets, kernel, bias)
    image, image_map = x.astype(np.float64), x.astype(np.float64)
    probs, fractions, snaps, maps, kept_snaps, seen = [], [], [], [], [], []
    for level in levels:
        for _ in range(steps):
            probs.append(probabilities(image, kernel, bias))
            seen.append((image, image_map))
            s = frozen if linear else sensitivity(image, targets, kernel, bias)
            image, image_map, kept = step(image, s, level, SETTINGS["blur_sigma"],
                                          SETTINGS["step_size"], SETTINGS["background"])
            fractions.append(1 - kept.mean(axis=(1, 2)))
        snaps.append(image)
        maps.append(image_map)
        kept_snaps.append(kept)
    probs.append(probabilities(image, kernel, bias))
    seen.append((image, image_map))
    probs = np.stack(probs, axis=1)
    target_p = probs[np.arange(len(x)), :, targets]
    best = target_p.argmax(axis=1)  # the first maximum: the earliest step on ties
    rows = np.arange(len(x))
    return dict(probabilities=probs, blurred_fraction=np.stack(fractions, axis=1),
                images=np.stack(snaps, axis=1), maps=np.stack(maps, axis=1),
                kept=np.stack(kept_snaps, axis=1), best_step=best,
                best_image=np.stack([seen[b][0][i] for i, b in zip(rows, best)]),
                best_map=np.stack([seen[b][1][i] for i, b in zip(rows, best)]))


def assert_trajectory(got, want):
    for field in ("probabilities", "blurred_fraction", "images", "maps", "best_image",
                  "best_map"):
        np.testing.assert_allclose(getattr(got, field), want[field], rtol=1e-4, atol=2e-5,
                                   err_msg=field)
    np.testing.assert_array_equal(got.kept, want["kept"])
    np.testing.assert_array_equal(got.best_step, want["best_step"])


@pytest.fixture
def images():
    rng = np.random.default_rng(12)
    return rng.uniform(0.1, 0.9, (3, SIZE, SIZE, 3)).astype(np.float32)


TARGETS = np.array([0, 2, 3])


def test_compiled_loop_follows_the_methods_section(softmax_regression, images):
    model, kernel, bias = softmax_regression
    want = numpy_trajectory(images, TARGETS, kernel, bias)
    # the data reaches what the loop does: blurring, clipping, a best step at the very end
    assert (want["images"] == 0).any() or (want["images"] == 1).any()
    assert (want["best_step"] == 3 * 2).any()
    got = tfsal.nonlinear_saliency(tfsal.Model(model, batch_size=8), images, TARGETS,
                                   **SETTINGS)
    assert_trajectory(got, want)


def test_step_by_step_loop_follows_the_methods_section(softmax_regression, images):
    """The Python loop, driven by the closed-form sensitivity (not tfsal's gradient)."""
    model, kernel, bias = softmax_regression

    def closed_form(m, x, t):
        return sensitivity(np.asarray(x), np.asarray(t), kernel, bias).astype(np.float32)

    got = tfsal.nonlinear_saliency(tfsal.Model(model, batch_size=8), images, TARGETS,
                                   sensitivity=closed_form, **SETTINGS)
    assert_trajectory(got, numpy_trajectory(images, TARGETS, kernel, bias))


def test_linear_loop_freezes_the_sensitivity_at_the_original_image(softmax_regression, images):
    model, kernel, bias = softmax_regression
    want = numpy_trajectory(images, TARGETS, kernel, bias, linear=True)
    got = tfsal.nonlinear_saliency(tfsal.Model(model, batch_size=8), images, TARGETS,
                                   linear=True, **SETTINGS)
    assert_trajectory(got, want)
    nonlinear = numpy_trajectory(images, TARGETS, kernel, bias)
    assert not np.allclose(want["images"], nonlinear["images"], atol=1e-3)
