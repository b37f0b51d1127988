"""Documented behaviour checked against hand values and the definitions, not against the code:
SmoothGrad's noise, each IG schedule, the deletion mask, ROAR / KAR areas, seeds, target
ranks and labels, and atomic file writes."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import toy_cnn

import tfsal
from tfsal import TfsalError
from tfsal.files import append_lines, atomic_write, read_json_lines, save_json
from tfsal.methods.integrated import path_schedule
from tfsal.metrics import deletion_curve, deletion_mask, insertion_curve, randomization_check
from tfsal.targets import class_label, resolve_targets

try:  # the retraining experiments may move to the Face side
    from tfsal.metrics import kar_aoc, roar_auc
except ImportError:  # pragma: no cover
    from tfsal.experiments import kar_aoc, roar_auc


# ------------------------------------------------------------------ SmoothGrad and VarGrad
def identity(model, images, targets):
    """A "method" whose map is the image it is given: SmoothGrad then averages the copies."""
    return np.asarray(images)


@pytest.fixture(scope="module")
def linear():
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 3))
    return keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(inp)))


@pytest.fixture
def low_contrast():
    """Two images with different value ranges: [0.2, 0.6] and [0, 1]."""
    rng = np.random.default_rng(4)
    images = rng.random((2, 4, 4, 3)).astype(np.float32)
    images[0] = 0.2 + 0.4 * images[0]
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 0.2, 0.6
    images[1, 0, 0, 0], images[1, 0, 0, 1] = 0.0, 1.0
    return images


def noise(seed, j, shape):
    """SmoothGrad's documented noise: sample j from a generator seeded by (seed, j)."""
    return np.random.default_rng([seed, j]).standard_normal(shape, np.float32).astype(np.float64)


def test_smoothgrad_averages_unclipped_copies_with_sigma_scaled_per_image(linear, low_contrast):
    """M̂(x) = 1/n Σ_j M(x + ε_j), ε_j ~ N(0, σ²), σ = noise_level · (max(x) − min(x)) per
    image; the copies are not clipped to [0, 1]."""
    x = low_contrast
    sigma = 0.5 * np.array([0.4, 1.0])[:, None, None, None]
    eps = [noise(11, j, x.shape[1:]) for j in range(2)]
    out = tfsal.smoothgrad(linear, x, [0, 0], method=identity, n_samples=2, noise_level=0.5,
                           seed=11)
    np.testing.assert_allclose(out, x + sigma * (eps[0] + eps[1]) / 2, rtol=1e-5, atol=1e-6)
    assert out.min() < 0 and out.max() > 1  # unclipped
    var = tfsal.vargrad(linear, x, [0, 0], method=identity, n_samples=2, noise_level=0.5,
                        seed=11)
    np.testing.assert_allclose(var, (sigma * (eps[0] - eps[1]) / 2) ** 2, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ IG schedules
S3 = np.sqrt(3.0)
SCHEDULE_VALUES = {  # hand values: (steps, nodes, weights)
    "left": (4, [0, 0.25, 0.5, 0.75], [0.25] * 4),
    "right": (4, [0.25, 0.5, 0.75, 1], [0.25] * 4),
    "midpoint": (4, [0.125, 0.375, 0.625, 0.875], [0.25] * 4),
    "trapezoid": (4, [0, 1 / 3, 2 / 3, 1], [1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    "gauss_legendre": (2, [0.5 - 0.5 / S3, 0.5 + 0.5 / S3], [0.5, 0.5]),
    "graded": (2, [0.0625, 0.5625], [0.25, 0.75]),
}


@pytest.mark.parametrize("schedule", sorted(SCHEDULE_VALUES))
def test_each_schedule_has_its_documented_nodes_and_weights(schedule):
    steps, nodes, weights = SCHEDULE_VALUES[schedule]
    got_nodes, got_weights = path_schedule(schedule, steps)
    np.testing.assert_allclose(got_nodes, nodes, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got_weights, weights, rtol=1e-12)


def test_three_point_gauss_legendre():
    nodes, weights = path_schedule("gauss_legendre", 3)
    half = 0.5 * np.sqrt(0.6)
    np.testing.assert_allclose(nodes, [0.5 - half, 0.5, 0.5 + half], rtol=1e-12)
    np.testing.assert_allclose(weights, [5 / 18, 8 / 18, 5 / 18], rtol=1e-12)


# ------------------------------------------------------------------ deletion
SIGNED = np.array([[[-2.0, 0.0, 3.0], [1.0, -1.0, 0.0]]])  # pixels 0..5, row-major


@pytest.mark.parametrize("fraction, deleted", [
    (0.0, []), (0.3, [2, 3]), (0.7, [2, 3]), (0.9, [2, 3, 4])])
def test_deletion_mask_of_a_signed_map_never_deletes_its_zero_pixels(fraction, deleted):
    """Normalised: [0, .4, 1, .6, .2, .4]; the cut is the value at rank round(p · 6) in
    descending order [1, .6, .4, .4, .2, 0]; deleted: map > cut and map ≠ 0. The zeros sit at
    .4 after normalisation, above the cut from p = 0.7 on, and stay."""
    expected = np.zeros(6, bool)
    expected[deleted] = True
    np.testing.assert_array_equal(deletion_mask(SIGNED, fraction).ravel(), expected)


def test_deletion_curves_measure_each_images_own_target():
    """The (fraction, image) batch is fraction-major: every row keeps its image's target."""
    model = tfsal.Model(toy_cnn())
    images = np.random.default_rng(6).random((3, 16, 16, 3)).astype(np.float32)
    maps = np.random.default_rng(7).random((3, 16, 16))
    targets = np.array([0, 1, 2])
    rows = np.arange(3)
    clean = model.predict(images, score="probability")[rows, targets]
    white = model.predict(np.ones_like(images), score="probability")[rows, targets]
    deletion = deletion_curve(model, images, maps, targets, fractions=(0.0, 0.5))
    np.testing.assert_allclose(deletion.per_image[:, 0], clean, rtol=1e-5)
    insertion = insertion_curve(model, images, maps, targets, fill="white",
                                fractions=(0.0, 0.5))
    np.testing.assert_allclose(insertion.per_image[:, 0], white, rtol=1e-5)
    assert np.ptp(clean) > 1e-3 and np.ptp(white) > 1e-3  # the targets' rows do differ


# ------------------------------------------------------------------ ROAR / KAR areas
def test_roar_and_kar_areas_on_an_asymmetric_grid():
    """Trapezoids over x = 0, .2, .6, 1. ROAR: y = .9 (clean), .5, .7, .1 (chance):
    .2·1.4/2 + .4·1.2/2 + .4·.8/2 = .54. KAR over the kept fraction: y = .1 (chance), .5, .7,
    .9 (clean): .06 + .24 + .32 = .62, AOC = .38. A grid symmetric about 0.5 cannot tell a
    curve from its mirror image."""
    ends = dict(clean_accuracy=0.9, chance_accuracy=0.1)
    assert roar_auc([0.2, 0.6], [0.5, 0.7], **ends) == pytest.approx(0.54)
    assert kar_aoc([0.2, 0.6], [0.5, 0.7], **ends) == pytest.approx(0.38)


# ------------------------------------------------------------------ seeds
def test_randomization_check_depends_on_its_seed():
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    user = toy_cnn()
    a = randomization_check(user, images, tfsal.vanilla_gradient, 1, seed=0)
    np.testing.assert_array_equal(
        a.rank_correlation,
        randomization_check(user, images, tfsal.vanilla_gradient, 1, seed=0).rank_correlation)
    b = randomization_check(user, images, tfsal.vanilla_gradient, 1, seed=1)
    assert not np.allclose(a.rank_correlation, b.rank_correlation)


# ------------------------------------------------------------------ targets
SCORES = np.array([[0.1, 0.5, 0.5, 0.2], [0.3, 0.3, 0.3, 0.3]])


@pytest.mark.parametrize("rule, expected", [
    ("top1", [1, 0]), ("top2", [2, 1]), ("top3", [3, 2]), ("top4", [0, 3])])
def test_rank_targets_break_ties_towards_the_lower_class_index(rule, expected):
    got = resolve_targets(rule, 2, 4, scores=lambda: SCORES)
    np.testing.assert_array_equal(got, expected)


def test_ranks_beyond_the_classes_raise():
    with pytest.raises(TfsalError, match="top5"):
        resolve_targets("top5", 2, 4, scores=lambda: SCORES)


def test_class_labels_are_counted_from_zero():
    named = SimpleNamespace(class_names=["cat", "dog", "eel"])
    assert [class_label(named, t) for t in (0, 1, 2, 3)] == ["cat", "dog", "eel", "3"]
    assert class_label(SimpleNamespace(class_names=None), np.int64(1)) == "1"


# ------------------------------------------------------------------ files
def test_atomic_write_puts_its_temporary_file_next_to_the_target(tmp_path, monkeypatch):
    """A rename is atomic only within one file system: the temporary file must sit in the
    target's folder (not the working folder, not /tmp)."""
    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append((Path(src), Path(dst))),
                                                          real_replace(src, dst))[1])
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    target = tmp_path / "out" / "a.json"
    save_json({"a": 1}, target)
    assert json.loads(target.read_text()) == {"a": 1}
    [(src, dst)] = replaced
    assert dst == target and src.parent == target.parent and src != target
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]
    assert not any(elsewhere.iterdir())


def test_atomic_write_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.fstat(fd).st_ino))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", os.stat(src).st_ino))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_json([1, 2], tmp_path / "b.json")
    renamed = [inode for kind, inode in events if kind == "replace"]
    assert len(renamed) == 1
    before = events[:events.index(("replace", renamed[0]))]
    assert ("fsync", renamed[0]) in before


def test_an_interrupted_write_leaves_the_old_file_and_no_litter(tmp_path):
    target = tmp_path / "c.txt"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(target) as handle:
            handle.write(b"partial")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["c.txt"]


def test_outputs_follow_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = save_json({}, tmp_path / "d.json")
        append_lines(tmp_path / "e.jsonl", ["{}"])
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "e.jsonl").stat().st_mode & 0o777 == 0o640


def test_journal_lines_append_and_a_damaged_line_is_skipped(tmp_path):
    path = tmp_path / "records.jsonl"
    append_lines(path, ['{"a": 1}'])
    append_lines(path, ['{"b": ', '{"c": 3}'])  # a line cut off by a crash, then more
    assert path.read_text() == '{"a": 1}\n{"b": \n{"c": 3}\n'
    assert list(read_json_lines(path)) == [{"a": 1}, {"c": 3}]


def test_lines_appended_after_a_cut_off_line_are_kept(tmp_path):
    """A crash mid-write leaves a line without its newline; the next append must not glue its
    first record to it (which would lose that record too)."""
    from tfsal.files import append_lines, read_json_lines

    journal = tmp_path / "records.jsonl"
    append_lines(journal, ['{"a": 1}'])
    with open(journal, "ab") as handle:
        handle.write(b'{"b": ')  # the crash
    append_lines(journal, ['{"c": 3}', '{"d": 4}'])
    assert list(read_json_lines(journal)) == [{"a": 1}, {"c": 3}, {"d": 4}]
