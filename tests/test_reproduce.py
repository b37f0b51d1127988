"""`tfsal reproduce` runs end to end at reduced size on the embedded model; every figure the
report links exists, and the numbers it quotes are the ones the library computes."""

import json
import re

import numpy as np
import pytest
from PIL import Image

import tfsal
from tfsal import TfsalError
from tfsal.cli import main
from tfsal.data import make_dataset
from tfsal.reproduce import run


def _linked(report):
    return re.findall(r"!\[\]\(([^)]+)\)", report.read_text())


def _check_links(report):
    links = _linked(report)
    assert links
    for name in links:
        assert Image.open(report.parent / name).size[0] > 0


def test_reproduce_nonlinear_writes_figures_1_to_4(tmp_path, capsys):
    out = tmp_path / "nonlinear"
    assert main(["reproduce", "nonlinear", "--quick", "--n-images", "2", "--out",
                 str(out)]) == 0
    report = out / "report.md"
    _check_links(report)
    assert {"probabilities.png", "selective_blur.png"} <= set(_linked(report))
    assert len(list(out.glob("*_strip.png"))) == 4  # 2 images x top-2 classes
    assert len(list(out.glob("*_linear_vs_nonlinear.png"))) == 4


def test_reproduce_rectgrad_reports_the_sweep_it_computed(tmp_path):
    model = tfsal.load_model("shapes-cnn")
    data = make_dataset(2, seed=2)
    images = run.Images(data.images, ("a", "b"), data.masks)
    report = run.reproduce("rectgrad", [model], images, out=tmp_path, quick=True, retrain=True)
    _check_links(report)
    text = report.read_text()
    targets = model.predicted_classes(data.images)
    sparse = tfsal.rectgrad(model, data.images, targets, percentile=99)
    share = np.mean(np.abs(sparse).sum(axis=-1) > 0)
    assert f"q=99: {share:.2f}" in text
    assert "| RectGrad |" in text and "background.png" in text
    assert Image.open(tmp_path / "layerwise.png").size[0] >= 1200  # readable at page width
    table1 = json.loads((tmp_path / "table1" / "results.json").read_text())["summary"]
    for name, areas in table1.items():  # Table 1 rows quote the areas evaluate_roar wrote
        assert f"| {name} | {areas['roar_auc']:.4f} | {areas['kar_aoc']:.4f} |" in text
    assert set(table1) == {"vanilla", "rectgrad", "random"}  # quick: two methods + random


def test_reproduce_signed_tables_match_the_deletion_table(tmp_path):
    from tfsal.reproduce import signed_saliency

    model = tfsal.load_model("shapes-cnn")
    data = make_dataset(4, seed=2)
    report = run.reproduce("signed", [model], run.Images(data.images, tuple("abcd")),
                           out=tmp_path, quick=True)
    _check_links(report)
    table = signed_saliency.deletion_table(model, data.images)
    assert signed_saliency.table_markdown([table]) in report.read_text()


def test_reproduce_refuses_unknown_papers_and_missing_models(tmp_path, capsys):
    images = run.Images(np.zeros((1, 64, 64, 3), np.float32), ("a",))
    with pytest.raises(TfsalError, match="expected a paper"):
        run.reproduce("lime", ["shapes-cnn"], images, out=tmp_path)
    with pytest.raises(TfsalError, match="at least one model"):
        run.reproduce("signed", [], images, out=tmp_path)
    assert main(["reproduce", "signed", "--model", "shapes-cnn", "--n-images", "0",
                 "--out", str(tmp_path)]) == 2
    assert "expected --n-images" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_reproduce_on_another_model_uses_the_bundled_photos(tmp_path):
    from conftest import toy_cnn

    model_file = tmp_path / "toy.keras"
    toy_cnn().save(model_file)
    out = tmp_path / "out"
    assert main(["reproduce", "nonlinear", "--quick", "--model", str(model_file),
                 "--out", str(out)]) == 0
    from tfsal.zoo.photos import photo_paths

    assert {p.name.split("_class")[0] for p in out.glob("*_strip.png")} == set(photo_paths())
    assert "grace_hopper" in photo_paths() and "chelsea" in photo_paths()


def test_reproduce_on_an_imagenet_model_without_weights_names_the_missing_file(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert main(["reproduce", "nonlinear", "--model", "vgg16", "--out", str(tmp_path)]) == 2
    assert "vgg16_weights_tf_dim_ordering_tf_kernels.h5" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()
