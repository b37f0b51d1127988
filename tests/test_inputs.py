"""Image and target validation: every bad input raises a TfsalError naming expected vs received."""

import numpy as np
import pytest
from PIL import Image

from tfsal import TfsalError
from tfsal.images import check_images, load_image
from tfsal.targets import resolve_targets


@pytest.mark.parametrize("bad, message", [
    (np.zeros((4, 4, 3), np.float32), "one image use images"),
    (np.zeros((1, 4, 4, 4), np.float32), r"\(N, H, W, 3\)"),
    (np.zeros((1, 4, 4), np.float32), "shape"),
    (np.zeros((0, 4, 4, 3), np.float32), "empty"),
    (np.zeros((1, 4, 4, 3), np.uint8), "divide by 255"),
    (np.full((1, 4, 4, 3), np.nan, np.float32), "NaN"),
    (np.full((1, 4, 4, 3), np.inf, np.float32), "NaN/inf"),
    (np.full((1, 4, 4, 3), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((1, 4, 4, 3), -0.1, np.float32), r"\[0, 1\]"),
    (np.array([["a"]]), "shape"),
])
def test_bad_images_raise(bad, message):
    with pytest.raises(TfsalError, match=message):
        check_images(bad)


def test_good_images_pass_as_float32():
    out = check_images(np.ones((2, 3, 3, 3), np.float64))
    assert out.dtype == np.float32 and out.shape == (2, 3, 3, 3)


@pytest.mark.parametrize("targets, expected", [
    (2, [2, 2, 2]), (np.int64(1), [1, 1, 1]), ([0, 1, 2], [0, 1, 2]), (np.array([3., 0., 1.]),
                                                                     [3, 0, 1]),
])
def test_targets_normalise(targets, expected):
    out = resolve_targets(targets, 3, 4)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("targets, message", [
    (4, r"\[0, 4\)"), (-1, r"\[0, 4\)"), ([0, 1], r"shape \(3,\)"), (1.5, "integer"),
    (True, "integer"), ("cat", "integer"), ([[0, 1, 2]], "one target per image"),
])
def test_bad_targets_raise(targets, message):
    with pytest.raises(TfsalError, match=message):
        resolve_targets(targets, 3, 4)


def test_none_targets_use_predictions():
    np.testing.assert_array_equal(resolve_targets(None, 2, 4, predict=lambda: [3, 1]), [3, 1])


def test_load_image_converts_and_resizes(tmp_path):
    Image.new("RGBA", (10, 6), (255, 0, 0, 128)).save(tmp_path / "a.png")
    img, note = load_image(tmp_path / "a.png", size=(8, 8))
    assert img.shape == (8, 8, 3) and img.dtype == np.float32
    assert "RGBA" in note and "resized 10x6" in note
    np.testing.assert_allclose(img[..., 0], 1.0)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable_files_raise(tmp_path, content):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(TfsalError, match="readable"):
        load_image(path)


def test_missing_file_raises(tmp_path):
    with pytest.raises(TfsalError, match="missing"):
        load_image(tmp_path / "nope.png")
