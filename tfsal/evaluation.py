"""One metric, several methods, a set of images: results as CSV + JSON and a plot.

This is what `tfsal evaluate` runs; it only composes methods, metrics and plots. Maps are made
comparable across methods before scoring: pixel maps are reduced over channels (default
"abs-max", the signed-maps paper's standard map), CAM-family maps upsampled to the image.

Metrics:
- allegiance / deletion / insertion: curves over the deletion fractions (AUC per method);
- background: fraction of |attribution| outside the object mask (needs masks: generated data);
- total_variation: total variation of each map scaled to max |value| 1 (scale-free);
- signed: the signed-maps paper's black/white-deletion table (methods are not used).

- shift: `input_shift_invariance`, how far each method's maps move for a shifted-input model.

Experiments that retrain the embedded architecture on generated data (`tfsal.experiments`;
minutes, not seconds):
- patch: `random_patch_experiment`, share of each map's mass in the training patch's corner;
- roar: `roar_kar`, accuracy after removing / keeping each method's top pixels (Table 1).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsal import plots, visualize
from tfsal.errors import TfsalError
from tfsal.files import atomic_write, save_json
from tfsal.loading import as_model
from tfsal.methods import METHODS, resolve_method
from tfsal.metrics import (
    Curve,
    allegiance_curve,
    deletion_curve,
    insertion_curve,
    mass_inside,
    total_variation,
)

CURVES = {"allegiance": allegiance_curve, "deletion": deletion_curve,
          "insertion": insertion_curve}
SCORES = ("background", "total_variation")
MAP_METRICS = (*CURVES, *SCORES, "signed", "shift")  # maps of given images
METRICS = (*MAP_METRICS, "patch", "roar")  # the last two retrain: evaluate_patch, _roar


@dataclass(frozen=True)
class Evaluation:
    """What `evaluate` computed and wrote.

    Attributes:
        metric: the metric's name.
        summary: {method (or signed-map row): {statistic: value}} — "auc" for curves, median and
            quartiles for per-image scores.
        files: the CSV, JSON and plot files written.
    """

    metric: str
    summary: dict
    files: tuple


def evaluate(model, images, metric: str, *, methods=("vanilla_gradient",), masks=None,
             fill="black", reduction: str = "abs-max", out) -> Evaluation:
    """Score each method's maps of `images` with `metric` and write results.csv/json and a plot.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1]; the predicted class is explained.
        metric: one of `MAP_METRICS`.
        methods: method names from `tfsal.METHODS`.
        masks: (N, H, W) object masks, needed by "background".
        fill: deletion fill for the curve metrics ("black", "white" or a number).
        reduction: channel reduction of pixel maps (`visualize.REDUCTIONS`).
        out: output folder.

    Returns:
        an `Evaluation`.

    Raises:
        TfsalError: for an unknown metric or method, or missing masks.

    Example:
        >>> evaluate("shapes-cnn", data.images, "deletion", methods=["vanilla", "rectgrad"],
        ...          out="eval")
    """
    if metric not in MAP_METRICS:
        raise TfsalError(f"expected a metric in {MAP_METRICS} (patch and roar retrain: "
                         f"evaluate_patch, evaluate_roar), received {metric!r}")
    methods = [resolve_method(m) for m in methods]  # canonical names key the results
    if metric == "background" and masks is None:
        raise TfsalError("expected object masks for the background metric (generated data, "
                         "the bundled photos' object_masks, or your own: tfsal evaluate "
                         "--masks DIR), received none")
    if reduction not in visualize.REDUCTIONS:
        raise TfsalError(f"expected reduction in {visualize.REDUCTIONS}, received {reduction!r}")
    model = as_model(model)
    out = Path(out)
    if metric == "signed":
        return _signed(model, images, out)
    if metric == "shift":
        return _shift(model, images, methods, out)
    targets = model.predicted_classes(images)
    maps = {name: comparable(METHODS[name](model, images, targets), images, reduction)
            for name in methods}
    if metric in CURVES:
        return _curves(model, images, targets, maps, metric, fill, out)
    return _scores(maps, metric, masks, out)


def comparable(attributions: np.ndarray, images: np.ndarray,
               reduction: str = "abs-max") -> np.ndarray:
    """(N, H, W) maps at image resolution, as every metric here scores them."""
    if attributions.ndim == 3:  # CAM family: (N, h, w) feature-map resolution
        return visualize.upsample(attributions, images.shape[1:3])
    return visualize.reduce_channels(attributions, reduction)


def _curves(model, images, targets, maps, metric, fill, out) -> Evaluation:
    score = CURVES[metric]
    curves = {name: (score(model, images, m, fill=fill) if metric == "allegiance"
                     else score(model, images, m, targets, fill=fill))
              for name, m in maps.items()}
    rows = [(name, float(f), float(v)) for name, c in curves.items()
            for f, v in zip(c.fractions, c.values)]
    summary = {name: {"auc": float(c.auc)} for name, c in curves.items()}
    ylabel = "allegiance" if metric == "allegiance" else "target probability"
    plot = plots.curve_plot(curves, out / f"{metric}.png", ylabel=ylabel,
                            title=f"{metric} ({fill} fill), {model.name}",
                            xlabel="fraction inserted" if metric == "insertion"
                            else "fraction deleted")
    return _write(metric, summary, ("method", "fraction", "value"), rows, out, plot,
                  extra={"fill": fill, "n_images": len(images)})


def _scores(maps, metric, masks, out) -> Evaluation:
    values = {}
    for name, m in maps.items():
        if metric == "background":
            values[name] = 1.0 - mass_inside(m, masks)
        else:
            values[name] = scaled_total_variation(m)
    rows = [(name, i, float(v)) for name, vals in values.items() for i, v in enumerate(vals)]
    summary = {name: _statistics(v) for name, v in values.items()}
    ylabel = ("fraction of |attribution| outside the object" if metric == "background"
              else "total variation (map scaled to max 1)")
    plot = plots.box_plot(values, out / f"{metric}.png", ylabel=ylabel, title=metric)
    n_images = len(next(iter(values.values())))
    return _write(metric, summary, ("method", "image", "value"), rows, out, plot,
                  extra={"n_images": n_images})


def scaled_total_variation(maps: np.ndarray) -> np.ndarray:
    """(N,) total variation of (N, H, W) maps each scaled to max |value| 1."""
    scale = np.abs(maps).reshape(len(maps), -1).max(axis=1)
    return total_variation(maps / np.where(scale > 0, scale, 1)[:, None, None])


def _signed(model, images, out) -> Evaluation:
    from tfsal.reproduce import signed_saliency

    table = signed_saliency.deletion_table(model, images)
    rows = [(f"{fill}/{kind}", float(f), float(v)) for (fill, kind), c in table.curves.items()
            for f, v in zip(c.fractions, c.values)]
    summary = {f"{fill}/{kind}": {"auc": float(c.auc)} for (fill, kind), c in
               table.curves.items()}
    figures = signed_saliency.curves_figures(table, out)
    return _write("signed", summary, ("map", "fraction", "value"), rows, out, *figures,
                  extra={"n_images": len(images),
                         "claim": {f"{f}/{k}": bool(v) for (f, k), v in table.claim().items()}})


def _shift(model, images, methods, out, shift: float = 0.1) -> Evaluation:
    from tfsal.metrics import input_shift_invariance

    results = {name: input_shift_invariance(model, images, name, shift,
                                            method_kwargs={"seed": 0} if name in
                                            ("smoothgrad", "vargrad") else None)
               for name in methods}
    values = {name: r.relative_l2 for name, r in results.items()}
    rows = [(name, i, float(v)) for name, vals in values.items() for i, v in enumerate(vals)]
    summary = {name: {**_statistics(r.relative_l2), "invariant": bool(r.invariant),
                      "logit_error": float(r.logit_error.max())}
               for name, r in results.items()}
    plot = plots.box_plot(values, out / "shift.png", title=f"input shift +{shift}",
                          ylabel="relative L2 change of the map")
    return _write("shift", summary, ("method", "image", "value"), rows, out, plot,
                  extra={"shift": shift, "n_images": len(images)})


def evaluate_patch(methods, *, n_train: int, n_eval: int, epochs: int, out,
                   seed: int = 0) -> Evaluation:
    """`random_patch_experiment`: train on patched generated data, score every method's maps
    in the patch's corner; results.csv/json and a box plot of the corner's share of the mass."""
    from tfsal.experiments import TrainingRecipe, random_patch_experiment

    result = random_patch_experiment(list(methods), n_train=n_train, n_eval=n_eval,
                                     trainer=TrainingRecipe(epochs=epochs, progress=True),
                                     seed=seed, progress=True)
    values = dict(zip(result.methods, result.patch_fraction))
    rows = [(name, i, float(v)) for name, vals in values.items() for i, v in enumerate(vals)]
    summary = {name: _statistics(v) for name, v in values.items()}
    out = Path(out)
    plot = plots.box_plot(values, out / "patch.png", title="random-patch occlusion",
                          ylabel="share of |attribution| in the patch")
    return _write("patch", summary, ("method", "image", "value"), rows, out, plot,
                  extra={"accuracy": result.accuracy, "n_train": n_train, "n_eval": n_eval,
                         "epochs": epochs})


def evaluate_roar(model, methods, *, n_train: int, n_test: int, epochs: int, repeats: int,
                  out, seed: int = 0, fractions=None) -> Evaluation:
    """`roar_kar` on generated data (train stream 1, test stream 2) with `model`'s maps;
    results.csv/json (ROAR AUC, KAR AOC per method) and the two accuracy curves.
    `fractions`: removed (ROAR) / kept (KAR); None: `tfsal.experiments.roar.FRACTIONS`."""
    from tfsal.data import make_dataset
    from tfsal.experiments import TrainingRecipe, roar_kar
    from tfsal.experiments.roar import FRACTIONS

    model = as_model(model)
    size = model.input_size[0] if model.input_size else 64
    result = roar_kar(list(methods), train=make_dataset(n_train, size=size, seed=1),
                      test=make_dataset(n_test, size=size, seed=2),
                      trainer=TrainingRecipe(epochs=epochs), repeats=repeats, seed=seed,
                      model=model, progress=True,
                      fractions=FRACTIONS if fractions is None else fractions)
    rows = [(name, mode, float(f), r, float(acc))
            for mode, table in (("roar", result.roar), ("kar", result.kar))
            for name, per_fraction in zip(result.methods, table)
            for f, accs in zip(result.fractions, per_fraction) for r, acc in enumerate(accs)]
    summary = {name: {"roar_auc": float(a), "kar_aoc": float(b)}
               for name, a, b in zip(result.methods, result.roar_auc, result.kar_aoc)}
    out = Path(out)
    figures = []
    for mode, table, area in (("roar", result.roar, result.roar_auc),
                              ("kar", result.kar, result.kar_aoc)):
        curves = {name: Curve(result.fractions, np.nanmean(t, axis=1), float(a), t)
                  for name, t, a in zip(result.methods, table, area)}
        figures.append(plots.curve_plot(
            curves, out / f"{mode}.png", title=f"{mode.upper()} ({n_train} training images)",
            xlabel="fraction removed" if mode == "roar" else "fraction kept",
            ylabel="test accuracy"))
    return _write("roar", summary, ("method", "mode", "fraction", "repeat", "accuracy"), rows,
                  out, *figures, extra={"clean_accuracy": result.clean_accuracy.tolist(),
                                        "chance_accuracy": result.chance_accuracy,
                                        "model_accuracy": result.model_accuracy,
                                        "settings": result.settings})


def _statistics(values: np.ndarray) -> dict:
    q1, median, q3 = np.nanpercentile(values, [25, 50, 75])
    return {"median": float(median), "q1": float(q1), "q3": float(q3),
            "mean": float(np.nanmean(values))}


def _write(metric, summary, header, rows, out, *plots_written, extra=None) -> Evaluation:
    """results.csv (long format) and results.json next to the plots."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_write(out / "results.csv") as handle:
        handle.write(text.getvalue().encode())
    payload = {"metric": metric, **(extra or {}), "summary": summary}
    save_json(payload, out / "results.json")
    files = (out / "results.csv", out / "results.json", *plots_written)
    return Evaluation(metric, summary, tuple(files))
