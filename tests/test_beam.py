"""tfsal.beam on DirectRunner with the embedded shapes-cnn: the same maps (names and bytes) as
the local command and API, dead letters, idempotent reruns, fingerprints, metrics at scale,
multi-process workers and a pipeline killed with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

beam = pytest.importorskip("apache_beam", reason='needs the beam extra: pip install '
                                                 '"tfsal[beam]"')

import tfsal  # noqa: E402
from tfsal import cli  # noqa: E402
from tfsal.beam import (  # noqa: E402
    ReadImagesFromTFRecord,
    Statistics,
    SummaryCombineFn,
    explain_pipeline,
    method_cost,
    pattern_root,
    prepare_run,
)
from tfsal.beam.cli import counters, make_pipeline  # noqa: E402
from tfsal.errors import TfsalError  # noqa: E402
from tfsal.images import load_image  # noqa: E402

N_IMAGES = 3
# Cheap settings of every method (the command's --param, given to each method taking it).
PARAMS = ["steps=4", "n_samples=3", "seed=0"]


def _save_png(image, path):
    from PIL import Image

    Image.fromarray((np.asarray(image) * 255).round().astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A saved shapes-cnn, a folder of 3 PNGs (one in a sub-folder) and a corrupt file."""
    import tfsal.data
    import tfsal.zoo

    root = tmp_path_factory.mktemp("beam")
    model_file = root / "shapes.keras"
    tfsal.zoo.load("shapes-cnn").save(model_file)
    images = root / "images"
    (images / "sub").mkdir(parents=True)
    data = tfsal.data.make_dataset(N_IMAGES, seed=5)
    names = ["a.png", "b.png", "sub/c.png"]
    for name, image in zip(names, data.images):
        _save_png(image, images / name)
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    return {"root": root, "model": model_file, "images": images, "names": names}


def _run(run, options=(), **where):
    """The pipeline on DirectRunner as the command runs it (Beam's FnApiRunner, so
    --direct_num_workers / --direct_running_mode apply wherever Prism could be downloaded)."""
    pipeline = make_pipeline("DirectRunner", options)
    explain_pipeline(pipeline, run, **where)
    result = pipeline.run()
    result.wait_until_finish()
    return counters(result)


def _files(folder) -> dict:
    """{relative path: (bytes, mtime_ns)} of every file under `folder`."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            found[str(path.relative_to(folder))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return found


def _npys(folder, tags=None) -> dict:
    """{name: bytes} of the maps under `folder` (of the method `tags` only, if given: a
    shared reference folder also holds other tests' maps)."""
    return {name: data for name, (data, _) in _files(folder).items() if name.endswith(".npy")
            and (tags is None or any(f".{tag}.class" in name for tag in tags))}


@pytest.fixture(scope="module")
def every_method(workspace):
    """Every method on Beam (in-process, through the command) and locally (the command)."""
    root = workspace["root"]
    common = [str(workspace["images"]), "--model", str(workspace["model"]), "--method", "all"]
    for param in PARAMS:
        common += ["--param", param]
    beam_out, local_out = root / "out_beam", root / "out_local"
    status_beam = cli.main(["explain", *common, "--out", str(beam_out),
                            "--runner", "DirectRunner", "--direct_num_workers=1"])
    status_local = cli.main(["explain", *common, "--out", str(local_out)])
    (beam_folder,) = [p for p in beam_out.iterdir() if p.is_dir()]
    (local_folder,) = [p for p in local_out.iterdir() if p.is_dir()]
    return {"beam": beam_folder, "local": local_folder, "status": (status_beam, status_local)}


def test_every_method_writes_the_local_commands_files_with_the_same_bytes(every_method):
    beam_folder, local_folder = every_method["beam"], every_method["local"]
    assert beam_folder.name == local_folder.name  # one fingerprint, one folder name
    assert (beam_folder / ".tfsal-run.json").read_bytes() == \
        (local_folder / ".tfsal-run.json").read_bytes()
    beam_maps, local_maps = _npys(beam_folder), _npys(local_folder)
    local_summary = json.loads((local_folder.parent / "summary.json").read_text())
    served = {m["method"] for m in local_summary["maps"]}
    assert len(served) >= 10, served  # most methods serve the embedded model
    assert len(local_maps) == N_IMAGES * len(served)
    assert sorted(beam_maps) == sorted(local_maps)
    different = [name for name in local_maps if beam_maps[name] != local_maps[name]]
    assert not different
    assert every_method["status"] == (1, 1)  # the corrupt file fails in both


def test_every_method_equals_the_api_on_the_decoded_images(workspace, every_method):
    """Independent of the command: each Beam map is METHODS[name](model, images, targets)."""
    model = tfsal.load_model(str(workspace["model"]))
    files = [workspace["images"] / name for name in workspace["names"]]
    images = np.stack([load_image(f, model.input_size)[0] for f in files])
    targets = model.predicted_classes(images)
    records = [json.loads((every_method["beam"] / f"{name}.record.json").read_text())
               for name in workspace["names"]]
    every = cli._methods_with_options(list(tfsal.METHODS), cli._params(PARAMS))
    checked = set()
    for i, record in enumerate(records):
        for entry in record["maps"]:
            assert entry["target"] == targets[i]
            name, tag = entry["method"], entry["tag"]
            options = every[name][1]
            expected = tfsal.METHODS[name](model, images, targets, **options)[i]
            np.testing.assert_array_equal(np.load(every_method["beam"] / entry["npy"]),
                                          expected, err_msg=tag)
            checked.add(name)
    assert checked == {m for m in tfsal.METHODS if m not in records[0]["skipped"]}


def test_an_unreadable_image_is_a_dead_letter_and_nothing_else_is_lost(workspace,
                                                                        every_method):
    folder = every_method["beam"]
    failed = [json.loads(line) for line in (folder / "beam-failed.jsonl").read_text()
              .splitlines()]
    assert [f["image"] for f in failed] == [str(workspace["images"] / "broken.png")]
    assert "broken.png" in failed[0]["error"] and "readable image" in failed[0]["error"]
    summary = json.loads((folder / "beam-summary.json").read_text())
    assert summary["images"] == N_IMAGES and summary["failed"] == 1
    assert sorted(p.name for p in folder.rglob("*.record.json")) == \
        sorted(Path(n).name + ".record.json" for n in workspace["names"])


def test_a_rerun_writes_nothing_and_counts_every_image_as_existing(workspace, every_method):
    folder = every_method["beam"]
    before = _files(folder)
    run = prepare_run(str(workspace["model"]), out=folder.parent,
                      methods=cli._methods_with_options(list(tfsal.METHODS),
                                                        cli._params(PARAMS)))
    assert run.folder == str(folder)
    counts = _run(run, patterns=[str(workspace["images"])])
    assert counts.get("existing") == N_IMAGES
    assert counts.get("explained", 0) == 0 and counts.get("maps_written", 0) == 0
    assert counts.get("failed") == 1
    assert _files(folder) == before  # same bytes, same modification times


@pytest.fixture(scope="module")
def vanilla(workspace):
    """A small in-process run: vanilla gradient and IG (4 steps), two metrics."""
    out = workspace["root"] / "out_small"
    run = prepare_run(str(workspace["model"]), out=out,
                      methods={"vanilla_gradient": {}, "integrated_gradients": {"steps": 4}},
                      metrics=["deletion", "total_variation"])
    counts = _run(run, patterns=[str(workspace["images"] / "*.png")])
    return {"run": run, "out": out, "counts": counts}


def test_a_glob_names_outputs_relative_to_its_fixed_folder(workspace, vanilla):
    assert vanilla["counts"]["explained"] == 2  # a.png, b.png: the glob is not recursive
    names = sorted(p.name for p in Path(vanilla["run"].folder).glob("*.npy"))
    assert [n.split(".")[0] for n in names] == ["a", "a", "b", "b"]
    assert pattern_root("gs://bucket/photos/2024-*/*.jpg") == "gs://bucket/photos/"
    assert pattern_root(str(workspace["images"])) == str(workspace["images"]) + os.sep


def test_a_changed_parameter_or_model_never_reuses_maps(workspace, vanilla, tmp_path):
    run = vanilla["run"]
    before = _files(run.folder)
    other_steps = prepare_run(str(workspace["model"]), out=vanilla["out"],
                              methods={"integrated_gradients": {"steps": 5}})
    assert other_steps.folder == run.folder  # method parameters name the map files
    counts = _run(other_steps, patterns=[str(workspace["images"] / "*.png")])
    assert counts["explained"] == 2
    after = _files(run.folder)
    assert all(after[name] == value for name, value in before.items()  # maps untouched
               if name.endswith(".npy"))
    new = sorted(set(after) - set(before))
    assert len(new) == 2 and all("integrated_gradients-" in n for n in new)
    assert not any(n in {k for k in before if "integrated_gradients" in k} for n in new)

    # Another model (one weight changed) or another score: another fingerprint folder.
    import keras

    changed = keras.saving.load_model(workspace["model"])
    weights = changed.get_weights()
    weights[-1] = weights[-1] + 0.25
    changed.set_weights(weights)
    changed_file = tmp_path / "shapes.keras"
    changed.save(changed_file)
    other_model = prepare_run(str(changed_file), out=vanilla["out"], methods=["vanilla"])
    other_score = prepare_run(str(workspace["model"]), out=vanilla["out"], methods=["vanilla"],
                              score="probability")
    folders = {run.folder, other_model.folder, other_score.folder}
    assert len(folders) == 3
    _run(other_model, patterns=[str(workspace["images"] / "*.png")])
    model = tfsal.load_model(str(changed_file))
    image = load_image(workspace["images"] / "a.png", model.input_size)[0][None]
    target = int(model.predicted_classes(image)[0])
    written = np.load(Path(other_model.folder) / f"a.png.vanilla_gradient.class{target}.npy")
    np.testing.assert_array_equal(written, tfsal.vanilla_gradient(model, image, target)[0])


def test_a_model_replaced_after_the_run_was_built_is_refused(workspace, tmp_path):
    import keras

    model_file = tmp_path / "m.keras"
    keras.saving.load_model(workspace["model"]).save(model_file)
    run = prepare_run(str(model_file), out=tmp_path / "out", methods=["vanilla"])
    replaced = keras.saving.load_model(model_file)
    replaced.set_weights([w * 1.01 for w in replaced.get_weights()])
    replaced.save(model_file)
    with pytest.raises(Exception, match="the model changed after the pipeline was built"):
        _run(run, patterns=[str(workspace["images"] / "a.png")])
    assert not list(Path(run.folder).glob("*.npy"))


def test_the_summary_aggregates_the_existing_metric_functions(workspace, vanilla):
    from tfsal.metrics import deletion_curve, total_variation

    # A rerun (every image existing, another run into the folder in between) summarises the
    # scores stored in the records.
    counts = _run(vanilla["run"], patterns=[str(workspace["images"] / "*.png")])
    assert counts["existing"] == 2 and counts.get("explained", 0) == 0
    summary = json.loads((Path(vanilla["run"].folder) / "beam-summary.json").read_text())
    stats = summary["metrics"]["vanilla_gradient"]["rank1"]
    model = tfsal.load_model(str(workspace["model"]))
    files = [workspace["images"] / n for n in ("a.png", "b.png")]
    images = np.stack([load_image(f, model.input_size)[0] for f in files])
    targets = model.predicted_classes(images)
    maps = np.abs(tfsal.vanilla_gradient(model, images, targets)).max(axis=-1)
    curve = deletion_curve(model, images, maps, targets)
    assert stats["deletion"]["count"] == 2
    # The mean of per-image areas is the area of the mean curve (`tfsal evaluate`'s AUC).
    assert stats["deletion"]["mean"] == pytest.approx(curve.auc, rel=1e-6)  # float32 curves
    scale = maps.reshape(2, -1).max(axis=1)[:, None, None]
    tv = total_variation(maps / scale)
    assert stats["total_variation"]["mean"] == pytest.approx(tv.mean(), rel=1e-9)
    assert stats["total_variation"]["std"] == pytest.approx(tv.std(ddof=1), rel=1e-9)
    assert stats["total_variation"]["sem"] == pytest.approx(tv.std(ddof=1) / np.sqrt(2),
                                                            rel=1e-9)
    csv_rows = (Path(vanilla["run"].folder) / "beam-summary.csv").read_text().splitlines()
    assert csv_rows[0] == "method,rank,metric,count,mean,std,sem,nan"
    assert len(csv_rows) == 1 + 2 * 2  # two methods, two metrics


def test_statistics_merge_in_any_order_like_numpy():
    rng = np.random.default_rng(0)
    values = rng.normal(3.0, 2.0, 101)
    fn = Statistics()
    parts = []
    for chunk in np.array_split(values, 7):
        acc = fn.create_accumulator()
        for v in chunk:
            acc = fn.add_input(acc, v)
        parts.append(acc)
    acc = fn.add_input(fn.merge_accumulators(parts[::-1]), float("nan"))
    out = fn.extract_output(acc)
    assert out["count"] == 101 and out["nan"] == 1
    assert out["mean"] == pytest.approx(values.mean(), rel=1e-11)
    assert out["std"] == pytest.approx(values.std(ddof=1), rel=1e-11)
    assert out["sem"] == pytest.approx(values.std(ddof=1) / np.sqrt(101), rel=1e-11)
    combine = SummaryCombineFn()
    record = {"maps": [{"tag": "vanilla_gradient", "rank": 1, "scores": {"deletion": 0.5}}]}
    acc = combine.merge_accumulators([combine.add_input(combine.create_accumulator(), record),
                                      combine.create_accumulator()])
    result = combine.extract_output(acc)
    assert result["images"] == 1
    assert result["metrics"]["vanilla_gradient"]["rank1"]["deletion"]["mean"] == 0.5
    only = SummaryCombineFn(tags=["ig"], metrics=["deletion"])  # other runs' maps left out
    assert only.extract_output(only.add_input(only.create_accumulator(), record)) == \
        {"images": 1, "metrics": {}}


def test_tfrecords_of_encoded_images_give_the_same_maps(workspace, vanilla, tmp_path):
    import tensorflow as tf

    records = tmp_path / "images.tfrecord"
    with tf.io.TFRecordWriter(str(records)) as writer:
        for name in ("a.png", "b.png"):
            data = (workspace["images"] / name).read_bytes()
            feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[data])), "image/filename": tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[name.encode()]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                         .SerializeToString())
        writer.write((workspace["images"] / "sub" / "c.png").read_bytes())  # a raw record
        feature = {"image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[(workspace["images"] / "a.png").read_bytes()])), "image/filename":
            tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"../../escape/x.png"]))}
        writer.write(tf.train.Example(features=tf.train.Features(feature=feature))
                     .SerializeToString())
        writer.write(b"neither an image nor an Example")
    run = prepare_run(str(workspace["model"]), out=tmp_path / "out",
                      methods={"vanilla_gradient": {}, "integrated_gradients": {"steps": 4}})
    counts = _run(run, tfrecords=str(records))
    assert counts["explained"] == 4 and counts["failed"] == 1
    # A record's name never leads outside the run folder.
    assert list(Path(run.folder).glob("escape/x.png.*.npy"))
    assert not (tmp_path / "escape").exists() and not (tmp_path / "out" / "escape").exists()
    ours = _npys(run.folder)
    theirs = _npys(vanilla["run"].folder)
    for name in ("a.png", "b.png"):
        mine = {k: v for k, v in ours.items() if k.startswith(name)}
        assert mine and all(theirs[k] == v for k, v in mine.items())
    raw = [k for k in ours if k.startswith("images.tfrecord/")]
    assert len(raw) == 2  # the raw record: keyed by its file and its bytes' sha256
    assert ReadImagesFromTFRecord(str(records)).image_feature == "image/encoded"


def test_run_folders_inside_the_images_are_not_read(workspace, vanilla, tmp_path):
    """A local run's sheets (PNGs) inside the images' folder are not inputs, nor is OUT."""
    import shutil

    images = tmp_path / "images"
    shutil.copytree(workspace["images"], images, ignore=shutil.ignore_patterns("broken.png"))
    assert cli.main(["explain", str(images), "--model", str(workspace["model"]),
                     "--out", str(images / "local_maps")]) == 0
    assert list((images / "local_maps").rglob("*.maps.png"))
    run = prepare_run(str(workspace["model"]), out=images / "beam_maps", methods=["vanilla"])
    counts = _run(run, patterns=[str(images)], out=str(images / "beam_maps"))
    assert counts["explained"] == N_IMAGES and counts.get("failed", 0) == 0
    counts = _run(run, patterns=[str(images)], out=str(images / "beam_maps"))
    assert counts["existing"] == N_IMAGES and counts.get("explained", 0) == 0


def test_method_cost_weighs_batches():
    assert method_cost("vanilla") == 1
    assert method_cost("ig", {"steps": 4}) == 4
    assert method_cost("smoothgrad", {"n_samples": 3}) == 3
    assert method_cost("smoothgrad", {"n_samples": 3, "method": "ig", "steps": 8}) == 24


def test_the_handler_batches_by_cost_and_shares_the_model_only_on_gpus(workspace, tmp_path):
    run = prepare_run(str(workspace["model"]), out=tmp_path, methods={"ig": {"steps": 40}},
                      max_batch_weight=100, batch_size=8)
    handler = run.handler()
    kwargs = handler.batch_elements_kwargs()
    assert kwargs["max_batch_size"] == 8 and kwargs["max_batch_weight"] == 100
    # Only two IG-40 images fit a batch of weight 100.
    from tfsal.beam.handler import Todo

    todo = Todo("k", "s", "0", np.zeros((64, 64, 3), np.float32), ("x",), 40)
    assert kwargs["element_size_fn"](todo) == 40
    import tensorflow as tf

    assert handler.share_model_across_processes() == \
        bool(tf.config.list_physical_devices("GPU"))
    assert run.handler().load_model().describe()["name"] == run.model_name
    with pytest.raises(TfsalError, match="share_across_processes"):
        type(handler)("x", methods={}, share_across_processes="sometimes")


def test_the_command_passes_unknown_options_to_beam_only(workspace, capsys):
    with pytest.raises(SystemExit):
        cli.main(["explain", str(workspace["images"]), "--direct_num_workers=2"])
    assert "unrecognized arguments: --direct_num_workers=2" in capsys.readouterr().err
    assert cli.main(["explain", str(workspace["images"]), "--metric", "deletion"]) == 2
    assert "expected --runner" in capsys.readouterr().err
    assert cli.main(["explain", str(workspace["images"]), "--runner", "DirectRunner",
                     "--method", "nope"]) == 2
    assert "expected method names" in capsys.readouterr().err


def test_a_failed_write_fails_the_run_and_leaves_no_record_of_that_image(workspace,
                                                                         monkeypatch,
                                                                         tmp_path):
    """Maps are written by a writer thread: its failure must still fail the pipeline, and the
    image whose map was not written must have no record (a rerun redoes it)."""
    from tfsal.beam import io as bio

    run = prepare_run(str(workspace["model"]), out=tmp_path, methods=["vanilla"])
    write = bio.write_atomically

    def refuse_b(path, data, **kwargs):
        if os.path.basename(path).startswith("b.png.vanilla_gradient"):
            raise OSError(28, "No space left on device", path)
        return write(path, data, **kwargs)

    monkeypatch.setattr(bio, "write_atomically", refuse_b)
    with pytest.raises(Exception, match="No space left on device"):
        _run(run, patterns=[str(workspace["images"] / "*.png")])
    folder = Path(run.folder)
    assert not list(folder.glob("b.png*")) and not list(folder.glob(".b.png*"))
    monkeypatch.setattr(bio, "write_atomically", write)
    counts = _run(run, patterns=[str(workspace["images"] / "*.png")])
    assert counts["explained"] + counts.get("existing", 0) == 2
    assert counts["explained"] >= 1  # b.png at least: it had no record
    assert sorted(p.name.split(".")[0] for p in folder.glob("*.record.json")) == ["a", "b"]


def test_a_record_is_output_only_once_its_files_are_written(workspace, monkeypatch,
                                                            tmp_path):
    """The writer (`_Write`) writes on a thread; a step fused after it (on runners that fuse
    past the records' Flatten) may read the files a record names, so every record it outputs,
    from `process` or `finish_bundle`, must name files already on disk. Slowed writes make an
    early record visible."""
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.windowed_value import WindowedValue

    from tfsal.beam import io as bio
    from tfsal.beam.handler import Todo
    from tfsal.beam.pipeline import _Write

    run = prepare_run(str(workspace["model"]), out=tmp_path, methods=["vanilla", "gxi"])
    handler = run.handler()
    todos = []
    for name in ("a.png", "b.png", "sub/c.png"):
        image = load_image(workspace["images"] / name, run.input_size)[0]
        todos.append(Todo(name, name, "0" * 64, image, tuple(run.methods), 2))
    results = handler.run_inference(todos, handler.load_model())
    write = bio.write_atomically

    def slow(path, data, **kwargs):
        time.sleep(0.1)
        return write(path, data, **kwargs)

    def missing(record):
        names = [entry["npy"] for entry in record["maps"]] + [record["key"] + ".record.json"]
        return [name for name in names if not (Path(run.folder) / name).exists()]

    monkeypatch.setattr(bio, "write_atomically", slow)
    writer = _Write(run)
    writer.setup()
    writer.start_bundle()
    out = []
    for result in results:
        windowed = WindowedValue(result, 0, [GlobalWindow()])
        out += [(missing(record.value), record) for record in writer.process(result, windowed)]
    out += [(missing(record.value), record) for record in writer.finish_bundle()]
    writer.teardown()
    assert [record.value["key"] for _, record in out] == ["a.png", "b.png", "sub/c.png"]
    assert [names for names, _ in out] == [[], [], []]
    assert all(record.windows == [GlobalWindow()] for _, record in out)


def test_direct_runner_runs_beams_fn_api_runner_with_the_options():
    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    pipeline = make_pipeline("DirectRunner", ["--direct_num_workers=2",
                                              "--direct_running_mode=multi_processing"])
    assert isinstance(pipeline.runner, fn_runner.FnApiRunner)
    assert pipeline.options.view_as(DirectOptions).direct_num_workers == 2
    handed = pipeline.runner._provision_info.provision_info.pipeline_options
    assert handed["beam:option:direct_running_mode:v1"] == "multi_processing"
    # Streaming, and every other runner, are Beam's own choice.
    streaming = make_pipeline("DirectRunner", ["--streaming"])
    assert not isinstance(streaming.runner, fn_runner.FnApiRunner)
    assert streaming.options.view_as(StandardOptions).streaming
    assert type(make_pipeline("PrismRunner").runner).__name__ == "PrismRunner"


def test_tfsal_imports_beam_only_in_tfsal_beam():
    code = ("import sys, tfsal, tfsal.cli, tfsal.runs; tfsal.METHODS; "
            "print('apache_beam' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()[-1]
    assert out == "False"
    missing = ("import sys; sys.modules['apache_beam'] = None\n"
               "try:\n    import tfsal.beam\nexcept Exception as exc:\n"
               "    print(type(exc).__name__, exc)")
    out = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("TfsalError") and 'pip install "tfsal[beam]"' in out


@pytest.mark.slow
def test_two_worker_processes_write_the_same_bytes(workspace, vanilla, tmp_path):
    run = prepare_run(str(workspace["model"]), out=tmp_path,
                      methods={"vanilla_gradient": {}, "integrated_gradients": {"steps": 4}},
                      metrics=["deletion", "total_variation"])
    counts = _run(run, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
                  patterns=[str(workspace["images"] / "*.png")])
    assert counts["explained"] == 2
    assert _npys(run.folder) == _npys(vanilla["run"].folder, run.methods)
    summary = json.loads((Path(run.folder) / "beam-summary.json").read_text())
    reference = json.loads((Path(vanilla["run"].folder) / "beam-summary.json").read_text())
    assert summary["metrics"] == reference["metrics"]
    counts = _run(run, ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
                  patterns=[str(workspace["images"] / "*.png")])
    assert counts["existing"] == 2 and counts.get("explained", 0) == 0


@pytest.mark.slow
def test_a_model_shared_across_processes_gives_the_same_bytes(workspace, vanilla, tmp_path):
    """The GPU workers' mode, forced on a CPU: one model in a server process, batches sent to
    it through a proxy (`share_model_across_processes`)."""
    run = prepare_run(str(workspace["model"]), out=tmp_path,
                      methods={"vanilla_gradient": {}, "integrated_gradients": {"steps": 4}},
                      metrics=["deletion", "total_variation"], share_across_processes=True)
    assert run.handler().share_model_across_processes() is True
    counts = _run(run, patterns=[str(workspace["images"] / "*.png")])
    assert counts["explained"] == 2
    assert _npys(run.folder) == _npys(vanilla["run"].folder, run.methods)


_KILLED = textwrap.dedent("""
    import sys
    from tfsal.beam import explain_pipeline, prepare_run
    from tfsal.beam.cli import make_pipeline

    model, out, images = sys.argv[1:4]
    run = prepare_run(model, out=out, methods={"integrated_gradients": {"steps": 64}},
                      batch_size=1)
    print(run.folder, flush=True)
    with make_pipeline("DirectRunner") as pipeline:
        explain_pipeline(pipeline, run, patterns=[images])
""")


@pytest.mark.slow
def test_a_killed_run_leaves_whole_files_and_a_rerun_completes_it(workspace, tmp_path):
    import tfsal.data

    images = tmp_path / "many"
    images.mkdir()
    data = tfsal.data.make_dataset(16, seed=9)
    for i, image in enumerate(data.images):
        _save_png(image, images / f"{i:02d}.png")
    script = tmp_path / "job.py"
    script.write_text(_KILLED)
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, str(script), str(workspace["model"]), str(out),
                            str(images)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           text=True, start_new_session=True)
    folder = Path(job.stdout.readline().strip())
    deadline = time.monotonic() + 240
    while len(list(folder.glob("*.npy"))) < 3 and job.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    written = list(folder.glob("*.npy"))
    assert 3 <= len(written) < 16, "the job was not killed mid-run"
    for path in written:  # every visible map is whole
        assert np.load(path).shape == (64, 64, 3)
    visible = [p.name for p in folder.iterdir() if not p.name.startswith(".")]
    assert not [n for n in visible if n.endswith(".tmp")]
    for record in folder.glob("*.record.json"):  # a record only after its maps
        for entry in json.loads(record.read_text())["maps"]:
            assert (folder / entry["npy"]).exists()

    run = prepare_run(str(workspace["model"]), out=out,
                      methods={"integrated_gradients": {"steps": 64}}, batch_size=1)
    assert run.folder == str(folder)
    counts = _run(run, patterns=[str(images)])
    assert counts.get("existing", 0) + counts["explained"] == 16
    assert counts.get("existing", 0) >= 1 or len(list(folder.glob("*.record.json"))) == 16
    model = tfsal.load_model(str(workspace["model"]))
    decoded = np.stack([load_image(images / f"{i:02d}.png", model.input_size)[0]
                        for i in range(16)])
    targets = model.predicted_classes(decoded)
    expected = tfsal.integrated_gradients(model, decoded, targets, steps=64)
    for i in range(16):
        (path,) = folder.glob(f"{i:02d}.png.integrated_gradients-*.class{targets[i]}.npy")
        np.testing.assert_array_equal(np.load(path), expected[i])
