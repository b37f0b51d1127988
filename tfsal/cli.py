"""The `tfsal` command: explain images, run the demo, list methods and models."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import save_json, save_npy
from tfsal.runs import OutputError, check_out, shown

DEFAULT_MODEL = "shapes-cnn"
DEMO_SEED = 12345  # a data seed never used for training the embedded model
GENERATED_SEED = 2  # the embedded models' held-out test seed


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except TfsalError as exc:
        print(f"tfsal: error: {shown(exc)}", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"tfsal: error: {shown(exc)}", file=sys.stderr)
        return 3
    except OSError as exc:  # any other file that could not be written or read mid-run
        where = f" {shown(exc.filename)}" if exc.filename else ""
        print(f"tfsal: error: could not access{where}: {exc.strerror or exc}", file=sys.stderr)
        return 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfsal", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    explain = sub.add_parser("explain", help="saliency maps of image files or folders")
    explain.add_argument("images", nargs="+", type=Path,
                         help="image files and/or folders (searched recursively)")
    _add_model_options(explain)
    explain.add_argument("--method", action="append", default=None,
                         help="method name (repeatable, or 'all'); default: vanilla")
    explain.add_argument("--target", default="top1",
                         help="class index, or top1 / top2 (the model's best classes)")
    explain.add_argument("--out", type=Path, default=Path("tfsal_out"), help="output folder")
    explain.add_argument("--overwrite", action="store_true",
                         help="recompute maps whose files exist (default: resume, keeping maps "
                              "made from the same input bytes with the same model and settings)")
    explain.add_argument("--max-pixels", type=int, default=None,
                         help="refuse images larger than this many pixels (default: Pillow's "
                              "decompression-bomb limit, about 89 million; 0: no limit)")
    explain.set_defaults(run=_explain)

    nonlinear = sub.add_parser("nonlinear", help="nonlinear saliency maps and the paper's figures")
    nonlinear.add_argument("images", nargs="+", type=Path,
                           help="image files and/or folders (searched recursively)")
    _add_model_options(nonlinear)
    nonlinear.add_argument("--target", default="top1",
                           help="class index, or top1 / top2 (the model's best classes)")
    nonlinear.add_argument("--linear", action="store_true",
                           help="only the linear variant (sensitivity frozen at the original)")
    nonlinear.add_argument("--levels", default=None,
                           help="comma-separated fractions of pixels to blur "
                                "(default 0,0.05,0.1,0.2,0.3,0.5,0.75,0.95)")
    nonlinear.add_argument("--steps-per-level", type=int, default=None,
                           help="steps at each level (default: tfsal.nonlinear.STEPS_PER_LEVEL)")
    nonlinear.add_argument("--step-size", type=float, default=None,
                           help="step size h along the sensitivity "
                                "(default: tfsal.nonlinear.STEP_SIZE)")
    nonlinear.add_argument("--out", type=Path, default=Path("tfsal_out"), help="output folder")
    nonlinear.set_defaults(run=_nonlinear)

    evaluate = sub.add_parser("evaluate", help="score methods' maps with a metric; CSV, JSON, plot")
    evaluate.add_argument("metric", help="allegiance | deletion | insertion | background | "
                                         "total_variation | signed | shift | patch | roar "
                                         "(patch and roar retrain on generated data)")
    evaluate.add_argument("images", nargs="*", type=Path,
                          help="image files and/or folders (default: generated data with masks)")
    _add_model_options(evaluate)
    evaluate.add_argument("--method", action="append", default=None,
                          help="method name (repeatable, or 'all'); default: vanilla")
    evaluate.add_argument("--generated", type=int, default=100,
                          help="number of generated images when no files are given (default 100)")
    evaluate.add_argument("--seed", type=int, default=GENERATED_SEED,
                          help=f"seed of the generated images (default {GENERATED_SEED}, "
                               "held out from training)")
    evaluate.add_argument("--fill", default="black",
                          help="deletion fill: black, white or a number in [0, 1]")
    evaluate.add_argument("--reduction", default="abs-max",
                          help="channel reduction of the maps (mean, sum, max, abs-max, l2)")
    evaluate.add_argument("--n-train", type=int, default=2000,
                          help="patch / roar: generated training images (default 2000)")
    evaluate.add_argument("--epochs", type=int, default=6,
                          help="patch / roar: epochs of each training (default 6)")
    evaluate.add_argument("--repeats", type=int, default=3,
                          help="roar: trainings per method and fraction (default 3)")
    evaluate.add_argument("--out", type=Path, default=Path("tfsal_eval"), help="output folder")
    evaluate.set_defaults(run=_evaluate)

    reproduce = sub.add_parser("reproduce", help="regenerate a paper's figures and tables")
    reproduce.add_argument("paper", help="nonlinear | rectgrad | signed")
    reproduce.add_argument("--model", action="append", default=None,
                           help="built-in name, ImageNet model name, .keras file or SavedModel "
                                "(repeatable; default: the embedded models)")
    reproduce.add_argument("--images", type=Path, default=None,
                           help="folder of images (default: generated data for the embedded "
                                "models, matplotlib's sample photos otherwise)")
    reproduce.add_argument("--n-images", type=int, default=8,
                           help="generated images (default 8)")
    reproduce.add_argument("--quick", action="store_true",
                           help="reduced settings for a fast end-to-end run")
    reproduce.add_argument("--retrain", action="store_true",
                           help="rectgrad: also Table 1 (ROAR / KAR), retraining the embedded "
                                "architecture (long; short with --quick)")
    reproduce.add_argument("--out", type=Path, default=Path("tfsal_reproduce"),
                           help="output folder")
    reproduce.set_defaults(run=_reproduce)

    demo = sub.add_parser("demo", help="real photos explained by EfficientNet-Lite0, then every "
                                       "method on generated images of the embedded model")
    demo.add_argument("--n-images", type=int, default=6,
                      help="generated images for the embedded model (default 6)")
    demo.add_argument("--photos", type=int, default=None,
                      help="bundled photos to explain with efficientnet-lite0 (default all; "
                           "0: none)")
    demo.add_argument("--out", type=Path, default=Path("demo_out"))
    demo.set_defaults(run=_demo)

    sub.add_parser("methods", help="list the attribution methods").set_defaults(run=_methods)
    sub.add_parser("models", help="list the built-in models").set_defaults(run=_models)
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="built-in name (tfsal models), ImageNet name (xception, vgg16, "
                             "resnet50, inception_v3, mobilenet_v2), hub:<handle>, .keras file "
                             f"or SavedModel directory (default {DEFAULT_MODEL})")
    parser.add_argument("--preprocess", default="auto",
                        help="caffe | tf | torch | none (default: the built-in model's own)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--unsafe-load", action="store_true",
                        help="allow models that run arbitrary code or touch files: .keras files "
                             "with Lambda layers, SavedModels and hub handles whose graph "
                             "reads or writes files, the network or processes")
    parser.add_argument("--custom-objects", default=None, metavar="MODULE",
                        help="a module name or .py file defining the custom layers and "
                             "functions of a .keras file (importing it runs its code)")
    parser.add_argument("--output", choices=("auto", "logits", "probabilities"), default="auto",
                        help="what the model returns (default auto: a softmax at the end of "
                             "the model is found and its logits used)")
    parser.add_argument("--score", choices=("logit", "probability", "log_probability"),
                        default="logit", help="the score methods differentiate (default logit)")
    parser.add_argument("--layer", default=None,
                        help="layer name, path or index (tensor name for SavedModels) of "
                             "Grad-CAM and Guided Grad-CAM (default: the last feature map)")
    graph = parser.add_argument_group("SavedModels, TF Serving directories and hub handles")
    graph.add_argument("--signature", default=None,
                       help="signature to call (default serving_default, else __call__)")
    graph.add_argument("--output-key", default=None,
                       help="which output of a signature returning several (e.g. logits)")
    graph.add_argument("--version", type=int, default=None,
                       help="TF Serving layout: the version to load (default: the newest)")
    graph.add_argument("--input-tensor", default=None,
                       help="the float image tensor to feed, for signatures taking encoded "
                            "bytes (default: the first float (N, H, W, 3) tensor after decoding)")


def _load(args):
    from tfsal.loading import load_model

    preprocess = None if args.preprocess == "none" else args.preprocess
    # Only the options given: load_model refuses those that do not apply to the source.
    given = {option: getattr(args, option) for option in
             ("signature", "output_key", "version", "input_tensor")
             if getattr(args, option) is not None}
    if args.custom_objects is not None:
        from tfsal.loading import custom_objects_from

        given["custom_objects"] = custom_objects_from(args.custom_objects)
    return load_model(str(args.model), preprocess=preprocess, batch_size=args.batch_size,
                      safe_mode=not args.unsafe_load, output=args.output, score=args.score,
                      **given)


def _method_names(requested: list[str] | None) -> list[str]:
    from tfsal.methods import METHODS

    names = requested or ["vanilla"]
    if "all" in names:
        return list(METHODS)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise TfsalError(f"expected method names from {sorted(METHODS)} or 'all', "
                         f"received {unknown}")
    return names


def _targets(model, images: np.ndarray, spec: str) -> list[np.ndarray]:
    from tfsal.runs import targets_for

    return targets_for(model, images, spec)


def _explain(args) -> int:
    """Maps for every image, batch by batch, into a run folder of OUT (`tfsal.runs`): failures
    are reported and skipped, maps already made from the same input and settings are kept
    (resume) unless --overwrite, every file is written atomically. OUT and the inputs are
    checked before the model is loaded."""
    from tfsal import runs

    out = runs.check_out(args.out)
    names = _method_names(args.method)
    inputs, problems = runs.find_inputs(args.images, out)
    model = _load(args)
    methods = {name: _method_with_options(name, args.layer) for name in names}
    run = runs.RunFolder(out, model.name, runs.run_fingerprint(model, args.target), inputs)
    summary = runs.Summary({"model": repr(model), "source": str(args.model),
                            "run_folder": str(run.path), "fingerprint": run.fingerprint,
                            "methods": names, "target": args.target})
    for problem in problems:
        summary.failed.append(problem.entry())
        _report(f"{runs.shown(problem.path)}: skipped: {problem.reason}", error=True)
    finished = False
    try:
        runs.explain_files(model, inputs, methods, out=out, run=run, summary=summary,
                           target_rule=args.target, overwrite=args.overwrite,
                           image_options=_image_options(args), report=_report)
        finished = True
    finally:
        _write_summary(summary, out, finished)
    for entry in summary.skipped:
        _report(f"skipped {entry['method']}: {entry['reason']}")
    counts = summary.counts
    _report(f"{len(inputs) + len(problems)} image file(s): wrote {counts['written']} map(s), "
            f"kept {counts['existing']} existing, {len(summary.failed)} file(s) failed, "
            f"{len(summary.skipped)} method(s) skipped; see {runs.shown(out / 'summary.json')}")
    requested_failed = bool(summary.skipped) and "all" not in (args.method or [])
    return 1 if summary.failed or requested_failed else 0


def _write_summary(summary, out: Path, finished: bool) -> None:
    """summary.json, once at the end; after a failure or an interruption too, as far as the
    disk allows (the error that stopped the run is the one reported)."""
    try:
        summary.write(out / "summary.json", finished=finished)
    except OSError as exc:
        if finished:
            raise OutputError(f"could not write {out / 'summary.json'}: "
                              f"{exc.strerror or exc}") from None
    finally:
        summary.close()


def _image_options(args) -> dict:
    if args.max_pixels is None:
        return {}
    return {"max_pixels": None if args.max_pixels == 0 else args.max_pixels}


def _method_with_options(name: str, layer):
    """(method, options): `--layer` goes to the methods that take one (Grad-CAM's family)."""
    import inspect

    from tfsal.methods import METHODS

    method = METHODS[name]
    takes_layer = "layer" in inspect.signature(method).parameters
    return method, ({"layer": _layer(layer)} if layer is not None and takes_layer else {})


def _report(text: str, error: bool = False) -> None:
    """Print a line; names that are not UTF-8 are escaped, never a UnicodeEncodeError."""
    print(shown(text), file=sys.stderr if error else sys.stdout)


def _layer(text: str):
    """A --layer value: an index if it is an integer, else a name."""
    try:
        return int(text)
    except ValueError:
        return text


def _image_paths(named: list[Path], out: Path) -> list[str]:
    """The image files named or found in folders named (OUT excluded); any file that cannot be
    read is an error here, where every image is needed."""
    from tfsal.runs import check_apart, find_inputs

    inputs, problems = find_inputs(named, Path(os.path.abspath(out)))
    check_apart(Path(out), inputs)
    if problems:
        raise TfsalError(f"expected readable image files, received {problems[0].path} "
                         f"({problems[0].reason})" + (f" and {len(problems) - 1} more"
                                                      if len(problems) > 1 else ""))
    return [item.path for item in inputs]


def _load_images(paths: list[Path], size) -> np.ndarray:
    """Read image files into one (N, H, W, 3) batch, resized to the model's input size."""
    from tfsal.images import load_image

    loaded = []
    for path in paths:
        image, note = load_image(path, size)
        if note:
            print(f"{path}: {note}")
        loaded.append(image)
    if size is None and len({im.shape for im in loaded}) > 1:
        raise TfsalError("expected images of one size for a model without a fixed input size, "
                         f"received sizes {sorted({im.shape[:2] for im in loaded})}")
    return np.stack(loaded)


def _nonlinear(args) -> int:
    from tfsal.reproduce.run import nonlinear_run

    check_out(args.out)
    paths = _image_paths(args.images, args.out)
    options = _nonlinear_options(args)
    model = _load(args)
    images = _load_images(paths, model.input_size)
    targets = np.stack(_targets(model, images, args.target), axis=1)  # (N, K), image-major items
    options["progress"] = True  # a bar over batches, when tqdm is installed
    # Figures are named by each image's path relative to the folder named: never two alike.
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    run = nonlinear_run(model, images, targets, [os.path.relpath(p, root) for p in paths],
                        out=args.out, linear_only=args.linear, **options)
    for entry, index in zip(run.items, run.trajectory.image_index):
        entry["image"] = paths[index]
    save_json({"model": str(args.model), "linear": bool(args.linear), "files": run.shared,
               "items": run.items}, args.out / "trajectory.json")
    count = len(run.shared) + sum(len(e["files"]) for e in run.items)
    print(f"{'linear' if args.linear else 'nonlinear'} saliency of {len(run.items)} item(s) "
          f"from {len(images)} image(s): mean best target probability "
          f"{run.trajectory.best_probability.mean():.3f}; wrote {count} figures and "
          f"trajectory.json to {args.out}")
    return 0


def _nonlinear_options(args) -> dict:
    """The loop's hyperparameters given on the command line (others: the library defaults)."""
    options = {}
    if args.levels is not None:
        try:
            options["levels"] = [float(v) for v in args.levels.split(",")]
        except ValueError:
            raise TfsalError(f"expected --levels comma-separated fractions such as 0,0.5,0.95, "
                             f"received {args.levels!r}") from None
    if args.steps_per_level is not None:
        options["steps_per_level"] = args.steps_per_level
    if args.step_size is not None:
        options["step_size"] = args.step_size
    return options


def _evaluate(args) -> int:
    from tfsal.data import make_dataset
    from tfsal.evaluation import evaluate, evaluate_patch, evaluate_roar

    methods = _method_names(args.method)
    check_out(args.out)
    if args.metric == "patch":
        return _print_evaluation(evaluate_patch(
            methods, n_train=args.n_train, n_eval=args.generated, epochs=args.epochs,
            out=args.out, seed=args.seed))
    model = _load(args)
    if args.metric == "roar":
        return _print_evaluation(evaluate_roar(
            model, methods, n_train=args.n_train, n_test=args.generated, epochs=args.epochs,
            repeats=args.repeats, out=args.out))
    if args.images:
        images = _load_images(_image_paths(args.images, args.out), model.input_size)
        masks = None
    else:
        if args.generated < 1 or model.input_size is None:
            raise TfsalError(f"expected --generated ≥ 1 and a model with a fixed input size, "
                             f"received {args.generated} and {model.input_size}")
        data = make_dataset(args.generated, size=model.input_size[0], seed=args.seed)
        images, masks = data.images, data.masks
    fill = args.fill
    if fill not in ("black", "white"):
        try:
            fill = float(fill)
        except ValueError:
            raise TfsalError(f"expected --fill black, white or a number, received {fill!r}") \
                from None
    return _print_evaluation(evaluate(model, images, args.metric, methods=methods, masks=masks,
                                      fill=fill, reduction=args.reduction, out=args.out))


def _print_evaluation(result) -> int:
    for name, stats in result.summary.items():
        print(f"{name:24s} " + "  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    print(f"wrote {', '.join(str(f) for f in result.files)}")
    return 0


def _reproduce(args) -> int:
    from tfsal import zoo
    from tfsal.loading import load_model
    from tfsal.reproduce.run import reproduce

    check_out(args.out)
    shapes_models = [n for n in zoo.available() if zoo.info(n).data == "shapes"]
    names = args.model or (shapes_models if args.paper == "signed" else [DEFAULT_MODEL])
    models = [load_model(name) for name in names]
    report = reproduce(args.paper, models, _reproduce_images(args, models[0]), out=args.out,
                       quick=args.quick, retrain=args.retrain)
    print(f"wrote {report} and its figures")
    return 0


def _reproduce_images(args, model):
    """The --images folder; else generated data (with masks) for the embedded shapes models,
    and the bundled photos (with their hand-drawn object boxes) for any other model."""
    from tfsal import zoo
    from tfsal.data import make_dataset
    from tfsal.reproduce.run import Images
    from tfsal.zoo.photos import object_masks, sample_photos

    if args.images is not None:
        paths = _image_paths([args.images], args.out)
        root = os.path.commonpath([os.path.dirname(p) for p in paths])
        return Images(_load_images(paths, model.input_size),
                      tuple(os.path.relpath(p, root) for p in paths))
    if model.name in zoo.available() and zoo.info(model.name).data == "shapes":
        if args.n_images < 1:
            raise TfsalError(f"expected --n-images ≥ 1, received {args.n_images}")
        data = make_dataset(args.n_images, size=model.input_size[0], seed=GENERATED_SEED)
        return Images(data.images, tuple(f"image{i}" for i in range(len(data))), data.masks)
    if model.input_size is None or model.input_size[0] != model.input_size[1]:
        raise TfsalError(f"expected --images for a model without a square input size, "
                         f"received {model.input_size}")
    photos = sample_photos(model.input_size[0])
    if not photos:
        raise TfsalError('expected the bundled photos (pip install "tfsal[imagenet,plot]") or '
                         "--images, received neither")
    names = tuple(photos)
    return Images(np.stack(list(photos.values())), names,
                  object_masks(model.input_size[0], names))


def _label(model, target) -> str:
    from tfsal.reproduce.run import label

    return label(model, target)


def _demo(args) -> int:
    from tfsal import visualize
    from tfsal.data import make_dataset
    from tfsal.loading import load_model
    from tfsal.methods import METHODS

    if args.n_images < 1:
        raise TfsalError(f"expected --n-images ≥ 1, received {args.n_images}")
    if args.photos is not None and args.photos < 0:
        raise TfsalError(f"expected --photos ≥ 0, received {args.photos}")
    check_out(args.out)
    if args.photos != 0:
        _demo_photos(args.photos, args.out)
    print(f"explaining {args.n_images} generated images with {DEFAULT_MODEL}, every method ...",
          flush=True)
    model = load_model(DEFAULT_MODEL)
    data = make_dataset(args.n_images, size=model.input_size[0], seed=DEMO_SEED)
    probs = model.predict(data.images, score="probability")
    predicted = probs.argmax(axis=1)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, summary = [], []
    for i, image in enumerate(data.images):
        rows.append([(image * 255).round().astype(np.uint8)])
        summary.append({"index": i, "label": _label(model, data.labels[i]),
                        "predicted": _label(model, predicted[i]),
                        "probability": round(float(probs[i, predicted[i]]), 4)})
    for name, method in METHODS.items():
        maps = method(model, data.images, predicted)
        for i, (image, attribution) in enumerate(zip(data.images, maps)):
            picture = visualize.render(image, attribution)
            rows[i].append(picture)
            save_npy(attribution, args.out / f"image{i}_{name}.npy")
            visualize.save_png(picture, args.out / f"image{i}_{name}.png")
    row_titles = [f"{s['label']} -> {s['predicted']} {s['probability']:.2f}" for s in summary]
    sheet = visualize.grid(rows, row_titles=row_titles, col_titles=["image", *METHODS], scale=3)
    grid_path = visualize.save_png(sheet, args.out / "grid.png")
    save_json({"model": DEFAULT_MODEL, "images": summary, "methods": list(METHODS)},
              args.out / "summary.json")
    accuracy = float(np.mean(predicted == data.labels))
    print(f"{DEFAULT_MODEL}: {accuracy:.0%} of {len(predicted)} demo images classified correctly")
    print(f"wrote {grid_path} and {len(METHODS) * len(data.images)} maps (.png + .npy) "
          f"to {args.out}")
    return 0


PHOTO_MODEL = "efficientnet-lite0"
# The main methods on the photos: plain and smoothed gradients, a path method, a backward rule,
# a class-activation map.
PHOTO_METHODS = {"gradient": ("vanilla", {}),
                 "SmoothGrad": ("smoothgrad", {"n_samples": 25, "noise_level": 0.15, "seed": 0}),
                 "Integrated Gradients": ("integrated_gradients", {"steps": 32}),
                 "Guided Backprop": ("guided_backprop", {}),
                 "RectGrad": ("rectgrad", {}),
                 "Grad-CAM": ("grad_cam", {})}


def _demo_photos(count, out: Path) -> None:
    """The bundled photos explained by EfficientNet-Lite0: photos.png and a line per photo."""
    from tfsal import plots
    from tfsal.loading import load_model
    from tfsal.methods import METHODS
    from tfsal.zoo.photos import sample_photos

    try:
        model = load_model(PHOTO_MODEL)
        photos = sample_photos(model.input_size[0])
    except TfsalError as exc:  # the imagenet extra is not installed: the shapes demo only
        print(f"skipping the photos: {exc}")
        return
    names = list(photos)[:count]
    images = np.stack([photos[n] for n in names])
    print(f"explaining {len(names)} photos with {PHOTO_MODEL} ({', '.join(PHOTO_METHODS)}) ...",
          flush=True)
    probabilities = model.predict(images, score="probability")
    predicted = probabilities.argmax(axis=1).astype(np.int32)
    maps = {title: METHODS[name](model, images, predicted, **options)
            for title, (name, options) in PHOTO_METHODS.items()}
    titles = []
    for name, target, p in zip(names, predicted, probabilities):
        label = _label(model, target).replace("_", " ")
        titles.append(f"{name}\n{label} {p[target]:.0%}")
        print(f"  {name}: {label} ({p[target]:.1%})")
    path = plots.explanation_sheet(images, maps, out / "photos.png", row_titles=titles,
                                   title=f"{PHOTO_MODEL} (ImageNet), maps of the predicted class")
    print(f"wrote {path}")


def _methods(_args) -> int:
    from tfsal.methods import METHODS

    for name, method in METHODS.items():
        doc = (method.__doc__ or "").strip().splitlines()[0]
        print(f"{name:22s} {doc}")
    return 0


def _models(_args) -> int:
    from tfsal import hub_models, zoo

    for name in zoo.available():
        info = zoo.info(name)
        print(f"{name:20s} input {info.input_size}x{info.input_size}, preprocess "
              f"{info.preprocess!r}, {len(info.class_names)} classes")
    print(f"\nImageNet models (keras.applications; Keras caches their weights in "
          f"{hub_models.keras_cache_dir() / 'models'}):")
    for name in hub_models.available():
        spec = hub_models.spec(name)
        cached = "cached" if spec.weights_cached() else "not cached (downloaded on first load)"
        print(f"{name:20s} input {spec.input_size}x{spec.input_size}, preprocess "
              f"{spec.preprocess!r}, {spec.num_classes} classes, weights {cached}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
