"""The `tfsal` command: explain images, run the demo, list methods and models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import save_json, save_npy
from tfsal.images import find_images
from tfsal.progress import progress_bar

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
        print(f"tfsal: error: {exc}", file=sys.stderr)
        return 2


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
                         help="recompute maps whose files exist (default: resume, skip them)")
    explain.set_defaults(run=_explain)

    nonlinear = sub.add_parser("nonlinear", help="nonlinear saliency maps and the paper's figures")
    nonlinear.add_argument("images", nargs="+", type=Path, help="PNG/JPEG files")
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

    demo = sub.add_parser("demo", help="every method on sample images of the embedded model")
    demo.add_argument("--n-images", type=int, default=6)
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
                        help="allow .keras files that run arbitrary code (Lambda layers)")
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
    """One (N,) target array per requested rank or the given class index."""
    if spec in ("top1", "top2"):
        order = np.argsort(-model.predict(images), axis=1)
        return [order[:, k].astype(np.int32) for k in range(int(spec[-1]))]
    try:
        index = int(spec)
    except ValueError:
        raise TfsalError(f"expected --target a class index, top1 or top2, received {spec!r}") \
            from None
    return [model.resolve_targets(images, index)]


def _explain(args) -> int:
    """Maps for every image, batch by batch: unreadable files are reported and skipped, maps
    already on disk are kept (resume) unless --overwrite, every file is written atomically."""
    model = _load(args)
    names = _method_names(args.method)
    files = find_images(args.images)
    summary = {"model": repr(model), "source": str(args.model), "methods": names,
               "target": args.target, "maps": [], "failed": [], "skipped": []}
    batches = range(0, len(files), model.batch_size)
    for start in progress_bar(batches, len(files) > model.batch_size, "explain"):
        _explain_batch(args, model, names, files[start:start + model.batch_size], summary)
        save_json(summary, args.out / "summary.json")  # after every batch: progress survives
    written = sum(entry["status"] == "written" for entry in summary["maps"])
    existing = len(summary["maps"]) - written
    for entry in summary["skipped"]:
        print(f"skipped {entry['method']}: {entry['reason']}")
    print(f"{len(files)} image(s): wrote {written} map(s), kept {existing} existing, "
          f"{len(summary['failed'])} unreadable file(s) skipped, {len(summary['skipped'])} "
          f"method(s) skipped; see {args.out / 'summary.json'}")
    requested_failed = bool(summary["skipped"]) and "all" not in (args.method or [])
    return 1 if summary["failed"] or requested_failed else 0


def _explain_batch(args, model, names, batch, summary) -> None:
    from tfsal import visualize
    from tfsal.images import load_image
    from tfsal.methods import METHODS

    loaded, kept = [], []
    for path, stem in batch:
        try:
            image, note = load_image(path, model.input_size)
        except TfsalError as exc:
            summary["failed"].append({"image": str(path), "error": str(exc)})
            print(f"{path}: skipped: {exc}", file=sys.stderr)
            continue
        if note:
            print(f"{path}: {note}")
        loaded.append(image)
        kept.append((path, stem))
    if not loaded:
        return
    if len({im.shape for im in loaded}) > 1:  # a model without a fixed input size
        raise TfsalError("expected images of one size for a model without a fixed input size, "
                         f"received sizes {sorted({im.shape[:2] for im in loaded})}")
    images = np.stack(loaded)
    for targets in _targets(model, images, args.target):
        for name in names:
            if any(entry["method"] == name for entry in summary["skipped"]):
                continue
            stems = [f"{stem}_{name}_class{int(t)}" for (_, stem), t in zip(kept, targets)]
            todo = [i for i, s in enumerate(stems) if args.overwrite
                    or not all(f.exists() for f in _map_files(args.out, s))]
            try:
                maps = _run_method(METHODS[name], model, images[todo], targets[todo],
                                   args.layer) if todo else []
            except TfsalError as exc:  # e.g. CAM on a model without a GAP + dense head
                summary["skipped"].append({"method": name, "reason": str(exc)})
                continue
            computed = dict(zip(todo, maps))
            for i, ((path, _), target) in enumerate(zip(kept, targets)):
                npy, png = _map_files(args.out, stems[i])
                if i in computed:
                    save_npy(computed[i], npy)
                    visualize.save_png(visualize.render(images[i], computed[i]), png)
                summary["maps"].append({
                    "image": str(path), "method": name, "target": int(target),
                    "label": _label(model, target), "files": [str(npy), str(png)],
                    "status": "written" if i in computed else "existing"})


def _run_method(method, model, images, targets, layer):
    """The method's maps; `layer` goes to the methods that take one (Grad-CAM's family)."""
    import inspect

    takes_layer = "layer" in inspect.signature(method).parameters
    options = {"layer": _layer(layer)} if layer is not None and takes_layer else {}
    return method(model, images, targets, **options)


def _layer(text: str):
    """A --layer value: an index if it is an integer, else a name."""
    try:
        return int(text)
    except ValueError:
        return text


def _map_files(out: Path, stem: str) -> tuple[Path, Path]:
    return out / f"{stem}.npy", out / f"{stem}.png"


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

    model = _load(args)
    images = _load_images(args.images, model.input_size)
    targets = np.stack(_targets(model, images, args.target), axis=1)  # (N, K), image-major items
    options = _nonlinear_options(args)
    options["progress"] = True  # a bar over batches, when tqdm is installed
    run = nonlinear_run(model, images, targets, [p.stem for p in args.images], out=args.out,
                        linear_only=args.linear, **options)
    for entry, index in zip(run.items, run.trajectory.image_index):
        entry["image"] = str(args.images[index])
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
        images = _load_images([path for path, _ in find_images(args.images)], model.input_size)
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

    names = args.model or (list(zoo.available()) if args.paper == "signed" else [DEFAULT_MODEL])
    models = [load_model(name) for name in names]
    report = reproduce(args.paper, models, _reproduce_images(args, models[0]), out=args.out,
                       quick=args.quick, retrain=args.retrain)
    print(f"wrote {report} and its figures")
    return 0


def _reproduce_images(args, model):
    """The --images folder; else generated data (with masks) for the embedded models and
    matplotlib's sample photos for any other model."""
    from tfsal import zoo
    from tfsal.data import make_dataset
    from tfsal.reproduce.run import Images

    if args.images is not None:
        files = find_images([args.images])
        return Images(_load_images([p for p, _ in files], model.input_size),
                      tuple(stem for _, stem in files))
    if model.name in zoo.available():
        if args.n_images < 1:
            raise TfsalError(f"expected --n-images ≥ 1, received {args.n_images}")
        data = make_dataset(args.n_images, size=model.input_size[0], seed=GENERATED_SEED)
        return Images(data.images, tuple(f"image{i}" for i in range(len(data))), data.masks)
    import matplotlib

    samples = Path(matplotlib.get_data_path()) / "sample_data"
    paths = [samples / "grace_hopper.jpg", samples / "Minduka_Present_Blue_Pack.png"]
    return Images(_load_images(paths, model.input_size), tuple(p.stem for p in paths))


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
        print(f"{name:14s} input {info.input_size}x{info.input_size}, preprocess "
              f"{info.preprocess!r}, {len(info.class_names)} classes")
    print(f"\nImageNet models (keras.applications; Keras caches their weights in "
          f"{hub_models.keras_cache_dir() / 'models'}):")
    for name in hub_models.available():
        spec = hub_models.spec(name)
        cached = "cached" if spec.weights_cached() else "not cached (downloaded on first load)"
        print(f"{name:14s} input {spec.input_size}x{spec.input_size}, preprocess "
              f"{spec.preprocess!r}, {spec.num_classes} classes, weights {cached}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
