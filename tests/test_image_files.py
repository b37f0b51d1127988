"""Reading image files: high bit depths, EXIF orientation, pixel limits and damaged files.

Every test here reads small files written on the fly; no model is built.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageFile

from tfsal.errors import TfsalError
from tfsal.images import DEFAULT_MAX_PIXELS, load_image

PILLOW_LIMIT = Image.MAX_IMAGE_PIXELS


@pytest.fixture(autouse=True)
def pillow_limit_unchanged():
    """load_image must leave Pillow's global pixel limit as it found it, after every call."""
    before = Image.MAX_IMAGE_PIXELS
    yield
    assert Image.MAX_IMAGE_PIXELS == before == PILLOW_LIMIT


def _gray16(height=12, width=10) -> np.ndarray:
    return ((np.arange(height * width).reshape(height, width) * 547) % 65536).astype(np.uint16)


def _assert_gray(img, expected, atol=1e-6):
    assert img.dtype == np.float32 and img.shape == expected.shape + (3,)
    for channel in range(3):
        np.testing.assert_allclose(img[..., channel], expected, rtol=0, atol=atol)


# --- high bit depth -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grayscale_is_scaled_by_65535(tmp_path, suffix):
    arr = _gray16()
    pil = Image.fromarray(arr)
    assert pil.mode == "I;16"
    pil.save(tmp_path / f"a{suffix}")
    if suffix == ".png":  # a real 16-bit PNG: IHDR bit depth byte is 16
        assert (tmp_path / "a.png").read_bytes()[24] == 16
    img, note = load_image(tmp_path / f"a{suffix}")
    _assert_gray(img, arr / 65535.0)
    assert note == "converted 16-bit grayscale (I;16) to RGB, scaled 0..65535 to [0, 1]"


def test_big_endian_16_bit_tiff(tmp_path):
    arr = _gray16(3, 4)
    Image.frombytes("I;16B", (4, 3), arr.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    img, note = load_image(tmp_path / "b.tif")
    _assert_gray(img, arr / 65535.0)
    assert "(I;16B)" in note


def test_32_bit_signed_tiff_scaled_by_int32_range_negatives_clipped(tmp_path):
    arr = np.array([[0, 1, 2**31 - 1], [-5, 2**30, -(2**31)], [7, 100, 123456789]], np.int32)
    Image.fromarray(arr).save(tmp_path / "i.tif")
    img, note = load_image(tmp_path / "i.tif")
    _assert_gray(img, np.clip(arr, 0, None) / (2**31 - 1))
    assert note == ("converted 32-bit signed integer grayscale (I) to RGB, scaled 0..2147483647 "
                    "to [0, 1], clipped 2 negative values to 0")


def _tiff_entry(data: bytes, tag: int) -> int:
    """Offset of `tag`'s 12-byte entry in a little-endian TIFF's first IFD."""
    ifd = struct.unpack_from("<I", data, 4)[0]
    for i in range(struct.unpack_from("<H", data, ifd)[0]):
        entry = ifd + 2 + 12 * i
        if struct.unpack_from("<H", data, entry)[0] == tag:
            return entry
    raise KeyError(tag)


def test_32_bit_unsigned_tiff_uses_sample_format_tag(tmp_path):
    arr = np.array([[0, 1, 2**31 - 1, -5]], np.int32)  # -5 is 4294967291 as uint32
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "TIFF")
    data = bytearray(buf.getvalue())
    struct.pack_into("<H", data, _tiff_entry(data, 339) + 8, 1)  # SampleFormat: unsigned
    (tmp_path / "u.tif").write_bytes(bytes(data))
    img, note = load_image(tmp_path / "u.tif")
    _assert_gray(img, arr.view(np.uint32) / (2**32 - 1))
    assert note.startswith("converted 32-bit unsigned integer grayscale (I) to RGB, "
                           "scaled 0..4294967295")


def test_16_bit_file_opened_as_mode_I_without_tags(tmp_path):
    arr = _gray16(5, 6)
    Image.fromarray(arr).save(tmp_path / "p.pgm")  # Pillow reads a 16-bit PGM as mode "I"
    with Image.open(tmp_path / "p.pgm") as pil:
        assert pil.mode == "I"
    img, note = load_image(tmp_path / "p.pgm")
    _assert_gray(img, arr / 65535.0)
    assert "16-bit unsigned integer grayscale (I)" in note and "0..65535" in note


def test_ordinary_rgb_png_is_exactly_pixel_over_255(tmp_path):
    arr = np.random.default_rng(3).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    img, note = load_image(tmp_path / "rgb.png")
    assert note is None and img.dtype == np.float32
    np.testing.assert_array_equal(img, arr.astype(np.float32) / 255.0)


def test_8_bit_gray_png_still_converted_by_pillow(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(arr).save(tmp_path / "l.png")
    img, note = load_image(tmp_path / "l.png")
    assert note == "converted L to RGB"
    _assert_gray(img, arr.astype(np.float32) / 255.0, atol=0)


def test_float_tiff_in_unit_range_is_kept(tmp_path):
    arr = np.random.default_rng(4).random((6, 5)).astype(np.float32)
    arr[0, 0], arr[0, 1] = 0.0, 1.0
    Image.fromarray(arr).save(tmp_path / "f.tif")
    img, note = load_image(tmp_path / "f.tif")
    _assert_gray(img, arr, atol=0)
    assert note == "converted 32-bit float grayscale (F) to RGB, kept its values in [0, 1]"


def test_float_tiff_outside_unit_range_is_min_max_scaled(tmp_path):
    arr = np.linspace(0.0, 1000.0, 30, dtype=np.float32).reshape(5, 6)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    img, note = load_image(tmp_path / "f.tif")
    _assert_gray(img, arr / 1000.0)
    assert note == "converted 32-bit float grayscale (F) to RGB, scaled its range 0..1000 to [0, 1]"


def test_float_tiff_non_finite_values_become_zero(tmp_path):
    arr = np.array([[0.25, np.nan, 0.5], [np.inf, 1.0, 0.0]], np.float32)
    Image.fromarray(arr).save(tmp_path / "f.tif")
    img, note = load_image(tmp_path / "f.tif")
    _assert_gray(img, np.nan_to_num(arr, nan=0.0, posinf=0.0))
    assert note.endswith("kept its values in [0, 1], set 2 NaN/inf values to 0")


def test_resizing_16_bit_keeps_precision(tmp_path):
    # a ramp spanning only ~2.5 8-bit levels: any rounding to 8 bits would show as steps
    x = np.arange(64)
    arr = np.tile(30000 + 10 * x, (32, 1)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "ramp.png")
    img, note = load_image(tmp_path / "ramp.png", size=(16, 32))
    assert img.shape == (16, 32, 3)
    assert note.endswith("; resized 64x32 to 32x16")
    # halving a linear ramp bilinearly: output column i sits at input column 2i + 0.5
    expected = (30000 + 10 * (2 * np.arange(32) + 0.5)) / 65535.0
    interior = slice(2, -2)  # the edge columns' filter is cut off and renormalised
    error = np.abs(img[:, interior, :] - expected[interior][None, :, None]).max()
    assert error < 1e-5 < 1 / 255
    assert len(np.unique(img[0, :, 0])) == 32  # every output column distinct: no 8-bit steps


# --- EXIF orientation -----------------------------------------------------------------------

def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation, turns", [(6, -1), (3, 2), (8, 1)])
def test_png_exif_orientation_is_applied(tmp_path, orientation, turns):
    arr = np.random.default_rng(orientation).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "o.png", exif=_exif(orientation))
    img, note = load_image(tmp_path / "o.png")
    np.testing.assert_array_equal(img, np.rot90(arr, turns).astype(np.float32) / 255.0)
    assert note == f"rotated per EXIF orientation {orientation}"


def test_jpeg_exif_orientation_6_turns_the_image(tmp_path):
    arr = np.zeros((32, 48, 3), np.uint8)
    arr[:16, :16] = (255, 0, 0)  # a red top-left corner block
    Image.fromarray(arr).save(tmp_path / "o.jpg", quality=100, exif=_exif(6))
    img, note = load_image(tmp_path / "o.jpg")
    assert img.shape == (48, 32, 3)  # portrait now
    assert note == "rotated per EXIF orientation 6"
    np.testing.assert_allclose(img[4, -4], (1, 0, 0), atol=0.05)  # red went to the top right
    np.testing.assert_allclose(img[4, 4], (0, 0, 0), atol=0.05)


def test_exif_orientation_on_16_bit_image_then_resize(tmp_path):
    arr = _gray16(4, 6)
    Image.fromarray(arr).save(tmp_path / "o16.png", exif=_exif(8))
    img, note = load_image(tmp_path / "o16.png")
    _assert_gray(img, np.rot90(arr) / 65535.0)
    assert note.startswith("rotated per EXIF orientation 8; converted 16-bit grayscale")
    img, note = load_image(tmp_path / "o16.png", size=(3, 2))
    assert img.shape == (3, 2, 3) and note.endswith("resized 4x6 to 2x3")


# --- pixel limits ---------------------------------------------------------------------------

def _png(width: int, height: int, raw: bytes = b"") -> bytes:
    """An 8-bit grayscale PNG declaring width x height, holding the zlib-compressed `raw`."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any attempt to decode pixels fail loudly, to prove a check came before it."""
    def load(self):
        raise RuntimeError("pixels were decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_default_limit_is_pillows():
    assert DEFAULT_MAX_PIXELS == 89_478_485 == PILLOW_LIMIT


def test_decompression_bomb_png_is_refused_before_decoding(tmp_path, no_decoding):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(30000, 30000, bytes(1_000_000)))
    assert path.stat().st_size < 5000
    with pytest.raises(TfsalError, match="at most 89478485 pixels") as info:
        load_image(path)  # `no_decoding`: decoding it would fail the test
    message = str(info.value)
    assert str(path) in message and "max_pixels=" in message and "--max-pixels" in message


def test_declared_size_over_max_pixels_is_refused_before_decoding(tmp_path, no_decoding):
    Image.new("RGB", (100, 100)).save(tmp_path / "mid.png")
    with pytest.raises(TfsalError) as info:
        load_image(tmp_path / "mid.png", max_pixels=5000)
    message = str(info.value)
    assert "at most 5000 pixels" in message and "100x100 = 10000 pixels" in message
    assert str(tmp_path / "mid.png") in message and "--max-pixels" in message


def test_max_pixels_is_inclusive(tmp_path):
    Image.new("RGB", (100, 100), (0, 255, 0)).save(tmp_path / "mid.png")
    img, _ = load_image(tmp_path / "mid.png", max_pixels=10000)
    assert img.shape == (100, 100, 3) and img[..., 1].min() == 1.0


def test_no_limit_gets_past_pillows_bomb_check(tmp_path, no_decoding):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png(30000, 30000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        for limit in (None, 10**9):
            with pytest.raises(TfsalError, match="pixels were decoded"):
                load_image(path, max_pixels=limit)


@pytest.mark.parametrize("limit", [None, 20000, DEFAULT_MAX_PIXELS])
def test_limit_above_pillows_own_loads_and_restores_it(tmp_path, monkeypatch, limit):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow refuses > 2000, warns > 1000
    Image.new("L", (100, 100), 200).save(tmp_path / "big.png")
    Image.new("L", (40, 40), 100).save(tmp_path / "warn.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        big, _ = load_image(tmp_path / "big.png", max_pixels=limit)
        mid, _ = load_image(tmp_path / "warn.png", max_pixels=limit)
    assert Image.MAX_IMAGE_PIXELS == 1000
    np.testing.assert_array_equal(big, np.full((100, 100, 3), 200 / 255, np.float32))
    np.testing.assert_array_equal(mid, np.full((40, 40, 3), 100 / 255, np.float32))


def test_pillow_bomb_error_is_reported_with_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.new("L", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(TfsalError, match="at most 2000 pixels.*decompression bomb"):
        load_image(tmp_path / "big.png", max_pixels=2000)  # 10000 > 2 x Pillow's 2000
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_concurrent_loads_leave_pillows_limit_alone(tmp_path):
    Image.new("L", (20, 20), 7).save(tmp_path / "s.png")
    limits = [None, 10**9, 1000, DEFAULT_MAX_PIXELS] * 10

    def load(limit):
        return load_image(tmp_path / "s.png", max_pixels=limit)[0].shape

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(load, limits)) == {(20, 20, 3)}
    assert Image.MAX_IMAGE_PIXELS == PILLOW_LIMIT


@pytest.mark.parametrize("limit", [0, -1, True, 1.5, "100"])
def test_bad_max_pixels_raises(tmp_path, limit):
    Image.new("RGB", (2, 2)).save(tmp_path / "a.png")
    with pytest.raises(TfsalError, match="max_pixels"):
        load_image(tmp_path / "a.png", max_pixels=limit)


# --- damaged files --------------------------------------------------------------------------

_BASE = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)


def _encoded(fmt: str) -> bytes:
    buf = io.BytesIO()
    pil = Image.fromarray(_BASE)
    (pil.convert("P") if fmt == "GIF" else pil).save(buf, fmt)
    return buf.getvalue()


def _patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def _handmade_cases() -> dict[str, tuple[str, bytes]]:
    """Header edits on which Pillow raises something other than OSError (the old loader let
    these escape and end a whole folder run)."""
    png, bmp, gif, tif = (_encoded(f) for f in ("PNG", "BMP", "GIF", "TIFF"))
    descriptor = gif.index(b"\x2c")  # GIF image descriptor: left, top, width, height
    width_entry, height_entry = _tiff_entry(tif, 256), _tiff_entry(tif, 257)
    return {
        "png-short-ihdr": (".png", _patched(png, 8, struct.pack(">I", 1))),  # ValueError
        "bmp-rle-24-bit": (".bmp", _patched(bmp, 30, struct.pack("<I", 1))),  # ValueError
        "bmp-huge-width": (".bmp", _patched(bmp, 18, struct.pack("<i", 2**31 - 1))),  # bomb
        "gif-zero-width-frame": (".gif", _patched(gif, descriptor + 5, b"\0\0")),  # ValueError
        "tiff-width-as-byte": (".tif", _patched(tif, width_entry + 2, b"\1\0")),  # ValueError
        "tiff-huge-size": (".tif", _patched(_patched(tif, width_entry + 8, struct.pack(
            "<I", 10**5)), height_entry + 8, struct.pack("<I", 10**5))),  # bomb
    }


HANDMADE = _handmade_cases()


def _raw_pillow(path):
    with Image.open(path) as img:
        img.load()
        img.convert("RGB")


@pytest.mark.parametrize("name", sorted(HANDMADE))
def test_handmade_cases_raise_no_oserror_in_pillow(tmp_path, name):
    """The corpus is meaningful: plain Pillow raises a non-OSError on each of these files."""
    suffix, data = HANDMADE[name]
    (tmp_path / f"x{suffix}").write_bytes(data)
    with pytest.raises(Exception) as info:
        _raw_pillow(tmp_path / f"x{suffix}")
    assert not isinstance(info.value, OSError), info.value


@pytest.mark.parametrize("name", sorted(HANDMADE))
def test_handmade_damaged_files_are_that_files_failure(tmp_path, name):
    suffix, data = HANDMADE[name]
    path = tmp_path / f"{name}{suffix}"
    path.write_bytes(data)
    with pytest.raises(TfsalError) as info:
        load_image(path)
    message = str(info.value)
    assert str(path) in message and ("Error" in message or "at most" in message)
    assert "\n" not in message


def _fuzzed(fmt: str) -> list[bytes]:
    data = _encoded(fmt)
    out = []
    for seed in range(25):  # 1 to 4 bytes of the first 64 replaced, reproducibly
        rng = random.Random(seed)
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(min(64, len(data)))] = rng.randrange(256)
        out.append(bytes(damaged))
    out += [data[:cut] for cut in (0, 4, 8, 16, 30, 50, len(data) // 2, len(data) - 1)]
    return out


@pytest.mark.parametrize("fmt, suffix", [("GIF", ".gif"), ("JPEG", ".jpg"), ("PNG", ".png"),
                                         ("TIFF", ".tif"), ("BMP", ".bmp"), ("WEBP", ".webp")])
def test_fuzzed_headers_give_an_image_or_a_tfsal_error(tmp_path, fmt, suffix):
    path = tmp_path / f"f{suffix}"
    outcomes = {"image": 0, "error": 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd metadata in some of these
        for data in _fuzzed(fmt):
            path.write_bytes(data)
            try:
                img, _ = load_image(path, size=(5, 4))
            except TfsalError as exc:
                assert str(path) in str(exc)
                outcomes["error"] += 1
                continue
            assert img.dtype == np.float32 and img.shape == (5, 4, 3)
            assert np.isfinite(img).all() and img.min() >= 0.0 and img.max() <= 1.0
            outcomes["image"] += 1
    assert outcomes["error"] >= 8  # at least the truncations failed, as TfsalErrors


def test_memory_error_is_the_files_failure_but_interrupts_propagate(tmp_path, monkeypatch):
    Image.new("RGB", (3, 3)).save(tmp_path / "a.png")

    def out_of_memory(self):
        raise MemoryError
    monkeypatch.setattr(ImageFile.ImageFile, "load", out_of_memory)
    with pytest.raises(TfsalError, match="MemoryError"):
        load_image(tmp_path / "a.png")

    def interrupted(self):
        raise KeyboardInterrupt
    monkeypatch.setattr(ImageFile.ImageFile, "load", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_image(tmp_path / "a.png")


def test_missing_file_keeps_its_own_message(tmp_path):
    with pytest.raises(TfsalError, match="missing path"):
        load_image(tmp_path / "nope.png")


def test_lock_is_released_after_a_failure(tmp_path):
    from tfsal import images

    (tmp_path / "bad.png").write_bytes(_png(30000, 30000)[:40])  # cut inside IDAT
    for _ in range(2):
        with pytest.raises(TfsalError, match="readable"):
            load_image(tmp_path / "bad.png", max_pixels=None)
    assert images._PILLOW_LIMIT_LOCK.acquire(timeout=1)
    images._PILLOW_LIMIT_LOCK.release()
