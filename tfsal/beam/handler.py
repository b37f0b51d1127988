"""A `ModelHandler` for `apache_beam.ml.inference.base.RunInference` that explains images.

The handler ships the model's *source* (a name, a .keras file, a SavedModel or TF Serving
directory, a hub handle: anything `tfsal.load_model` accepts) and its load options, never
the model object: each worker loads it once (`load_model`), checks that the weights are the
ones the run fingerprint names (a model file replaced mid-run is an error, not a folder of
mixed maps), and keeps it for every batch. On GPU workers the loaded model is shared by the
worker's processes (`share_model_across_processes`), one copy on the device.

Batches are weighed by cost: an image's weight is the number of gradient passes its methods
take (`method_cost`: Integrated Gradients `steps`, SmoothGrad `n_samples` times the wrapped
method's), so a batch of IG-200 images holds fewer images than a batch of vanilla gradients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from tfsal.errors import TfsalError

# Gradient (or forward) passes per image of one call, beyond the parameters below.
_PASSES = {"guided_grad_cam": 2, "gradient_x_input": 1, "cam": 1}


def method_cost(name: str, options: dict | None = None) -> int:
    """Gradient passes one image costs with method `name` and `options` (≥ 1): Integrated
    Gradients and DeepLIFT-style path methods count `steps`, SmoothGrad and VarGrad
    `n_samples` times the wrapped method's cost.

    Example:
        >>> method_cost("integrated_gradients", {"steps": 32}), method_cost("smoothgrad")
        (32, 50)
    """
    from tfsal.methods import method_parameters, resolve_method

    name = resolve_method(name)
    options = dict(options or {})
    defaults = {key: p.default for key, p in method_parameters(name).items()}
    settings = {**defaults, **options}
    cost = _PASSES.get(name, 1)
    if "steps" in defaults:
        cost = max(1, int(settings["steps"]))
    if "n_samples" in defaults:
        wrapped = settings.get("method")
        wrapped = wrapped if isinstance(wrapped, str) else getattr(wrapped, "__name__",
                                                                   "vanilla_gradient")
        inner = {k: v for k, v in options.items() if k not in defaults}
        cost = max(1, int(settings["n_samples"])) * method_cost(wrapped, inner)
    return cost


@dataclass(frozen=True)
class Todo:
    """An image to explain: what `ExplainImages` hands RunInference."""

    key: str
    source: str
    sha256: str
    image: np.ndarray
    tags: tuple  # the method tags still missing for this image
    cost: int
    previous: dict | None = field(default=None, compare=False)


class Explainer:
    """The loaded model and what to compute with it: one call explains a batch of images of
    one size by the methods named, for every target the rule asks, with the metrics asked.
    Only arrays and plain values go in and out (on GPU workers the calls cross processes)."""

    def __init__(self, model, methods: dict, target_rule: str, metrics: tuple, fill):
        self.model, self.methods, self.target_rule = model, methods, target_rule
        self.metrics, self.fill = tuple(metrics), fill

    def describe(self) -> dict:
        return {"name": self.model.name, "input_size": self.model.input_size}

    def explain(self, images: np.ndarray, tags: tuple) -> list[dict]:
        """Per image: {"ranks": [{"target", "label", "probability", "maps": {tag: map},
        "scores": {tag: {metric: value}}}], "skipped": {tag: reason}}."""
        from tfsal.methods import METHODS
        from tfsal.runs import targets_for
        from tfsal.targets import class_label

        model = self.model
        probabilities = model.predict(images, score="probability")
        out = [{"ranks": [], "skipped": {}} for _ in images]
        for targets in targets_for(model, images, self.target_rule, scores=probabilities):
            ranks = [{"target": int(t), "label": class_label(model, t),
                      "probability": round(float(probabilities[i, t]), 6), "maps": {},
                      "scores": {}} for i, t in enumerate(targets)]
            for tag in tags:
                name, options = self.methods[tag]
                try:
                    maps = METHODS[name](model, images, targets, **_callable_options(options))
                except TfsalError as exc:  # e.g. CAM on a model without a GAP + dense head
                    for entry in out:
                        entry["skipped"][tag] = str(exc)
                    continue
                scores = self._scores(images, targets, maps)
                for i, rank in enumerate(ranks):
                    rank["maps"][tag] = np.asarray(maps[i])
                    rank["scores"][tag] = {metric: values[i] for metric, values in
                                           scores.items()}
            for entry, rank in zip(out, ranks):
                entry["ranks"].append(rank)
        return out

    def _scores(self, images, targets, maps) -> dict:
        """Per-image scores of `maps` with the existing metric functions (the reduction of
        `tfsal.evaluation`: abs-max over channels, CAM maps upsampled)."""
        from tfsal.beam.metrics import per_image_scores

        return per_image_scores(self.model, images, targets, maps, self.metrics,
                                fill=self.fill)


def _callable_options(options: dict) -> dict:
    """Options as shipped (a wrapped method by name) → as the method takes them."""
    if isinstance(options.get("method"), str):
        from tfsal.methods import METHODS, resolve_method

        return {**options, "method": METHODS[resolve_method(options["method"])]}
    return options


class TfsalModelHandler(ModelHandler):
    """Loads a tfsal model once per worker and explains batches of `Todo`s.

    Args:
        source: anything `tfsal.load_model` accepts by name or path (a built-in name, a .keras
            file, a SavedModel / TF Serving directory, `hub:<handle>`); the workers must
            reach it (a path on a shared file system, or packaged with the job).
        load_options: keyword arguments of `tfsal.load_model` (preprocess, score, output,
            batch_size, class_names, safe_mode, signature, ...), plain values only.
        custom_objects: a module name or .py file for `custom_objects_from`, or None.
        methods: {tag: (method name, options)} with wrapped methods given by name.
        target_rule: "top1", "top2", ... or a class index as text.
        metrics: per-image metrics to compute (`tfsal.beam.metrics.METRICS`).
        fill: deletion fill of the curve metrics.
        expected_digest: the weights digest of the run fingerprint; a worker whose model
            differs refuses to explain (None: not checked, for opaque callables).
        max_batch_size: images per batch at most (default: the model's batch_size).
        max_batch_weight: gradient passes per batch at most (`method_cost`).
        share_across_processes: True, False, or "auto" (share where the worker has a GPU).
    """

    def __init__(self, source: str, *, load_options: dict | None = None,
                 custom_objects: str | None = None, methods: dict, target_rule: str = "top1",
                 metrics=(), fill="black", expected_digest: str | None = None,
                 max_batch_size: int = 32, max_batch_weight: int = 32 * 64,
                 share_across_processes="auto"):
        if share_across_processes not in (True, False, "auto"):
            raise TfsalError(f"expected share_across_processes True, False or 'auto', "
                             f"received {share_across_processes!r}")
        if int(max_batch_size) < 1 or int(max_batch_weight) < 1:
            raise TfsalError(f"expected max_batch_size and max_batch_weight ≥ 1, received "
                             f"{max_batch_size} and {max_batch_weight}")
        super().__init__(min_batch_size=int(max_batch_size), max_batch_size=int(max_batch_size),
                         max_batch_weight=int(max_batch_weight), element_size_fn=_cost)
        self.source, self.load_options = str(source), dict(load_options or {})
        self.custom_objects, self.methods = custom_objects, dict(methods)
        self.target_rule, self.metrics, self.fill = target_rule, tuple(metrics), fill
        self.expected_digest, self.share = expected_digest, share_across_processes

    def load_model(self) -> Explainer:
        from tfsal.fingerprint import model_digest
        from tfsal.loading import custom_objects_from, load_model

        options = dict(self.load_options)
        if self.custom_objects is not None:
            options["custom_objects"] = custom_objects_from(self.custom_objects)
        model = load_model(self.source, **options)
        if self.expected_digest is not None:
            found = model_digest(model)
            if found != self.expected_digest:
                raise TfsalError(f"expected the model the run was fingerprinted with "
                                 f"(weights digest {self.expected_digest[:12]}…), received "
                                 f"{self.source} with digest {str(found)[:12]}…: the model "
                                 f"changed after the pipeline was built; run again to write "
                                 f"its maps to a new fingerprint folder")
        return Explainer(model, self.methods, self.target_rule, self.metrics, self.fill)

    def run_inference(self, batch, model, inference_args=None):
        """PredictionResult(todo, per-image result of `Explainer.explain`) for each image;
        images are grouped by size and by the methods they still miss."""
        results = [None] * len(batch)
        groups: dict = {}
        for i, todo in enumerate(batch):
            groups.setdefault((todo.image.shape, todo.tags), []).append(i)
        for (_, tags), members in groups.items():
            images = np.stack([batch[i].image for i in members])
            for i, result in zip(members, model.explain(images, tags)):
                results[i] = result
        return [PredictionResult(todo, result) for todo, result in zip(batch, results)]

    def get_num_bytes(self, batch) -> int:
        return sum(todo.image.nbytes for todo in batch)

    def get_metrics_namespace(self) -> str:
        return "tfsal"

    def share_model_across_processes(self) -> bool:
        """Share one loaded model between a worker's processes where it has a GPU ("auto"),
        so the device holds one copy; on CPU workers each process keeps its own. Decided on
        the worker, from the physical devices (listing them allocates no GPU memory)."""
        if self.share != "auto":
            return bool(self.share)
        return _has_gpu()

    def __repr__(self) -> str:
        return (f"TfsalModelHandler({self.source!r}, methods={list(self.methods)}, "
                f"target_rule={self.target_rule!r})")


def _cost(todo) -> int:
    return todo.cost


def _has_gpu() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))
