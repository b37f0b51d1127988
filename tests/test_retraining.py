"""Retraining experiments: the training recipe, ROAR/KAR and the random-patch experiment,
against oracle maps and hand-computed scores."""

import json

import keras
import numpy as np
import pytest

import tfsal
from tfsal import TfsalError
from tfsal.experiments import TrainingRecipe, paste, random_patch_experiment, roar_kar
from tfsal.metrics import (
    kar_aoc,
    occlude,
    patch_scores,
    rank_pixels,
    reference_threshold,
    roar_auc,
)
from tfsal.zoo import train_classifier
from tfsal.zoo.training import accuracy

FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)


def tiny_build(num_classes: int, input_size: int) -> keras.Model:
    """Per-pixel colour detectors and a max over the image: learns `coloured_squares` in a
    few epochs."""
    inp = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(4, 1, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    out = keras.layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inp, out)


def coloured_squares(n: int, seed: int, size: int = 16):
    """Grey noise with one 3×3 pure red (class 0) or green (class 1) square: the square is all
    the class information, and its mask is the oracle map."""
    rng = np.random.default_rng(seed)
    grey = rng.uniform(0.3, 0.7, (n, size, size, 1))
    images = np.repeat(grey, 3, axis=-1).astype(np.float32)
    labels = rng.integers(0, 2, n)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(0, size - 3, 2)
        masks[i, y:y + 3, x:x + 3] = True
        images[i, y:y + 3, x:x + 3] = [1.0, 0.0, 0.0] if labels[i] == 0 else [0.0, 1.0, 0.0]
    return images, labels, masks


# ------------------------------------------------------------------------------ training
def test_train_classifier_is_seeded_and_learns_an_easy_task():
    images, labels, _ = coloured_squares(96, seed=0)
    test_images, test_labels, _ = coloured_squares(64, seed=1)
    kwargs = dict(build=tiny_build, epochs=8, learning_rate=2e-2)
    a = train_classifier(images, labels, seed=3, **kwargs)
    b = train_classifier(images, labels, seed=3, **kwargs)
    c = train_classifier(images, labels, seed=4, **kwargs)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert any(not np.array_equal(wa, wc) for wa, wc in zip(a.get_weights(), c.get_weights()))
    assert accuracy(a, test_images, test_labels) >= 0.9  # chance: 0.5
    wrapped = tfsal.Model(a, preprocess="tf")  # inputs were fed as images * 2 - 1
    assert np.mean(wrapped.predicted_classes(test_images) == test_labels) >= 0.9


def test_train_classifier_rejects_bad_arguments():
    images, labels, _ = coloured_squares(8, seed=0)
    with pytest.raises(TfsalError, match="expected epochs an int"):
        train_classifier(images, labels, build=tiny_build, epochs=0)
    with pytest.raises(TfsalError, match="expected square images"):
        train_classifier(images[:, :8], labels, build=tiny_build, epochs=1)
    with pytest.raises(TfsalError, match="expected labels as 8"):
        train_classifier(images, labels[:5], build=tiny_build, epochs=1)
    with pytest.raises(TfsalError, match="expected learning_rate"):
        train_classifier(images, labels, build=tiny_build, epochs=1, learning_rate=-1.0)
    with pytest.raises(TfsalError, match="expected num_classes"):
        train_classifier(images, labels, build=tiny_build, epochs=1, num_classes=1)


# ------------------------------------------------------------------------------ ROAR / KAR
def test_areas_of_hand_made_accuracy_tables():
    roar = [0.7, 0.6, 0.5, 0.4, 0.3]
    # Trapezoids over 0, .1, .3, .5, .7, .9, 1 with 0.8 at 0 % removed and 0.1 at 100 %:
    # .1·(.8+.7)/2 + .2·(.65+.55+.45+.35) + .1·(.3+.1)/2 = .075 + .4 + .02
    assert roar_auc(FRACTIONS, roar, clean_accuracy=0.8, chance_accuracy=0.1) == \
        pytest.approx(0.495)
    kar = roar[::-1]  # keeping p at random = removing 1 − p at random
    assert kar_aoc(FRACTIONS, kar, clean_accuracy=0.8, chance_accuracy=0.1) == \
        pytest.approx(0.505)
    # Random: the KAR curve is the mirrored ROAR curve, so AUC + AOC = 1 (published .5562 +
    # .4438) for any table.
    rng = np.random.default_rng(0)
    for _ in range(5):
        acc = np.sort(rng.uniform(0.1, 0.8, 5))[::-1]
        ends = dict(clean_accuracy=0.8, chance_accuracy=0.1)
        assert roar_auc(FRACTIONS, acc, **ends) + kar_aoc(FRACTIONS, acc[::-1], **ends) == \
            pytest.approx(1.0, abs=1e-12)
    flat = dict(clean_accuracy=0.4, chance_accuracy=0.4)
    assert roar_auc(FRACTIONS, [0.4] * 5, **flat) == pytest.approx(0.4)
    assert kar_aoc(FRACTIONS, [0.4] * 5, **flat) == pytest.approx(0.6)
    with pytest.raises(TfsalError, match="5 accuracies"):
        roar_auc(FRACTIONS, [0.5] * 4, **flat)


def test_ranking_breaks_ties_by_seed_and_occlusion_counts_pixels():
    maps = np.zeros((2, 4, 4))
    maps[0, 1, 2] = 5.0
    maps[0, 3, 3] = 4.0
    ranks = rank_pixels(maps, seed=0)
    assert ranks[0, 1, 2] == 0 and ranks[0, 3, 3] == 1
    assert sorted(ranks[1].ravel()) == list(range(16))  # a permutation
    np.testing.assert_array_equal(ranks, rank_pixels(maps, seed=0))
    assert not np.array_equal(ranks[1], rank_pixels(maps, seed=1)[1])
    images = np.full((2, 4, 4, 3), 0.5, np.float32)
    fill = [0.0, 0.25, 1.0]
    removed = occlude(images, ranks, 0.25, fill=fill)
    replaced = np.all(removed == fill, axis=-1)
    assert replaced.sum(axis=(1, 2)).tolist() == [4, 4]
    assert replaced[0, 1, 2] and replaced[0, 3, 3]
    kept = occlude(images, ranks, 0.25, keep=True, fill=fill)
    np.testing.assert_array_equal(np.all(kept == fill, axis=-1), ~replaced)
    np.testing.assert_array_equal(images, 0.5)  # inputs untouched


def test_roar_kar_rejects_bad_arguments_before_training():
    images, labels, _ = coloured_squares(8, seed=0)
    data = (images, labels)
    common = dict(train=data, test=data, trainer=TrainingRecipe(epochs=1, build=tiny_build))
    for fractions in ((0.5, 0.3), (0.0, 0.5), (0.5, 1.0), (), "half"):
        with pytest.raises(TfsalError, match="fractions"):
            roar_kar(["vanilla"], fractions=fractions, **common)
    with pytest.raises(TfsalError, match="method names"):
        roar_kar(["no_such_method"], **common)
    with pytest.raises(TfsalError, match="modes"):
        roar_kar(["vanilla"], modes=("remove",), **common)
    with pytest.raises(TfsalError, match="repeats"):
        roar_kar(["vanilla"], repeats=0, **common)
    with pytest.raises(TfsalError, match="train as a ShapesDataset"):
        roar_kar(["vanilla"], train=images, test=data)
    with pytest.raises(TfsalError, match="expected epochs an int"):
        TrainingRecipe(epochs=0)
    with pytest.raises(TfsalError, match="expected trainer"):
        roar_kar(["vanilla"], train=data, test=data, trainer="shapes-cnn")


def test_an_oracle_ranking_drops_roar_accuracy_more_than_random(tmp_path):
    train_images, train_labels, train_masks = coloured_squares(128, seed=0)
    test_images, test_labels, test_masks = coloured_squares(64, seed=1)
    oracle = (train_masks.astype(float), test_masks.astype(float))  # object pixels first
    checkpoint = tmp_path / "roar.json"
    kwargs = dict(train=(train_images, train_labels), test=(test_images, test_labels),
                  fractions=(0.1, 0.9), repeats=1, seed=0, checkpoint=checkpoint,
                  trainer=TrainingRecipe(epochs=8, learning_rate=2e-2, build=tiny_build))
    result = roar_kar({"oracle": oracle}, **kwargs)
    assert result.methods == ("oracle", "random") and result.mirrored_random
    assert result.roar.shape == result.kar.shape == (2, 2, 1)
    oracle_roar, random_roar = result.roar[0, :, 0], result.roar[1, :, 0]
    assert result.clean_accuracy[0] >= 0.9
    # 10 % of 256 pixels > the 9 object pixels: the oracle removes every one; random leaves most.
    assert oracle_roar.max() <= 0.75 and random_roar[0] >= 0.9, (oracle_roar, random_roar)
    assert result.roar_auc[0] < result.roar_auc[1]
    assert result.kar[0, 0, 0] >= 0.9  # keeping the object keeps the accuracy
    np.testing.assert_array_equal(result.kar[1, :, 0], random_roar[::-1])
    assert result.roar_auc[1] + result.kar_aoc[1] == pytest.approx(1.0, abs=1e-12)
    assert 0.3 <= result.chance_accuracy <= 0.7
    # The checkpoint holds every training's accuracy; a rerun reads instead of retraining.
    stored = json.loads(checkpoint.read_text())
    assert stored["accuracies"]["oracle/roar/0.1/0"] == result.roar[0, 0, 0]
    assert len(stored["accuracies"]) == 1 + 4 + 2  # clean, oracle × 2 modes, random ROAR
    stored["accuracies"]["oracle/kar/0.9/0"] = 0.123
    checkpoint.write_text(json.dumps(stored))
    assert len(list(tmp_path.glob("roar.*.ranks.npz"))) == 1  # the maps' ranks, reused too
    again = roar_kar({"oracle": oracle}, **kwargs)
    assert again.kar[0, 1, 0] == 0.123
    np.testing.assert_array_equal(again.roar, result.roar)
    with pytest.raises(TfsalError, match="checkpoint written with these settings"):
        roar_kar({"oracle": oracle}, **{**kwargs, "trainer": TrainingRecipe(
            epochs=7, learning_rate=2e-2, build=tiny_build)})


# ------------------------------------------------------------------------------ random patch
def test_patch_scores_of_hand_made_maps():
    maps = np.zeros((2, 12, 12, 3))
    maps[0, 0, 0] = [1.0, 2.0, 0.0]  # channel sum 3 inside the 8×8
    maps[0, 7, 7] = [-1.0, 0.0, 0.0]  # −1 inside
    maps[0, 8, 8] = [0.0, 0.0, 4.0]  # 4 outside
    maps[1, 11, 11] = [1.0, 1.0, 1.0]  # only outside
    sums, fractions = patch_scores(maps, region=8)
    np.testing.assert_allclose(sums, [2.0, 0.0])
    np.testing.assert_allclose(fractions, [4.0 / 8.0, 0.0])
    cut = reference_threshold(np.array([[[1.0, 2.0], [3.0, 4.0]]]), 50)  # cut 2.5 > 0
    np.testing.assert_allclose(cut, [[[0.0, 0.0], [3.0, 4.0]]])
    clipped = reference_threshold(np.array([[[-3.0, -2.0], [-1.0, 4.0]]]), 50)  # cut −1.5
    np.testing.assert_allclose(clipped, [[[-1.5, -1.5], [-1.0, 4.0]]])
    with pytest.raises(TfsalError, match="final_threshold"):
        patch_scores(maps, final_threshold=120)


def test_paste_puts_the_patch_top_left_only():
    images = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    patch = np.full((5, 5, 3), 0.5, np.float32)
    out = paste(images, patch)
    np.testing.assert_array_equal(out[:, :5, :5], 0.5)
    np.testing.assert_array_equal(out[:, 5:], images[:, 5:])
    np.testing.assert_array_equal(out[:, :, 5:], images[:, :, 5:])
    assert not np.array_equal(images[:, :5, :5], out[:, :5, :5])  # a copy


def test_random_patch_experiment_gives_a_patch_only_map_the_full_mass():
    def patch_only(model, images, targets=None):
        maps = np.zeros(images.shape, np.float32)
        maps[:, :8, :8] = 1.0
        return maps

    result = random_patch_experiment({"patch_only": patch_only, "vanilla": "vanilla"},
                                     n_train=16, n_eval=4, trainer=TrainingRecipe(epochs=1),
                                     size=32, seed=0, control=True)
    assert result.methods == ("patch_only", "vanilla") and result.region == 8
    np.testing.assert_allclose(result.patch_fraction[0], 1.0)
    np.testing.assert_allclose(result.raw_patch_fraction[0], 1.0)
    np.testing.assert_allclose(result.patch_sum[0], 64 * 3.0)
    assert result.patch_sum.shape == result.control_patch_sum.shape == (2, 4)
    for fractions in (result.patch_fraction[1], result.raw_patch_fraction[1],
                      result.control_raw_patch_fraction[1]):
        assert np.all((fractions >= 0) & (fractions <= 1))
    assert result.patch.shape == (10, 10, 3) and 0 <= result.patch.min() < result.patch.max() <= 1
    np.testing.assert_array_equal(result.patch, np.random.default_rng(0).random((10, 10, 3))
                                  .astype(np.float32))
    assert isinstance(result.model, tfsal.Model) and result.model.preprocess == "tf"
    assert 0 <= result.accuracy <= 1 and 0 <= result.control_accuracy <= 1
    summary = result.summary()
    assert summary["patch_only"]["fraction"] == (1.0, 1.0, 1.0)
    assert "control_fraction" in summary["vanilla"]


def test_random_patch_rejects_bad_arguments():
    with pytest.raises(TfsalError, match="patch_size below"):
        random_patch_experiment(["vanilla"], n_train=4, n_eval=2, size=32,
                                patch_size=32)
    with pytest.raises(TfsalError, match="region ≤ patch_size"):
        random_patch_experiment(["vanilla"], n_train=4, n_eval=2, size=32,
                                region=12)
    with pytest.raises(TfsalError, match="method names"):
        random_patch_experiment(["nope"], n_train=4, n_eval=2, size=32)
    with pytest.raises(TfsalError, match="final_threshold"):
        random_patch_experiment(["vanilla"], n_train=4, n_eval=2, size=32,
                                final_threshold=-1)


# ------------------------------------------------------------------------------ injected trainer
def colour_difference_model() -> tfsal.Model:
    """Untrained and exact on `coloured_squares`: logit 0 = max over pixels of R − G, logit 1 =
    max of G − R (grey pixels have R = G, so only the square, or a fill, counts)."""
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="difference")(inp)
    out = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    model = keras.Model(inp, out)
    model.get_layer("difference").kernel.assign(
        np.array([[[[1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]]]], np.float32))
    return tfsal.Model(model)


def test_roar_kar_retrains_with_the_injected_trainer_and_scores_by_hand(tmp_path):
    train_images, train_labels, train_masks = coloured_squares(40, seed=0)  # 24 red, 16 green
    test_images, test_labels, test_masks = coloured_squares(32, seed=1)
    fixed = colour_difference_model()
    calls = []

    def trainer(images, labels, *, seed, num_classes):
        calls.append((images, labels, seed, num_classes))
        return fixed

    oracle = (train_masks.astype(float), test_masks.astype(float))
    kwargs = dict(train=(train_images, train_labels), test=(test_images, test_labels),
                  trainer=trainer, fractions=(0.1, 0.9), repeats=2, seed=5,
                  checkpoint=tmp_path / "roar.json")
    result = roar_kar({"oracle": oracle}, **kwargs)
    # Both fractions remove all 9 square pixels (10 % of 256 = 26); what is left is grey
    # (R − G = 0) and the fill, the training images' mean colour, whose R − G is positive
    # (more red squares): every image is called red, the majority class. Keeping the square
    # keeps every answer right.
    chance = float(np.mean(test_labels == 0))
    np.testing.assert_array_equal(result.clean_accuracy, [1.0, 1.0])
    np.testing.assert_array_equal(result.roar[0], chance)
    np.testing.assert_array_equal(result.kar[0], 1.0)
    assert result.chance_accuracy == chance and result.model_accuracy == 1.0
    # Trapezoids over 0, .1, .9, 1: ROAR (1, c, c, c), KAR (c, 1, 1, 1).
    assert result.roar_auc[0] == pytest.approx(0.05 * (1 + chance) + 0.8 * chance + 0.1 * chance)
    assert result.kar_aoc[0] == pytest.approx(1 - (0.05 * (chance + 1) + 0.8 + 0.1))
    # 2 clean runs; per repeat the oracle's 2 modes × 2 fractions and random ROAR's 2
    # fractions (random KAR mirrors them); seeds seed + repeat; labels always the training's.
    assert len(calls) == 2 + 2 * 6
    assert sorted({seed for *_, seed, _ in calls}) == [5, 6]
    assert all(n == 2 and labels is calls[0][1] for _, labels, _, n in calls)
    np.testing.assert_array_equal(calls[0][0], train_images)
    # Removed pixels (all channels) become the clean training images' mean colour.
    fill = train_images.reshape(-1, 3).mean(axis=0)
    changed = [np.any(images != train_images, axis=-1) for images, *_ in calls]
    assert sum(c.any() for c in changed) == 2 * 6
    for (images, *_), where in zip(calls, changed):
        np.testing.assert_allclose(images[where], np.broadcast_to(fill, images[where].shape))
    assert result.settings["trainer"] == trainer.__qualname__
    # A rerun reads every recorded accuracy; only the map model is trained again.
    calls.clear()
    again = roar_kar({"oracle": oracle}, **kwargs)
    assert [seed for *_, seed, _ in calls] == [5]
    np.testing.assert_array_equal(again.roar, result.roar)


def test_a_trainer_must_return_an_adapter():
    images, labels, _ = coloured_squares(8, seed=0)
    with pytest.raises(TfsalError, match="trainer to return a tfsal.Model"):
        roar_kar(["vanilla"], train=(images, labels), test=(images, labels), repeats=1,
                 trainer=lambda images, labels, *, seed, num_classes: "a model")


def test_the_self_thresholding_policy_is_the_one_the_experiment_passes():
    from tfsal.experiments._common import SELF_THRESHOLDING, resolve_methods

    plain = resolve_methods(["rectgrad", "vanilla"])
    assert [m.self_thresholded for m in plain] == [False, False] and plain[0].kwargs == {}
    policy = resolve_methods({"r": "rectgrad", "v": "vanilla"}, {"r": {"percentile": 90}},
                             self_thresholding=SELF_THRESHOLDING)
    assert [m.self_thresholded for m in policy] == [True, False]
    assert policy[0].kwargs == {"zero_threshold": True, "percentile": 90}
    assert resolve_methods([tfsal.rectgrad], self_thresholding=SELF_THRESHOLDING)[0].kwargs == {}
    assert resolve_methods(["vanilla"], self_thresholding={"vanilla": {}})[0].self_thresholded


def test_random_patch_skips_the_final_threshold_only_for_self_thresholding_methods():
    from conftest import toy_cnn

    from tfsal.data import make_dataset

    fixed = tfsal.Model(toy_cnn(size=32, softmax=False), preprocess="tf")
    result = random_patch_experiment(["vanilla", "rectgrad"], n_train=4, n_eval=3, size=32,
                                     trainer=lambda images, labels, *, seed, num_classes: fixed)
    assert result.model is fixed
    patched = paste(make_dataset(3, size=32, seed=2).images, result.patch)
    vanilla = tfsal.vanilla_gradient(fixed, patched)
    rect = tfsal.rectgrad(fixed, patched, zero_threshold=True)
    np.testing.assert_allclose(result.patch_sum[0],
                               patch_scores(vanilla, region=8, final_threshold=95)[0])
    np.testing.assert_allclose(result.patch_sum[1], patch_scores(rect, region=8)[0])
    np.testing.assert_allclose(result.raw_patch_fraction[1], patch_scores(rect, region=8)[1])
    # The two policies give different scores here, so the assertions above can tell them apart.
    assert not np.allclose(patch_scores(rect, region=8, final_threshold=95)[0],
                           patch_scores(rect, region=8)[0])
    assert not np.allclose(patch_scores(vanilla, region=8, final_threshold=95)[0],
                           patch_scores(vanilla, region=8)[0])


def test_the_experiments_moved_out_of_metrics():
    import tfsal.metrics

    with pytest.raises(AttributeError, match="tfsal.experiments"):
        tfsal.metrics.roar_kar  # noqa: B018
    assert tfsal.experiments.roar_kar is roar_kar
