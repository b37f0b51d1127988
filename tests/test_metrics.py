"""Metrics against maps whose score is known by construction."""

import numpy as np
import pytest
from conftest import assert_same_snapshot, snapshot, toy_cnn

import tfsal
from tfsal import TfsalError
from tfsal.metrics import mass_inside, nonzero_fraction, randomization_check


def test_mass_inside_known_maps():
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True
    maps = np.zeros((2, 4, 4, 3))
    maps[0, 0, 0] = [1, 1, 1]  # all mass inside
    maps[1, 0, 0], maps[1, 3, 3] = [-1, -1, -1], [1, 2, 0]  # |−3| inside, 3 outside
    np.testing.assert_allclose(mass_inside(maps, masks), [1.0, 0.5])
    np.testing.assert_allclose(nonzero_fraction(maps), [1 / 16, 2 / 16])
    uniform = np.ones((1, 4, 4))
    np.testing.assert_allclose(mass_inside(uniform, masks[:1]), [0.25])
    with pytest.raises(TfsalError, match="expected masks of shape"):
        mass_inside(maps, masks[:, :3])


def test_total_variation_and_region_masses_of_known_maps():
    from tfsal.metrics import mass_in_region, mass_outside_mask, total_variation

    maps = np.zeros((2, 4, 4, 3))
    maps[0, 1, 1] = [1, 0, 0]  # one isolated unit: 4 neighbour edges of height 1
    maps[1] = 2.0  # constant: no variation
    np.testing.assert_allclose(total_variation(maps), [4.0, 0.0])
    masks = np.zeros((2, 4, 4), bool)
    masks[:, :2, :2] = True
    np.testing.assert_allclose(mass_outside_mask(maps, masks), [0.0, 6.0 * 12])
    region = np.zeros((4, 4), bool)
    region[0, :] = True
    signed = -maps
    np.testing.assert_allclose(mass_in_region(signed, region), [0.0, -6.0 * 4])
    with pytest.raises(TfsalError, match="region of shape"):
        mass_in_region(maps, np.ones((3, 3), bool))


def test_randomization_check_separates_model_maps_from_image_maps():
    images = np.random.default_rng(0).random((3, 16, 16, 3)).astype(np.float32)
    user = toy_cnn()
    before = snapshot(user, images)
    check = randomization_check(user, images, tfsal.vanilla_gradient, 1)
    assert check.layers[0] == "predictions" and len(check.layers) == 3  # dense, conv2, conv1
    assert check.rank_correlation.shape == (3, 3)
    assert check.rank_correlation[-1].mean() < 0.5  # all layers random: the map is gone

    def edges(model, x, targets):  # ignores the model: must survive randomisation
        return np.abs(np.diff(x, axis=1, append=x[:, -1:]))

    blind = randomization_check(user, images, edges, 1)
    np.testing.assert_allclose(blind.rank_correlation, 1.0)
    assert_same_snapshot(before, snapshot(user, images))
