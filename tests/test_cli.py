"""The `tfsal` command writes the files it names, and reports bad input clearly."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SIZE, toy_cnn
from PIL import Image

from tfsal.cli import main
from tfsal.methods import METHODS


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "toy.keras"
    toy_cnn().save(path)
    return path


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(SIZE, SIZE), (40, 30)]):  # the second one needs resizing
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_explain_writes_png_and_npy_per_image_method_and_target(model_file, image_files,
                                                                tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", *map(str, image_files), "--model", str(model_file),
                 "--method", "vanilla", "--method", "grad_cam", "--target", "top2",
                 "--out", str(out), "--preprocess", "none"])
    assert code == 0
    assert "resized 30x40 to 16x16" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == 2 * 2 * 2  # images × methods × targets
    for entry in summary:
        for name in entry["files"]:
            assert Path(name).exists()
        npy = np.load([f for f in entry["files"] if f.endswith(".npy")][0])
        expected = (SIZE, SIZE, 3) if entry["method"] == "vanilla" else (SIZE // 2, SIZE // 2)
        assert npy.shape == expected and np.isfinite(npy).all()
        png = Image.open([f for f in entry["files"] if f.endswith(".png")][0])
        assert png.size == (SIZE, SIZE) and png.mode == "RGB"
    top = {e["image"]: set() for e in summary}
    for e in summary:
        top[e["image"]].add(e["target"])
    assert all(len(t) == 2 for t in top.values())  # two different classes per image


def test_explain_with_a_class_index(model_file, image_files, tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(image_files[0]), "--model", str(model_file), "--target", "3",
                 "--out", str(out)]) == 0
    assert (out / "img0_vanilla_class3.npy").exists() and (out / "img0_vanilla_class3.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--target", "9"], "class indices in [0, 4)"),
    (["--target", "best"], "top1 or top2"),
    (["--method", "magic"], "method names"),
])
def test_explain_reports_bad_options(extra, message, model_file, image_files, tmp_path, capsys):
    code = main(["explain", str(image_files[0]), "--model", str(model_file), "--out",
                 str(tmp_path / "o"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_explain_reports_an_unreadable_image(model_file, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["explain", str(bad), "--model", str(model_file), "--out", str(tmp_path)]) == 2
    assert "readable" in capsys.readouterr().err


def test_methods_lists_every_method(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in METHODS)


def test_models_lists_the_embedded_model(capsys):
    assert main(["models"]) == 0
    assert "shapes-cnn" in capsys.readouterr().out


def test_demo_writes_the_grid_and_every_map(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--n-images", "2", "--out", str(out)]) == 0
    grid = Image.open(out / "grid.png")
    assert grid.size[0] > 64 * 3 * (len(METHODS) + 1)  # one column per method, scaled ×3
    for name in METHODS:
        for i in range(2):
            assert (out / f"image{i}_{name}.png").exists()
            assert np.isfinite(np.load(out / f"image{i}_{name}.npy")).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == list(METHODS) and len(summary["images"]) == 2
