"""Folder runs never lose, mix up or overwrite a map or an input, and one file never stops the
others (`tfsal explain`, `tfsal.runs`)."""

import errno
import io
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import SIZE, toy_cnn
from PIL import Image

import tfsal
from tfsal.cli import main
from tfsal.images import load_image


def _image(path, seed, size=(SIZE, SIZE)):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "toy.keras"
    toy_cnn(seed=0).save(path)
    return path


def _summary(out):
    return json.loads((out / "summary.json").read_text())


def _explain(*args):
    return main(["explain", *map(str, args)])


def _expected_map(model_file, image_path, target, **options):
    model = tfsal.load_model(str(model_file), **options)
    image = load_image(image_path, model.input_size)[0][None]
    return tfsal.vanilla_gradient(model, image, [target])[0]


def _maps_by_image(summary):
    return {Path(m["image"]).resolve(): m for m in summary["maps"]}


def test_names_never_collide_and_each_map_belongs_to_its_image(model_file, tmp_path):
    root = tmp_path / "in"
    paths = [_image(root / "a" / "b.png", 1), _image(root / "a__b.png", 2),
             _image(root / "a__b_2.png", 3), _image(root / "a__b.jpg", 4)]
    out = tmp_path / "out"
    assert _explain(root, "--model", model_file, "--out", out, "--target", "1") == 0
    summary = _summary(out)
    npys = [m["files"][0] for m in summary["maps"]]
    assert len(npys) == len(set(npys)) == 4
    assert set(_maps_by_image(summary)) == {p.resolve() for p in paths}
    for path, entry in _maps_by_image(summary).items():
        np.testing.assert_allclose(np.load(entry["files"][0]),
                                   _expected_map(model_file, path, 1), rtol=1e-5, atol=1e-7)


def test_adding_files_keeps_every_name_and_resumes_with_the_right_maps(model_file, tmp_path):
    root = tmp_path / "in"
    _image(root / "a" / "b.png", 1)
    _image(root / "a__b.png", 2)
    out = tmp_path / "out"
    args = (root, "--model", model_file, "--out", out, "--target", "2")
    _explain(*args)
    before = {p: m["files"] for p, m in _maps_by_image(_summary(out)).items()}
    _image(root / "a" / "a.png", 5)  # sorts first in the folder and in the names
    _image(root / "a__a.png", 6)
    _explain(*args)
    after = _maps_by_image(_summary(out))
    assert len(after) == 4
    for path, files in before.items():
        assert after[path]["files"] == files and after[path]["status"] == "existing"
    for path, entry in after.items():
        np.testing.assert_allclose(np.load(entry["files"][0]),
                                   _expected_map(model_file, path, 2), rtol=1e-5, atol=1e-7)


def test_resume_never_keeps_maps_of_another_model_setting_or_input(model_file, tmp_path):
    root = tmp_path / "in"
    image = _image(root / "one.png", 1)
    out = tmp_path / "out"
    args = [root, "--model", model_file, "--out", out, "--target", "0"]
    _explain(*args)
    assert _summary(out)["counts"] == {"written": 1, "existing": 0}
    _explain(*args)
    assert _summary(out)["counts"] == {"written": 0, "existing": 1}

    toy_cnn(seed=7).save(model_file)  # the same file name, other weights
    _explain(*args)
    entry = _summary(out)["maps"][0]
    assert entry["status"] == "written"
    np.testing.assert_allclose(np.load(entry["files"][0]), _expected_map(model_file, image, 0),
                               rtol=1e-5, atol=1e-7)

    _explain(*args, "--preprocess", "tf")
    entry = _summary(out)["maps"][0]
    assert entry["status"] == "written"
    np.testing.assert_allclose(np.load(entry["files"][0]),
                               _expected_map(model_file, image, 0, preprocess="tf"),
                               rtol=1e-5, atol=1e-7)

    for extra in (["--score", "probability"], ["--target", "top1"]):
        _explain(*args, *extra)
        assert _summary(out)["counts"]["existing"] == 0, extra

    _image(image, 99)  # the same path, other pixels
    _explain(*args)
    entry = _summary(out)["maps"][0]
    assert entry["status"] == "written"
    np.testing.assert_allclose(np.load(entry["files"][0]), _expected_map(model_file, image, 0),
                               rtol=1e-5, atol=1e-7)


def test_maps_of_a_method_option_are_not_reused_for_another(model_file, tmp_path):
    image = _image(tmp_path / "in" / "one.png", 1)
    out = tmp_path / "out"
    base = [image, "--model", model_file, "--out", out, "--method", "grad_cam", "--target", "0"]
    _explain(*base, "--layer", "conv1")
    _explain(*base, "--layer", "relu2")
    entry = _summary(out)["maps"][0]
    assert entry["status"] == "written" and np.load(entry["files"][0]).shape == (8, 8)


def test_out_inside_or_equal_to_the_input_folder(model_file, tmp_path):
    root = tmp_path / "photos"
    _image(root / "cat.png", 1)
    # A user's image named like a map of the old layout and of the new one.
    _image(root / "cat_vanilla_class0.png", 2)
    _image(root / "cat.png.vanilla_gradient.class0.png", 3)
    _image(root / "cat.png.maps.png", 4)
    digests = {p: p.read_bytes() for p in root.rglob("*.png")}
    for out in (root, root / "maps"):
        for _ in range(2):  # a rerun must not take the maps for images
            code = _explain(root, "--model", model_file, "--out", out, "--target", "0")
            assert code == 0
            summary = _summary(out)
            assert len(summary["maps"]) == 4 and not summary["failed"]
            assert {Path(m["image"]).name for m in summary["maps"]} == \
                {p.name for p in digests}
        for path, data in digests.items():
            assert path.read_bytes() == data


def test_an_output_that_would_land_on_an_input_is_refused(model_file, tmp_path):
    image = _image(tmp_path / "in" / "one.png", 1)
    out = tmp_path / "out"
    args = [image, "--model", model_file, "--out", out, "--target", "0"]
    _explain(*args)
    npy, png = map(Path, _summary(out)["maps"][0]["files"])
    png.unlink()
    png.symlink_to(image)  # the map's name now leads to the user's file
    data = image.read_bytes()
    assert _explain(*args, "--overwrite") == 1
    assert image.read_bytes() == data
    assert "never overwritten" in _summary(out)["failed"][0]["error"]


def test_mixed_sizes_with_a_flexible_model_are_grouped(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = tmp_path / "flex.keras"
    keras.Model(inp, keras.layers.Dense(3)(x)).save(path)
    root = tmp_path / "in"
    for i, size in enumerate([(16, 16), (20, 12), (16, 16), (9, 30)]):
        _image(root / f"im{i}.png", i, size)
    out = tmp_path / "out"
    assert _explain(root, "--model", path, "--out", out, "--batch-size", "3",
                    "--target", "1") == 0
    maps = _summary(out)["maps"]
    assert len(maps) == 4
    for entry in maps:
        h, w = Image.open(entry["image"]).size[::-1]
        assert np.load(entry["files"][0]).shape == (h, w, 3)


def _remove_deep(top: Path) -> None:
    """Delete a tree deeper than the recursion limit (shutil.rmtree, and so pytest's own clean-up
    of old temporary folders, would raise RecursionError on it)."""
    stack = [str(top)]
    while stack:
        with os.scandir(stack[-1]) as listing:
            entries = list(listing)
        folders = [e.path for e in entries if e.is_dir(follow_symlinks=False)]
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
        if folders:
            stack.extend(folders)
        else:
            os.rmdir(stack.pop())


@pytest.fixture
def deep_root(tmp_path):
    root = tmp_path / "in"
    yield root
    _remove_deep(tmp_path)


def test_non_utf8_names_links_and_deep_trees(model_file, deep_root, tmp_path, monkeypatch):
    root = deep_root
    good = _image(root / "good.png", 1)
    odd = os.fsdecode(os.fsencode(str(root)) + b"/caf\xe9.png")
    _image(odd, 2, (20, 20))  # resized: its name is printed on stdout
    (root / "dangling.png").symlink_to(root / "missing.png")
    (root / "loop.png").symlink_to(root / "loop.png")
    deep = root
    for _ in range(1500):
        deep = deep / "d"
    from tfsal.files import make_dirs

    make_dirs(deep)
    _image(deep / "deep.png", 3)
    strict = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stdout", strict)
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BytesIO(), encoding="utf-8",
                                                        errors="strict"))
    out = tmp_path / "out"
    code = _explain(root, "--model", model_file, "--out", out, "--target", "0")
    strict.flush()
    printed = strict.buffer.getvalue().decode()
    assert code == 1  # the links failed
    summary = _summary(out)
    failed = {Path(f["image"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == {"dangling.png", "loop.png"}
    assert "broken link" in failed["dangling.png"] and "looping link" in failed["loop.png"]
    explained = {m["image"] for m in summary["maps"]}
    assert explained == {str(good), odd, str(deep / "deep.png")}
    assert "caf\\xe9.png: resized" in printed  # escaped, never an encoding error
    for entry in summary["maps"]:
        assert Path(entry["files"][0]).exists()


def test_out_is_checked_before_any_work(model_file, tmp_path, capsys, monkeypatch):
    image = _image(tmp_path / "one.png", 1)
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    import tfsal.cli

    monkeypatch.setattr(tfsal.cli, "_load", lambda args: pytest.fail("model loaded"))
    assert _explain(image, "--model", model_file, "--out", a_file) == 2
    assert "expected --out a folder, received" in capsys.readouterr().err
    assert a_file.read_text() == "mine"
    assert _explain(tmp_path / "nope.png", "--model", model_file, "--out", tmp_path / "o") == 2
    assert "missing path" in capsys.readouterr().err


def test_a_read_only_out_is_an_error_before_any_work(model_file, tmp_path, capsys,
                                                     monkeypatch):
    import tempfile

    image = _image(tmp_path / "one.png", 1)
    out = tmp_path / "ro"
    out.mkdir()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    import tfsal.cli

    monkeypatch.setattr(tfsal.cli, "_load", lambda args: pytest.fail("model loaded"))
    assert _explain(image, "--model", model_file, "--out", out) == 2
    assert "Read-only file system" in capsys.readouterr().err


def test_a_full_disk_mid_run_is_a_clean_error_with_its_own_status(model_file, tmp_path,
                                                                   capsys, monkeypatch):
    import tfsal.files

    root = tmp_path / "in"
    for i in range(3):
        _image(root / f"im{i}.png", i)
    real = tfsal.files.np.save
    calls = []

    def full(handle, array):
        calls.append(1)
        if len(calls) == 2:
            handle.write(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        real(handle, array)

    monkeypatch.setattr(tfsal.files.np, "save", full)
    out = tmp_path / "out"
    code = _explain(root, "--model", model_file, "--out", out, "--batch-size", "1",
                    "--target", "0")
    assert code == 3
    err = capsys.readouterr().err
    assert "tfsal: error: could not write" in err and "No space left" in err
    assert not list(out.rglob("*.tmp"))
    for npy in out.rglob("*.npy"):
        assert np.load(npy).shape == (SIZE, SIZE, 3)
    assert _summary(out)["finished"] is False


def test_the_summary_is_written_once_and_records_are_appended(model_file, tmp_path,
                                                              monkeypatch):
    from tfsal import runs

    root = tmp_path / "in"
    for i in range(5):
        _image(root / f"im{i}.png", i)
    writes = []
    real = runs.Summary.write
    monkeypatch.setattr(runs.Summary, "write",
                        lambda self, path, **kw: (writes.append(path), real(self, path, **kw)))
    out = tmp_path / "out"
    assert _explain(root, "--model", model_file, "--out", out, "--batch-size", "2",
                    "--target", "0", "--method", "vanilla", "--method", "grad_cam") == 0
    assert writes == [out / "summary.json"]
    summary = _summary(out)
    assert summary["finished"] is True and len(summary["maps"]) == 10
    records = (Path(summary["run_folder"]) / "records.jsonl").read_text().splitlines()
    assert len(records) == 10 and all(json.loads(line)["sha256"] for line in records)
    # A line cut off by a crash is skipped, and the rest still counts for the resume.
    with open(Path(summary["run_folder"]) / "records.jsonl", "a") as handle:
        handle.write('{"npy": "cut')
    _explain(root, "--model", model_file, "--out", out, "--batch-size", "2", "--target", "0",
             "--method", "vanilla", "--method", "grad_cam")
    assert _summary(out)["counts"] == {"written": 0, "existing": 10}


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_honour_the_umask_and_are_synced_before_the_rename(model_file, tmp_path,
                                                                   monkeypatch, umask):
    image = _image(tmp_path / "one.png", 1)
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace",
                        lambda a, b: (events.append(("replace", Path(b).suffix)),
                                      real_replace(a, b))[1])
    old = os.umask(umask)
    try:
        out = tmp_path / f"out{umask}"
        assert _explain(image, "--model", model_file, "--out", out, "--target", "0") == 0
    finally:
        os.umask(old)
    for path in [*map(Path, _summary(out)["maps"][0]["files"]), out / "summary.json"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    replaced = [i for i, e in enumerate(events) if isinstance(e, tuple)]
    assert replaced and all(events[i - 1] == "fsync" for i in replaced)


def test_target_ranks_beyond_the_classes_are_a_usage_error(model_file, tmp_path, capsys):
    image = _image(tmp_path / "one.png", 1)
    assert _explain(image, "--model", model_file, "--out", tmp_path / "o",
                    "--target", "top5") == 2
    assert "top1 … top4" in capsys.readouterr().err


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + chunk(b"IEND", b""))


def test_one_bad_file_never_stops_the_others(model_file, tmp_path):
    root = tmp_path / "in"
    _image(root / "a.png", 1)
    (root / "bomb.png").write_bytes(_png_declaring(30000, 30000))
    gif = root / "fuzzed.gif"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(gif)
    descriptor = b"\x2c\0\0\0\0\x08\0\x08\0"  # the frame at (0, 0), 8x8
    gif.write_bytes(gif.read_bytes().replace(descriptor, b"\x2c\0\0\0\0\0\0\x08\0"))
    _image(root / "z.png", 2)
    out = tmp_path / "out"
    assert _explain(root, "--model", model_file, "--out", out, "--target", "0",
                    "--batch-size", "1") == 1
    summary = _summary(out)
    assert {Path(m["image"]).name for m in summary["maps"]} == {"a.png", "z.png"}
    failed = {Path(f["image"]).name: f["error"] for f in summary["failed"]}
    assert set(failed) == {"bomb.png", "fuzzed.gif"}  # Pillow: DecompressionBomb-, ValueError
    assert "--max-pixels" in failed["bomb.png"]
    # The pixel limit is an option: a 16x16 image is too large for 100 pixels.
    assert _explain(root / "a.png", "--model", model_file, "--out", out, "--target", "0",
                    "--max-pixels", "100") == 1
    assert "at most 100 pixels" in _summary(out)["failed"][0]["error"]


def _binary_and_segmentation(tmp_path):
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    binary = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(
        keras.layers.GlobalAveragePooling2D()(x)))
    segmentation = keras.Model(inp, keras.layers.Conv2D(3, 1)(x))
    binary.save(tmp_path / "binary.keras")
    segmentation.save(tmp_path / "segmentation.keras")
    return tmp_path / "binary.keras", tmp_path / "segmentation.keras"


def test_the_command_line_on_binary_and_non_classifier_models(tmp_path, capsys):
    binary, segmentation = _binary_and_segmentation(tmp_path)
    image = _image(tmp_path / "one.png", 1)
    out = tmp_path / "out"
    assert _explain(image, "--model", binary, "--out", out, "--target", "top2") == 0
    maps = {m["target"]: np.load(m["files"][0]) for m in _summary(out)["maps"]}
    assert sorted(maps) == [0, 1] and np.abs(maps[1]).max() > 0
    np.testing.assert_allclose(maps[0], -maps[1], rtol=1e-6)  # logit of class 0 is −z
    assert _explain(image, "--model", segmentation, "--out", out) == 2
    assert "(N, classes) logits or probabilities" in capsys.readouterr().err
    assert _explain(image, "--model", binary, "--out", out, "--batch-size", str(10**6)) == 2
    assert "batch_size an int in [1, 4096]" in capsys.readouterr().err


def test_resume_on_a_saved_model_keys_on_its_weights(tmp_path):
    from tfsal.fingerprint import model_digest

    export = tmp_path / "export"
    toy_cnn(seed=0).export(export, verbose=False)
    first = model_digest(tfsal.load_model(export))
    assert first == model_digest(tfsal.load_model(export))  # stable across loads
    image = _image(tmp_path / "in" / "one.png", 1)
    out = tmp_path / "out"
    args = [image, "--model", export, "--out", out, "--target", "1"]
    _explain(*args)
    _explain(*args)
    assert _summary(out)["counts"] == {"written": 0, "existing": 1}
    import shutil

    shutil.rmtree(export)
    toy_cnn(seed=5).export(export, verbose=False)  # the same path, other weights
    assert model_digest(tfsal.load_model(export)) != first
    _explain(*args)
    entry = _summary(out)["maps"][0]
    assert entry["status"] == "written"
    np.testing.assert_allclose(np.load(entry["files"][0]), _expected_map(export, image, 1),
                               rtol=1e-4, atol=1e-6)
