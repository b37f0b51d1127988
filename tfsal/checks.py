"""Argument checks: the one place that says what a hyperparameter accepts.

Each check returns the value as a plain Python `int`, `float` or `bool`, or raises `TfsalError`
reading "expected <name> <what it accepts>, received <value>". Bools are never numbers (True is
not one epoch), NaN and ±inf are never finite numbers, NumPy scalars count as Python ones.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from tfsal.errors import TfsalError

# An upper bound on counts (samples, steps, iterations) turns an accidental 10**12 into an error
# now, not a MemoryError minutes later.
MAX_COUNT = 100_000


def integer(value, name: str, *, low: int | None = None, high: int | None = None,
            note: str = "") -> int:
    """An int in [low, high]; a bound left None is open-ended."""
    ok = _is_int(value) and (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        raise _refuse(name, "an int" + _int_range(low, high), note, value)
    return int(value)


def positive_int(value, name: str, *, maximum: int | None = MAX_COUNT) -> int:
    """An int in [1, maximum] (a count: samples, steps, epochs)."""
    return integer(value, name, low=1, high=maximum)


def number(value, name: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, high_open: bool = False, note: str = "") -> float:
    """A finite real number between low and high, each end included unless it is open."""
    ok = _is_finite_real(value) \
        and (low is None or (value > low if low_open else value >= low)) \
        and (high is None or (value < high if high_open else value <= high))
    if not ok:
        what = "a finite number" + _number_range(low, high, low_open, high_open)
        raise _refuse(name, what, note, value)
    return float(value)


def non_negative(value, name: str, *, maximum: float | None = None) -> float:
    """A finite number in [0, maximum]."""
    return number(value, name, low=0, high=maximum)


def fraction(value, name: str, *, low_open: bool = False, high_open: bool = False) -> float:
    """A finite number in [0, 1] (a share, a probability, an opacity, a colour value)."""
    return number(value, name, low=0, high=1, low_open=low_open, high_open=high_open)


def flag(value, name: str) -> bool:
    """True or False (NumPy's bool too); 0, 1 and strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise _refuse(name, "True or False", "", value)
    return bool(value)


def base_seed(seed) -> int:
    """One integer from `seed`: an int ≥ 0, a np.random.Generator (one draw from it) or None
    (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**63))
    if seed is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    if not _is_int(seed) or seed < 0:
        raise _refuse("seed", "an int ≥ 0, a numpy Generator or None", "", seed)
    return int(seed)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_finite_real(value) -> bool:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float's range
        return False


def _int_range(low, high) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" ≥ {low}"
    return "" if high is None else f" ≤ {high}"


def _number_range(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f" {'>' if low_open else '≥'} {low:g}"
    return "" if high is None else f" {'<' if high_open else '≤'} {high:g}"


def _refuse(name: str, what: str, note: str, value) -> TfsalError:
    return TfsalError(f"expected {name} {what}{f' ({note})' if note else ''}, received {value!r}")
