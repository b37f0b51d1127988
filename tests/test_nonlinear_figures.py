"""The nonlinear-saliency paper's figures and the `tfsal nonlinear` command."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import tfsal
from tfsal.cli import main
from tfsal.data import make_dataset
from tfsal.images import load_image
from tfsal.reproduce import nonlinear_saliency as paper

LEVELS = (0.0, 0.5, 0.95)
STEPS = 2
STEP_SIZE = 0.5
PAD, SIDE = 4, 64  # visualize.grid's padding; the data's image side
STRIP = {"row_titles": ["image", "map"], "col_titles": ["0%", "50%", "95%"]}  # Figure 1's
ROW = {"col_titles": ["image", "linear", "nonlinear"]}  # Figure 3's
CLI_OPTIONS = ["--levels", "0,0.5,0.95", "--steps-per-level", "2", "--step-size", "0.5"]


@pytest.fixture(scope="module")
def model():
    return tfsal.load_model("shapes-cnn")


@pytest.fixture(scope="module")
def images():
    return make_dataset(2, seed=5).images


@pytest.fixture(scope="module")
def top2(model, images):
    return np.argsort(-model.predict(images), axis=1)[:, :2]


@pytest.fixture(scope="module")
def trajectory(model, images, top2):
    return tfsal.nonlinear_saliency(model, images, top2, levels=LEVELS, steps_per_level=STEPS,
                                    step_size=STEP_SIZE)


@pytest.fixture(scope="module")
def linear(model, images, top2):
    return tfsal.nonlinear_saliency(model, images, top2, levels=LEVELS, steps_per_level=STEPS,
                                    step_size=STEP_SIZE, linear=True)


@pytest.fixture
def image_files(tmp_path, images):
    paths = []
    for i, image in enumerate(images):
        path = tmp_path / f"shape{i}.png"
        Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def margins(titles, scale=1):
    """(left, top): the title margins `visualize.grid` leaves (they depend on the font)."""
    panel = np.zeros((SIDE, SIDE, 3), np.uint8)
    rows = [[panel] * len(titles["col_titles"])] * len(titles.get("row_titles") or [0])
    layout = tfsal.visualize.grid_layout(rows, scale=scale, **titles)
    return layout.left, layout.top


def grid_size(n_cols, n_rows, titles, *, scale=1):
    """(height, width) of a `visualize.grid` sheet of SIDE² panels, computed by hand."""
    left, top = margins(titles, scale)
    cell = SIDE * scale
    return top + n_rows * (cell + PAD) + PAD, left + n_cols * (cell + PAD) + PAD


def as_uint8(x):
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


# ------------------------------------------------------------------------ Figures 1 and 3
@pytest.mark.parametrize("scale", [1, 2])
def test_snapshot_strip_has_one_column_per_level_and_two_rows(trajectory, scale):
    strip = paper.snapshot_strip(trajectory, 1, scale=scale)
    assert strip.dtype == np.uint8
    assert strip.shape == (*grid_size(len(LEVELS), 2, STRIP, scale=scale), 3)


def test_snapshot_strip_places_each_snapshot_and_map_in_its_cell(trajectory):
    strip = paper.snapshot_strip(trajectory, 3)
    left, top = margins(STRIP)
    for level in range(len(LEVELS)):
        x = left + PAD + level * (SIDE + PAD)
        for row, source in enumerate((trajectory.images, trajectory.maps)):
            y = top + PAD + row * (SIDE + PAD)
            np.testing.assert_array_equal(strip[y:y + SIDE, x:x + SIDE],
                                          as_uint8(source[3, level]))


@pytest.mark.parametrize("item", [-1, 4, 1.0, True])
def test_snapshot_strip_rejects_a_bad_item(trajectory, item):
    with pytest.raises(tfsal.TfsalError, match=r"item indices an int in \[0, 3\]"):
        paper.snapshot_strip(trajectory, item)


def test_percent_labels_round_float32_levels():
    labels = [paper.percent_label(v) for v in np.float32([0, 0.05, 0.1, 0.75, 0.95])]
    assert labels == ["0%", "5%", "10%", "75%", "95%"]


def test_linear_vs_nonlinear_shows_image_linear_and_nonlinear_in_order(images, trajectory,
                                                                        linear):
    row = paper.linear_vs_nonlinear(images[0], linear.maps[0, -1], trajectory.maps[0, -1])
    assert row.shape == (*grid_size(3, 1, ROW), 3)
    top = margins(ROW)[1] + PAD
    for k, panel in enumerate((images[0], linear.maps[0, -1], trajectory.maps[0, -1])):
        x = PAD + k * (SIDE + PAD)
        np.testing.assert_array_equal(row[top:top + SIDE, x:x + SIDE], as_uint8(panel))


def test_linear_vs_nonlinear_rejects_mismatched_shapes(images, trajectory):
    with pytest.raises(tfsal.TfsalError, match="one shape"):
        paper.linear_vs_nonlinear(images[0], trajectory.maps[0, -1, :32], trajectory.maps[0, -1])


# ------------------------------------------------------------------------ Figures 2 and 4
def test_blurred_percent_starts_at_zero_then_follows_the_step_levels(trajectory):
    x = paper.blurred_percent(trajectory)
    assert len(x) == trajectory.target_probability.shape[1] == len(LEVELS) * STEPS + 1
    np.testing.assert_allclose(x, [0, 0, 0, 50, 50, 95, 95], atol=1e-4)


@pytest.mark.parametrize("items, panels", [(None, (4, 1)), ([2], (1, 1)),
                                           ([0, 1, 2, 3, 0], (4, 2))])
def test_probability_figure_writes_one_panel_per_item(trajectory, tmp_path, items, panels):
    path = paper.probability_figure(trajectory, tmp_path / "fig2.png", items=items,
                                    class_names=["a"] * 8, compare=None)
    with Image.open(path) as png:
        width = round(paper.PANEL_INCHES[0] * paper.DPI * panels[0])
        height = round(paper.PANEL_INCHES[1] * paper.DPI * panels[1])
        assert png.format == "PNG" and png.mode == "RGB" and png.size == (width, height)


def test_probability_figure_rejects_bad_items_and_mismatched_comparisons(trajectory, model,
                                                                         images, tmp_path):
    with pytest.raises(tfsal.TfsalError, match="item indices"):
        paper.probability_figure(trajectory, tmp_path / "f.png", items=[7])
    other = tfsal.nonlinear_saliency(model, images, levels=LEVELS, steps_per_level=STEPS)
    with pytest.raises(tfsal.TfsalError, match="same items and steps"):
        paper.probability_figure(trajectory, tmp_path / "f.png", compare=other)
    with pytest.raises(tfsal.TfsalError, match="4 item labels"):
        paper.probability_figure(trajectory, tmp_path / "f.png", item_labels=["x"])
    assert not (tmp_path / "f.png").exists()


def test_selective_blur_figure_writes_a_png(model, images, trajectory, tmp_path):
    originals = images[trajectory.image_index]
    result = tfsal.selective_blur(model, originals, trajectory.maps[:, -1] - 1,
                                  trajectory.targets)
    path = paper.selective_blur_figure(result, tmp_path / "fig4.png", class_names=None,
                                       item_labels=list("abcd"))
    with Image.open(path) as png:
        assert png.mode == "RGB" and png.size == (round(max(4.0, 0.7 * 4 + 1.5) * paper.DPI),
                                                  round(3.5 * paper.DPI))


def test_a_missing_matplotlib_asks_for_the_plot_extra(trajectory, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(tfsal.TfsalError, match=r"pip install tfsal\[plot\]"):
        paper.probability_figure(trajectory, tmp_path / "fig2.png")
    assert not (tmp_path / "fig2.png").exists()


# ------------------------------------------------------------------------ the command
def run_cli(files, out, *extra):
    return main(["nonlinear", *map(str, files), *CLI_OPTIONS, "--out", str(out), *extra])


def test_nonlinear_command_writes_every_figure_and_a_matching_trajectory(
        model, image_files, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli(image_files, out, "--target", "top2") == 0
    assert "4 item(s) from 2 image(s)" in capsys.readouterr().out
    report = json.loads((out / "trajectory.json").read_text())
    assert report["linear"] is False and len(report["items"]) == 4
    loaded = np.stack([load_image(p)[0] for p in image_files])
    targets = np.array([e["target"] for e in report["items"]]).reshape(2, 2)
    assert all(a != b for a, b in targets)  # two different classes per image
    expected = tfsal.nonlinear_saliency(model, loaded, targets, levels=LEVELS,
                                        steps_per_level=STEPS, step_size=STEP_SIZE)
    for item, entry in enumerate(report["items"]):
        assert entry["image"] == str(image_files[item // 2])
        assert entry["label"] == model.class_names[entry["target"]]
        assert len(entry["target_probability"]) == len(LEVELS) * STEPS + 1
        assert len(entry["blurred_fraction"]) == len(LEVELS) * STEPS
        assert entry["best_probability"] == max(entry["target_probability"])
        assert entry["target_probability"][entry["best_step"]] == entry["best_probability"]
        np.testing.assert_allclose(entry["target_probability"],
                                   expected.target_probability[item], atol=1e-4)
        assert entry["best_step"] == expected.best_step[item]
        stem = f"shape{item // 2}.png_class{entry['target']}"
        assert [Path(f).name for f in entry["files"]] == [f"{stem}_strip.png",
                                                         f"{stem}_linear_vs_nonlinear.png"]
        with Image.open(entry["files"][0]) as strip:  # 64² panels scaled ×2
            assert strip.size[::-1] == grid_size(len(LEVELS), 2, STRIP, scale=2)
        with Image.open(entry["files"][1]) as row:
            assert row.size[::-1] == grid_size(3, 1, ROW, scale=2)
    for name in ("probabilities.png", "selective_blur.png"):
        assert str(out / name) in report["files"]
        with Image.open(out / name) as png:
            assert png.format == "PNG"


def test_nonlinear_command_linear_only_writes_no_comparison(image_files, tmp_path):
    out = tmp_path / "out"
    assert run_cli(image_files[:1], out, "--linear", "--target", "3") == 0
    report = json.loads((out / "trajectory.json").read_text())
    assert report["linear"] is True and [e["target"] for e in report["items"]] == [3]
    assert not list(out.glob("*_linear_vs_nonlinear.png"))
    assert (out / "shape0.png_class3_strip.png").exists() and (out / "probabilities.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--levels", "0,half"], "comma-separated fractions"),
    (["--levels", "0.5,0.2"], "non-decreasing"),
    (["--steps-per-level", "0"], "an int in [1, 10000]"),
    (["--target", "8"], "class indices in [0, 8)"),
])
def test_nonlinear_command_reports_bad_options(image_files, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    assert run_cli(image_files[:1], out, *extra) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_nonlinear_command_takes_folders_names_figures_apart_and_keeps_out_apart(
        image_files, tmp_path, capsys):
    import shutil

    root = tmp_path / "photos"
    for sub in ("a", "b"):  # one file name in two folders
        (root / sub).mkdir(parents=True)
        shutil.copy(image_files[0], root / sub / "x.png")
    out = tmp_path / "figs"
    assert run_cli([root], out, "--linear", "--target", "3") == 0
    report = json.loads((out / "trajectory.json").read_text())
    strips = [entry["files"][0] for entry in report["items"]]
    assert len(set(strips)) == 2 and all(Path(s).exists() for s in strips)
    before = {p: p.read_bytes() for p in root.rglob("*.png")}
    assert run_cli([root], root, "--linear", "--target", "3") == 2  # OUT holds the inputs
    assert "apart from the images" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in root.rglob("*.png")} == before
