"""The command line people expect: every method parameter, one name per method (aliases
accepted), class names, a [0, 255] input scale, crop or resize, rank targets in Python, lazy
imports, `python -m tfsal`, defaults in every --help, and checks before TensorFlow."""

import argparse
import csv
import importlib
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SIZE, toy_cnn
from PIL import Image

import tfsal
from tfsal import TfsalError
from tfsal.cli import _param_value, _parser, main
from tfsal.images import crop_box, load_image
from tfsal.methods import ALIASES, METHODS, NAMES, resolve_method


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "toy.keras"
    toy_cnn().save(path)
    return path


def _image(path, seed=0, size=(SIZE, SIZE), value=None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size + (3,), dtype=np.uint8) \
        if value is None else np.full(size + (3,), value, np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _summary(out):
    return json.loads((Path(out) / "summary.json").read_text())


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parent)
    return done.stdout


# ------------------------------------------------------------------ names and aliases
def test_one_name_per_method_in_python_and_on_the_command_line():
    assert list(METHODS) == list(NAMES)
    assert all(METHODS[name].__name__ == name for name in NAMES)
    assert all(target in NAMES for target in ALIASES.values())
    assert not set(ALIASES) & set(NAMES)
    assert METHODS["vanilla"] is METHODS["saliency"] is tfsal.vanilla_gradient
    assert "ig" in METHODS and "Grad-CAM" in METHODS and "magic" not in METHODS
    assert METHODS.get("gbp") is tfsal.guided_backprop and METHODS.get("magic") is None
    assert [resolve_method(n) for n in ("ig", "gxi", "grad_x_input", "guided", "gbp", "lrp",
                                        "gradcam", "Grad-CAM", "vanilla", "smoothgrad")] == \
        ["integrated_gradients", "gradient_x_input", "gradient_x_input", "guided_backprop",
         "guided_backprop", "epsilon_lrp", "grad_cam", "grad_cam", "vanilla_gradient",
         "smoothgrad"]
    with pytest.raises(TfsalError, match="did you mean vanilla_gradient"):
        resolve_method("vanila")
    with pytest.raises(TfsalError, match="received 'magic'$"):
        resolve_method("magic")
    with pytest.raises(TfsalError, match="method name"):
        resolve_method(3)
    # the submodules of the same name do not shadow the functions
    importlib.import_module("tfsal.methods.cam")
    importlib.import_module("tfsal.methods.smoothgrad")
    from tfsal.methods import cam, smoothgrad

    assert cam is tfsal.cam and smoothgrad is tfsal.smoothgrad and callable(cam)


def test_maps_carry_the_canonical_name_and_an_alias_resumes_them(model_file, tmp_path, capsys):
    image = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--method", "vanilla", "--method", "ig", "--param", "steps=4"]) == 0
    first = _summary(out)
    assert first["methods"] == ["vanilla_gradient", "integrated_gradients"]
    assert [m["method"] for m in first["maps"]] == first["methods"]
    assert Path(first["maps"][0]["files"][0]).name.startswith("a.png.vanilla_gradient.class")
    assert 0.0 <= first["maps"][0]["probability"] <= 1.0
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--method", "saliency", "--method", "integrated_gradients",
                 "--param", "steps=4"]) == 0
    assert [m["status"] for m in _summary(out)["maps"]] == ["existing", "existing"]
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--method", "vanila"]) == 2
    assert "did you mean vanilla_gradient" in capsys.readouterr().err


# ------------------------------------------------------------------------- --param
def test_param_values_read_as_json_else_text():
    assert [_param_value(v) for v in ("32", "0.5", "true", "null", "None", "[1, 2]", "white",
                                      '"7"', "1e-3")] == \
        [32, 0.5, True, None, None, [1, 2], "white", "7", 0.001]


def test_params_reach_each_method_that_takes_them(model_file, tmp_path):
    image = _image(tmp_path / "in" / "a.png", 1)
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--target", "0", "--method", "ig", "--method", "rectgrad",
                 "--param", "steps=3", "--param", "baseline=white",
                 "--param", "percentile=90"]) == 0
    summary = _summary(out)
    assert summary["options"] == {"integrated_gradients": {"steps": 3, "baseline": "white"},
                                  "rectgrad": {"percentile": 90}}
    model = tfsal.load_model(str(model_file))
    pixels = load_image(image, model.input_size)[0][None]
    maps = {m["method"]: np.load(m["files"][0]) for m in summary["maps"]}
    np.testing.assert_allclose(maps["integrated_gradients"], tfsal.integrated_gradients(
        model, pixels, 0, steps=3, baseline="white")[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps["rectgrad"], tfsal.rectgrad(model, pixels, 0,
                                                                percentile=90)[0],
                               rtol=1e-4, atol=1e-6)
    # other values: other files, never the maps of the first settings
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--target", "0", "--method", "ig", "--param", "steps=5"]) == 0
    again = _summary(out)["maps"][0]
    assert again["status"] == "written" and again["files"][0] != summary["maps"][0]["files"][0]


def test_smoothgrad_takes_the_wrapped_methods_parameters(model_file, tmp_path):
    image = _image(tmp_path / "in" / "a.png", 2)
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--target", "1", "--method", "sg", "--param", "method=ig",
                 "--param", "steps=2", "--param", "n_samples=2", "--param", "seed=0"]) == 0
    summary = _summary(out)
    assert summary["options"]["smoothgrad"] == {"method": "integrated_gradients", "steps": 2,
                                                "n_samples": 2, "seed": 0}
    model = tfsal.load_model(str(model_file))
    pixels = load_image(image, model.input_size)[0][None]
    want = tfsal.smoothgrad(model, pixels, 1, method=tfsal.integrated_gradients, steps=2,
                            n_samples=2, seed=0)
    np.testing.assert_allclose(np.load(summary["maps"][0]["files"][0]), want[0], rtol=1e-4,
                               atol=1e-6)


@pytest.mark.parametrize("extra, message", [
    (["--method", "vanilla", "--param", "steps=3"],
     "expected --param names that the methods requested take (vanilla_gradient: score)"),
    (["--method", "ig", "--param", "percentile=9"], "integrated_gradients: baseline, steps"),
    (["--method", "vanilla", "--layer", "conv1"], "received ['layer']"),
    (["--param", "steps"], "expected --param NAME=VALUE"),
    (["--param", "steps=1", "--param", "steps=2"], "each --param once"),
    (["--method", "grad_cam", "--layer", "conv1", "--param", "layer=x"], "received both"),
    (["--preprocess", "256"], "expected --preprocess one of"),
])
def test_bad_params_are_usage_errors(extra, message, model_file, tmp_path, capsys):
    image = _image(tmp_path / "a.png")
    assert main(["explain", str(image), "--model", str(model_file), "--out",
                 str(tmp_path / "o"), *extra]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_param_value_is_the_methods_own_error(model_file, tmp_path, capsys):
    image = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--method", "ig", "--param", "steps=many"]) == 1
    assert "skipped integrated_gradients: expected steps an int" in capsys.readouterr().out
    assert "expected steps" in _summary(out)["skipped"][0]["reason"]


def test_methods_name_shows_the_parameters_and_defaults(capsys):
    assert main(["methods", "ig"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("integrated_gradients: Integrated Gradients")
    assert "aliases: ig" in shown
    for line in ("baseline = black", "steps = 50", "seed = null", "multiply_by = pixels"):
        assert f"  {line}\n" in shown
    assert "number of path points" in shown
    assert main(["methods", "smoothgrad"]) == 0
    shown = capsys.readouterr().out
    assert "method = vanilla_gradient" in shown and "the method it wraps" in shown
    assert main(["methods", "cam"]) == 0
    assert "parameters: none" in capsys.readouterr().out
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert "(also: vanilla, saliency" in listed
    assert main(["methods", "gradcm"]) == 2
    assert "did you mean grad_cam" in capsys.readouterr().err


# ----------------------------------------------------------------- --labels, --preprocess
@pytest.mark.parametrize("text", [
    "zero\none\ntwo\nthree\n",
    json.dumps(["zero", "one", "two", "three"]),
    json.dumps({"3": "three", "0": "zero", "1": "one", "2": "two"}),
    json.dumps({str(i): [f"n{i}", n] for i, n in enumerate(["zero", "one", "two", "three"])}),
])
def test_labels_name_the_classes(text, model_file, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text(text)
    image = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                 "--labels", str(labels), "--target", "top2"]) == 0
    names = ["zero", "one", "two", "three"]
    assert all(m["label"] == names[m["target"]] for m in _summary(out)["maps"])


@pytest.mark.parametrize("text, message", [
    ("zero\none\ntwo\n", "one class name per class in --labels, 4 for toy, received 3"),
    ('{"0": "a", "2": "b"}', "indices 0 … n-1"),
    ("[1, 2]", "JSON list of names"),
    ("\n\n", "received none"),
    (None, "missing path"),
])
def test_bad_labels_are_usage_errors(text, message, model_file, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    if text is not None:
        labels.write_text(text)
    image = _image(tmp_path / "a.png")
    assert main(["explain", str(image), "--model", str(model_file), "--out",
                 str(tmp_path / "o"), "--labels", str(labels)]) == 2
    assert message in capsys.readouterr().err


def _rescaling_model(path):
    """The standard Keras model: pixels 0..255 in, Rescaling(1/255) first; class 0 for bright
    images (mean > 0.5 after rescaling), class 1 for dark ones."""
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(2, activation="softmax")
    out = dense(x)
    dense.set_weights([np.array([[4.0, -4.0]] * 3, np.float32) / 3,
                       np.array([-2.0, 2.0], np.float32)])
    keras.Model(inp, out).save(path)
    return path


def test_preprocess_255_feeds_a_rescaling_model_its_own_scale(tmp_path):
    model_path = _rescaling_model(tmp_path / "rescaling.keras")
    bright = _image(tmp_path / "in" / "bright.png", value=230)
    dark = _image(tmp_path / "in" / "dark.png", value=20)
    predicted = {}
    for preprocess in ("none", "255", "scale255", "0-255"):
        out = tmp_path / f"out-{preprocess}"
        assert main(["explain", str(bright), str(dark), "--model", str(model_path),
                     "--preprocess", preprocess, "--out", str(out)]) == 0
        predicted[preprocess] = {Path(m["image"]).stem: m["target"]
                                 for m in _summary(out)["maps"]}
    assert predicted["none"] == {"bright": 1, "dark": 1}  # [0, 1] pixels: always "dark"
    assert predicted["255"] == predicted["scale255"] == predicted["0-255"] == \
        {"bright": 0, "dark": 1}
    model = tfsal.load_model(str(model_path), preprocess="scale255")
    assert "preprocess='scale255'" in repr(model)
    assert model.predicted_classes(np.full((1, SIZE, SIZE, 3), 0.9, np.float32))[0] == 0


# ------------------------------------------------------------------------------- --fit
def test_crop_cuts_the_centre_to_the_models_aspect_then_resizes(tmp_path):
    path = _image(tmp_path / "wide.png", 3, size=(30, 40))  # 40 wide, 30 high
    assert crop_box(40, 30, (16, 16)) == (5, 0, 35, 30)
    assert crop_box(30, 40, (16, 32)) == (0, 12, 30, 27)
    assert crop_box(32, 16, (8, 16)) is None
    cropped, note = load_image(path, (SIZE, SIZE), fit="crop")
    assert note == "cropped 40x30 to its centre 30x30; resized 30x30 to 16x16"
    with Image.open(path) as img:
        want = np.asarray(img.crop((5, 0, 35, 30)).resize((SIZE, SIZE), Image.BILINEAR),
                          np.float32) / 255
    np.testing.assert_array_equal(cropped, want)
    squashed, note = load_image(path, (SIZE, SIZE))
    assert note == "resized 40x30 to 16x16" and not np.array_equal(squashed, cropped)
    assert load_image(path, None, fit="crop")[0].shape == (30, 40, 3)
    with pytest.raises(TfsalError, match="expected fit in"):
        load_image(path, (SIZE, SIZE), fit="stretch")


def test_crop_matches_the_bundled_photos_square_crop():
    from tfsal.zoo.photos import photo_paths, sample_photos

    paths = photo_paths()
    if "chelsea" not in paths:
        pytest.skip("scikit-image's photos are not installed")
    image, note = load_image(paths["chelsea"], (24, 24), fit="crop")
    np.testing.assert_allclose(image, sample_photos(24, names=["chelsea"])["chelsea"],
                               atol=1e-6)


def test_fit_crop_on_the_command_line_makes_its_own_maps(model_file, tmp_path, capsys):
    image = _image(tmp_path / "in" / "wide.png", 4, size=(30, 40))
    runs = {}
    for fit in ("resize", "crop"):
        out = tmp_path / "out"
        assert main(["explain", str(image), "--model", str(model_file), "--out", str(out),
                     "--target", "0", "--fit", fit]) == 0
        summary = _summary(out)
        assert summary["maps"][0]["status"] == "written" and summary["fit"] == fit
        runs[fit] = (summary["run_folder"], np.load(summary["maps"][0]["files"][0]))
    assert "cropped 40x30 to its centre 30x30" in capsys.readouterr().out
    assert runs["resize"][0] != runs["crop"][0]
    assert not np.allclose(runs["resize"][1], runs["crop"][1])


# -------------------------------------------------------------------------- targets
def test_python_takes_rank_targets(tmp_path):
    model = tfsal.Model(toy_cnn())
    images = np.random.default_rng(5).random((3, SIZE, SIZE, 3)).astype(np.float32)
    order = np.argsort(-model.predict(images), axis=1, kind="stable")
    np.testing.assert_array_equal(model.resolve_targets(images, "top1"), order[:, 0])
    np.testing.assert_array_equal(model.resolve_targets(images, "top2"), order[:, 1])
    np.testing.assert_array_equal(model.resolve_targets(images, "top4"), order[:, 3])
    np.testing.assert_allclose(tfsal.vanilla_gradient(model, images, "top2"),
                               tfsal.vanilla_gradient(model, images, order[:, 1]))
    with pytest.raises(TfsalError, match="'top1' ... 'top4' for a model of 4 classes"):
        model.resolve_targets(images, "top5")
    with pytest.raises(TfsalError, match="a rank 'top1', 'top2'"):
        tfsal.vanilla_gradient(model, images, "best")


# --------------------------------------------------------------------------- evaluate
def test_evaluate_says_it_scores_generated_images(capsys, tmp_path):
    assert main(["evaluate", "total_variation", "--generated", "2", "--out",
                 str(tmp_path / "e")]) == 0
    assert "scoring 2 generated shapes images" in capsys.readouterr().out


def test_evaluate_without_images_uses_the_photos_for_other_models(model_file, tmp_path,
                                                                   capsys):
    from tfsal.zoo.photos import photo_paths

    if not photo_paths():
        pytest.skip("no bundled photos installed")
    out = tmp_path / "e"
    assert main(["evaluate", "background", "--model", str(model_file), "--out",
                 str(out)]) == 0
    assert "bundled photos" in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["n_images"] == len(photo_paths())
    assert main(["evaluate", "background", "--model", str(model_file), "--generated", "2",
                 "--out", str(out)]) == 2
    assert "expected image files for toy (4 classes)" in capsys.readouterr().err


def test_evaluate_takes_masks_for_given_images(model_file, tmp_path, capsys):
    images, masks = tmp_path / "in", tmp_path / "masks"
    _image(images / "a.png", 1)
    _image(images / "sub" / "b.jpg", 2)
    _image(masks / "a.png", value=255)  # all object: nothing outside
    half = np.zeros((SIZE, SIZE), np.uint8)
    half[:, : SIZE // 2] = 1
    (masks / "sub").mkdir()
    Image.fromarray(half).save(masks / "sub" / "b.png")  # the stem, another suffix
    out = tmp_path / "e"
    assert main(["evaluate", "background", str(images), "--model", str(model_file),
                 "--masks", str(masks), "--out", str(out)]) == 0
    with open(out / "results.csv") as handle:
        values = [float(r["value"]) for r in csv.DictReader(handle)]
    assert values[0] == pytest.approx(0.0, abs=1e-6) and 0.0 < values[1] < 1.0
    (masks / "sub" / "b.png").unlink()
    assert main(["evaluate", "background", str(images), "--model", str(model_file),
                 "--masks", str(masks), "--out", str(out)]) == 2
    assert "expected a mask for every image" in capsys.readouterr().err
    assert main(["evaluate", "background", str(images), "--model", str(model_file),
                 "--out", str(out)]) == 2
    assert "expected object masks" in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["explain"], ["nonlinear"], ["evaluate", "deletion"],
])
def test_a_missing_file_on_the_command_line_is_a_usage_error(command, tmp_path, capsys):
    assert main([*command, str(tmp_path / "missing.png"), "--out", str(tmp_path / "o")]) == 2
    assert "missing path" in capsys.readouterr().err


# --------------------------------------------------------------- help, imports, -m
def _subcommands():
    parser = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"tfsal": parser, **sub.choices}


@pytest.mark.parametrize("name", list(_subcommands()))
def test_every_option_help_states_its_default(name):
    parser = _subcommands()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.nargs == 0:
            continue  # positionals, flags and --help
        shown = formatter._expand_help(action)
        assert "default" in shown, f"{name} {action.option_strings[0]}: {shown!r}"
        if action.default is not None:
            assert str(action.default) in shown, (name, action.option_strings)


def test_evaluate_metrics_match_the_library():
    from tfsal.cli import EVALUATE_METRICS
    from tfsal.evaluation import METRICS

    assert EVALUATE_METRICS == METRICS


def test_checks_before_tensorflow_and_lazy_attributes():
    code = """
import contextlib, io, sys
from tfsal import cli
codes = []
with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
    codes.append(cli.main(["explain", "x.png", "--method", "vanila"]))
    codes.append(cli.main(["explain", "x.png", "--param", "steps"]))
    codes.append(cli.main(["explain", "x.png", "--target", "best"]))
    codes.append(cli.main(["explain", "x.png", "--method", "ig", "--preprocess", "256"]))
    codes.append(cli.main(["explain", "x.png"]))
    codes.append(cli.main(["methods", "vanila"]))
    for argv in (["--help"], ["explain", "--help"], ["evaluate", "--help"]):
        try:
            cli.main(argv)
        except SystemExit as exc:
            codes.append(exc.code)
print(codes, "did you mean vanilla_gradient" in err.getvalue())
print("tensorflow" in sys.modules, "keras" in sys.modules)
import tfsal
print("tensorflow" in sys.modules, "metrics" in dir(tfsal))
print(callable(tfsal.metrics.allegiance_curve), callable(tfsal.visualize.render),
      callable(tfsal.evaluation.evaluate), tfsal.plots.__name__, tfsal.METHODS["ig"].__name__)
"""
    lines = _run(code).strip().splitlines()
    assert lines[-4:] == ["[2, 2, 2, 2, 2, 2, 0, 0, 0] True", "False False", "False True",
                          "True True True tfsal.plots integrated_gradients"]


def test_python_dash_m_tfsal():
    done = subprocess.run([sys.executable, "-m", "tfsal", "--help"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and "explain" in done.stdout and "evaluate" in done.stdout
    done = subprocess.run([sys.executable, "-m", "tfsal", "explain", "x.png", "--method",
                           "vanila"], capture_output=True, text=True)
    assert done.returncode == 2 and "did you mean vanilla_gradient" in done.stderr
