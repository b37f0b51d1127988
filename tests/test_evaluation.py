"""`tfsal evaluate`, the signed-maps tables and the plots: results equal the metrics computed
directly, files hold what the summary says, bad input is refused."""

import csv
import json
import sys

import numpy as np
import pytest
from conftest import toy_cnn
from PIL import Image

import tfsal
from tfsal import TfsalError, plots, visualize
from tfsal.cli import main
from tfsal.data import make_dataset
from tfsal.evaluation import evaluate
from tfsal.metrics import Curve, allegiance_curve, deletion_curve, mass_inside
from tfsal.reproduce import signed_saliency

SIZE = 32  # the generated data's smallest size


@pytest.fixture(scope="module")
def model():
    return tfsal.Model(toy_cnn(softmax=False, size=SIZE))


@pytest.fixture(scope="module")
def data():
    return make_dataset(6, size=SIZE, seed=5)


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------------------- evaluate
def test_deletion_equals_the_metric_on_the_reduced_maps_and_the_csv_holds_the_curve(
        model, data, tmp_path):
    result = evaluate(model, data.images, "deletion", methods=["vanilla", "grad_cam"],
                      out=tmp_path)
    targets = model.predicted_classes(data.images)
    reduced = visualize.reduce_channels(tfsal.vanilla_gradient(model, data.images, targets),
                                        "abs-max")
    direct = deletion_curve(model, data.images, reduced, targets)
    assert result.summary["vanilla_gradient"]["auc"] == pytest.approx(direct.auc, abs=1e-9)
    rows = [r for r in _rows(tmp_path / "results.csv") if r["method"] == "vanilla_gradient"]
    fractions = np.array([float(r["fraction"]) for r in rows])
    values = np.array([float(r["value"]) for r in rows])
    np.testing.assert_allclose(values, direct.values, atol=1e-6)
    assert np.trapezoid(values, fractions) == pytest.approx(direct.auc, abs=1e-6)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"] == result.summary and saved["n_images"] == len(data.images)
    assert (tmp_path / "deletion.png").stat().st_size > 0


def test_background_is_the_fraction_of_mass_outside_the_object(model, data, tmp_path):
    result = evaluate(model, data.images, "background", methods=["gradient_x_input"],
                      masks=data.masks, out=tmp_path)
    maps = visualize.reduce_channels(tfsal.gradient_x_input(
        model, data.images, model.predicted_classes(data.images)), "abs-max")
    expected = 1.0 - mass_inside(maps, data.masks)
    per_image = [float(r["value"]) for r in _rows(tmp_path / "results.csv")]
    np.testing.assert_allclose(per_image, expected, atol=1e-6)
    assert result.summary["gradient_x_input"]["median"] == pytest.approx(np.median(expected))


def test_total_variation_is_scale_free(model, data, tmp_path):
    first = evaluate(model, data.images, "total_variation", methods=["vanilla"],
                     out=tmp_path / "a")
    louder = toy_cnn(softmax=False, size=SIZE)  # the same network with every logit scaled by 10
    head = louder.get_layer("predictions")
    head.set_weights([w * 10 for w in head.get_weights()])
    second = evaluate(tfsal.Model(louder), data.images, "total_variation", methods=["vanilla"],
                      out=tmp_path / "b")
    assert second.summary["vanilla_gradient"]["median"] == pytest.approx(
        first.summary["vanilla_gradient"]["median"], rel=1e-5)
    assert 0 < first.summary["vanilla_gradient"]["median"] < 4 * SIZE * SIZE


@pytest.mark.parametrize("kwargs, message", [
    (dict(metric="nope"), "expected a metric"),
    (dict(metric="deletion", methods=["nope"]), "expected a method name"),
    (dict(metric="background"), "expected object masks"),
    (dict(metric="deletion", reduction="median"), "expected reduction"),
    (dict(metric="deletion", fill="grey"), "fill"),
])
def test_evaluate_refuses_bad_input(model, data, tmp_path, kwargs, message):
    metric = kwargs.pop("metric")
    with pytest.raises(TfsalError, match=message):
        evaluate(model, data.images, metric, out=tmp_path, **kwargs)
    assert not (tmp_path / "results.csv").exists()


# -------------------------------------------------------------------------- signed tables
def test_deletion_table_equals_allegiance_curves_of_the_signed_maps(model, data):
    table = signed_saliency.deletion_table(model, data.images)
    maps = tfsal.signed_maps(model, data.images)
    for fill, kind in signed_saliency.ROWS:
        direct = allegiance_curve(model, data.images, getattr(maps, kind), fill=fill)
        assert table.auc(fill, kind) == pytest.approx(direct.auc)
        assert table.curves[fill, kind].values[0] == 1.0  # every allegiance curve starts at 1


def _fake_table(aucs):
    curves = {row: Curve(np.array([0.0, 0.9]), np.array([1.0, 1.0]), auc, np.ones((1, 2)))
              for row, auc in zip(signed_saliency.ROWS, aucs)}
    return signed_saliency.DeletionTable("fake", 1, curves)


def test_claim_compares_each_signed_map_with_the_standard_map_of_its_fill():
    table = _fake_table([0.3, 0.2, 0.4, 0.1, 0.05, 0.2])
    assert table.claim() == {("black", "positive"): True, ("black", "active"): False,
                             ("white", "negative"): True, ("white", "inactive"): False}
    text = signed_saliency.table_markdown([table])
    assert "| black | positive | **0.200** | 0.14 | 0.11 |" in text
    assert "| black | active | 0.400 | 0.15 |" in text
    assert len(text.strip().splitlines()) == 2 + len(signed_saliency.ROWS)


# ---------------------------------------------------------------------------------- plots
def test_plots_write_pngs_of_the_expected_size(tmp_path):
    curve = Curve(np.array([0.0, 0.5]), np.array([1.0, 0.2]), 0.3, np.ones((1, 2)))
    path = plots.curve_plot({"a": curve, "b": curve}, tmp_path / "c.png")
    assert Image.open(path).size == (500, 360)
    path = plots.box_plot({"a": [1, 2, np.nan], "b": [3.0]}, tmp_path / "b.png")
    assert Image.open(path).size == (400, 360)
    with pytest.raises(TfsalError, match="at least one"):
        plots.box_plot({}, tmp_path / "x.png")


def test_a_missing_matplotlib_asks_for_the_plot_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    curve = Curve(np.array([0.0]), np.array([1.0]), 0.0, np.ones((1, 1)))
    with pytest.raises(TfsalError, match=r"pip install tfsal\[plot\]"):
        plots.curve_plot({"a": curve}, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


# ------------------------------------------------------------------------------ the command
def test_evaluate_command_on_generated_data_writes_csv_json_and_plot(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "background", "--method", "vanilla", "--method", "rectgrad",
                 "--generated", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rectgrad" in printed and "median" in printed
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["summary"]) == {"vanilla_gradient", "rectgrad"} and saved["n_images"] == 4
    assert len(_rows(out / "results.csv")) == 8 and (out / "background.png").exists()


def test_evaluate_command_on_files_refuses_metrics_that_need_masks(tmp_path, capsys):
    model_file = tmp_path / "toy.keras"
    toy_cnn(size=SIZE).save(model_file)
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(image)
    assert main(["evaluate", "background", str(image), "--model", str(model_file),
                 "--out", str(tmp_path / "o")]) == 2
    assert "expected object masks" in capsys.readouterr().err
    assert main(["evaluate", "allegiance", str(image), "--model", str(model_file),
                 "--fill", "grey", "--out", str(tmp_path / "o")]) == 2
    assert "expected --fill" in capsys.readouterr().err


# ------------------------------------------------------------------ experiments (tiny sizes)
def test_shift_finds_the_gradient_invariant_and_gradient_x_input_not(model, data, tmp_path):
    result = evaluate(model, data.images, "shift", methods=["vanilla", "gradient_x_input"],
                      out=tmp_path)
    assert result.summary["vanilla_gradient"]["invariant"] is True
    assert result.summary["gradient_x_input"]["invariant"] is False
    assert result.summary["gradient_x_input"]["median"] > 0.01
    assert (tmp_path / "shift.png").exists()


def test_roar_command_writes_every_accuracy_and_the_areas(tmp_path, capsys):
    out = tmp_path / "roar"
    assert main(["evaluate", "roar", "--method", "vanilla", "--n-train", "48", "--generated",
                 "16", "--epochs", "1", "--repeats", "1", "--fractions", "0.2,0.8",
                 "--out", str(out)]) == 0
    saved = json.loads((out / "results.json").read_text())
    assert set(saved["summary"]) == {"vanilla_gradient", "random"}
    rows = _rows(out / "results.csv")
    assert {(r["method"], r["mode"], float(r["fraction"])) for r in rows} == {
        (m, mode, f) for m in ("vanilla_gradient", "random") for mode in ("roar", "kar")
        for f in (0.2, 0.8)}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)
    random = saved["summary"]["random"]  # KAR mirrors ROAR for the random ranking
    assert random["roar_auc"] + random["kar_aoc"] == pytest.approx(1.0)
    assert (out / "roar.png").exists() and (out / "kar.png").exists()


def test_roar_command_refuses_fractions_outside_the_unit_interval(tmp_path, capsys):
    for text in ("0.5,1.2", "0.2,x"):
        assert main(["evaluate", "roar", "--method", "vanilla", "--fractions", text,
                     "--out", str(tmp_path / "roar")]) == 2
        assert "fractions" in capsys.readouterr().err
    assert not (tmp_path / "roar").exists()


def test_patch_command_scores_each_method_in_the_corner(tmp_path):
    out = tmp_path / "patch"
    assert main(["evaluate", "patch", "--method", "vanilla", "--method", "rectgrad",
                 "--n-train", "32", "--generated", "4", "--epochs", "1",
                 "--out", str(out)]) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 8 and all(0.0 <= float(r["value"]) <= 1.0 for r in rows)
    assert (out / "patch.png").exists()
