"""Visualisation helpers: hand-computed reductions, ranges, colours, layout, atomic PNGs."""

import numpy as np
import pytest
from PIL import Image

from tfsal import TfsalError, visualize


@pytest.fixture
def maps():
    a = np.zeros((2, 2, 2, 3), np.float32)
    a[0, 0, 0] = [1, -4, 2]
    a[1, 1, 1] = [-3, 0, 4]
    return a


@pytest.mark.parametrize("reduction, expected", [
    ("mean", [-1 / 3, 1 / 3]), ("sum", [-1, 1]), ("max", [2, 4]), ("abs-max", [4, 4]),
    ("l2", [np.sqrt(21), 5]),
])
def test_reductions_by_hand(reduction, expected, maps):
    out = visualize.reduce_channels(maps, reduction)
    assert out.shape == (2, 2, 2)
    np.testing.assert_allclose([out[0, 0, 0], out[1, 1, 1]], expected, rtol=1e-6)


def test_reduced_maps_pass_unchanged():
    m = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    np.testing.assert_array_equal(visualize.reduce_channels(m, "sum"), m)


def test_clip_percentile_is_per_image():
    a = np.stack([np.arange(100, dtype=np.float32).reshape(10, 10),
                  1000 * np.arange(100, dtype=np.float32).reshape(10, 10)])
    out = visualize.clip_percentile(a, 10, 90)
    np.testing.assert_allclose([out[0].min(), out[0].max()], np.percentile(a[0], [10, 90]))
    np.testing.assert_allclose([out[1].min(), out[1].max()], np.percentile(a[1], [10, 90]))


def test_normalize_ranges():
    a = np.array([[[-2.0, 1.0], [0.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]], np.float32)
    mm = visualize.normalize(a, "minmax")
    assert mm[0].min() == 0 and mm[0].max() == 1
    np.testing.assert_array_equal(mm[1], 0)
    ab = visualize.normalize(a, "abs")
    np.testing.assert_allclose(ab[0], [[-0.5, 0.25], [0, 1]])
    np.testing.assert_allclose(ab[1], 1)
    assert np.isfinite(visualize.normalize(np.zeros((1, 2, 2)), "abs")).all()


def test_upsample_shapes_constants_and_monotonicity():
    const = np.full((1, 3, 3), 2.5, np.float32)
    np.testing.assert_allclose(visualize.upsample(const, 12), 2.5, rtol=1e-6)
    corners = np.array([[[0.0, 1.0], [1.0, 2.0]]], np.float32)
    big = visualize.upsample(corners, (8, 6))
    assert big.shape == (1, 8, 6)
    assert np.all(np.diff(big[0], axis=0) >= -1e-6) and np.all(np.diff(big[0], axis=1) >= -1e-6)
    assert big.min() >= 0 and big.max() <= 2


def test_colorize_diverging_and_heat():
    rgb = visualize.colorize(np.array([[[-1.0, 0.0, 1.0]]]), "diverging")
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 1, 3, 3)
    neg, zero, pos = rgb[0, 0]
    assert tuple(zero) == (255, 255, 255)
    assert neg[2] > neg[0] and pos[0] > pos[2]
    heat = visualize.colorize(np.array([[[0.0, 1.0, 5.0]]]), "heat")
    assert tuple(heat[0, 0, 0]) == (0, 0, 0) and tuple(heat[0, 0, 1]) == tuple(heat[0, 0, 2])


def test_overlay_alpha_zero_is_the_image():
    images = np.random.default_rng(0).random((2, 4, 4, 3)).astype(np.float32)
    out = visualize.overlay(images, np.ones((2, 2, 2)), alpha=0.0)
    np.testing.assert_array_equal(out, np.round(images * 255).astype(np.uint8))


def test_to_display_is_symmetric_for_signed_maps():
    m = np.zeros((1, 3, 3, 3), np.float32)
    m[0, 0, 0] = 1.0
    m[0, 2, 2] = -1.0
    rgb = visualize.to_display(m, clip=(0, 100))
    assert tuple(rgb[0, 1, 1]) == (255, 255, 255)
    assert rgb[0, 0, 0, 0] > rgb[0, 0, 0, 2] and rgb[0, 2, 2, 2] > rgb[0, 2, 2, 0]


def test_grid_size_arithmetic():
    tile = np.zeros((5, 7, 3), np.uint8)
    sheet = visualize.grid([[tile, None, tile], [tile]], pad=2, scale=3)
    assert sheet.size == (3 * (7 * 3 + 2) + 2, 2 * (5 * 3 + 2) + 2)
    titled = visualize.grid([[tile]], row_titles=["abc"], col_titles=["x"], pad=2)
    assert titled.size[0] > 7 + 4 and titled.size[1] > 5 + 4


def test_save_png_round_trip_leaves_no_temp_file(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (6, 5, 3), dtype=np.uint8)
    path = visualize.save_png(arr, tmp_path / "sub" / "a.png")
    np.testing.assert_array_equal(np.asarray(Image.open(path)), arr)
    assert [p.name for p in path.parent.iterdir()] == ["a.png"]


@pytest.mark.parametrize("call", [
    lambda: visualize.reduce_channels(np.zeros((1, 2, 2, 3)), "median"),
    lambda: visualize.reduce_channels(np.zeros((2, 2)), "sum"),
    lambda: visualize.clip_percentile(np.zeros((1, 2, 2)), 60, 40),
    lambda: visualize.normalize(np.zeros((1, 2, 2)), "zscore"),
    lambda: visualize.normalize(np.full((1, 2, 2), np.nan), "minmax"),
    lambda: visualize.colorize(np.zeros((1, 2, 2)), "rainbow"),
    lambda: visualize.overlay(np.zeros((1, 2, 2, 3)), np.zeros((2, 2, 2))),
    lambda: visualize.grid([[np.zeros((2, 2, 3), np.float32)]]),
    lambda: visualize.grid([[None]]),
    lambda: visualize.save_png(np.zeros((2, 2, 3), np.float32), "/tmp/x.png"),
])
def test_bad_inputs_raise(call):
    with pytest.raises(TfsalError):
        call()


def test_explanation_sheet_draws_signed_and_heat_panels_with_colour_bars(tmp_path):
    from tfsal import plots

    rng = np.random.default_rng(0)
    images = rng.random((2, 32, 32, 3)).astype(np.float32)
    signed = np.zeros((2, 32, 32, 3), np.float32)
    signed[:, :8, :8] = 1.0  # raises the score: red
    signed[:, -8:, -8:] = -1.0  # lowers it: blue
    heat = np.zeros((2, 4, 4), np.float32)
    heat[:, 0, 0] = 1.0
    path = plots.explanation_sheet(images, {"signed": signed, "cam": heat},
                                   tmp_path / "sheet.png", row_titles=["a", "b"], title="t")
    sheet = np.asarray(Image.open(path).convert("RGB")).astype(int)
    h, w = sheet.shape[:2]
    assert w > 3 * 200 and h > 2 * 200
    red = (sheet[..., 0] > 150) & (sheet[..., 2] < 90) & (sheet[..., 1] < 90)
    blue = (sheet[..., 2] > 120) & (sheet[..., 0] < 60)
    assert red.sum() > 500 and blue.sum() > 500  # both signs drawn (and in the colour bar)
    with pytest.raises(TfsalError):
        plots.explanation_sheet(images, {}, tmp_path / "none.png")
