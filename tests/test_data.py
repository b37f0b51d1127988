"""The generated data set: deterministic, well-formed, balanced, with object masks."""

import numpy as np
import pytest

from tfsal import TfsalError
from tfsal.data import CLASS_NAMES, make_dataset


def test_shapes_dtypes_ranges():
    d = make_dataset(20, seed=0)
    assert d.images.shape == (20, 64, 64, 3) and d.images.dtype == np.float32
    assert d.images.min() >= 0 and d.images.max() <= 1
    assert d.labels.shape == (20,) and d.labels.dtype == np.int64
    assert d.masks.shape == (20, 64, 64) and d.masks.dtype == bool
    assert len(d) == 20 and d.class_names == CLASS_NAMES


def test_deterministic_and_seed_dependent():
    a, b = make_dataset(5, seed=3), make_dataset(5, seed=3)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert not np.array_equal(a.images, make_dataset(5, seed=4).images)


def test_slices_are_independent_of_n():
    whole = make_dataset(12, seed=1)
    part = make_dataset(4, seed=1, start=6)
    np.testing.assert_array_equal(part.images, whole.images[6:10])
    np.testing.assert_array_equal(part.labels, whole.labels[6:10])


def test_masks_cover_a_plausible_object():
    d = make_dataset(50, seed=2, size=48)
    area = d.masks.mean(axis=(1, 2))
    assert area.min() > 0.02 and area.max() < 0.6
    # the object differs from the background around it
    for img, mask in zip(d.images[:10], d.masks[:10]):
        assert np.linalg.norm(img[mask].mean(0) - img[~mask].mean(0)) > 0.1


def test_every_class_appears():
    labels = make_dataset(200, seed=5, size=32).labels
    assert set(labels.tolist()) == set(range(len(CLASS_NAMES)))


@pytest.mark.parametrize("kwargs", [dict(n=-1), dict(n=2.5), dict(n=2, size=16),
                                    dict(n=2, seed=-3), dict(n=2, start=True)])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(TfsalError, match="expected"):
        make_dataset(**kwargs)
