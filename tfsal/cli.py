"""The `tfsal` command: explain images, run the demo, list methods and models."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import save_json, save_npy
from tfsal.report import (
    report_from_evaluation,
    report_from_explain_summary,
    report_from_markdown,
    report_from_trajectory,
)
from tfsal.runs import OutputError, check_out, shown
from tfsal.targets import class_label

DEFAULT_MODEL = "shapes-cnn"
DEMO_SEED = 12345  # a data seed never used for training the embedded model
GENERATED_SEED = 2  # the embedded models' held-out test seed


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and getattr(args, "runner", None) is None:  # only Beam takes other options
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.beam_options = unknown
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


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default, "(default: X)", unless the text already
    says it; flags (no value) and options whose default is None say it in their own words."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) \
                or action.nargs == 0:
            return text
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tfsal", description=__doc__,
                                     formatter_class=_HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return sub.add_parser(name, formatter_class=_HelpFormatter, **kwargs)

    explain = command("explain", help="saliency maps of image files or folders",
                      description="Saliency maps of image files or folders, written under "
                                  "--out with summary.json; a rerun resumes.")
    explain.add_argument("images", nargs="+", type=Path,
                         help="image files and/or folders (searched recursively)")
    _add_model_options(explain)
    _add_method_options(explain)
    explain.add_argument("--param", action="append", default=None, metavar="NAME=VALUE",
                         help="a method parameter, e.g. steps=32, baseline=white, "
                              "percentile=95 (repeatable). VALUE is read as JSON where it "
                              "parses (numbers, true, false, null, lists), else as text. Each "
                              "requested method that takes NAME gets it; 'tfsal methods NAME' "
                              "lists a method's parameters and their defaults (default: none, "
                              "the methods' own defaults)")
    explain.add_argument("--layer", default=None,
                         help="shortcut for --param layer=LAYER: layer name, path or index "
                              "(tensor name for SavedModels) of Grad-CAM and Guided Grad-CAM "
                              "(default: the last feature map)")
    explain.add_argument("--target", default="top1", help=_TARGET_HELP)
    _add_image_options(explain)
    explain.add_argument("--max-pixels", type=int, default=None,
                         help="refuse images larger than this many pixels (default: Pillow's "
                              "decompression-bomb limit, about 89 million; 0: no limit)")
    explain.add_argument("--out", type=Path, default=Path("tfsal_out"), help="output folder")
    explain.add_argument("--overwrite", action="store_true",
                         help="recompute maps whose files exist (default: resume, keeping maps "
                              "made from the same input bytes with the same model and settings)")
    beam = explain.add_argument_group(
        "Apache Beam (pip install \"tfsal[beam]\"); other --options go to Beam's "
        "PipelineOptions, written --name=value")
    beam.add_argument("--runner", default=None,
                      help="run as a Beam pipeline: DirectRunner (Beam's FnApiRunner: this "
                           "process, or --direct_num_workers=N), DataflowRunner, FlinkRunner, "
                           "SparkRunner, PrismRunner, ...; IMAGES are then globs on any Beam "
                           "file system (default: no Beam, this process)")
    beam.add_argument("--metric", action="append", default=None,
                      help="with --runner: a per-image metric aggregated over the data set "
                           "(deletion, insertion, allegiance, total_variation, "
                           "nonzero_fraction, all; repeatable; default: none)")
    beam.add_argument("--tfrecord", action="store_true",
                      help="with --runner: IMAGES is a glob of TFRecord files of encoded "
                           "images (raw, or tf.train.Example with image/encoded)")
    explain.set_defaults(run=_explain, beam_options=[])

    nonlinear = command("nonlinear", help="nonlinear saliency maps and the paper's figures")
    nonlinear.add_argument("images", nargs="+", type=Path,
                           help="image files and/or folders (searched recursively)")
    _add_model_options(nonlinear)
    nonlinear.add_argument("--target", default="top1", help=_TARGET_HELP)
    _add_image_options(nonlinear)
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

    evaluate = command("evaluate", help="score methods' maps with a metric; CSV, JSON, plot",
                       description="Score methods' maps with a metric. Without image files: "
                                   "generated shapes images (with their object masks) for the "
                                   "built-in shapes models, the bundled photos (with their "
                                   "object boxes) for other models.")
    evaluate.add_argument("metric", choices=EVALUATE_METRICS,
                          help="allegiance | deletion | insertion | background | "
                               "total_variation | signed | shift | patch | roar "
                               "(patch and roar retrain on generated data)")
    evaluate.add_argument("images", nargs="*", type=Path,
                          help="image files and/or folders (default: generated shapes images "
                               "for the shapes models, the bundled photos otherwise)")
    _add_model_options(evaluate)
    _add_method_options(evaluate)
    _add_image_options(evaluate)
    evaluate.add_argument("--masks", type=Path, default=None, metavar="DIR",
                          help="object masks of the images given, for the background metric: "
                               "one image per input, at its path relative to the inputs' "
                               "folder (or its stem, any image suffix); nonzero pixels are "
                               "the object (default: none)")
    evaluate.add_argument("--generated", type=int, default=None,
                          help="score this many generated shapes images (for models trained "
                               "on tfsal.data's shapes; default: 100 of them for the built-in "
                               "shapes models when no files are given)")
    evaluate.add_argument("--seed", type=int, default=GENERATED_SEED,
                          help="seed of the generated images (held out from training)")
    evaluate.add_argument("--fill", default="black",
                          help="deletion fill: black, white or a number in [0, 1]")
    evaluate.add_argument("--reduction", default="abs-max",
                          help="channel reduction of the maps (mean, sum, max, abs-max, l2)")
    evaluate.add_argument("--n-train", type=int, default=2000,
                          help="patch / roar: generated training images")
    evaluate.add_argument("--epochs", type=int, default=6,
                          help="patch / roar: epochs of each training")
    evaluate.add_argument("--repeats", type=int, default=3,
                          help="roar: trainings per method and fraction")
    evaluate.add_argument("--fractions", default="0.1,0.3,0.5,0.7,0.9",
                          help="roar: fractions removed (ROAR) and kept (KAR), comma-separated")
    evaluate.add_argument("--out", type=Path, default=Path("tfsal_eval"), help="output folder")
    evaluate.set_defaults(run=_evaluate)

    reproduce = command("reproduce", help="regenerate a paper's figures and tables")
    reproduce.add_argument("paper", help="nonlinear | rectgrad | signed")
    reproduce.add_argument("--model", action="append", default=None,
                           help="built-in name, ImageNet model name, .keras file or SavedModel "
                                "(repeatable; default: the embedded models)")
    reproduce.add_argument("--images", type=Path, default=None,
                           help="folder of images (default: generated data for the embedded "
                                "models, the bundled photos otherwise)")
    _add_image_options(reproduce)
    reproduce.add_argument("--n-images", type=int, default=8, help="generated images")
    reproduce.add_argument("--quick", action="store_true",
                           help="reduced settings for a fast end-to-end run")
    reproduce.add_argument("--retrain", action="store_true",
                           help="rectgrad: also Table 1 (ROAR / KAR), retraining the embedded "
                                "architecture (long; short with --quick)")
    reproduce.add_argument("--out", type=Path, default=Path("tfsal_reproduce"),
                           help="output folder")
    reproduce.set_defaults(run=_reproduce)

    demo = command("demo", help="real photos explained by EfficientNet-Lite0, then every "
                                "method on generated images of the embedded model, and the "
                                "attention methods on the embedded ViT")
    demo.add_argument("--n-images", type=int, default=6,
                      help="generated images for the embedded model")
    demo.add_argument("--photos", type=int, default=None,
                      help="bundled photos to explain with efficientnet-lite0 (default all; "
                           "0: none)")
    demo.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder")
    demo.set_defaults(run=_demo)

    methods = command("methods", help="list the attribution methods, or one method's "
                                      "parameters and their defaults")
    methods.add_argument("name", nargs="?", default=None,
                         help="a method name or alias: show its parameters (default: list "
                              "every method)")
    methods.set_defaults(run=_methods)
    command("models", help="list the built-in models").set_defaults(run=_models)
    return parser


_TARGET_HELP = ("class index, or top1, top2, ... (top2: maps of the best and the second best "
                "class of each image)")
# `tfsal.evaluation.METRICS`, here without importing TensorFlow.
EVALUATE_METRICS = ("allegiance", "deletion", "insertion", "background", "total_variation",
                    "signed", "shift", "patch", "roar")
# --preprocess spellings -> `tfsal.load_model`'s preprocess.
PREPROCESS = {"auto": "auto", "none": None, "caffe": "caffe", "tf": "tf", "torch": "torch",
              "scale255": "scale255", "255": "scale255", "0-255": "scale255"}


def _add_method_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", action="append", default=None,
                        help="method name or alias (repeatable, or 'all'; 'tfsal methods' "
                             "lists them; default: vanilla_gradient)")


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fit", choices=("resize", "crop"), default="resize",
                        help="how image files meet the model's input size: resize squashes "
                             "the whole image; crop cuts the centre to the model's aspect "
                             "ratio, then resizes")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="built-in name (tfsal models), ImageNet name (xception, vgg16, "
                             "resnet50, inception_v3, mobilenet_v2), hub:<handle>, .keras file "
                             "or SavedModel directory")
    parser.add_argument("--preprocess", default="auto",
                        help="what the model takes, from pixels x in [0, 1]: auto (a built-in "
                             "model's own, else none), none (x), tf (2x-1), caffe (BGR 0..255 "
                             "minus the ImageNet mean), torch (ImageNet mean/std), scale255 or "
                             "255 or 0-255 (255x: a model that rescales by 1/255 itself, such "
                             "as one starting with keras.layers.Rescaling(1/255))")
    parser.add_argument("--labels", type=Path, default=None, metavar="FILE",
                        help="class names: a text file with one name per line, a JSON list, "
                             "or a JSON object {index: name}; one per class of the model "
                             "(default: a named model's own, else none)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call")
    parser.add_argument("--unsafe-load", action="store_true",
                        help="allow models that run arbitrary code or touch files: .keras files "
                             "with Lambda layers, SavedModels and hub handles whose graph "
                             "reads or writes files, the network or processes")
    parser.add_argument("--custom-objects", default=None, metavar="MODULE",
                        help="a module name or .py file defining the custom layers and "
                             "functions of a .keras file (importing it runs its code; "
                             "default: none)")
    parser.add_argument("--output", choices=("auto", "logits", "probabilities"), default="auto",
                        help="what the model returns (auto: a softmax at the end of the model "
                             "is found and its logits used)")
    parser.add_argument("--score", choices=("logit", "probability", "log_probability"),
                        default="logit", help="the score methods differentiate")
    graph = parser.add_argument_group("SavedModels, TF Serving directories and hub handles")
    graph.add_argument("--signature", default=None,
                       help="signature to call (default serving_default, else __call__)")
    graph.add_argument("--output-key", default=None,
                       help="which output of a signature returning several (e.g. logits; "
                            "default: the only one)")
    graph.add_argument("--version", type=int, default=None,
                       help="TF Serving layout: the version to load (default: the newest)")
    graph.add_argument("--input-tensor", default=None,
                       help="the float image tensor to feed, for signatures taking encoded "
                            "bytes (default: the first float (N, H, W, 3) tensor after decoding)")


def _load(args):
    from tfsal.loading import load_model

    preprocess = _preprocess(args.preprocess)
    class_names = _read_labels(args.labels)
    # Only the options given: load_model refuses those that do not apply to the source.
    given = {option: getattr(args, option) for option in
             ("signature", "output_key", "version", "input_tensor")
             if getattr(args, option) is not None}
    if args.custom_objects is not None:
        from tfsal.loading import custom_objects_from

        given["custom_objects"] = custom_objects_from(args.custom_objects)
    model = load_model(str(args.model), preprocess=preprocess, batch_size=args.batch_size,
                       safe_mode=not args.unsafe_load, output=args.output, score=args.score,
                       class_names=class_names, **given)
    if class_names is not None and len(class_names) != model.num_classes:
        raise TfsalError(f"expected one class name per class in --labels, "
                         f"{model.num_classes} for {model.name}, received {len(class_names)} "
                         f"in {shown(args.labels)}")
    return model


def _check_model_options(args) -> None:
    """The model options that can be checked without TensorFlow, before any work."""
    _preprocess(args.preprocess)
    _read_labels(args.labels)


def _preprocess(text: str):
    if text not in PREPROCESS:
        raise TfsalError(f"expected --preprocess one of {', '.join(PREPROCESS)}, received "
                         f"{text!r}")
    return PREPROCESS[text]


def _read_labels(path: Path | None) -> list[str] | None:
    """Class names from --labels: one per line, a JSON list, or a JSON object {index: name}
    (an entry may also be a list ending with the name, as Keras's imagenet_class_index.json)."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TfsalError(f"expected --labels an existing file, received the missing path "
                         f"{shown(path)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TfsalError(f"expected --labels a readable UTF-8 text file, received "
                         f"{shown(path)} ({exc})") from None
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            names = _json_labels(json.loads(stripped))
        except (ValueError, TypeError) as exc:
            raise TfsalError(f"expected --labels a JSON list of names or an object "
                             f"{{index: name}} with indices 0 … n-1, received {shown(path)} "
                             f"({exc})") from None
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise TfsalError(f"expected class names in --labels, received none in {shown(path)}")
    return names


def _json_labels(data) -> list[str]:
    def name(value):
        if isinstance(value, list) and value:
            value = value[-1]
        if not isinstance(value, str):
            raise TypeError(f"a name {value!r} that is not a string")
        return value

    if isinstance(data, list):
        return [name(v) for v in data]
    indices = {int(k): v for k, v in data.items()}  # ValueError for other keys
    if sorted(indices) != list(range(len(indices))):
        raise ValueError("indices that are not 0 … n-1")
    return [name(indices[i]) for i in range(len(indices))]


def _method_names(requested: list[str] | None) -> list[str]:
    """The methods' one names (aliases resolved, each once), without TensorFlow."""
    from tfsal.methods import NAMES, resolve_method, suggest_methods

    names = requested or ["vanilla_gradient"]
    if "all" in names:
        return list(NAMES)
    unknown = []
    resolved = []
    for name in names:
        try:
            resolved.append(resolve_method(name))
        except TfsalError:
            unknown.append(name)
    if unknown:
        hints = "; ".join(f"{name!r}: did you mean {' or '.join(suggest_methods(name))}?"
                          for name in unknown if suggest_methods(name))
        raise TfsalError(f"expected method names from {list(NAMES)}, an alias ('tfsal methods' "
                         f"lists them) or 'all', received {unknown}"
                         + (f" ({hints})" if hints else ""))
    return list(dict.fromkeys(resolved))


def _params(texts: list[str] | None, layer: str | None = None) -> dict:
    """--param NAME=VALUE (and --layer) as {name: value}, without TensorFlow."""
    params = {}
    for text in texts or []:
        name, sep, value = text.partition("=")
        name = name.strip()
        if not sep or not name.isidentifier():
            raise TfsalError(f"expected --param NAME=VALUE (e.g. steps=32), received {text!r}")
        if name in params:
            raise TfsalError(f"expected each --param once, received {name} twice")
        params[name] = _param_value(value)
    if layer is not None:
        if "layer" in params:
            raise TfsalError("expected --layer or --param layer=..., received both")
        params["layer"] = _layer(layer)
    return params


def _param_value(text: str):
    """JSON where it parses (32, 0.5, true, null, [1, 2], "text"), Python's None / True /
    False too, else the text itself."""
    words = {"None": None, "True": True, "False": False}
    if text in words:
        return words[text]
    try:
        return json.loads(text)
    except ValueError:
        return text


class _NamedMethod:
    """A method named in --param method=NAME (SmoothGrad's, VarGrad's): it calls the method
    and is shown, and digested into the map files' names, as its name."""

    def __init__(self, name: str, function):
        self.name, self.function = name, function

    def __call__(self, *args, **kwargs):
        return self.function(*args, **kwargs)

    def __getattr__(self, attribute):  # e.g. `compute`, the unchecked core SmoothGrad uses
        return getattr(self.function, attribute)

    def __repr__(self) -> str:
        return self.name


def _methods_with_options(names: list[str], params: dict) -> dict:
    """{name: (function, options)}: each method gets the --param values it takes (SmoothGrad
    and VarGrad also those of the method they wrap); a parameter no method takes is an
    error naming the methods' parameters."""
    from tfsal.methods import METHODS

    methods, taken = {}, {}
    for name in names:
        accepted = _accepted_parameters(name, params)
        taken[name] = accepted
        options = {key: value for key, value in params.items() if key in accepted}
        if isinstance(options.get("method"), str):
            from tfsal.methods import resolve_method

            wrapped = resolve_method(options["method"])
            options["method"] = _NamedMethod(wrapped, METHODS[wrapped])
        methods[name] = (METHODS[name], options)
    unused = [key for key in params if not any(key in accepted for accepted in taken.values())]
    if unused:
        listed = "; ".join(f"{name}: {', '.join(accepted) or 'none'}"
                           for name, accepted in taken.items())
        raise TfsalError(f"expected --param names that the methods requested take ({listed}), "
                         f"received {unused}")
    return methods


def _accepted_parameters(name: str, params: dict) -> list[str]:
    """The parameter names a method takes: its own, and for a method wrapping another
    (method=..., **kwargs: SmoothGrad, VarGrad) the wrapped one's."""
    import inspect

    from tfsal.methods import METHODS, method_parameters, resolve_method

    own = method_parameters(name)
    accepted = list(own)
    takes_more = any(p.kind == p.VAR_KEYWORD
                     for p in inspect.signature(METHODS[name]).parameters.values())
    if "method" in own and takes_more:
        wrapped = params.get("method", own["method"].default)
        if isinstance(wrapped, str):
            wrapped = METHODS[resolve_method(wrapped)]
        if callable(wrapped):
            accepted += [p for p in method_parameters(wrapped) if p not in accepted]
    return accepted


def _check_target(rule: str) -> str:
    """--target's syntax, without TensorFlow (the class range is checked with the model)."""
    from tfsal.targets import rank_of

    if rank_of(rule) is None:
        try:
            int(rule)
        except ValueError:
            raise TfsalError(f"expected a target a class index, top1 or top2 (or topK), "
                             f"received {rule!r}") from None
    return rule


def _targets(model, images: np.ndarray, spec: str) -> list[np.ndarray]:
    from tfsal.runs import targets_for

    return targets_for(model, images, spec)


def _explain(args) -> int:
    """Maps for every image, batch by batch, into a run folder of OUT (`tfsal.runs`): failures
    are reported and skipped, maps already made from the same input and settings are kept
    (resume) unless --overwrite, every file is written atomically. The options, OUT and the
    inputs are checked before TensorFlow is imported and the model loaded."""
    from tfsal import runs

    names = _method_names(args.method)
    params = _params(args.param, args.layer)
    _check_target(args.target)
    _check_model_options(args)
    if args.runner is not None or args.metric or args.tfrecord:
        from tfsal.beam.cli import explain_on_beam  # TfsalError naming the extra if missing

        return explain_on_beam(args, _methods_with_options(names, params),
                               preprocess=_preprocess(args.preprocess),
                               class_names=_read_labels(args.labels),
                               image_options=_image_options(args))
    out = runs.check_out(args.out)
    inputs, problems = runs.find_inputs(args.images, out)
    methods = _methods_with_options(names, params)
    model = _load(args)
    fingerprint = runs.run_fingerprint(model, args.target)
    if args.fit != "resize":  # other pixels, other maps (resize: the folders made before --fit)
        fingerprint["fit"] = args.fit
    run = runs.RunFolder(out, model.name, fingerprint, inputs)
    summary = runs.Summary({"model": repr(model), "source": str(args.model),
                            "run_folder": str(run.path), "fingerprint": run.fingerprint,
                            "methods": names, "target": args.target, "fit": args.fit,
                            "options": {name: json.loads(json.dumps(options, default=repr))
                                        for name, (_, options) in methods.items()}})
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
            f"{len(summary.skipped)} method(s) skipped; see "
            f"{runs.shown(out / 'report.html')} and summary.json")
    requested_failed = bool(summary.skipped) and "all" not in (args.method or [])
    return 1 if summary.failed or requested_failed else 0


def _write_summary(summary, out: Path, finished: bool) -> None:
    """summary.json and report.html, once at the end; after a failure or an interruption too,
    as far as the disk allows (the error that stopped the run is the one reported)."""
    try:
        summary.write(out / "summary.json", finished=finished)
        report_from_explain_summary(out)
    except OSError as exc:
        if finished:
            raise OutputError(f"could not write {out / 'summary.json'}: "
                              f"{exc.strerror or exc}") from None
    finally:
        summary.close()


def _image_options(args) -> dict:
    options = {"fit": args.fit}
    if args.max_pixels is not None:
        options["max_pixels"] = None if args.max_pixels == 0 else args.max_pixels
    return options


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


def _load_images(paths: list[Path], size, fit: str = "resize") -> np.ndarray:
    """Read image files into one (N, H, W, 3) batch, resized (or cropped, `fit`) to the
    model's input size."""
    from tfsal.images import load_image

    loaded = []
    for path in paths:
        image, note = load_image(path, size, fit=fit)
        if note:
            print(f"{path}: {note}")
        loaded.append(image)
    if size is None and len({im.shape for im in loaded}) > 1:
        raise TfsalError("expected images of one size for a model without a fixed input size, "
                         f"received sizes {sorted({im.shape[:2] for im in loaded})}")
    return np.stack(loaded)


def _mask_files(folder: Path, paths: list[str]) -> list[Path]:
    """The mask of each image in `folder`: at the image's path relative to the images' common
    folder, else that path's stem with any image suffix, else the image's stem at the top of
    `folder`; one for every image, without ambiguity."""
    from tfsal.runs import IMAGE_SUFFIXES

    if not folder.is_dir():
        raise TfsalError(f"expected --masks an existing folder, received {shown(folder)}")
    root = os.path.commonpath([os.path.dirname(p) for p in paths])
    found = []
    for path in paths:
        relative = Path(os.path.relpath(path, root))
        candidates = [folder / relative]
        for place in (folder / relative.parent, folder):
            candidates += sorted(place / (relative.stem + suffix) for suffix in
                                 dict.fromkeys(IMAGE_SUFFIXES + tuple(s.upper() for s in
                                                                      IMAGE_SUFFIXES)))
        existing = list(dict.fromkeys(c for c in candidates if c.is_file()))
        if not existing:
            raise TfsalError(f"expected a mask for every image in --masks {shown(folder)}, "
                             f"received none for {shown(path)} (looked for "
                             f"{shown(folder / relative)}, or {shown(relative.stem)}.png, "
                             f".jpg, ... there or at the top)")
        exact = existing[0] == folder / relative
        same_place = [c for c in existing if c.parent == existing[0].parent]
        if not exact and len(same_place) > 1:
            raise TfsalError(f"expected one mask for {shown(path)}, received "
                             f"{[shown(c) for c in same_place]}")
        found.append(existing[0])
    return found


def _load_masks(files: list[Path], images: np.ndarray, size, fit: str) -> np.ndarray:
    """(N, H, W) bool object masks: nonzero pixels (any colour channel; alpha ignored) are
    the object; fitted to the model's input like the images (resize or crop), nearest."""
    from PIL import Image

    from tfsal.images import crop_box

    masks = []
    for file, image in zip(files, images):
        try:
            with Image.open(file) as img:
                img.load()
                if img.mode in ("P", "PA"):
                    img = img.convert("RGBA")
                bands = [i for i, band in enumerate(img.getbands()) if band != "A"]
                values = np.asarray(img)
        except Exception as exc:  # any decoder's failure
            raise TfsalError(f"expected a readable mask image, received {shown(file)} "
                             f"({type(exc).__name__}: {exc})") from None
        mask = values[..., bands].any(axis=-1) if values.ndim == 3 else values != 0
        picture = Image.fromarray(mask.astype(np.uint8) * 255)
        if size is not None:
            box = crop_box(picture.width, picture.height, size) if fit == "crop" else None
            if box is not None:
                picture = picture.crop(box)
            picture = picture.resize((size[1], size[0]), Image.NEAREST)
        mask = np.asarray(picture) > 127
        if mask.shape != image.shape[:2]:
            raise TfsalError(f"expected a mask of its image's size {image.shape[1]}x"
                             f"{image.shape[0]}, received {shown(file)} of "
                             f"{mask.shape[1]}x{mask.shape[0]}")
        masks.append(mask)
    return np.stack(masks)


def _nonlinear(args) -> int:
    from tfsal.reproduce.run import nonlinear_run

    _check_target(args.target)
    _check_model_options(args)
    check_out(args.out)
    paths = _image_paths(args.images, args.out)
    options = _nonlinear_options(args)
    model = _load(args)
    images = _load_images(paths, model.input_size, args.fit)
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
    page = report_from_trajectory(args.out)
    count = len(run.shared) + sum(len(e["files"]) for e in run.items)
    print(f"{'linear' if args.linear else 'nonlinear'} saliency of {len(run.items)} item(s) "
          f"from {len(images)} image(s): mean best target probability "
          f"{run.trajectory.best_probability.mean():.3f}; wrote {count} figures, "
          f"trajectory.json and {page.name} to {args.out}")
    return 0


def _nonlinear_options(args) -> dict:
    """The loop's hyperparameters given on the command line (others: the library defaults)."""
    options = {}
    if args.levels is not None:
        options["levels"] = _numbers(args.levels, "--levels", "fractions such as 0,0.5,0.95")
    if args.steps_per_level is not None:
        options["steps_per_level"] = args.steps_per_level
    if args.step_size is not None:
        options["step_size"] = args.step_size
    return options


def _evaluate(args) -> int:
    methods = _method_names(args.method)
    _check_model_options(args)
    fill = _fill(args.fill)
    check_out(args.out)
    if args.generated is not None and args.generated < 1:
        raise TfsalError(f"expected --generated ≥ 1, received {args.generated}")
    if args.images and args.generated is not None:
        raise TfsalError("expected image files or --generated, received both")
    if args.masks is not None and not args.images:
        raise TfsalError(f"expected image files to go with --masks {shown(args.masks)}, "
                         f"received none")
    paths = _image_paths(args.images, args.out) if args.images else None
    if args.metric == "background" and paths is not None and args.masks is None:
        raise TfsalError("expected object masks for the background metric with image files "
                         "(--masks DIR), received none")
    mask_files = _mask_files(args.masks, paths) if args.masks is not None else None
    if args.metric == "patch":
        from tfsal.evaluation import evaluate_patch

        return _print_evaluation(evaluate_patch(
            methods, n_train=args.n_train, n_eval=args.generated or 100, epochs=args.epochs,
            out=args.out, seed=args.seed), args.out)
    from tfsal.evaluation import evaluate, evaluate_roar

    if args.metric == "roar":
        from tfsal.metrics.roar import check_fractions

        fractions = check_fractions(_numbers(args.fractions, "--fractions"))
        return _print_evaluation(evaluate_roar(
            _load(args), methods, n_train=args.n_train, n_test=args.generated or 100,
            epochs=args.epochs, repeats=args.repeats, out=args.out, fractions=fractions),
            args.out)
    model = _load(args)
    if paths is not None:
        images = _load_images(paths, model.input_size, args.fit)
        masks = None if mask_files is None else _load_masks(mask_files, images,
                                                            model.input_size, args.fit)
    else:
        images, masks = _default_evaluation_images(args, model)
    return _print_evaluation(evaluate(model, images, args.metric, methods=methods, masks=masks,
                                      fill=fill, reduction=args.reduction, out=args.out),
                             args.out)


def _numbers(text: str, option: str, what: str = "numbers") -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise TfsalError(f"expected {option} comma-separated {what}, received {text!r}") \
            from None


def _fill(text: str):
    if text in ("black", "white"):
        return text
    try:
        return float(text)
    except ValueError:
        raise TfsalError(f"expected --fill black, white or a number, received {text!r}") \
            from None


def _is_shapes_model(model) -> bool:
    from tfsal import zoo

    return model.name in zoo.available() and zoo.info(model.name).data == "shapes"


def _default_evaluation_images(args, model) -> tuple[np.ndarray, np.ndarray]:
    """Without image files: generated shapes images for the built-in shapes models (or with
    --generated, for a model of the shapes classes), the bundled photos otherwise; each with
    its object masks. Says which on stdout."""
    from tfsal.data import CLASS_NAMES, make_dataset

    if _is_shapes_model(model) or args.generated is not None:
        if not _is_shapes_model(model) and model.num_classes != len(CLASS_NAMES):
            raise TfsalError(f"expected image files for {model.name} ({model.num_classes} "
                             f"classes): --generated makes shapes images, for models of the "
                             f"{len(CLASS_NAMES)} shapes classes; received none")
        count = 100 if args.generated is None else args.generated
        if model.input_size is None or model.input_size[0] != model.input_size[1]:
            raise TfsalError(f"expected a model with a fixed square input size for generated "
                             f"images, received {model.input_size}")
        print(f"no image files given: scoring {count} generated shapes images (tfsal.data, "
              f"seed {args.seed}) with their object masks", flush=True)
        data = make_dataset(count, size=model.input_size[0], seed=args.seed)
        return data.images, data.masks
    from tfsal.zoo.photos import object_masks, sample_photos

    if model.input_size is None or model.input_size[0] != model.input_size[1]:
        raise TfsalError(f"expected image files for {model.name} (the bundled photos suit "
                         f"square input sizes), received none")
    photos = sample_photos(model.input_size[0])
    if not photos:
        raise TfsalError(f"expected image files for {model.name}, or the bundled photos "
                         f'(pip install "tfsal[imagenet,plot]"), received neither')
    names = tuple(photos)
    print(f"no image files given: scoring the {len(names)} bundled photos "
          f"({', '.join(names)}; tfsal.zoo.photos) with their hand-drawn object boxes "
          f"as masks", flush=True)
    return np.stack(list(photos.values())), object_masks(model.input_size[0], names)


def _print_evaluation(result, out: Path) -> int:
    for name, stats in result.summary.items():
        print(f"{name:24s} " + "  ".join(f"{k} {v:.4f}" for k, v in stats.items()))
    page = report_from_evaluation(out, [f for f in result.files if str(f).endswith(".png")])
    print(f"wrote {', '.join(str(f) for f in [*result.files, page])}")
    return 0


def _reproduce(args) -> int:
    from tfsal import zoo
    from tfsal.loading import load_model
    from tfsal.reproduce.run import reproduce

    check_out(args.out)
    # The papers' models: the shapes CNNs (the ViT is for the attention methods).
    shapes_models = [n for n in zoo.available()
                     if zoo.info(n).data == "shapes" and zoo.info(n).kind == "cnn"]
    names = args.model or (shapes_models if args.paper == "signed" else [DEFAULT_MODEL])
    models = [load_model(name) for name in names]
    report = reproduce(args.paper, models, _reproduce_images(args, models[0]), out=args.out,
                       quick=args.quick, retrain=args.retrain)
    page = report_from_markdown(args.out)
    print(f"wrote {report}, {page} and the figures")
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
        return Images(_load_images(paths, model.input_size, args.fit),
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


def _demo(args) -> int:
    from tfsal import zoo
    from tfsal.data import make_dataset
    from tfsal.methods import ATTENTION_METHODS, METHODS, vanilla_gradient

    if args.n_images < 1:
        raise TfsalError(f"expected --n-images ≥ 1, received {args.n_images}")
    if args.photos is not None and args.photos < 0:
        raise TfsalError(f"expected --photos ≥ 0, received {args.photos}")
    check_out(args.out)
    if args.photos != 0:
        _demo_photos(args.photos, args.out)
    print(f"explaining {args.n_images} generated images with {DEFAULT_MODEL}, every method ...",
          flush=True)
    data = make_dataset(args.n_images, size=zoo.info(DEFAULT_MODEL).input_size, seed=DEMO_SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = _demo_grid(DEFAULT_MODEL, data, METHODS, args.out, prefix="")
    save_json({"model": DEFAULT_MODEL, "images": summary, "methods": list(METHODS)},
              args.out / "summary.json")
    print(f"explaining them with {VIT_MODEL}, every attention method ...", flush=True)
    _demo_grid(VIT_MODEL, data, {"vanilla_gradient": vanilla_gradient, **ATTENTION_METHODS},
               args.out, prefix="vit_")
    return 0


VIT_MODEL = "shapes-vit"


def _demo_grid(name: str, data, methods: dict, out: Path, *, prefix: str) -> list[dict]:
    """`data`'s images explained by the built-in model `name` with every method of `methods`
    (name -> function), for the predicted classes: <prefix>image<i>_<method>.npy / .png and
    <prefix>grid.png; returns one summary entry per image."""
    from tfsal import visualize
    from tfsal.loading import load_model

    model = load_model(name)
    probs = model.predict(data.images, score="probability")
    predicted = probs.argmax(axis=1)
    rows, summary = [], []
    for i, image in enumerate(data.images):
        rows.append([(image * 255).round().astype(np.uint8)])
        summary.append({"index": i, "label": class_label(model, data.labels[i]),
                        "predicted": class_label(model, predicted[i]),
                        "probability": round(float(probs[i, predicted[i]]), 4)})
    for method_name, method in methods.items():
        maps = method(model, data.images, predicted)
        for i, (image, attribution) in enumerate(zip(data.images, maps)):
            picture = visualize.render(image, attribution)
            rows[i].append(picture)
            save_npy(attribution, out / f"{prefix}image{i}_{method_name}.npy")
            visualize.save_png(picture, out / f"{prefix}image{i}_{method_name}.png")
    row_titles = [f"{s['label']} -> {s['predicted']} {s['probability']:.2f}" for s in summary]
    sheet = visualize.grid(rows, row_titles=row_titles, col_titles=["image", *methods], scale=3)
    grid_path = visualize.save_png(sheet, out / f"{prefix}grid.png")
    accuracy = float(np.mean(predicted == data.labels))
    print(f"{name}: {accuracy:.0%} of {len(predicted)} demo images classified correctly")
    print(f"wrote {grid_path} and {len(methods) * len(data.images)} maps (.png + .npy) to {out}")
    return summary


PHOTO_MODEL = "efficientnet-lite0"
# The main methods on the photos: plain and smoothed gradients, a path method, a backward rule,
# a class-activation map.
PHOTO_METHODS = {"gradient": ("vanilla_gradient", {}),
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
        label = class_label(model, target).replace("_", " ")
        titles.append(f"{name}\n{label} {p[target]:.0%}")
        print(f"  {name}: {label} ({p[target]:.1%})")
    path = plots.explanation_sheet(images, maps, out / "photos.png", row_titles=titles,
                                   title=f"{PHOTO_MODEL} (ImageNet), maps of the predicted class")
    print(f"wrote {path}")


def _methods(args) -> int:
    from tfsal.methods import ATTENTION_NAMES, NAMES, aliases_of, resolve_method

    if args.name is not None:
        return _method_help(resolve_method(args.name))  # a typo is reported before TensorFlow
    from tfsal.methods import METHODS

    for name in NAMES:
        print(f"{name:22s} {_doc_summary(METHODS[name])}")
        aliases = aliases_of(name)
        if aliases:
            print(f"{'':22s} (also: {', '.join(aliases)})")
    print("\nfor vision transformers (models with MultiHeadAttention layers; not in 'all'):")
    for name in ATTENTION_NAMES:
        print(f"{name:22s} {_doc_summary(METHODS[name])}")
    print("\n'tfsal methods NAME' shows a method's parameters, given with --param NAME=VALUE")
    return 0


def _method_help(name: str) -> int:
    """A method's summary, aliases and parameters with their defaults."""
    import inspect
    import textwrap

    from tfsal.methods import METHODS, aliases_of, method_parameters

    function = METHODS[name]
    print(f"{name}: {_doc_summary(function)}")
    aliases = aliases_of(name)
    if aliases:
        print(f"aliases: {', '.join(aliases)}")
    described = _arg_docs(function.__doc__ or "")
    parameters = method_parameters(function)
    print("parameters (tfsal explain --param NAME=VALUE):" if parameters else
          "parameters: none")
    for parameter in parameters.values():
        print(f"  {parameter.name} = {_shown_default(parameter.default)}")
        if parameter.name in described:
            print(textwrap.fill(described[parameter.name], width=96, initial_indent=" " * 6,
                                subsequent_indent=" " * 6))
    if any(p.kind == p.VAR_KEYWORD for p in inspect.signature(function).parameters.values()):
        print("  and the parameters of the method it wraps (--param method=NAME, e.g.\n"
              "  --param method=integrated_gradients --param steps=16): tfsal methods NAME")
    return 0


def _doc_summary(function) -> str:
    lines = (function.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


def _arg_docs(doc: str) -> dict[str, str]:
    """{parameter: description} from a docstring's "Args:" section (Google style)."""
    import inspect

    lines = inspect.cleandoc(doc).splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if start is None:
        return {}
    docs, current, indent = {}, None, None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        indent = width if indent is None else indent
        if width < indent:
            break
        if width == indent:
            key, _, text = line.strip().partition(":")
            current = key.strip().lstrip("*")
            docs[current] = text.strip()
        elif current is not None:
            docs[current] += " " + line.strip()
    return docs


def _shown_default(value) -> str:
    """A default as --param would take it: JSON (null, true, 0.15), text without quotes, a
    function by its name."""
    import inspect

    if value is inspect.Parameter.empty:
        return "(required)"
    if callable(value):
        return getattr(value, "__name__", repr(value))
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


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
