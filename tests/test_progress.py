"""Progress is shown on stderr with rate and ETA once work takes more than a moment."""

import json
import sys

import numpy as np
from conftest import SIZE, toy_cnn
from PIL import Image

import tfsal.progress as progress


def test_plain_lines_say_count_rate_eta_and_what_runs(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the fallback without tqdm
    monkeypatch.setattr(progress, "DELAY", 0.0)
    clock = iter([0.0, 1.0, 6.0, 10.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    bar = progress.Progress(10, "explain", unit="image")
    bar.describe("rectgrad")
    bar.update(1)  # t = 1 s: too soon after the start for a line
    bar.update(3)  # t = 6 s: 4 images at 0.67 images/s, 9 s left
    bar.update(6)  # t = 10 s: the end is always shown
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "explain: 4/10 images, 0.67 images/s, ETA 9 s [rectgrad]"
    assert err[1] == "explain: 10/10 images, 1.00 images/s, ETA 0 s [rectgrad]"
    assert len(err) == 2


def test_quick_work_stays_silent(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    bar = progress.Progress(3, "explain", unit="image")
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""


def test_explain_reports_images_and_methods_and_records_probabilities(tmp_path, monkeypatch,
                                                                       capsys):
    from tfsal.cli import main

    monkeypatch.setattr(progress, "DELAY", 0.0)
    model_file = tmp_path / "toy.keras"
    toy_cnn().save(model_file)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(
            tmp_path / f"im{i}.png")
    out = tmp_path / "out"
    assert main(["explain", *(str(tmp_path / f"im{i}.png") for i in range(3)), "--model",
                 str(model_file), "--batch-size", "1", "--out", str(out), "--method",
                 "vanilla", "--method", "grad_cam"]) == 0
    err = capsys.readouterr().err
    assert "explain" in err and "3/3" in err and "image" in err
    summary = json.loads((out / "summary.json").read_text())
    model = __import__("tfsal").load_model(str(model_file))
    for entry in summary["maps"]:
        image = np.asarray(Image.open(entry["image"]), np.float32)[None] / 255
        expected = model.predict(image, score="probability")[0, entry["target"]]
        assert abs(entry["probability"] - expected) < 1e-5
