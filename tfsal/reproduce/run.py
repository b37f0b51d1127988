"""Regenerate a paper's figures and tables into a folder with a Markdown report.

`reproduce(paper, models, images, out=...)` is what `tfsal reproduce` runs. Each paper's runner
computes with the library (methods, the nonlinear loop, metrics), draws with `tfsal.visualize`
and `tfsal.plots`, and writes `report.md` tying every file to the paper's figure or table and
stating what the paper claims next to what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsal import visualize
from tfsal.errors import TfsalError
from tfsal.files import atomic_write
from tfsal.loading import as_model
from tfsal.targets import class_label

PAPERS = ("nonlinear", "rectgrad", "signed")

# The RectGrad paper's comparison (its Figure 5): name -> (method name, options), in the
# authors' conventions: gradients times the network's (preprocessed) input, and IG / DeepLIFT
# from the zero model input (`_rectgrad` sets that baseline).
_AUTHORS = {"multiply_by": "model_input"}
COMPARISON = {
    "Saliency": ("vanilla", {}),
    "Grad*Input": ("gradient_x_input", _AUTHORS),
    "Guided BP": ("guided_backprop", {}),
    "SmoothGrad": ("smoothgrad", {"n_samples": 50, "noise_level": 0.1, "seed": 0}),
    "IG": ("integrated_gradients", {"steps": 50, "schedule": "right", **_AUTHORS}),
    "DeepLIFT": ("deeplift", _AUTHORS),
    "eps-LRP": ("epsilon_lrp", {"epsilon": 1e-4, **_AUTHORS}),
    "RectGrad": ("rectgrad", _AUTHORS),
    "RectGrad PRR": ("rectgrad", {"prr": True, **_AUTHORS}),
}
# RectGrad paper, Table 1 (CIFAR-10): method -> (ROAR AUC, KAR AOC), lower = better
TABLE1 = {"random": (0.5562, 0.4438), "rectgrad": (0.5385, 0.3382),
          "vanilla": (0.5568, 0.4455), "guided_backprop": (0.5504, 0.4270),
          "smoothgrad": (0.5536, 0.4444), "gradient_x_input": (0.5408, 0.4176),
          "integrated_gradients": (0.5428, 0.4185), "deeplift": (0.5519, 0.3928)}
SWEEP = (0, 20, 40, 60, 80, 90, 95, 98, 99)
QUICK_SWEEP = (0, 80, 99)


@dataclass(frozen=True)
class Images:
    """What a runner explains: images, their names, and object masks when known."""

    images: np.ndarray
    names: tuple
    masks: np.ndarray | None = None


def reproduce(paper: str, models, images: Images, *, out, quick: bool = False,
              retrain: bool = False) -> Path:
    """Write `paper`'s figures and tables for `models` on `images` into `out`; return report.md.

    Args:
        paper: "nonlinear", "rectgrad" or "signed".
        models: a list of models (`tfsal.Model` or anything `tfsal.load_model` accepts); the
            nonlinear and rectgrad runners use the first.
        images: an `Images`.
        out: output folder.
        quick: reduced settings (fewer steps, samples and images) for a fast end-to-end run.
        retrain: rectgrad only: also Table 1 (ROAR / KAR), retraining the embedded architecture
            on generated data (tens of minutes at full size; seconds with `quick`).

    Raises:
        TfsalError: for an unknown paper or no model.
    """
    if paper not in PAPERS:
        raise TfsalError(f"expected a paper in {PAPERS}, received {paper!r}")
    if not models:
        raise TfsalError("expected at least one model, received none")
    models = [as_model(m) for m in models]
    out = Path(out)
    runner = {"nonlinear": _nonlinear, "rectgrad": _rectgrad, "signed": _signed}[paper]
    sections = runner(models, images, out, quick)
    if retrain and paper == "rectgrad":
        sections += _table1(models[0], out, quick)
    lines = [f"# Reproduction: {TITLES[paper]}", "",
             f"Models: {', '.join(m.name for m in models)}; {len(images.images)} images "
             f"({'reduced settings' if quick else 'full settings'}).", "", *sections]
    path = out / "report.md"
    with atomic_write(path) as handle:
        handle.write(("\n".join(lines) + "\n").encode())
    return path


TITLES = {"nonlinear": "Nonlinear saliency maps (Figures 1-4)",
          "rectgrad": "Rectified Gradient (Figures 4-8; Table 1 with --retrain)",
          "signed": "Signed saliency maps (Tables 2-3, deletion curves)"}


# ------------------------------------------------------------------------------- nonlinear
@dataclass(frozen=True)
class NonlinearRun:
    """A nonlinear run: the trajectory, its linear counterpart (or None), the selective blur,
    and the JSON entries of its items and shared figures."""

    trajectory: object
    linear: object
    blurred: object
    items: list
    shared: list


def nonlinear_run(model, images, targets, names, *, out, linear_only=False,
                  **options) -> NonlinearRun:
    """The nonlinear loop (and the linear one) on (N, K) targets, Figures 1-4 written to `out`."""
    from tfsal.metrics import selective_blur
    from tfsal.nonlinear import nonlinear_saliency
    from tfsal.reproduce import nonlinear_saliency as paper

    trajectory = nonlinear_saliency(model, images, targets, linear=linear_only, **options)
    linear = None if linear_only else nonlinear_saliency(model, images, targets, linear=True,
                                                          **options)
    originals = images[trajectory.image_index]
    # Figure 4: blur the pixels the loop kept at its last level (the salient ones)
    blurred = selective_blur(model, originals, trajectory.kept[:, -1], trajectory.targets)
    stems = [names[i] for i in trajectory.image_index]
    scale = max(1, 128 // originals.shape[1])
    items = []
    for item, (stem, target) in enumerate(zip(stems, trajectory.targets)):
        base = out / f"{stem}_class{int(target)}"
        files = [visualize.save_png(paper.snapshot_strip(trajectory, item, scale=scale),
                                    f"{base}_strip.png")]
        if linear is not None:
            row = paper.linear_vs_nonlinear(originals[item], linear.maps[item, -1],
                                            trajectory.maps[item, -1], scale=scale)
            files.append(visualize.save_png(row, f"{base}_linear_vs_nonlinear.png"))
        items.append(_trajectory_entry(model, trajectory, blurred, item, stem, files))
    shared = [
        paper.probability_figure(trajectory, out / "probabilities.png", compare=linear,
                                 class_names=model.class_names, item_labels=stems),
        paper.selective_blur_figure(blurred, out / "selective_blur.png",
                                    class_names=model.class_names, item_labels=stems)]
    return NonlinearRun(trajectory, linear, blurred, items, [str(p) for p in shared])


def _trajectory_entry(model, trajectory, blurred, item: int, stem: str, files) -> dict:
    """What trajectory.json records about one (image, target) item."""
    target = int(trajectory.targets[item])
    return {"image": stem, "target": target, "label": class_label(model, target),
            "best_step": int(trajectory.best_step[item]),
            "best_probability": float(trajectory.best_probability[item]),
            "target_probability": trajectory.target_probability[item].tolist(),
            "blurred_fraction": trajectory.blurred_fraction[item].tolist(),
            "levels": trajectory.levels.tolist(),
            "step_levels": trajectory.step_levels.tolist(),
            "selective_blur": {"before": float(blurred.before[item, target]),
                               "after": float(blurred.after[item, target]),
                               "salient_fraction": float(blurred.salient_fraction[item])},
            "files": [str(f) for f in files]}


REJECTED = 1e-4  # the nonlinear paper's headline: classes that start below 0.01 %
LIFTED = 0.95  # ... lifted above 95 %
HEADLINE_ITEMS = 30  # (image, class) items measured on many-class models


def _nonlinear(models, images, out, quick) -> list[str]:
    from tfsal.nonlinear import LEVELS, nonlinear_saliency

    model = models[0]
    x = images.images
    probabilities = model.predict(x, score="probability")
    many = model.num_classes > 10  # ImageNet-size heads: the paper's setting
    if many:  # classes the model rejects (< 0.01 %), the same number for every image
        per_image = 1 if quick else -(-HEADLINE_ITEMS // len(x))
        targets = _rejected_classes(probabilities, per_image)
        start, lift, claim = REJECTED, LIFTED, "0.01 %"
    else:  # few classes: the image's two best classes, as the shapes figures always did
        targets = np.argsort(-probabilities, axis=1)[:, :2].astype(np.int32)
        start, lift, claim = 0.01, 0.9, "1 %"
    options = {"steps_per_level": 3} if quick else {}
    run = nonlinear_run(model, x, targets, images.names, out=out, **options)
    t, lin = run.trajectory, run.linear
    # The two halves of the loop alone: blurring without the gradient step, and the gradient
    # step without blurring (every level at 0 %).
    blur_only = nonlinear_saliency(model, x, targets, step_size=0.0, **options)
    step_only = nonlinear_saliency(model, x, targets, levels=(0.0,) * len(LEVELS), **options)
    rejected = t.target_probability[:, 0] < start
    rows = [("nonlinear loop", t), ("linear loop", lin), ("blur alone", blur_only),
            ("gradient step alone", step_only)]
    table = ["| loop | items lifted above " f"{lift:.0%} | median best probability |",
             "|---|---|---|"]
    for name, trajectory in rows:
        lifted = (trajectory.best_probability > lift) & rejected
        table.append(f"| {name} | {int(lifted.sum())} of {int(rejected.sum())} "
                     f"({lifted.sum() / max(1, rejected.sum()):.0%}) | "
                     f"{np.median(trajectory.best_probability[rejected]):.3f} |")
    strips = [Path(e["files"][0]).relative_to(out).as_posix() for e in run.items]
    lines = ["## Figure 1: snapshot strips", "",
             "Per item `<image>_class<c>_strip.png`: the modified image at the end of each level "
             "(top) and the masked saliency map (bottom), as the paper's Figure 1.", "",
             *(f"![]({name})" for name in strips[:2]), "",
             "## Figure 2: target probability vs % blurred", "", "![](probabilities.png)", "",
             f"Paper: the nonlinear loop lifts a class the model rejects (below {claim}) above "
             f"{lift:.0%}; the linear map does not. Measured on the {int(rejected.sum())} "
             f"(image, class) items that start below {claim}"
             + (" (classes drawn among those below 0.01 % of each image, seed 0)" if many
                else " (each image's second class)") + ":", "", *table, "",
             "## Figure 3: linear vs nonlinear at 95 %", "",
             "Per item `<image>_class<c>_linear_vs_nonlinear.png` (image, linear, nonlinear). "
             f"Kept-pixel IoU between the two maps: median {_iou(t, lin):.2f}.", "",
             "## Figure 4: selective blur", "", "![](selective_blur.png)", "",
             "Paper: blurring only the salient pixels drops that class's probability. Here the "
             f"median change is {np.median(run.blurred.target_change):+.3f}.", ""]
    return lines


def _rejected_classes(probabilities: np.ndarray, per_image: int, seed: int = 0) -> np.ndarray:
    """(N, per_image) classes drawn (seeded) among those below `REJECTED` for each image."""
    rng = np.random.default_rng(seed)
    chosen = []
    for row in probabilities:
        low = np.flatnonzero(row < REJECTED)
        if len(low) < per_image:
            raise TfsalError(f"expected {per_image} classes below {REJECTED} per image, "
                             f"received {len(low)}")
        chosen.append(np.sort(rng.choice(low, per_image, replace=False)))
    return np.asarray(chosen, np.int32)


def _iou(trajectory, linear) -> float:
    a, b = trajectory.kept[:, -1], linear.kept[:, -1]
    union = (a | b).sum(axis=(1, 2))
    return float(np.median((a & b).sum(axis=(1, 2)) / np.maximum(union, 1)))


# -------------------------------------------------------------------------------- rectgrad
def _rectgrad(models, images, out, quick) -> list[str]:
    from tfsal.methods import METHODS, layer_attributions, rectgrad
    from tfsal.methods.gradient import model_input_zero

    model = models[0]
    x = images.images
    targets = model.predicted_classes(x)
    comparison = {}
    zero = model_input_zero(model, x)  # the authors' default baseline: a zero model input
    for title, (name, options) in COMPARISON.items():
        if quick and name in ("smoothgrad", "integrated_gradients"):
            options = {**options, **({"n_samples": 5} if name == "smoothgrad" else {"steps": 5})}
        if name in ("integrated_gradients", "deeplift"):
            options = {**options, "baseline": zero}
        comparison[title] = METHODS[name](model, x, targets, **options)
    row_titles = [class_label(model, t) for t in targets]
    visualize.save_png(visualize.grid(**comparison_panels(x, comparison, row_titles)),
                       out / "comparison.png")
    sweep = {q: rectgrad(model, x, targets, percentile=q, **_AUTHORS)
             for q in (QUICK_SWEEP if quick else SWEEP)}
    visualize.save_png(visualize.grid(**sweep_panels(x, sweep, row_titles)),
                       out / "threshold_sweep.png")
    lines = ["## Figure 5: method comparison", "", "![](comparison.png)", "",
             "Paper: RectGrad maps are sparse and on the object; the baselines spread "
             "attribution over the background.", "",
             "## Figure 4: threshold sweep", "", "![](threshold_sweep.png)", "",
             "Each map is drawn on ±the 99th percentile of its non-zero |values|; zero is "
             "white and every non-zero pixel is tinted, so the coloured area is the map's "
             "support.", "",
             "Paper: maps barely change for 20 ≤ q ≤ 80 and turn sparse above q = 95. "
             "Share of pixels with non-zero attribution per q: "
             + ", ".join(f"q={q}: {_nonzero(m):.2f}" for q, m in sweep.items()) + ".", ""]
    lines += _layerwise(model, x[:1], targets[:1], out, layer_attributions)
    lines += _noise_level(comparison, images, out)
    return lines


def _layerwise(model, image, target, out, layer_attributions) -> list[str]:
    """Figure 6: attribution arriving at each layer, plain gradient vs RectGrad."""
    maps = {title: layer_attributions(model, image, target, method=method)
            for title, method in (("gradient", "vanilla"), ("RectGrad", "rectgrad"))}
    visualize.save_png(visualize.grid(**layerwise_panels(maps, image.shape[1:3])),
                       out / "layerwise.png")
    return ["## Figure 6: layer-wise attributions", "", "![](layerwise.png)", "",
            "Paper: with the plain gradient, noise accumulates towards the input; with RectGrad "
            "it does not.", ""]


# Figure drawing: each `*_panels` function returns `visualize.grid`'s keyword arguments, so
# `visualize.grid_layout(**panels)` says where each panel of the written figure lies.
PANEL_PX = 192  # comparison and sweep panels are scaled up to at least this side
LAYERWISE_WIDTH = 1200  # the layer-wise figure's panels together are at least this wide
COMPARISON_PERCENTILE = 99.5  # each comparison map's range: this percentile of non-zero |map|
SWEEP_PERCENTILE = 99.0  # the same for the sweep maps ...
SWEEP_FLOOR = 0.25  # ... where every non-zero pixel is tinted at least this strongly


def _scale(side: int, target: int) -> int:
    return max(1, -(-int(target) // int(side)))


def comparison_panels(images, maps, row_titles=None) -> dict:
    """Figure 5's `visualize.grid` arguments: a row per image, the image then one panel per
    method ({title: (N, H, W, C) maps}), each map on a symmetric range (±the 99.5th percentile
    of its non-zero |values|, zero white: `visualize.to_display_symmetric`), panels ≥ 192 px.
    """
    rows = [[_uint8(image)] + [visualize.to_display_symmetric(
        m[i:i + 1], percentile=COMPARISON_PERCENTILE)[0] for m in maps.values()]
        for i, image in enumerate(images)]
    return {"panels": rows, "col_titles": ["image", *maps], "row_titles": row_titles,
            "scale": _scale(images.shape[1], PANEL_PX), "frame": True}


def sweep_panels(images, sweep, row_titles=None) -> dict:
    """Figure 4's `visualize.grid` arguments: a row per image, the image then the RectGrad map
    at each threshold q ({q: (N, H, W, C) maps}). Each map is drawn on ±the 99th percentile of
    its non-zero |values| with zero white and every non-zero pixel tinted (floor 0.25), so the
    coloured area is the map's support and shrinks as q grows; a column title gives q and the
    share of non-zero pixels."""
    rows = [[_uint8(image)] + [visualize.to_display_symmetric(
        m[i:i + 1], percentile=SWEEP_PERCENTILE, floor=SWEEP_FLOOR)[0] for m in sweep.values()]
        for i, image in enumerate(images)]
    titles = ["image", *(f"q = {q}\n{_nonzero(m):.0%} non-zero" for q, m in sweep.items())]
    return {"panels": rows, "col_titles": titles, "row_titles": row_titles,
            "scale": _scale(images.shape[1], PANEL_PX), "frame": True}


def layerwise_panels(maps, size) -> dict:
    """Figure 6's `visualize.grid` arguments: a row per method ({title: {layer: (1, h, w)}}),
    a column per layer, each map upsampled to `size` (H, W) and drawn on ±its max |value|.
    Panels are scaled so the row is at least `LAYERWISE_WIDTH` px wide; a column title is the
    layer's name (its last path part) and its resolution."""
    first = next(iter(maps.values()))
    titles = [f"{name.rsplit('/', 1)[-1]}\n{m.shape[1]}×{m.shape[2]}"
              for name, m in first.items()]
    rows = [[visualize.colorize(visualize.normalize(visualize.upsample(m, size), "abs"),
                                "diverging")[0] for m in layers.values()]
            for layers in maps.values()]
    target = max(PANEL_PX, LAYERWISE_WIDTH // max(1, len(titles)))
    return {"panels": rows, "col_titles": titles, "row_titles": list(maps),
            "scale": _scale(size[1], target), "frame": True}


def _noise_level(comparison, images, out) -> list[str]:
    """Figure 8: background mass (needs masks) and total variation, box plots per method."""
    from tfsal import plots
    from tfsal.metrics import mass_inside, total_variation

    summed = {k: v.sum(axis=-1) for k, v in comparison.items()}
    tv = {k: total_variation(m / np.maximum(np.abs(m).reshape(len(m), -1).max(1), 1e-30)
                             [:, None, None]) for k, m in summed.items()}
    plots.box_plot(tv, out / "total_variation.png", title="total variation (max |map| = 1)")
    lines = ["## Figure 8: noise level", "", "![](total_variation.png)", ""]
    if images.masks is not None:
        background = {k: 1.0 - mass_inside(m, images.masks) for k, m in summed.items()}
        plots.box_plot(background, out / "background.png",
                       title="fraction of |attribution| outside the object")
        lines += ["![](background.png)", "", "| method | background mass (median) | "
                  "total variation (median) |", "|---|---|---|"]
        lines += [f"| {k} | {np.median(background[k]):.3f} | {np.median(tv[k]):.1f} |"
                  for k in summed]
    lines += ["", "Paper: RectGrad puts the least attribution on the background and has the "
              "lowest total variation.", ""]
    return lines


def _table1(model, out, quick) -> list[str]:
    """Table 1: ROAR / KAR of the paper's methods, retraining the embedded architecture."""
    from tfsal.evaluation import evaluate_roar
    from tfsal.experiments.roar import FRACTIONS

    # Quick: two fractions symmetric about 0.5 (the random baseline's areas still sum to 1).
    sizes = (dict(n_train=48, n_test=16, epochs=1, repeats=1, fractions=(0.3, 0.7)) if quick
             else dict(n_train=4000, n_test=1000, epochs=8, repeats=3, fractions=FRACTIONS))
    methods = ["vanilla", "rectgrad"] if quick else [m for m in TABLE1 if m != "random"]
    result = evaluate_roar(model, methods, out=out / "table1", **sizes)
    lines = ["## Table 1: ROAR / KAR (lower = better)", "",
             f"Retrained on {sizes['n_train']} generated images, {sizes['epochs']} epochs, "
             f"{sizes['repeats']} repeat(s), fractions {list(sizes['fractions'])}; accuracies "
             f"in `table1/results.csv`.", "",
             "![](table1/roar.png) ![](table1/kar.png)", "",
             "| method | ROAR AUC | KAR AOC | paper ROAR AUC | paper KAR AOC |",
             "|---|---|---|---|---|"]
    for name, areas in result.summary.items():
        paper = TABLE1.get(name, (float("nan"),) * 2)
        lines.append(f"| {name} | {areas['roar_auc']:.4f} | {areas['kar_aoc']:.4f} | "
                     f"{paper[0]:.4f} | {paper[1]:.4f} |")
    return lines + ["", "Paper: RectGrad has the lowest KAR AOC and among the lowest ROAR AUC.",
                    ""]


def _nonzero(maps) -> float:
    return float(np.mean(np.abs(maps).sum(axis=-1) > 0))


def _uint8(image) -> np.ndarray:
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


# ---------------------------------------------------------------------------------- signed
def _signed(models, images, out, quick) -> list[str]:
    from tfsal.reproduce import signed_saliency

    tables = [signed_saliency.deletion_table(m, images.images) for m in models]
    files = [f for t in tables for f in signed_saliency.curves_figures(t, out)]
    lines = ["## Tables 2-3: deletion AUC (lower = better; bold = beats the standard map)", "",
             signed_saliency.table_markdown(tables),
             "Paper: positive / active beat standard under black-deletion, negative / inactive "
             "under white-deletion.", "", "## Deletion curves", ""]
    lines += [f"![]({Path(f).name})" for f in files]
    return lines + [""]
