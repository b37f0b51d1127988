"""The examples run (small settings) and produce what they promise."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import toy_cnn
from PIL import Image

import tfsal

EXAMPLES = Path(__file__).parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_example_is_short():
    for path in EXAMPLES.glob("*.py"):
        assert len(path.read_text().splitlines()) < 100, path.name


def test_regenerate_figure_draws_the_sweep_and_sparsity_grows_with_q(tmp_path, capsys):
    path = load("regenerate_figure").main(["--n-images", "2", "--out", str(tmp_path)])
    assert Image.open(path).size[0] > 0
    shares = [int(line.split(": ")[1].split("%")[0]) for line in
              capsys.readouterr().out.splitlines() if line.startswith("q =")]
    assert len(shares) == 6 and shares[-1] < shares[0]  # q = 99 is sparser than q = 20


def test_keras_model_owner_saves_maps_each_epoch_and_keeps_the_model_trainable(tmp_path):
    written = load("keras_model_owner").main(["--weights", "none", "--epochs", "2",
                                              "--n-train", "32", "--size", "32",
                                              "--methods", "grad_cam,guided_backprop",
                                              "--out", str(tmp_path)])
    assert [p.name for p in written] == ["epoch01.png", "epoch02.png"]
    first, second = (np.asarray(Image.open(p)) for p in written)
    assert first.shape != second.shape or not np.array_equal(first, second)  # weights moved


@pytest.fixture
def serving_dir(tmp_path):
    model = toy_cnn(softmax=True, size=16)
    model.export(tmp_path / "classifier" / "1", verbose=False)  # TF Serving's layout
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = ["p0.png", "p1.jpeg", "p2.bmp", "sub/p0.png", "p4.PNG"]  # one stem twice
    for name in names:
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(photos / name)
    (photos / "broken.png").write_bytes(b"not an image")
    return model, tmp_path / "classifier", photos


def test_serving_maps_explains_a_folder_in_batches(serving_dir, tmp_path):
    model, directory, photos = serving_dir
    out = tmp_path / "maps"
    summary = load("serving_maps").main([str(directory), str(photos), "--method", "vanilla",
                                         "--batch-size", "2", "--out", str(out)])
    assert len(summary["maps"]) == 5 and len(summary["failed"]) == 1
    assert json.loads((out / "summary.json").read_text()) == summary
    files = {str(Path(f).relative_to(out)) for e in summary["maps"] for f in e["files"]}
    assert {"p0.png.npy", "sub/p0.png.npy", "p1.jpeg.png", "p2.bmp.png", "p4.PNG.npy"} <= files
    keras_model = tfsal.Model(model)
    for name in ("p0.png", "sub/p0.png"):
        image = np.asarray(Image.open(photos / name), np.float32)[None] / 255
        entry = next(e for e in summary["maps"] if e["image"] == str(photos / name))
        np.testing.assert_allclose(np.load(entry["files"][0]),
                                   tfsal.vanilla_gradient(keras_model, image)[0], atol=1e-5)
        # the softmax export's probabilities are the Keras model's, not a softmax of them
        probability = keras_model.predict(image, score="probability")[0].max()
        assert entry["probability"] == pytest.approx(probability, abs=1e-4)
        assert Image.open(entry["files"][1]).size == (16, 16)
