"""Metrics against maps whose score is known by construction."""

import numpy as np
import pytest

from tfsal import TfsalError
from tfsal.metrics import mass_inside, nonzero_fraction


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
