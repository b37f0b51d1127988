"""tfsal.checks: each validator's accept / refuse boundaries, written from its definition."""

from fractions import Fraction

import numpy as np
import pytest

from tfsal import checks
from tfsal.errors import TfsalError

NAN, INF = float("nan"), float("inf")
# never numbers, whatever the bounds
NOT_NUMBERS = [True, False, np.bool_(True), "1", b"1", None, [1], 1 + 0j, np.complex64(1)]


def refused(check, value, *args, **kwargs) -> str:
    with pytest.raises(TfsalError) as caught:
        check(value, *args, **kwargs)
    return str(caught.value)


# ----------------------------------------------------------------------------- integer
@pytest.mark.parametrize("value", [0, 1, 5, np.int8(5), np.uint64(5), np.int64(0)])
def test_integer_accepts_ints_in_range_as_python_ints(value):
    out = checks.integer(value, "k", low=0, high=5)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [-1, 6, 2**70, np.int64(-1), np.uint8(6)])
def test_integer_refuses_ints_outside_the_closed_range(value):
    assert refused(checks.integer, value, "k", low=0, high=5) == \
        f"expected k an int in [0, 5], received {value!r}"


@pytest.mark.parametrize("value", NOT_NUMBERS + [1.0, np.float32(1), NAN, INF, Fraction(1)])
def test_integer_refuses_everything_but_ints(value):
    assert "expected k an int" in refused(checks.integer, value, "k", low=0, high=5)


def test_integer_bounds_are_optional_and_named_in_the_message():
    assert checks.integer(-(10**30), "k") == -(10**30)
    assert checks.integer(10**30, "k", low=3) == 10**30
    assert checks.integer(-(10**30), "k", high=3) == -(10**30)
    assert refused(checks.integer, 2, "k", low=3) == "expected k an int ≥ 3, received 2"
    assert refused(checks.integer, 4, "k", high=3) == "expected k an int ≤ 3, received 4"
    assert refused(checks.integer, "x", "k") == "expected k an int, received 'x'"


def test_integer_note_sits_between_expectation_and_value():
    message = refused(checks.integer, 0, "batch_size", low=1, high=8, note="memory")
    assert message == "expected batch_size an int in [1, 8] (memory), received 0"


# ----------------------------------------------------------------------------- positive_int
def test_positive_int_is_one_to_the_count_bound_inclusive():
    assert checks.positive_int(1, "n") == 1
    assert checks.positive_int(checks.MAX_COUNT, "n") == checks.MAX_COUNT == 100_000
    for value in (0, -1, checks.MAX_COUNT + 1, True, 1.0, NAN):
        assert refused(checks.positive_int, value, "n") == \
            f"expected n an int in [1, 100000], received {value!r}"


def test_positive_int_maximum_moves_or_lifts_the_bound():
    assert checks.positive_int(10, "steps", maximum=10) == 10
    assert "[1, 10]" in refused(checks.positive_int, 11, "steps", maximum=10)
    assert checks.positive_int(10**9, "n", maximum=None) == 10**9
    assert refused(checks.positive_int, 0, "n", maximum=None) == "expected n an int ≥ 1, received 0"


# ----------------------------------------------------------------------------- number
@pytest.mark.parametrize("value", [0, 1, 0.5, np.float32(0.25), np.float16(1), np.int64(1),
                                   np.uint8(0), Fraction(1, 3), -0.0])
def test_number_accepts_finite_reals_in_a_closed_range_as_python_floats(value):
    out = checks.number(value, "x", low=0, high=1)
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", NOT_NUMBERS + [NAN, np.float32("nan"), INF, -INF,
                                                 np.float64("inf"), 10**400])
def test_number_refuses_non_numbers_and_non_finite_values_even_without_bounds(value):
    assert refused(checks.number, value, "x") == f"expected x a finite number, received {value!r}"


@pytest.mark.parametrize("low_open, high_open, brackets, inside, outside", [
    (False, False, "[2, 3]", [2, 3], [np.nextafter(2, 0), np.nextafter(3, 4)]),
    (True, False, "(2, 3]", [np.nextafter(2, 3), 3], [2, 1]),
    (False, True, "[2, 3)", [2, np.nextafter(3, 0)], [3, 4]),
    (True, True, "(2, 3)", [2.5], [2, 3]),
])
def test_number_open_ends_exclude_exactly_the_bound(low_open, high_open, brackets, inside,
                                                    outside):
    kwargs = dict(low=2, high=3, low_open=low_open, high_open=high_open)
    for value in inside:
        assert checks.number(value, "x", **kwargs) == value
    for value in outside:
        assert refused(checks.number, value, "x", **kwargs) == \
            f"expected x a finite number in {brackets}, received {value!r}"


def test_number_one_sided_bounds_say_which_side():
    assert refused(checks.number, 0, "lr", low=0, low_open=True) == \
        "expected lr a finite number > 0, received 0"
    assert refused(checks.number, -1, "lr", low=0) == "expected lr a finite number ≥ 0, received -1"
    assert refused(checks.number, 2, "x", high=1.5) == \
        "expected x a finite number ≤ 1.5, received 2"
    assert refused(checks.number, 1.5, "x", high=1.5, high_open=True) == \
        "expected x a finite number < 1.5, received 1.5"
    assert checks.number(-1e300, "x", high=1.5) == -1e300


# ----------------------------------------------------------------------------- shorthands
def test_non_negative_is_zero_up_to_the_maximum():
    assert checks.non_negative(0, "eps") == 0.0
    assert checks.non_negative(1e30, "eps") == 1e30
    assert checks.non_negative(100, "noise_level", maximum=100.0) == 100.0
    assert refused(checks.non_negative, -1e-12, "eps") == \
        "expected eps a finite number ≥ 0, received -1e-12"
    assert refused(checks.non_negative, 100.5, "noise_level", maximum=100.0) == \
        "expected noise_level a finite number in [0, 100], received 100.5"
    for value in (INF, NAN, True):
        assert "expected eps a finite number" in refused(checks.non_negative, value, "eps")


def test_fraction_is_the_unit_interval_with_optional_open_ends():
    assert [checks.fraction(v, "f") for v in (0, 1, np.float32(0.5))] == [0.0, 1.0, 0.5]
    for value in (-1e-9, 1 + 1e-9, NAN, True, "0.5"):
        assert "expected f a finite number in [0, 1], received" in refused(checks.fraction, value,
                                                                            "f")
    assert checks.fraction(1, "top", low_open=True) == 1.0
    assert "(0, 1]" in refused(checks.fraction, 0, "top", low_open=True)
    assert checks.fraction(0, "floor", high_open=True) == 0.0
    assert "[0, 1)" in refused(checks.fraction, 1, "floor", high_open=True)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False)])
def test_flag_accepts_python_and_numpy_bools_as_python_bools(value):
    out = checks.flag(value, "prr")
    assert out is bool(value)


@pytest.mark.parametrize("value", [0, 1, 1.0, "True", "", None, np.int8(1), [True]])
def test_flag_refuses_anything_that_is_only_truthy_or_falsy(value):
    assert refused(checks.flag, value, "prr") == f"expected prr True or False, received {value!r}"


# ----------------------------------------------------------------------------- base_seed
@pytest.mark.parametrize("value", [0, 7, np.int64(7), np.uint32(2**32 - 1), 2**80])
def test_base_seed_passes_non_negative_ints_through(value):
    out = checks.base_seed(value)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [-1, np.int64(-1), True, 1.0, "1", NAN])
def test_base_seed_refuses_negative_and_non_int_seeds(value):
    assert refused(checks.base_seed, value) == \
        f"expected seed an int ≥ 0, a numpy Generator or None, received {value!r}"


def test_base_seed_draws_from_a_generator_as_the_generator_would():
    twin = np.random.default_rng(3)
    expected = int(twin.integers(2**63))
    assert checks.base_seed(np.random.default_rng(3)) == expected
    generator = np.random.default_rng(3)
    first, second = checks.base_seed(generator), checks.base_seed(generator)
    assert first != second  # the draw advances the caller's generator


def test_base_seed_none_is_fresh_entropy_in_range():
    seeds = {checks.base_seed(None) for _ in range(4)}
    assert len(seeds) == 4 and all(0 <= s < 2**63 for s in seeds)
