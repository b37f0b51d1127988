"""The pictures people expect: readable titles, paper figures that show sparsity, one sheet
per explained image."""

import sys

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

import tfsal
from tfsal import TfsalError, plots, visualize
from tfsal.reproduce import run

TILE = np.full((64, 64, 3), 200, np.uint8)


def ink_rows(band: np.ndarray) -> np.ndarray:
    """Indices of the rows of an RGB band that hold dark (text) pixels."""
    return np.flatnonzero((band.min(axis=-1) < 128).any(axis=1))


def text_height(band: np.ndarray) -> int:
    rows = ink_rows(band)
    return int(rows[-1] - rows[0] + 1) if rows.size else 0


def coloured(panel: np.ndarray) -> np.ndarray:
    """Non-white pixels of an RGB panel."""
    return (panel < 250).any(axis=-1)


# ------------------------------------------------------------------------ readable titles
@pytest.mark.parametrize("scale", [1, 3])
def test_grid_titles_are_at_least_14_px_high_and_grow_with_the_panels(scale):
    kwargs = {"col_titles": ["Egyptian", "gradient"], "row_titles": ["tabby"], "scale": scale}
    layout = visualize.grid_layout([[TILE, TILE]], **kwargs)
    sheet = np.asarray(visualize.grid([[TILE, TILE]], **kwargs))
    assert sheet.shape[1::-1] == layout.size
    height = text_height(sheet[:layout.top])
    assert height >= 14
    if scale == 3:  # 192 px panels: a bigger font than on 64 px ones
        assert layout.font_size > 16 and height >= 18
    x, y = layout.origin(0, 0)
    assert text_height(sheet[y:y + layout.cell[1], :x]) >= 14  # the row title too


def test_long_column_titles_wrap_and_never_cross_the_gap_between_columns():
    titles = ["integrated_gradients with a long name", "another very long column title"]
    layout = visualize.grid_layout([[TILE, TILE]], col_titles=titles, pad=4)
    sheet = np.asarray(visualize.grid([[TILE, TILE]], col_titles=titles, pad=4))
    band = sheet[:layout.top].min(axis=-1) < 200  # any ink, anti-aliased edges included
    inside = np.zeros(band.shape[1], bool)
    for c in range(2):
        x = layout.origin(0, c)[0]
        inside[x:x + layout.cell[0]] = True
        assert band[:, x:x + layout.cell[0]].any()  # each title drawn over its column
    assert not band[:, ~inside].any()  # no ink in the gaps or margins
    assert all(len(lines) > 1 for _, lines in layout.col_titles)  # wrapped
    assert all(size >= 12 for size, _ in layout.col_titles)


def test_fit_text_wraps_at_word_breaks_then_shrinks_then_breaks_letters():
    assert visualize.fit_text("grad_cam", 16, 500) == (16, ["grad_cam"])
    size, lines = visualize.fit_text("guided_backprop", 16, 64)
    assert lines == ["guided_", "backprop"] and 12 <= size <= 16
    size, lines = visualize.fit_text("supercalifragilistic", 16, 40)
    assert size == 12 and "".join(lines) == "supercalifragilistic" and len(lines) > 1


def test_grid_draws_readable_titles_without_matplotlib(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    assert visualize.font_file() is None
    kwargs = {"col_titles": ["Egyptian", "gradient"], "row_titles": ["tabby"]}
    layout = visualize.grid_layout([[TILE, TILE]], **kwargs)
    sheet = np.asarray(visualize.grid([[TILE, TILE]], **kwargs))
    assert text_height(sheet[:layout.top]) >= 14  # Pillow's scalable default font


def test_grid_frame_outlines_panels_in_the_padding():
    white = np.full((8, 8, 3), 255, np.uint8)
    sheet = np.asarray(visualize.grid([[white]], frame=True))
    layout = visualize.grid_layout([[white]])
    x, y = layout.origin(0, 0)
    assert (sheet[y:y + 8, x:x + 8] == 255).all()  # the panel itself untouched
    assert (sheet[y - 1, x:x + 8] < 255).all() and (sheet[y:y + 8, x - 1] < 255).all()


# ------------------------------------------------------------------------ paper figures
def test_symmetric_display_keeps_zeros_white_and_every_non_zero_pixel_tinted():
    m = np.zeros((1, 10, 10), np.float32)
    m[0, 0, 0], m[0, 0, 1], m[0, 0, 2] = 1e-4, -1.0, 50.0  # 97 % zeros, one outlier
    rgb = visualize.to_display_symmetric(m, percentile=50, floor=0.25)[0]
    assert coloured(rgb).sum() == 3  # the tiny value too; the zeros white
    assert rgb[0, 0, 0] > rgb[0, 0, 2] and rgb[0, 1, 2] > rgb[0, 1, 0]  # red +, blue -
    plain = visualize.to_display_symmetric(m, percentile=100)[0]  # by max |value|, no floor
    assert coloured(plain).sum() == 1  # one outlier washes out the rest
    with pytest.raises(TfsalError):
        visualize.to_display_symmetric(m, floor=1.0)


@pytest.fixture(scope="module")
def shapes():
    model = tfsal.load_model("shapes-cnn")
    images = tfsal.data.make_dataset(2, size=64, seed=2).images
    return model, images, model.predicted_classes(images)


def test_sweep_figure_shows_fewer_coloured_pixels_at_q99_in_proportion_to_the_support(
        shapes, tmp_path):
    model, x, targets = shapes
    sweep = {q: tfsal.rectgrad(model, x, targets, percentile=q, multiply_by="model_input")
             for q in (20, 99)}
    panels = run.sweep_panels(x, sweep, ["a", "b"])
    layout = visualize.grid_layout(**panels)
    path = visualize.save_png(visualize.grid(**panels), tmp_path / "sweep.png")
    sheet = np.asarray(Image.open(path).convert("RGB"))
    assert sheet.shape[1] >= 3 * 192  # panels scaled up to ≥ 192 px
    assert text_height(sheet[:layout.top]) >= 14
    w, h = layout.cell
    for i in range(len(x)):
        share = {}
        for c, (q, maps) in enumerate(sweep.items(), start=1):
            left, top = layout.origin(i, c)
            drawn = coloured(sheet[top:top + h, left:left + w]).mean()
            support = np.mean(np.abs(maps[i]).sum(axis=-1) > 0)
            assert drawn == pytest.approx(support, abs=0.02)  # coloured area = the support
            share[q] = drawn
        assert share[99] < 0.5 * share[20]


def test_comparison_panels_are_big_and_titled(shapes):
    model, x, targets = shapes
    maps = {"Saliency": tfsal.vanilla_gradient(model, x, targets),
            "RectGrad": tfsal.rectgrad(model, x, targets, percentile=99)}
    panels = run.comparison_panels(x, maps, ["a", "b"])
    layout = visualize.grid_layout(**panels)
    assert layout.cell[0] >= 192 and layout.font_size >= 16
    sheet = np.asarray(visualize.grid(**panels))
    left, top = layout.origin(0, 2)  # RectGrad at q=99: most of the panel is white
    support = np.mean(np.abs(maps["RectGrad"][0]).sum(axis=-1) > 0)
    assert coloured(sheet[top:top + layout.cell[1], left:left + layout.cell[0]]).mean() \
        <= support + 0.01


def test_layerwise_figure_is_wide_with_one_readable_line_per_layer_name(shapes):
    from tfsal.methods import layer_attributions

    model, x, targets = shapes
    maps = {title: layer_attributions(model, x[:1], targets[:1], method=method)
            for title, method in (("gradient", "vanilla"), ("RectGrad", "rectgrad"))}
    panels = run.layerwise_panels(maps, x.shape[1:3])
    layout = visualize.grid_layout(**panels)
    sheet = visualize.grid(**panels)
    assert sheet.size[0] >= 1200 and layout.font_size >= 20
    names = list(maps["gradient"])
    assert [lines[0] for _, lines in layout.col_titles] == names  # names never broken
    assert all(size == layout.font_size for size, _ in layout.col_titles)


# ------------------------------------------------------------------------ image sheets
def _synthetic(n_signed=2, size=32):
    image = np.full((size, size, 3), 0.5, np.float32)  # grey: no red or blue of its own
    image[::4] = 0.7
    maps = {}
    for k in range(n_signed):
        signed = np.zeros((size, size, 3), np.float32)
        signed[:8, :8] = 1.0  # raises the score: red, top left
        signed[-8:, -8:] = -1.0  # lowers it: blue, bottom right
        maps[f"method{k} · class 281"] = signed
    cam = np.zeros((4, 4), np.float32)
    cam[0, 0] = 1.0
    maps["grad_cam · class 281"] = cam
    return image, maps


def _blobs(mask, min_area=150):
    labels, n = ndimage.label(mask)
    areas = ndimage.sum(mask, labels, range(1, n + 1))
    keep = [k + 1 for k in range(n) if areas[k] >= min_area]
    return sorted(ndimage.center_of_mass(mask, labels, keep))  # (y, x), top to bottom


def test_image_sheet_draws_red_where_positive_blue_where_negative_and_colour_bars(tmp_path):
    image, maps = _synthetic()
    path = plots.image_sheet(image, maps, tmp_path / "sheet.png",
                             title="chelsea — Egyptian cat (39.6 %)")
    sheet = np.asarray(Image.open(path).convert("RGB")).astype(int)
    h, w = sheet.shape[:2]
    assert w == round(4 * plots.PANEL_INCHES * plots.DPI)  # image + 3 maps in one row
    r, g, b = sheet[..., 0], sheet[..., 1], sheet[..., 2]
    y, x = np.mgrid[:h, :w]
    panel = w // 4  # columns: image, two signed maps, Grad-CAM; bars: signed left, heat right
    signed_area = (x < 3 * panel) & ~((y > 0.7 * h) & (x >= 2 * panel))
    red = (r > g + 60) & (r > b + 40) & signed_area
    blue = (b > r + 60) & (b > g + 20) & signed_area
    reds, blues = _blobs(red), _blobs(blue)
    assert len(reds) == len(blues) == 3  # two signed panels and the colour bar's end
    for (ry, rx), (by, bx) in zip(reds[:2], sorted(blues[:2], key=lambda c: c[1])):
        assert ry < by and rx < bx  # red top left, blue bottom right of each panel
    bar_y = int(round(reds[2][0]))  # the signed colour bar: blue at its left, red at its right
    assert bar_y > 0.7 * h and abs(blues[2][0] - bar_y) < 5 and blues[2][1] < reds[2][1]
    yellow = (r > 230) & (g > 200) & (b < 170)  # inferno's hot end: in the heat colour bar
    assert yellow[(y > 0.7 * h) & (x >= 2 * panel)].sum() > 100
    column = (x >= 3 * panel) & (y < 0.7 * h)  # the Grad-CAM panel: heat at the top left
    warmth = np.where(column, r + g - 2 * b, -1000)
    hot_y, hot_x = np.argwhere(warmth >= np.percentile(warmth[column], 99)).mean(axis=0)
    cold_y, cold_x = np.argwhere(column & (sheet.sum(axis=-1) < 600)).mean(axis=0)  # dark
    assert hot_y < cold_y and hot_x < cold_x


def test_image_sheet_lays_out_13_methods_by_2_classes_in_rows_of_five(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.random((16, 16, 3)).astype(np.float32)
    maps = {f"method_number_{m} · class {c}": rng.normal(size=(16, 16, 3))
            for m in range(13) for c in (281, 285)}
    path = plots.image_sheet(image, maps, tmp_path / "many.png", title="t")
    width, height = Image.open(path).size
    assert width == round(5 * plots.PANEL_INCHES * plots.DPI)
    assert height > 6 * plots.PANEL_INCHES * plots.DPI  # 27 panels: 6 rows


@pytest.mark.parametrize("call", [
    lambda p: plots.image_sheet(np.zeros((8, 8, 3)), {}, p),
    lambda p: plots.image_sheet(np.zeros((8, 8)), {"a": np.zeros((8, 8, 3))}, p),
    lambda p: plots.image_sheet(np.zeros((8, 8, 3)), {"a": np.zeros((4, 8, 3))}, p),
    lambda p: plots.image_sheet(np.zeros((8, 8, 3)), {"a": np.zeros((8, 8, 3))}, p, columns=0),
])
def test_image_sheet_refuses_bad_input(call, tmp_path):
    with pytest.raises(TfsalError):
        call(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
