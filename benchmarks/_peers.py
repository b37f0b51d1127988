"""The peer libraries, each wrapped as one callable per method with tfsal's conventions.

Every peer gets the same flat pixel-space logits model (`_models.pixel_logits`): pixels in
[0, 1], preprocessing inside, no softmax. Each wrapper calls the peer's public API the way its
documentation shows, with the settings that match tfsal's (the same layer for Grad-CAM, the
same number of samples / steps, noise as a fraction of the image's range, a black baseline,
raw signed maps wherever the peer offers them, batching at the floor's best batch size where
the peer has a batch size). `Impl.call` is what is timed: the peer's public call for one batch
of images and one integer target. `Impl.raw` returns the peer's numbers in tfsal's convention
for the numerical comparison; where it differs from `call` the note says how.

A peer (or one of its methods) that fails on a Keras 3 model is kept with the exact error,
never dropped silently.
"""

from __future__ import annotations

import importlib.metadata
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

METHODS = ("vanilla_gradient", "smoothgrad", "integrated_gradients", "grad_cam",
           "guided_backprop")
PEERS = ("tf-keras-vis", "xplique", "saliency", "tf-explain")


@dataclass
class Impl:
    """One library's implementation of one method, set up for one model.

    call(images, target) -> anything: the public call that is timed.
    raw(images, target) -> np.ndarray: numbers in tfsal's convention (default: `call`).
    """

    call: Callable
    raw: Callable | None = None
    note: str = ""
    reference: Callable | None = None  # tfsal's map -> the peer's convention (e.g. abs)
    schedule: str | None = None  # IG: the tfsal schedule equal to the peer's quadrature rule
    setup_seconds: float = 0.0  # constructing the explainer (part of the first-call cost)

    def numbers(self, images, target):
        return np.asarray((self.raw or self.call)(images, target), np.float32)


@dataclass
class Peer:
    name: str
    version: str = "—"
    impls: dict = field(default_factory=dict)  # method -> Impl
    missing: dict = field(default_factory=dict)  # method -> why there is none / the error
    error: str | None = None  # the whole library failed (import or setup)


def short_error(exc: BaseException) -> str:
    """`Type: message` (ANSI codes stripped, lines joined, cut at 300 characters) plus the
    innermost frame in an installed package."""
    import re

    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if "site-packages" in frame.filename:
            where = f" (at {frame.filename.split('site-packages/')[-1]}:{frame.lineno})"
            break
    message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    message = " ".join(line.strip() for line in message.splitlines() if line.strip())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(exc).__name__}: {message}{where}"


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _try(peer: Peer, method: str, make: Callable[[], Impl], setup: dict) -> None:
    """Set up `method` (unless `setup["methods"]` leaves it out); keep the error if it fails."""
    import time

    if method not in setup.get("methods", METHODS):
        return
    try:
        start = time.perf_counter()
        impl = make()
        impl.setup_seconds = time.perf_counter() - start
        peer.impls[method] = impl
    except Exception as exc:  # a peer failing on Keras 3 is a result, reported verbatim
        peer.missing[method] = short_error(exc)


# ---------------------------------------------------------------------------- tf-keras-vis
def tf_keras_vis(model, setup: dict) -> Peer:
    peer = Peer("tf-keras-vis", version("tf-keras-vis"))
    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.scores import CategoricalScore
    except Exception as exc:
        peer.error = short_error(exc)
        return peer
    n, sigma, layer = setup["n_path"], setup["noise_level"], setup["layer"]

    def saliency():
        explainer = Saliency(model, clone=False)
        return lambda x, t, **kw: explainer(CategoricalScore([t] * len(x)), x, keepdims=True,
                                            gradient_modifier=None, normalize_map=False, **kw)

    def vanilla():
        run = saliency()
        return Impl(lambda x, t: run(x, t), note="gradient_modifier=None, keepdims=True, "
                    "normalize_map=False: the raw signed gradient")

    def smooth():
        run = saliency()
        return Impl(lambda x, t: run(x, t, smooth_samples=n, smooth_noise=sigma),
                    note=f"smooth_samples={n}, smooth_noise={sigma} (fraction of the range, as "
                    "tfsal); one sample per call, eager")

    def gradcam():
        explainer = Gradcam(model, clone=False)
        return Impl(lambda x, t: explainer(CategoricalScore([t] * len(x)), x,
                                           penultimate_layer=layer,
                                           seek_penultimate_conv_layer=False,
                                           expand_cam=False, normalize_cam=False),
                    note="expand_cam=False, normalize_cam=False: ReLU(Σ α_k A_k) at the "
                    "layer's resolution")

    _try(peer, "vanilla_gradient", vanilla, setup)
    _try(peer, "smoothgrad", smooth, setup)
    _try(peer, "grad_cam", gradcam, setup)
    peer.missing.setdefault("integrated_gradients", "not offered")
    peer.missing.setdefault("guided_backprop", "not offered")
    return peer


# ---------------------------------------------------------------------------- xplique
def xplique(model, setup: dict) -> Peer:
    peer = Peer("xplique", version("xplique"))
    try:
        from xplique.attributions import (
            GradCAM,
            GuidedBackprop,
            IntegratedGradients,
            Saliency,
            SmoothGrad,
        )
    except Exception as exc:
        peer.error = short_error(exc)
        return peer
    n, sigma, layer, batch = (setup["n_path"], setup["noise_level"], setup["layer"],
                              setup["batch_size"])
    classes = model.output_shape[-1]

    def one_hot(x, t):
        return tf.one_hot(np.full(len(x), t), classes)

    def wrap(explainer, note, **options):
        return Impl(lambda x, t: explainer.explain(x, one_hot(x, t)).numpy(), note=note,
                    **options)

    def vanilla():
        explainer = Saliency(model, reducer=None, batch_size=batch)
        return wrap(explainer, "Saliency(reducer=None) returns |∂S/∂x|: compared with tfsal's "
                    "|gradient|", reference=np.abs)

    def smooth():
        # xplique's noise is an absolute σ; tfsal's is a fraction of the image's range
        explainer = SmoothGrad(model, reducer=None, nb_samples=n, noise=sigma, batch_size=batch)
        return wrap(explainer, f"nb_samples={n}, noise={sigma} (σ absolute; images span [0, 1])")

    def integrated():
        explainer = IntegratedGradients(model, reducer=None, steps=n, baseline_value=0.0,
                                        batch_size=batch)
        return wrap(explainer, f"steps={n}, baseline_value=0 (black), trapezoid rule on "
                    f"linspace(0, 1, {n})", schedule="trapezoid")

    def gradcam():
        explainer = GradCAM(model, conv_layer=layer, batch_size=batch)
        size = model.input_shape[1:3]

        def resized(maps):  # what xplique does to its maps, applied to tfsal's
            return tf.image.resize(maps[..., None], size, method="bicubic").numpy()
        return wrap(explainer, "output resized to the image by bicubic interpolation: compared "
                    "with tfsal's map resized the same way", reference=resized)

    def guided():
        explainer = GuidedBackprop(model, reducer=None, batch_size=batch)
        return wrap(explainer, "reducer=None: raw signed guided gradient")

    _try(peer, "vanilla_gradient", vanilla, setup)
    _try(peer, "smoothgrad", smooth, setup)
    _try(peer, "integrated_gradients", integrated, setup)
    _try(peer, "grad_cam", gradcam, setup)
    _try(peer, "guided_backprop", guided, setup)
    return peer


# ---------------------------------------------------------------------------- saliency (PAIR)
def pair_saliency(model, setup: dict) -> Peer:
    peer = Peer("saliency", version("saliency"))
    try:
        import saliency.core as sal
    except Exception as exc:
        peer.error = short_error(exc)
        return peer
    n, sigma, layer, batch = (setup["n_path"], setup["noise_level"], setup["layer"],
                              setup["batch_size"])
    h, w = model.input_shape[1:3]
    # The user writes call_model_function; we compile it (as a careful user would), with a
    # relaxed batch dimension and the class as a tensor, so it never retraces.
    spec = [tf.TensorSpec([None, h, w, 3], tf.float32), tf.TensorSpec([], tf.int32)]

    @tf.function(input_signature=spec)
    def input_gradients(x, t):
        with tf.GradientTape() as tape:
            tape.watch(x)
            score = tf.reduce_sum(model(x)[:, t])
        return tape.gradient(score, x)

    try:
        conv_model = tf.keras.Model(model.inputs, [model.get_layer(layer).output, model.output])
    except Exception as exc:
        conv_model = None
        conv_error = short_error(exc)

    @tf.function(input_signature=spec)
    def conv_gradients(x, t):
        with tf.GradientTape() as tape:
            features, out = conv_model(x)
            score = tf.reduce_sum(out[:, t])
        return features, tape.gradient(score, features)

    def call_model_function(x, call_model_args=None, expected_keys=None):
        x = tf.constant(np.asarray(x, np.float32))
        t = tf.constant(call_model_args["class_idx"], tf.int32)
        if expected_keys == [sal.base.INPUT_OUTPUT_GRADIENTS]:
            return {sal.base.INPUT_OUTPUT_GRADIENTS: input_gradients(x, t).numpy()}
        features, grads = conv_gradients(x, t)
        return {sal.base.CONVOLUTION_LAYER_VALUES: features.numpy(),
                sal.base.CONVOLUTION_OUTPUT_GRADIENTS: grads.numpy()}

    def per_image(mask):  # the core API explains one unbatched image per call
        return lambda x, t: np.stack([mask(image, {"class_idx": int(t)}) for image in x])

    def vanilla():
        method = sal.GradientSaliency()
        return Impl(per_image(lambda i, a: method.GetMask(i, call_model_function, a)),
                    note="core.GradientSaliency with a compiled call_model_function")

    def smooth():
        method = sal.GradientSaliency()
        return Impl(per_image(lambda i, a: method.GetSmoothedMask(
            i, call_model_function, a, stdev_spread=sigma, nsamples=n)),
            note=f"GetSmoothedMask(stdev_spread={sigma}, nsamples={n}): one sample per call")

    def integrated():
        method = sal.IntegratedGradients()
        return Impl(per_image(lambda i, a: method.GetMask(
            i, call_model_function, a, x_baseline=np.zeros_like(i), x_steps=n,
            batch_size=batch)),
            note=f"x_steps={n}, black baseline, batch_size={batch}; rule: linspace(0, 1, {n}) "
            f"with weights 1/{n}")

    def gradcam():
        if conv_model is None:
            raise RuntimeError(conv_error)
        method = sal.GradCam()
        return Impl(per_image(lambda i, a: method.GetMask(
            i, call_model_function, a, should_resize=False, three_dims=False)),
            note="should_resize=False, three_dims=False: ReLU(Σ α_k A_k) at the layer's "
            "resolution")

    _try(peer, "vanilla_gradient", vanilla, setup)
    _try(peer, "smoothgrad", smooth, setup)
    _try(peer, "integrated_gradients", integrated, setup)
    _try(peer, "grad_cam", gradcam, setup)
    _try(peer, "guided_backprop", lambda: _pair_guided_backprop(model), setup)
    return peer


def _pair_guided_backprop(model) -> Impl:
    """saliency.tf1.GuidedBackprop needs the model as a TF1 graph with a session."""
    import saliency.tf1 as sal1

    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, (None,) + tuple(model.input_shape[1:]))
        y = model(x)[:, 0]
        session = tf.compat.v1.Session(graph=graph)
        method = sal1.GuidedBackprop(graph, session, y, x)
    return Impl(lambda images, t: np.stack([method.GetMask(i, feed_dict={}) for i in images]))


# ---------------------------------------------------------------------------- tf-explain
def tf_explain(model, setup: dict) -> Peer:
    peer = Peer("tf-explain", version("tf-explain"))
    try:
        from tf_explain.core.grad_cam import GradCAM
        from tf_explain.core.integrated_gradients import IntegratedGradients
        from tf_explain.core.smoothgrad import SmoothGrad
        from tf_explain.core.vanilla_gradients import VanillaGradients
    except Exception as exc:
        peer.error = short_error(exc)
        return peer
    n, sigma, layer = setup["n_path"], setup["noise_level"], setup["layer"]

    def vanilla():
        explainer = VanillaGradients()
        return Impl(lambda x, t: explainer.explain((x, None), model, t),
                    raw=lambda x, t: explainer.compute_gradients(x, model, t).numpy(),
                    note="explain() returns a normalised grayscale grid; compared: its "
                    "compute_gradients (raw ∂S/∂x)")

    def smooth():
        explainer = SmoothGrad()
        return Impl(lambda x, t: explainer.explain((x, None), model, t, num_samples=n,
                                                   noise=sigma),
                    note=f"num_samples={n}, noise={sigma} (absolute σ); differentiates "
                    "categorical cross-entropy of the outputs, not a class score")

    def integrated():
        explainer = IntegratedGradients()

        def raw(x, t):
            paths = explainer.generate_interpolations(np.asarray(x), n)
            mean_grad = explainer.get_integrated_gradients(paths, model, t, n).numpy()
            return mean_grad * x  # tf-explain omits the (x − baseline) factor; baseline = 0
        return Impl(lambda x, t: explainer.explain((x, None), model, t, n_steps=n), raw=raw,
                    note=f"n_steps={n}, zero baseline, linspace(0, 1, {n}) with weights 1/{n}, "
                    "all points in one batch; returns the mean path gradient without the "
                    "(x − baseline) factor: compared after multiplying by x")

    def gradcam():
        explainer = GradCAM()

        def raw(x, t):
            outputs, grads = explainer.get_gradients_and_filters(model, x, layer, t, False)
            cams = explainer.generate_ponderated_output(outputs, grads)
            return np.maximum(np.stack([c.numpy() for c in cams]), 0)
        return Impl(lambda x, t: explainer.explain((x, None), model, t, layer_name=layer,
                                                   use_guided_grads=False), raw=raw,
                    note="use_guided_grads=False; explain() returns a colour overlay; "
                    "compared: ReLU of its ponderated output")

    _try(peer, "vanilla_gradient", vanilla, setup)
    _try(peer, "smoothgrad", smooth, setup)
    _try(peer, "integrated_gradients", integrated, setup)
    _try(peer, "grad_cam", gradcam, setup)
    peer.missing.setdefault("guided_backprop", "not offered (only guided Grad-CAM weights)")
    return peer


FACTORIES = {"tf-keras-vis": tf_keras_vis, "xplique": xplique, "saliency": pair_saliency,
             "tf-explain": tf_explain}


def load_peers(model, setup: dict, names=PEERS) -> list[Peer]:
    return [FACTORIES[name](model, setup) for name in names]
