"""The `tfsal` command writes the files it names, and reports bad input clearly."""

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SIZE, toy_cnn
from PIL import Image

from tfsal.cli import main
from tfsal.methods import METHODS


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "toy.keras"
    toy_cnn().save(path)
    return path


@pytest.fixture
def image_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(SIZE, SIZE), (40, 30)]):  # the second one needs resizing
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, size + (3,), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_explain_writes_npy_per_map_and_one_sheet_per_image(model_file, image_files,
                                                                tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", *map(str, image_files), "--model", str(model_file),
                 "--method", "vanilla", "--method", "grad_cam", "--target", "top2",
                 "--out", str(out), "--preprocess", "none"])
    assert code == 0
    assert "resized 30x40 to 16x16" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())["maps"]
    assert len(summary) == 2 * 2 * 2  # images × methods × targets
    for entry in summary:
        for name in entry["files"]:
            assert Path(name).exists()
        npy = np.load([f for f in entry["files"] if f.endswith(".npy")][0])
        expected = (SIZE, SIZE, 3) if entry["method"] == "vanilla_gradient" \
            else (SIZE // 2, SIZE // 2)
        assert npy.shape == expected and np.isfinite(npy).all()
        sheet = [f for f in entry["files"] if f.endswith(".maps.png")][0]
        assert Path(sheet).name == Path(entry["image"]).name + ".maps.png"
    sheets = {e["files"][1] for e in summary}
    assert len(sheets) == 2  # one sheet per image, holding its 2 methods × 2 classes
    for sheet in sheets:
        with Image.open(sheet) as png:  # the image and 4 panels in one row, paper-sized
            assert png.mode == "RGB" and png.size[0] >= 5 * 200 and png.size[1] >= 250
    top = {e["image"]: set() for e in summary}
    for e in summary:
        top[e["image"]].add(e["target"])
    assert all(len(t) == 2 for t in top.values())  # two different classes per image


def _run_folder(out):
    return Path(json.loads((out / "summary.json").read_text())["run_folder"])


def test_explain_with_a_class_index(model_file, image_files, tmp_path):
    out = tmp_path / "out"
    assert main(["explain", str(image_files[0]), "--model", str(model_file), "--target", "3",
                 "--out", str(out)]) == 0
    run = _run_folder(out)
    assert run.parent == out and run.name.startswith("toy-")
    assert (run / "img0.png.vanilla_gradient.class3.npy").exists()
    assert (run / "img0.png.maps.png").exists()


@pytest.mark.parametrize("extra, message", [
    (["--target", "9"], "class indices in [0, 4)"),
    (["--target", "best"], "top1 or top2"),
    (["--method", "magic"], "method names"),
])
def test_explain_reports_bad_options(extra, message, model_file, image_files, tmp_path, capsys):
    code = main(["explain", str(image_files[0]), "--model", str(model_file), "--out",
                 str(tmp_path / "o"), *extra])
    assert code == 2
    assert message in capsys.readouterr().err


def test_explain_reports_an_unreadable_image(model_file, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["explain", str(bad), "--model", str(model_file), "--out", str(tmp_path)]) == 1
    assert "readable" in capsys.readouterr().err
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["maps"] == [] and summary["failed"][0]["image"] == str(bad)


@pytest.fixture
def folder(tmp_path):
    """Good images in nested folders, plus a truncated JPEG, a text file named .png, an empty
    file and a file that is not an image at all."""
    root = tmp_path / "in"
    rng = np.random.default_rng(1)
    for name in ("a/one.png", "a/two.jpg", "b/three.png", "four.png"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    whole = (root / "a/two.jpg").read_bytes()
    (root / "b/truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "text.png").write_text("not an image")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("ignored: not an image suffix")
    return root


def _digests(root):
    import hashlib

    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*")
            if p.is_file()}


def test_folder_run_skips_bad_files_writes_the_rest_and_changes_no_input(model_file, folder,
                                                                         tmp_path):
    before = _digests(folder)
    out = tmp_path / "out"
    code = main(["explain", str(folder), "--model", str(model_file), "--out", str(out),
                 "--batch-size", "2", "--target", "1"])
    assert code == 1  # some files failed
    summary = json.loads((out / "summary.json").read_text())
    failed = sorted(Path(f["image"]).name for f in summary["failed"])
    assert failed == ["empty.png", "text.png", "truncated.jpg"]
    run = Path(summary["run_folder"])
    names = sorted(str(Path(m["files"][0]).relative_to(run)) for m in summary["maps"])
    assert names == [f"{stem}.vanilla_gradient.class1.npy" for stem in
                     ("a/one.png", "a/two.jpg", "b/three.png", "four.png")]
    assert all(m["status"] == "written" and Path(m["files"][1]).exists()
               for m in summary["maps"])
    assert not list(out.rglob("*.tmp"))
    assert _digests(folder) == before


def test_folder_run_resumes_and_overwrite_recomputes(model_file, folder, tmp_path):
    out = tmp_path / "out"
    args = ["explain", str(folder), "--model", str(model_file), "--out", str(out),
            "--target", "2"]
    main(args)
    victim = _run_folder(out) / "four.png.vanilla_gradient.class2.npy"
    victim.unlink()
    untouched = _run_folder(out) / "a" / "one.png.vanilla_gradient.class2.npy"
    stamp = untouched.stat().st_mtime_ns
    main(args)  # resume: only the missing map is computed
    status = {Path(m["files"][0]).name: m["status"]
              for m in json.loads((out / "summary.json").read_text())["maps"]}
    assert status["four.png.vanilla_gradient.class2.npy"] == "written" and victim.exists()
    assert status["one.png.vanilla_gradient.class2.npy"] == "existing"
    assert untouched.stat().st_mtime_ns == stamp
    main(args + ["--overwrite"])
    assert untouched.stat().st_mtime_ns != stamp


def test_an_interrupted_run_leaves_no_partial_file_and_resumes(model_file, folder, tmp_path,
                                                                monkeypatch):
    import tfsal.files

    out = tmp_path / "out"
    args = ["explain", str(folder), "--model", str(model_file), "--out", str(out),
            "--batch-size", "1", "--target", "0"]
    real = np.save
    calls = []

    def interrupted_save(handle, array):  # the third map is cut off mid-write
        calls.append(1)
        if len(calls) == 3:
            handle.write(b"half")
            raise KeyboardInterrupt
        real(handle, array)

    monkeypatch.setattr(tfsal.files.np, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    monkeypatch.setattr(tfsal.files.np, "save", real)
    assert len(list(out.rglob("*.npy"))) == 2 and not list(out.rglob("*.tmp"))
    assert json.loads((out / "summary.json").read_text())["finished"] is False
    main(args)
    maps = json.loads((out / "summary.json").read_text())["maps"]
    assert [m["status"] for m in maps].count("existing") == 2 and len(maps) == 4
    for m in maps:
        assert np.load(m["files"][0]).shape == (SIZE, SIZE, 3)


def test_a_folder_without_images_is_an_error(model_file, tmp_path, capsys):
    empty = tmp_path / "nothing"
    empty.mkdir()
    assert main(["explain", str(empty), "--model", str(model_file)]) == 2
    assert "holding images" in capsys.readouterr().err


def test_methods_lists_every_method(capsys):
    assert main(["methods"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in METHODS)


def test_models_lists_the_embedded_model(capsys):
    assert main(["models"]) == 0
    assert "shapes-cnn" in capsys.readouterr().out


def test_demo_writes_the_photo_sheet_the_grid_and_every_map(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--n-images", "2", "--photos", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chelsea: " in printed and "cat" in printed.split("chelsea: ")[1].splitlines()[0]
    with Image.open(out / "photos.png") as sheet:  # the photo row: image + six methods
        assert sheet.size[0] >= 7 * 200 and sheet.size[1] >= 300
    grid = Image.open(out / "grid.png")
    assert grid.size[0] > 64 * 3 * (len(METHODS) + 1)  # one column per method, scaled ×3
    for name in METHODS:
        for i in range(2):
            assert (out / f"image{i}_{name}.png").exists()
            assert np.isfinite(np.load(out / f"image{i}_{name}.npy")).all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["methods"] == list(METHODS) and len(summary["images"]) == 2
