"""Property-based tests: random shapes, dtypes and values thrown at the public API.

The property: every public call either returns what it promises — finite float32 arrays of
the promised shape (pixel methods (N, H, W, 3), CAM family (N, h, w), `nonlinear_saliency` a
`Trajectory` of finite arrays, `visualize` functions their documented shapes) — or raises
`tfsal.TfsalError` whose message says what was expected / received. Never another exception
type, never a hang (every call runs under an alarm of `CALL_LIMIT` seconds).

Where an input is clearly valid (or clearly invalid) the tests also assert *which* of the two
must happen: each drawn argument is tagged valid (True), invalid (False) or unspecified (None).

The findings of the fuzzing rounds (ids B01–B27, all fixed in the library) keep one
regression test each at the end of the file.

All tests share one `tfsal.Model` (module fixture) so compiled functions are reused; examples
are derandomized (reproducible in CI) and bounded so the file runs in well under a minute.
"""

from __future__ import annotations

import signal
import warnings

import numpy as np
import pytest
import tensorflow as tf
from conftest import SIZE, toy_cnn
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

import tfsal
from tfsal import TfsalError
from tfsal import visualize as vis
from tfsal.methods import METHODS
from tfsal.overrides import Deconv, Guided, Rectified

# The hang check uses POSIX interval timers.
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs signal.SIGALRM")

CLASSES = 4  # toy_cnn's class count
FEATURE = SIZE // 2  # toy_cnn's last conv feature map (after pool1) is 8x8
CALL_LIMIT = 30.0  # seconds per public call; longer counts as a hang

CAM_FAMILY = {"cam", "grad_cam"}
SCORES = ("logit", "probability", "log_probability")
# Small settings so valid calls stay fast.
FAST = {"smoothgrad": dict(n_samples=2, seed=0), "vargrad": dict(n_samples=2, seed=0),
        "integrated_gradients": dict(steps=2)}
EXTRA = ("nonlinear_saliency", "completeness_delta", "selective_blur")
SPATIAL = {"conv1": SIZE, "pool1": FEATURE, "conv2": FEATURE, "relu2": FEATURE}  # rank-4 layers
FLAT = ("gap", "predictions")  # rank-2 layers
LAYERS = list(SPATIAL) + list(FLAT)  # toy_cnn's layer paths, in order

HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
          HealthCheck.data_too_large, HealthCheck.filter_too_much]


def fuzz(examples: int):
    """Bounded, reproducible hypothesis settings."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=HEALTH)


def fuzz_regression(examples: int):
    """For the regression tests of past findings: stop at the first failure, no shrinking."""
    return settings(fuzz(examples), phases=[Phase.explicit, Phase.generate],
                    report_multiple_bugs=False)


@pytest.fixture(scope="module")
def model():
    return tfsal.Model(toy_cnn(softmax=True), batch_size=4)


# ------------------------------------------------------------------------ calling and checking
class _Hang(BaseException):
    """Raised by the alarm; a BaseException so no `except Exception` in tfsal swallows it."""


def call(fn, *args, **kwargs):
    """Run a public call: (result, None) or (None, TfsalError). Anything else propagates.

    Raises:
        AssertionError: if the call takes longer than CALL_LIMIT seconds, or raises a
            TfsalError whose message states neither what was expected nor what was received.
    """
    def on_alarm(signum, frame):
        raise _Hang

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, CALL_LIMIT)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NaN/overflow RuntimeWarnings are not the point
            return fn(*args, **kwargs), None
    except TfsalError as error:
        message = str(error)
        assert "expected" in message or "received" in message, f"unhelpful message: {message!r}"
        return None, error
    except _Hang:
        raise AssertionError(f"{getattr(fn, '__name__', fn)} took more than {CALL_LIMIT} s "
                             "(hang)") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def check_outcome(valid, result, error, what=""):
    """valid True: the call must succeed; False: it must raise TfsalError; None: either."""
    event("returned" if error is None else "TfsalError")
    if valid is True:
        assert error is None, f"valid {what} refused: {error}"
    elif valid is False:
        assert error is not None, f"invalid {what} accepted"
    return error is None


def all_valid(*flags):
    """Combine tags: any False -> False, else any None -> None, else True."""
    if False in flags:
        return False
    return None if None in flags else True


def assert_finite(arr, shape, dtype=np.float32):
    assert isinstance(arr, np.ndarray), f"expected an ndarray, got {type(arr).__name__}"
    assert arr.dtype == dtype, f"dtype {arr.dtype}, expected {np.dtype(dtype)}"
    assert arr.shape == tuple(shape), f"shape {arr.shape}, expected {tuple(shape)}"
    if arr.dtype.kind == "f":
        assert np.isfinite(arr).all(), f"{int((~np.isfinite(arr)).sum())} non-finite values"


def assert_trajectory(t, items: int, levels: int, steps: int, size: int = SIZE):
    assert isinstance(t, tfsal.Trajectory)
    s = levels * steps
    assert_finite(t.probabilities, (items, s + 1, CLASSES))
    assert_finite(t.blurred_fraction, (items, s))
    assert_finite(t.images, (items, levels, size, size, 3))
    assert_finite(t.maps, (items, levels, size, size, 3))
    assert_finite(t.kept, (items, levels, size, size), bool)
    assert_finite(t.best_image, (items, size, size, 3))
    assert_finite(t.best_map, (items, size, size, 3))
    assert_finite(t.levels, (levels,))
    assert_finite(t.step_levels, (s,))
    assert t.targets.shape == t.image_index.shape == t.best_step.shape == (items,)
    assert ((0 <= t.best_step) & (t.best_step <= s)).all()
    assert ((0 <= t.targets) & (t.targets < CLASSES)).all()


def assert_selective_blur(r, n: int):
    assert isinstance(r, tfsal.SelectiveBlur)
    assert_finite(r.before, (n, CLASSES))
    assert_finite(r.after, (n, CLASSES))
    assert_finite(r.blurred, (n, SIZE, SIZE, 3))
    assert np.isfinite(r.salient_fraction).all() and r.salient_fraction.shape == (n,)


def run_method(name: str, model, images, targets=None, **kwargs):
    """Call a public method by name with fast settings (kwargs override them)."""
    if name == "nonlinear_saliency":
        options = dict(levels=(0.0, 0.5), steps_per_level=1) | kwargs
        return tfsal.nonlinear_saliency(model, images, targets, **options)
    if name == "completeness_delta":
        attributions = np.zeros(np.shape(images), np.float32)
        return tfsal.completeness_delta(model, images, attributions, targets, **kwargs)
    if name == "selective_blur":
        maps = np.ones(np.shape(images)[:3], np.float32)
        return tfsal.selective_blur(model, images, maps, targets, **kwargs)
    return METHODS[name](model, images, targets, **(FAST.get(name, {}) | kwargs))


def check_method_output(name: str, result, n: int, *, cam_side: int = FEATURE):
    if name in CAM_FAMILY:
        assert_finite(result, (n, cam_side, cam_side))
    elif name == "nonlinear_saliency":
        assert_trajectory(result, n, 2, 1)
    elif name == "completeness_delta":
        assert_finite(result, (n,))
    elif name == "selective_blur":
        assert_selective_blur(result, n)
    else:
        assert_finite(result, (n, SIZE, SIZE, 3))


# ------------------------------------------------------------------------ strategies
SPECIALS = (np.nan, np.inf, -np.inf, -1.0, -1e-3, 1.5, 255.0, 1e30, -1e30)
FLOAT_DTYPES = ("float16", "float32", "float64")
OTHER_DTYPES = ("int8", "uint8", "int64", "bool", "complex64", "object", "str")
JUNK = st.sampled_from(["1", "abc", b"2", [1], (0.5,), {"a": 1}, object()])
JUNK_OR_NONE = st.one_of(st.none(), JUNK)
NON_FINITE = st.sampled_from([np.nan, np.inf, -np.inf, np.float32(np.nan)])
NP_INTS = st.sampled_from([np.int8(1), np.uint16(2), np.int64(3), np.uint64(1)])


@st.composite
def tagged(draw, valid, invalid, odds: int = 3):
    """(value, True) drawn from `valid`, or — one time in `odds + 1` — (value, False).

    (`sampled_from` picks uniformly; `integers` would favour its lower bound.)"""
    if draw(st.sampled_from([True] * odds + [False])):
        return draw(valid), True
    return draw(invalid), False


def faults(draw, kinds, most: int = 2):
    """Which faults to inject: none half of the time, else one or `most`."""
    count = draw(st.sampled_from([0, 0, 0, 1, 1, most]))
    return set(draw(st.lists(st.sampled_from(kinds), min_size=count, max_size=count,
                             unique=True)))


@st.composite
def values(draw, shape, dtype, low=0.0, high=1.0, specials=SPECIALS, min_specials=0):
    """An array of `shape` and `dtype`: seeded uniform values plus a few special ones."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    base = rng.uniform(low, high, shape)
    if base.size:
        for _ in range(draw(st.integers(min_specials, 3))):
            base.flat[draw(st.integers(0, base.size - 1))] = draw(st.sampled_from(specials))
    kind = np.dtype(dtype).kind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(max(info.min, -128), min(info.max, 255) + 1, shape, dtype)
        if kind == "b":
            return rng.random(shape) > 0.5
        if dtype == "str":
            return base.astype(str)
        return base.astype(dtype)


def container(draw, arr):
    """Hand the array over as NumPy, a nested Python list, or a tf.Tensor."""
    kinds = ["numpy", "numpy", "list"]
    if arr.dtype.kind in "fiubc":
        kinds.append("tensor")
    kind = draw(st.sampled_from(kinds))
    if kind == "list":
        return arr.tolist()
    return tf.constant(arr) if kind == "tensor" else arr


IMAGE_FAULTS = ("rank", "batch", "size", "channels", "dtype", "values")


@st.composite
def image_inputs(draw, free_size: bool = False):
    """Anything a user might pass as `images`: valid float images (N 1-3, 16x16 — or any side
    1-40 with `free_size` — 3 channels, values in [0, 1] including exact 0 and 1) with up to
    two faults: rank 0-3 or 5, N = 0, sides 1-40, 0/1/2/4 channels, int/bool/complex/object/
    str dtypes, NaN/inf/negative/> 1/huge values. As NumPy, nested lists or tensors."""
    wrong = faults(draw, IMAGE_FAULTS)
    side = st.integers(1, 40) if free_size or "size" in wrong else st.just(SIZE)
    shape = (0 if "batch" in wrong else draw(st.integers(1, 3)), draw(side), draw(side),
             draw(st.sampled_from([0, 1, 2, 4])) if "channels" in wrong else 3)
    if "rank" in wrong:
        ndim = draw(st.sampled_from([0, 1, 2, 3, 5]))
        shape = (shape + (1,))[:ndim] if draw(st.booleans()) else tuple(
            draw(st.lists(st.sampled_from([1, 2, 3, SIZE]), min_size=ndim, max_size=ndim)))
    dtype = draw(st.sampled_from(OTHER_DTYPES if "dtype" in wrong else FLOAT_DTYPES))
    specials = SPECIALS if "values" in wrong else (0.0, 1.0)
    return container(draw, draw(values(shape, dtype, specials=specials, min_specials=1
                                       if "values" in wrong else 0)))


def images_ok(images, size: int | None = SIZE) -> bool:
    """The spec: float (N >= 1, size, size, 3), finite, in [0, 1] (checked in float32)."""
    arr = np.asarray(images)
    if arr.dtype.kind != "f" or arr.ndim != 4 or arr.shape[0] < 1 or arr.shape[-1] != 3:
        return False
    if 0 in arr.shape or (size is not None and arr.shape[1:3] != (size, size)):
        return False
    arr32 = arr.astype(np.float32)
    return bool(np.isfinite(arr32).all() and arr32.min() >= 0 and arr32.max() <= 1)


def good_images(n, size=SIZE):
    """Valid float32 images (n, size, size, 3), sometimes with exact 0 / 1 pixels."""
    return values((n, size, size, 3), "float32", specials=(0.0, 1.0))


def targets_ok(targets, n: int, two_d: bool = False) -> bool:
    """The spec: None, an int, an int array (n,) — or (n, K ≥ 1) for `nonlinear_saliency` —
    with integral-valued floats allowed and every index in [0, classes)."""
    if targets is None:
        return True
    arr = np.asarray(targets)
    if arr.dtype == bool:
        return False
    integral = arr.dtype.kind in "iu" or (
        arr.dtype.kind == "f" and arr.size > 0 and bool(np.isfinite(arr).all())
        and bool((arr == np.round(arr)).all()))
    shape_ok = arr.ndim == 0 or arr.shape == (n,) or (
        two_d and arr.ndim == 2 and arr.shape[0] == n and arr.shape[1] >= 1)
    return integral and shape_ok and bool(((arr >= 0) & (arr < CLASSES)).all())


@st.composite
def target_inputs(draw, n: int):
    """Valid and invalid `targets` for n images: scalars, per-image lists/arrays/tensors of the
    right and wrong length, 2-D arrays, bools, floats, strings, huge ints."""
    scalar = st.one_of(
        st.none(), st.integers(-5, 8), st.integers(), st.booleans(), NP_INTS,
        st.sampled_from([np.int8(-1), np.uint64(2**64 - 1), 2.0, 1.5, -0.0, np.float16(3),
                         np.nan, np.inf, 1e30, 2**70, np.bool_(True)]),
        st.text(max_size=3))
    length = st.one_of(st.just(n), st.just(n), st.integers(0, 5))
    entries = st.one_of(st.integers(0, CLASSES - 1), st.integers(0, CLASSES - 1),
                        st.integers(-2, 9), st.sampled_from([1.0, 1.5, True, "a", None]))
    per_image = length.flatmap(lambda k: st.lists(entries, min_size=k, max_size=k))
    kind = draw(st.sampled_from(["scalar", "list", "array", "tensor", "2d"]))
    if kind == "scalar":
        return draw(scalar)
    if kind == "2d":
        rows = draw(st.sampled_from([n, n, 1, n + 1]))
        cols = draw(st.integers(1, 3))
        return np.asarray(draw(st.lists(st.lists(st.integers(-1, 4), min_size=cols,
                                                 max_size=cols), min_size=rows, max_size=rows)))
    listed = draw(per_image)
    if kind == "list":
        return listed
    dtype = draw(st.sampled_from(["int32", "int64", "uint8", "float64", None]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = np.asarray(listed, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        arr = np.asarray(listed, dtype=object)
    if kind == "tensor" and arr.dtype.kind in "iuf":
        return tf.constant(arr)
    return arr


# ------------------------------------------------------------------------ images
METHOD_NAMES = sorted(METHODS) + list(EXTRA)


@fuzz(80)
@given(images=image_inputs(), name=st.sampled_from(METHOD_NAMES),
       targets=st.sampled_from([None, 0, CLASSES - 1]))
def test_any_images(model, images, name, targets):
    """Random ranks, shapes, sizes, dtypes and values: valid images give finite maps of the
    promised shape, anything else a TfsalError (also sizes other than the model's 16x16)."""
    if name == "nonlinear_saliency" and images_ok(images, size=None):
        images = np.asarray(images)[:, :SIZE, :SIZE]  # other sizes: B03 below
        if images.shape[1:3] != (SIZE, SIZE):
            return
    valid = images_ok(images)
    result, error = call(run_method, name, model, images, targets)
    if check_outcome(valid, result, error, "images"):
        check_method_output(name, result, len(np.asarray(images)))


@fuzz(25)
@given(data=st.data(), n=st.integers(1, 3), size=st.integers(1, 40),
       name=st.sampled_from(sorted(METHODS) + ["completeness_delta", "selective_blur"]))
def test_wrong_sizes_raise(model, data, n, size, name):
    """Valid pixels at a size other than the model's input are refused with a TfsalError."""
    if size == SIZE:
        size = SIZE + 1
    images = data.draw(good_images(n, size))
    result, error = call(run_method, name, model, images, 0)
    check_outcome(False, result, error, f"{size}x{size} images")


# ------------------------------------------------------------------------ targets
@fuzz(80)
@given(data=st.data(), n=st.integers(1, 3), name=st.sampled_from(METHOD_NAMES))
def test_any_targets(model, data, n, name):
    """None, ints in and out of range, bools, floats, numpy ints, strings, wrong lengths,
    2-D arrays, tensors: valid targets give the promised output, the rest a TfsalError."""
    images = data.draw(good_images(n))
    targets = data.draw(target_inputs(n))
    two_d = name == "nonlinear_saliency"
    valid = targets_ok(targets, n, two_d=two_d)
    result, error = call(run_method, name, model, images, targets)
    if check_outcome(valid, result, error, f"targets {targets!r}"):
        if two_d and np.ndim(targets) == 2:
            assert_trajectory(result, int(np.size(targets)), 2, 1)
        else:
            check_method_output(name, result, n)


# ------------------------------------------------------------------------ hyperparameters
COUNT_OK = st.one_of(st.integers(1, 3), NP_INTS.filter(lambda v: 1 <= v <= 3))
COUNT_BAD = st.one_of(st.integers(max_value=0), st.booleans(), NON_FINITE, JUNK_OR_NONE,
                      st.sampled_from([2.0, 1.5, np.float64(3), -(2**70)]))
SEED_OK = st.one_of(st.none(), st.integers(0, 2**70), NP_INTS,
                    st.integers(0, 9).map(np.random.default_rng))
SEED_BAD = st.one_of(st.integers(max_value=-1), st.booleans(), st.floats(), JUNK)
NOISE_OK = st.one_of(st.floats(0, 2), st.sampled_from([0, 1, np.float32(0.5), np.int64(1),
                                                       1e-30, 10.0]))  # 1e30: B21
NOISE_BAD = st.one_of(st.floats(max_value=-1e-12), NON_FINITE, st.booleans(), JUNK_OR_NONE)


@fuzz(40)
@given(data=st.data(), n=st.integers(1, 3), name=st.sampled_from(["smoothgrad", "vargrad"]),
       n_samples=tagged(COUNT_OK, COUNT_BAD), noise=tagged(NOISE_OK, NOISE_BAD),
       seed=tagged(SEED_OK, SEED_BAD), squared=st.booleans(),
       inner=st.sampled_from(["vanilla", "gradient_x_input", "cam"]),
       score=st.sampled_from([None, "probability", "log_probability"]))
def test_smoothgrad_hyperparameters(model, data, n, name, n_samples, noise, seed, squared,
                                    inner, score):
    """n_samples 0 / negative / float / bool, noise_level negative / NaN / inf / huge, bad
    seeds; wrapped pixel and CAM methods, every score."""
    images = data.draw(good_images(n))
    method = METHODS[inner]
    kwargs = dict(method=method, n_samples=n_samples[0], noise_level=noise[0], seed=seed[0])
    if inner != "cam":
        kwargs["score"] = score
    if name == "smoothgrad":
        kwargs["squared"] = squared
    result, error = call(METHODS[name], model, images, 1, **kwargs)
    if check_outcome(all_valid(n_samples[1], noise[1], seed[1]), result, error, str(kwargs)):
        assert_finite(result, (n, FEATURE, FEATURE) if inner == "cam" else (n, SIZE, SIZE, 3))


SCHEDULES = ("left", "right", "midpoint", "trapezoid", "gauss_legendre")


@fuzz(40)
@given(data=st.data(), n=st.integers(1, 3), steps=tagged(COUNT_OK, COUNT_BAD),
       schedule=tagged(st.sampled_from(SCHEDULES), st.sampled_from(["", "Left", "simpson"])
                       | JUNK_OR_NONE, odds=5))
def test_integrated_gradients_steps(model, data, n, steps, schedule):
    """steps 0 / negative / float / bool / junk and unknown schedules; trapezoid needs 2."""
    images = data.draw(good_images(n))
    valid = all_valid(steps[1], schedule[1])
    if valid and schedule[0] == "trapezoid" and steps[0] < 2:
        valid = False
    result, error = call(tfsal.integrated_gradients, model, images, None, steps=steps[0],
                         schedule=schedule[0])
    if check_outcome(valid, result, error, f"steps={steps[0]!r} schedule={schedule[0]!r}"):
        assert_finite(result, (n, SIZE, SIZE, 3))


FLAG_OK = st.sampled_from([True, False, np.bool_(True), np.bool_(False)])
FLAG_BAD = st.one_of(st.sampled_from([0, 1, "yes", 1.0]), JUNK_OR_NONE)
# A few values only: each distinct rule is a compiled function of its own.
PERCENTILE_OK = st.sampled_from([0, 50, 98.0, 100, np.float32(90.0), np.int64(75)])
PERCENTILE_BAD = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=100.000001),
                           NON_FINITE, st.booleans(), JUNK_OR_NONE)
THRESHOLD_OK = st.sampled_from([None, None, 0.0, -1.0, 0.5, 1e30, -1e30, np.float32(1e-3), 2])
THRESHOLD_BAD = st.one_of(NON_FINITE, st.booleans(), st.sampled_from(["0.1", [0.1], 1j]))


@fuzz(30)
@given(data=st.data(), n=st.integers(1, 3), percentile=tagged(PERCENTILE_OK, PERCENTILE_BAD),
       threshold=tagged(THRESHOLD_OK, THRESHOLD_BAD, odds=4),
       padding_trick=tagged(FLAG_OK, FLAG_BAD, odds=6), prr=tagged(FLAG_OK, FLAG_BAD, odds=6),
       zero_threshold=tagged(FLAG_OK, FLAG_BAD, odds=6))
def test_rectgrad_hyperparameters(model, data, n, percentile, threshold, padding_trick, prr,
                                  zero_threshold):
    """percentile −1 / 101 / NaN / inf / bool, non-finite thresholds, non-bool flags."""
    images = data.draw(good_images(n))
    # The percentile is ignored (not validated) when a threshold is given.
    valid = all_valid(threshold[1], padding_trick[1], prr[1], zero_threshold[1],
                      percentile[1] if threshold[0] is None else True)
    result, error = call(tfsal.rectgrad, model, images, None, percentile=percentile[0],
                         threshold=threshold[0], padding_trick=padding_trick[0], prr=prr[0],
                         zero_threshold=zero_threshold[0])
    if check_outcome(valid, result, error, "rectgrad hyperparameters"):
        assert_finite(result, (n, SIZE, SIZE, 3))
        if zero_threshold[0]:
            assert (result >= 0).all()


EPSILON_OK = st.sampled_from([1e-30, 1e-4, 0.1, 1, np.float32(0.01), np.int64(2), 1e30])
EPSILON_BAD = st.one_of(st.floats(max_value=-1e-12), NON_FINITE, st.booleans(), JUNK_OR_NONE)


@fuzz(20)
@given(data=st.data(), n=st.integers(1, 3), epsilon=tagged(EPSILON_OK, EPSILON_BAD, odds=2))
def test_epsilon_lrp_epsilon(model, data, n, epsilon):
    """ε negative / NaN / inf / bool / junk refused; ε > 0 gives finite maps (ε = 0: B09)."""
    images = data.draw(good_images(n))
    result, error = call(tfsal.epsilon_lrp, model, images, None, epsilon=epsilon[0])
    if check_outcome(epsilon[1], result, error, f"epsilon={epsilon[0]!r}"):
        assert_finite(result, (n, SIZE, SIZE, 3))


LAYER_REFS = st.one_of(st.sampled_from(list(SPATIAL)), st.integers(0, len(SPATIAL) - 1),
                       st.integers(-len(LAYERS), -len(FLAT) - 1))  # spatial layers only
LAYER_OK = st.none() | LAYER_REFS
LAYER_BAD = st.one_of(
    st.sampled_from(list(FLAT) + ["", "conv", "Conv1", "image", "toy_cnn/conv1", "conv1/"]),
    st.text(max_size=12).filter(lambda s: s not in LAYERS),
    st.integers(len(SPATIAL), len(LAYERS) - 1), st.integers(-len(FLAT), -1),  # rank-2 layers
    st.integers(min_value=len(LAYERS)), st.integers(max_value=-len(LAYERS) - 1),
    st.sampled_from([1.0, True, False, [0], ("conv1",), b"conv1"]))


@fuzz(40)
@given(data=st.data(), n=st.integers(1, 3), layer=tagged(LAYER_OK, LAYER_BAD, odds=1),
       name=st.sampled_from(["grad_cam", "guided_grad_cam"]),
       score=st.sampled_from([None, "logit", "probability"]))
def test_layer_argument(model, data, n, layer, name, score):
    """Layer names, nested-path lookalikes, unknown strings, indices in and out of range,
    rank-2 layers, floats and bools."""
    images = data.draw(good_images(n))
    result, error = call(METHODS[name], model, images, None, layer=layer[0], score=score)
    if check_outcome(layer[1], result, error, f"layer={layer[0]!r}"):
        if name == "guided_grad_cam":
            assert_finite(result, (n, SIZE, SIZE, 3))
        else:
            side = SPATIAL[model.resolve_layer(layer[0])]
            assert_finite(result, (n, side, side))


@fuzz(20)
@given(n=st.integers(1, 3), data=st.data(),
       layers=tagged(st.none() | st.lists(LAYER_REFS, min_size=1, max_size=3),
                     st.lists(LAYER_BAD, min_size=1, max_size=2)
                     | st.sampled_from([[None, "gap"], ["conv1", 4]])),
       method=tagged(st.sampled_from(["vanilla", "guided_backprop", "deconvnet", "rectgrad",
                                      Guided(), Deconv(), Rectified(percentile=50.0)]),
                     st.sampled_from(["", "Vanilla", "smoothgrad", "cam", 3, 1.5]), odds=4))
def test_layer_attributions_arguments(model, data, n, layers, method):
    """Lists of good and bad layer references, known and unknown method names and rules."""
    images = data.draw(good_images(n))
    result, error = call(tfsal.layer_attributions, model, images, 0, layers=layers[0],
                         method=method[0])
    if check_outcome(all_valid(layers[1], method[1]), result, error,
                     f"layers={layers[0]!r} method={method[0]!r}"):
        assert isinstance(result, dict) and result
        for path, arr in result.items():
            assert_finite(arr, (n, SPATIAL[path], SPATIAL[path]))


SCORE_OK = st.sampled_from([None, *SCORES])
SCORE_NAMES = st.sampled_from(SCORES)
SCORE_BAD = st.one_of(st.text(min_size=1, max_size=20).filter(lambda s: s not in SCORES),
                      st.sampled_from(["Logit", "logits", "prob", "softmax", 1, True, ["logit"],
                                       ("probability",)]))
SCORED = sorted(set(METHODS) - {"cam"}) + ["completeness_delta"]


@fuzz(40)
@given(data=st.data(), n=st.integers(1, 2), score=tagged(SCORE_OK, SCORE_BAD, odds=1),
       name=st.sampled_from(SCORED))
def test_score_argument(model, data, n, score, name):
    """The score of every scored method: the three names and None, or a TfsalError."""
    images = data.draw(good_images(n))
    result, error = call(run_method, name, model, images, 2, score=score[0])
    if check_outcome(score[1], result, error, f"score={score[0]!r}"):
        check_method_output(name, result, n)


# ------------------------------------------------------------------------ baselines
@st.composite
def baseline_inputs(draw, n: int):
    """(baseline, valid): names, finite scalars, broadcastable finite arrays — or unknown names
    and arrays whose shape does not broadcast to (n, 16, 16, 3)."""
    kind = draw(st.sampled_from(["name", "scalar", "array", "bad_name", "bad_shape"]))
    if kind == "name":
        return draw(st.sampled_from(["black", "white", "noise", "blur"])), True
    if kind == "scalar":
        return draw(st.one_of(st.floats(-1e30, 1e30), st.integers(-5, 5), NP_INTS)), True
    if kind == "bad_name":
        return draw(st.one_of(st.sampled_from(["", "Black", "zeros", "gaussian", "random"]),
                              st.text(max_size=8).filter(
                                  lambda s: s not in ("black", "white", "noise", "blur")))), False
    if kind == "array":
        shape = draw(st.sampled_from([(), (3,), (1, 1, 3), (SIZE, SIZE, 1), (SIZE, SIZE, 3),
                                      (1, SIZE, SIZE, 3), (n, SIZE, SIZE, 3), (n, 1, 1, 1)]))
        dtype = draw(st.sampled_from(["float32", "float64", "float16", "uint8", "bool"]))
        return draw(values(shape, dtype, specials=(0.0, 1.0, -1.0, 2.0))), True
    shape = draw(st.sampled_from([(2,), (SIZE + 1, SIZE, 3), (n + 1, SIZE, SIZE, 3),
                                  (n, SIZE, SIZE, 3, 1), (SIZE, 2), (1, SIZE, 4, 3)]))
    return np.zeros(shape, np.float32), False


@fuzz(40)
@given(data=st.data(), n=st.integers(1, 3),
       name=st.sampled_from(["integrated_gradients", "deeplift", "completeness_delta",
                             "make_baseline"]),
       seed=tagged(SEED_OK, SEED_BAD, odds=6),
       blur_sigma=tagged(st.none() | st.floats(0, SIZE),
                         st.floats(SIZE + 1e-6, 1e6) | st.floats(max_value=-1e-9) | NON_FINITE,
                         odds=5))
def test_baseline_argument(model, data, n, name, seed, blur_sigma):
    """Named, scalar and array baselines (finite ones: B05/B06 cover the rest), unknown names,
    shapes that do not broadcast, bad seeds for the noise baseline, the blur baseline's sigma
    (0 to the image side)."""
    images = data.draw(good_images(n))
    baseline, valid = data.draw(baseline_inputs(n))
    uses_seed = isinstance(baseline, str) and baseline == "noise"
    uses_sigma = isinstance(baseline, str) and baseline == "blur" and name != "deeplift"
    kwargs = dict(seed=seed[0])
    if name != "deeplift":
        kwargs["blur_sigma"] = blur_sigma[0]
    if name == "make_baseline":
        result, error = call(tfsal.make_baseline, images, baseline, **kwargs)
    else:
        result, error = call(run_method, name, model, images, 1, baseline=baseline, **kwargs)
    if check_outcome(all_valid(valid, seed[1] if uses_seed else True,
                               blur_sigma[1] if uses_sigma else True), result, error,
                     f"baseline={baseline!r}"):
        shape = (n,) if name == "completeness_delta" else (n, SIZE, SIZE, 3)
        assert_finite(result, shape)


# ------------------------------------------------------------------------ nonlinear saliency
LEVELS_OK = st.one_of(
    st.lists(st.floats(0, 1), min_size=1, max_size=3).map(sorted),
    st.lists(st.floats(0, 1), min_size=1, max_size=3).map(lambda v: tuple(sorted(v))),
    st.lists(st.floats(0, 1), min_size=1, max_size=3).map(lambda v: np.sort(np.float32(v))),
    st.sampled_from([[0.0], [1.0], [0.5, 0.5], (0.0, 1.0)]))
LEVELS_BAD = st.one_of(
    st.sampled_from([[], (), [0.5, 0.1], [1.0, 0.0], [0.2, 0.3, 0.1], [np.nan], [0.1, np.inf],
                     "abc", 0.5, None, [[0.1]], [0.1, "x"], ["a"]]),
    st.lists(st.floats(min_value=1.0000001) | st.floats(max_value=-1e-9), min_size=1,
             max_size=2))
STEP_SIZE_OK = st.one_of(st.floats(-10, 10), st.sampled_from([0, 2, np.float32(0.5), 1e30,
                                                              -1e30]))
STEP_SIZE_BAD = st.one_of(NON_FINITE, st.booleans(), JUNK_OR_NONE)
SIGMA_OK = st.one_of(st.none(), st.floats(1e-3, 3.87), st.sampled_from([1, np.float32(0.5)]))
SIGMA_BAD = st.one_of(st.floats(max_value=0), st.floats(3.875, 1e300), NON_FINITE,
                      st.booleans(), JUNK)  # radius int(4 σ + 0.5) below 16; σ > 4.5e307: B26
BACKGROUND_OK = st.one_of(st.floats(0, 1), st.sampled_from([0, 1, np.float32(0.25)]))
BACKGROUND_BAD = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0000001),
                           NON_FINITE, st.booleans(), JUNK_OR_NONE)
LINEAR_BAD = st.sampled_from([0, 1, "True", None, 1.0])


@fuzz(40)
@given(data=st.data(), n=st.integers(1, 3), levels=tagged(LEVELS_OK, LEVELS_BAD, odds=5),
       steps=tagged(st.integers(1, 2), COUNT_BAD, odds=6),
       step_size=tagged(STEP_SIZE_OK, STEP_SIZE_BAD, odds=6),
       blur_sigma=tagged(SIGMA_OK, SIGMA_BAD, odds=6),
       background=tagged(BACKGROUND_OK, BACKGROUND_BAD, odds=6),
       linear=tagged(FLAG_OK, LINEAR_BAD, odds=6), k=st.integers(0, 2),
       sensitivity=st.sampled_from([None, None, None, "vanilla", "cam"]))
def test_nonlinear_saliency_hyperparameters(model, data, n, levels, steps, step_size,
                                            blur_sigma, background, linear, k, sensitivity):
    """Levels decreasing / outside [0, 1] / empty / NaN / strings, steps, step sizes, sigmas
    (the radius must stay below the side), backgrounds, non-bool `linear`, K targets per
    image, sensitivity from another method (the CAM's (N, h, w) maps are refused)."""
    images = data.draw(good_images(n))
    targets = None if k == 0 else np.arange(n * k).reshape(n, k) % CLASSES
    method = None if sensitivity is None else METHODS[sensitivity]
    valid = all_valid(levels[1], steps[1], step_size[1], blur_sigma[1], background[1],
                      linear[1], False if sensitivity == "cam" else True)
    result, error = call(tfsal.nonlinear_saliency, model, images, targets, levels=levels[0],
                         steps_per_level=steps[0], step_size=step_size[0],
                         blur_sigma=blur_sigma[0], background=background[0], linear=linear[0],
                         sensitivity=method)
    if check_outcome(valid, result, error, "nonlinear hyperparameters"):
        assert_trajectory(result, n * max(k, 1), len(levels[0]), steps[0])


def sigma_ok_for(sigma, side: int) -> bool:
    if sigma is None:
        return True
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.number)):
        return False
    return bool(np.isfinite(sigma) and 0 < sigma < side and int(4.0 * sigma + 0.5) < side)


@fuzz(50)
@given(data=st.data(), images=image_inputs(free_size=True),
       mask=st.booleans(), level=tagged(st.floats(0, 1) | st.sampled_from([0, 1]),
                                        st.floats(min_value=1.0000001) | NON_FINITE
                                        | st.sampled_from([-0.1, None, [0.1, 0.2]]), odds=5),
       blur_sigma=st.one_of(st.none(), st.floats(1e-3, 1), st.floats(1e-3, 12),
                            st.floats(max_value=0), NON_FINITE, JUNK),
       background=tagged(BACKGROUND_OK, BACKGROUND_BAD, odds=5),
       norm_fault=st.sampled_from([None] * 4 + ["shape", "values"]))
def test_blur_and_mask_below_level(data, images, mask, level, blur_sigma, background,
                                   norm_fault):
    """No model involved, so any image size 1-40 is valid; random norms (NaN/inf included,
    sometimes of the wrong shape), levels, sigmas (the radius must stay below the smaller
    side) and backgrounds."""
    shape = np.shape(images)
    norm_dims = shape[:3]
    if norm_fault == "shape":
        norm_dims = data.draw(st.sampled_from([shape[:2], shape[:3] + (1,), shape[:4],
                                               (len(shape),), ()]))
    dtype = data.draw(st.sampled_from(["float32", "float64", "int64", "bool"]))
    specials = (np.nan, np.inf, -np.inf) if norm_fault == "values" else (0.0, -1.0, 1e30)
    norm = data.draw(values(norm_dims, dtype, low=-1, high=3, specials=specials))
    arr = np.asarray(images)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        norm_ok = (norm.shape == arr.shape[:3] and bool(np.isfinite(norm.astype(np.float32))
                                                        .all()))
    valid = images_ok(images, size=None) and norm_ok and level[1]
    if mask:
        valid = valid and background[1]
        result, error = call(tfsal.mask_below_level, images, norm, level[0],
                             background=background[0])
    else:
        valid = valid and sigma_ok_for(blur_sigma, min(arr.shape[1:3]))
        result, error = call(tfsal.blur_below_level, images, norm, level[0],
                             blur_sigma=blur_sigma)
    if check_outcome(valid, result, error, "blur/mask arguments"):
        assert_finite(result, arr.shape)
        assert result.min() >= 0 and result.max() <= 1


@fuzz(30)
@given(data=st.data(), n=st.integers(1, 3), kind=st.sampled_from(["mask", "map3", "map4"]),
       wrong_shape=st.integers(0, 5),
       level=tagged(st.floats(0, 1), st.floats(min_value=1.001) | NON_FINITE),
       blur_sigma=tagged(SIGMA_OK, SIGMA_BAD))
def test_selective_blur_arguments(model, data, n, kind, wrong_shape, level, blur_sigma):
    """Boolean masks and float maps (with NaN/inf/huge values, sometimes of the wrong shape)."""
    images = data.draw(good_images(n))
    shape = {"mask": (n, SIZE, SIZE), "map3": (n, SIZE, SIZE), "map4": (n, SIZE, SIZE, 3)}[kind]
    if wrong_shape == 0:
        shape = data.draw(st.sampled_from([(n, SIZE, SIZE + 1), (n + 1, SIZE, SIZE),
                                           (SIZE, SIZE), (n, SIZE, SIZE, 3, 1), ()]))
    maps = data.draw(values(shape, "bool" if kind == "mask" else "float32", low=-1, high=1,
                            specials=(np.nan, np.inf, 0.0, 1e30)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        norm = maps if maps.dtype == bool or maps.ndim != 4 else np.linalg.norm(maps, axis=-1)
        maps_ok = norm.shape == (n, SIZE, SIZE) and bool(np.isfinite(np.abs(norm)).all())
    valid = all_valid(maps_ok, blur_sigma[1], level[1] if maps.dtype != bool else True)
    result, error = call(tfsal.selective_blur, model, images, maps, None, level=level[0],
                         blur_sigma=blur_sigma[0])
    if check_outcome(valid, result, error, "selective_blur arguments"):
        assert_selective_blur(result, n)


@fuzz(20)
@given(data=st.data(), n=st.integers(1, 3),
       shape=st.sampled_from(["same", "same", "short", "more", "rank3"]),
       dtype=st.sampled_from(["float32", "float64", "int64", "bool"]), relative=st.booleans())
def test_completeness_delta_attributions(model, data, n, shape, dtype, relative):
    """Attributions of the right and wrong shapes, any numeric dtype, NaN/inf values."""
    images = data.draw(good_images(n))
    dims = {"same": (n, SIZE, SIZE, 3), "short": (n, SIZE, SIZE), "more": (n + 1, SIZE, SIZE, 3),
            "rank3": (SIZE, SIZE, 3)}[shape]
    attributions = data.draw(values(dims, dtype, low=-1, high=1))
    result, error = call(tfsal.completeness_delta, model, images, attributions,
                         relative=relative)
    if check_outcome(None if shape == "same" else False, result, error, "attributions"):
        # NaN attributions may pass through to a NaN delta; finite ones may not.
        if np.isfinite(attributions.astype(np.float64)).all():
            assert_finite(result, (n,))


# ------------------------------------------------------------------------ model arguments
@fuzz(40)
@given(source=st.one_of(st.text(max_size=60), st.integers(), st.none(), st.binary(max_size=8),
                        st.sampled_from([1.5, [], {}, np.zeros(3), "shapes-cnn.keras",
                                         "/", ".", "..", "/tmp", "no/such/dir/"])),
       name=st.sampled_from(["load_model", "vanilla_gradient", "grad_cam",
                             "nonlinear_saliency"]))
def test_model_argument(source, name):
    """Whatever is passed as `model` that is not a model, name or model path is refused."""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    if name == "load_model":
        result, error = call(tfsal.load_model, source)
    else:
        result, error = call(getattr(tfsal, name), source, images)
    check_outcome(False, result, error, f"model={source!r}")


@fuzz(40)
@given(preprocess=tagged(st.sampled_from(["caffe", "tf", "torch", None, lambda x: x]),
                         st.sampled_from(["Caffe", "", "imagenet", 3, "auto"]), odds=5),
       score=tagged(SCORE_NAMES, SCORE_BAD, odds=5),
       output=tagged(st.sampled_from(["auto", "logits", "probabilities"]),
                     st.sampled_from(["logit", "", None, 1]), odds=5),
       batch_size=tagged(st.integers(1, 4096) | NP_INTS,  # tfsal.model.MAX_BATCH_SIZE
                         COUNT_BAD | st.integers(4097, 2**40), odds=5),
       class_names=tagged(st.sampled_from([None, ["a", "b", "c", "d"], ("a",), np.arange(4)]),
                          st.sampled_from(["abcd", 5, 1.5, object()]), odds=5),
       name=st.one_of(st.none(), st.text(max_size=5)))
def test_model_adapter_arguments(preprocess, score, output, batch_size, class_names, name):
    """tfsal.Model's keyword arguments: valid ones build an adapter, the rest a TfsalError."""
    keras_model = _shared_keras_model()
    valid = all_valid(preprocess[1], score[1], output[1], batch_size[1], class_names[1])
    result, error = call(tfsal.Model, keras_model, preprocess=preprocess[0], score=score[0],
                         output=output[0], batch_size=batch_size[0], class_names=class_names[0],
                         name=name)
    if check_outcome(valid, result, error, "Model arguments"):
        assert result.num_classes == CLASSES and result.input_size == (SIZE, SIZE)
        assert isinstance(repr(result), str)


_KERAS = {}


def _shared_keras_model():
    if "cnn" not in _KERAS:
        _KERAS["cnn"] = toy_cnn(softmax=True)
    return _KERAS["cnn"]


# ------------------------------------------------------------------------ visualize
MAP_DTYPES = ("float32", "float64", "float16", "int8", "uint8", "int64")
MAP_SIDES = st.integers(1, 6)


@st.composite
def map_inputs(draw, ranks=(3, 4), magnitude: float = 1e15):
    """Signed maps of rank 3 or 4 (1-6 per axis, numeric dtypes, values up to ±magnitude,
    exact zeros and constant maps) with up to two faults: rank 0-2 or 5, bool / object / str
    dtypes, NaN / inf values. As NumPy, nested lists or tensors."""
    wrong = faults(draw, ("rank", "dtype", "values"))
    rank = draw(st.sampled_from([0, 1, 2, 5] if "rank" in wrong else ranks))
    shape = tuple(draw(st.lists(MAP_SIDES, min_size=rank, max_size=rank)))
    dtype = draw(st.sampled_from(("bool", "object", "str") if "dtype" in wrong else MAP_DTYPES))
    scale = draw(st.sampled_from([1.0, 1e-30, 1e3, magnitude]))
    if draw(st.sampled_from([False] * 5 + [True])):
        scale = 0.0  # constant maps
    specials = (np.nan, np.inf, -np.inf) if "values" in wrong else (0.0, scale, -scale)
    return container(draw, draw(values(shape, dtype, low=-scale, high=scale, specials=specials,
                                       min_specials=1 if "values" in wrong else 0)))


def maps_ok(maps, ranks) -> bool:
    """visualize's input spec: numeric non-bool, one of `ranks`, finite in float32."""
    arr = np.asarray(maps)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or arr.ndim not in ranks:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(np.isfinite(arr.astype(np.float32)).all())


REDUCTIONS = ("mean", "sum", "max", "abs-max", "l2")


@fuzz(60)
@given(maps=map_inputs(), reduction=tagged(st.sampled_from(REDUCTIONS),
                                           st.sampled_from(["", "Mean", "min", "abs", None,
                                                            ["sum"], 0]), odds=5),
       mode=tagged(st.sampled_from(["minmax", "abs"]),
                   st.sampled_from(["", "max", "zscore", None]), odds=5))
def test_reduce_and_normalize(maps, reduction, mode):
    """reduce_channels and normalize on random maps: (N, H, W) float32, finite, normalised."""
    shape = np.shape(maps)
    ok = maps_ok(maps, (3, 4))
    result, error = call(vis.reduce_channels, maps, reduction[0])
    if check_outcome(all_valid(ok, reduction[1]), result, error, "reduce_channels"):
        assert_finite(result, shape[:3])
    result, error = call(vis.normalize, maps, mode[0])
    if check_outcome(all_valid(ok, mode[1]), result, error, "normalize"):
        assert_finite(result, shape)
        low = 0 if mode[0] == "minmax" else -1
        assert result.min() >= low and result.max() <= 1


PERCENTILE_PAIR_OK = st.floats(0, 99.9).flatmap(
    lambda low: st.tuples(st.just(low), st.floats(low, 100, exclude_min=True))) | st.sampled_from(
    [(0, 100), (0.5, 99.5), (np.float32(1), np.int64(50))])
PERCENTILE_PAIR_BAD = st.one_of(
    st.tuples(st.floats(-10, 110) | NON_FINITE, st.floats(-10, 110) | NON_FINITE).filter(
        lambda pair: not 0 <= pair[0] < pair[1] <= 100),
    st.sampled_from([(50, 50), (99.5, 0.5), (-1, 50), (0, 101)]))


@fuzz(40)
@given(maps=map_inputs(), bounds=tagged(PERCENTILE_PAIR_OK, PERCENTILE_PAIR_BAD))
def test_clip_percentile(maps, bounds):
    """Percentile pairs inside and outside 0 ≤ low < high ≤ 100, NaN and inf included."""
    (low, high), bounds_ok = bounds
    result, error = call(vis.clip_percentile, maps, low, high)
    if check_outcome(all_valid(maps_ok(maps, (3, 4)), bounds_ok), result, error,
                     f"clip_percentile(low={low}, high={high})"):
        # The float32 promise is pinned by B20; here shape, finiteness and the clipping.
        assert_finite(result, np.shape(maps), result.dtype)
        arr = np.asarray(maps).astype(np.float32)
        assert result.min() >= arr.min() and result.max() <= arr.max()


SIZE_OK = st.one_of(st.integers(1, 24), st.tuples(st.integers(1, 24), st.integers(1, 24)),
                    st.sampled_from([np.int64(5), (np.int32(3), 7), [2, 9]]))
SIZE_BAD = st.one_of(st.integers(-5, 0), st.tuples(st.integers(-3, 0), st.integers(1, 5)),
                     st.tuples(st.integers(1, 5), st.integers(-3, 0)))


@fuzz(40)
@given(maps=map_inputs(ranks=(3,)), size=tagged(SIZE_OK, SIZE_BAD, odds=4),
       order=st.integers(0, 5))
def test_upsample(maps, size, order):
    """Random maps to random sizes (ints, pairs, numpy ints) with every spline order 0-5."""
    result, error = call(vis.upsample, maps, size[0], order=order)
    if check_outcome(all_valid(maps_ok(maps, (3,)), size[1]), result, error,
                     f"upsample(size={size[0]!r})"):
        height, width = (size[0], size[0]) if np.isscalar(size[0]) else size[0]
        assert_finite(result, (np.shape(maps)[0], int(height), int(width)))


@fuzz(40)
@given(maps=map_inputs(), reduction=st.sampled_from(REDUCTIONS), signed=st.booleans(),
       clip=tagged(PERCENTILE_PAIR_OK, PERCENTILE_PAIR_BAD, odds=5))
def test_to_display(maps, reduction, signed, clip):
    """The one-call picture: uint8 (N, H, W, 3) for valid maps, else a TfsalError."""
    shape = np.shape(maps)
    clip, clip_ok = clip
    valid = all_valid(maps_ok(maps, (3, 4)), clip_ok)
    result, error = call(vis.to_display, maps, reduction=reduction, signed=signed, clip=clip)
    if check_outcome(valid, result, error, "to_display"):
        assert_finite(result, shape[:3] + (3,), np.uint8)


CMAPS = ("heat", "gray", "diverging")
CMAP_BAD = st.sampled_from(["", "Heat", "jet", "viridis", None, 3])
ALPHA_OK = st.one_of(st.floats(0, 1), st.sampled_from([0, 1, np.float32(0.5)]))
ALPHA_BAD = st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0000001), NON_FINITE)


@fuzz(40)
@given(data=st.data(), maps=map_inputs(ranks=(3,)), cmap=tagged(st.sampled_from(CMAPS), CMAP_BAD),
       alpha=tagged(ALPHA_OK, ALPHA_BAD),
       image_fault=st.sampled_from([None, None, None, "count", "rank", "values"]))
def test_colorize_and_overlay(data, maps, cmap, alpha, image_fault):
    """colorize: uint8 (N, h, w, 3) for any finite maps; overlay blends them over images of
    any size (maps upsampled), refusing a count mismatch, wrong ranks and NaN/inf."""
    ok = maps_ok(maps, (3,))
    result, error = call(vis.colorize, maps, cmap[0])
    if check_outcome(all_valid(ok, cmap[1]), result, error, f"colorize(cmap={cmap[0]!r})"):
        assert_finite(result, np.shape(maps) + (3,), np.uint8)
    n = np.shape(maps)[0] if np.ndim(maps) else 1
    shape = ((n + 1) if image_fault == "count" else n, data.draw(st.integers(1, 12)),
             data.draw(st.integers(1, 12)), 3)
    if image_fault == "rank":
        shape = shape[1:]
    specials = (np.nan, np.inf) if image_fault == "values" else (-1.0, 2.0, 0.0, 1.0)
    images = data.draw(values(shape, "float32", specials=specials,
                              min_specials=1 if image_fault == "values" else 0))
    result, error = call(vis.overlay, images, maps, alpha=alpha[0], cmap=cmap[0])
    if check_outcome(all_valid(ok, cmap[1], alpha[1], image_fault is None), result, error,
                     "overlay arguments"):
        assert_finite(result, shape, np.uint8)


# ======================================================================== findings
# B01-B27 were found by these tests and fixed in the library; each keeps a regression test.


@fuzz(10)
@given(which=st.sampled_from(["images", "targets"]))
def test_b01_ragged_lists(model, which):
    """Regression test for B01 (fixed in 68c5d38). Before the fix: ragged nested lists as
    images or targets raise numpy's ValueError ('inhomogeneous shape') from np.asarray in
    images.check_images / targets.resolve_targets"""
    images = np.full((2, SIZE, SIZE, 3), 0.5, np.float32)
    if which == "images":
        ragged = [images[0].tolist(), images[1, :, :8].tolist()]
        result, error = call(tfsal.vanilla_gradient, model, ragged)
    else:
        result, error = call(tfsal.vanilla_gradient, model, images, [[0], [0, 1]])
    check_outcome(False, result, error, "ragged input")


@fuzz(10)
@given(data=st.data(), name=st.sampled_from(METHOD_NAMES))
def test_b02_zero_size_images(model, data, name):
    """Regression test for B02 (fixed in 68c5d38). Before the fix: float images (N >= 1, H, W,
    3) with H == 0 or W == 0 raise numpy's ValueError 'zero-size array to reduction operation
    minimum' (images.py:47, arr.min() in check_images)"""
    n = data.draw(st.integers(1, 3))
    shape = data.draw(st.sampled_from([(n, 0, SIZE, 3), (n, SIZE, 0, 3), (n, 0, 0, 3)]))
    result, error = call(run_method, name, model, np.zeros(shape, np.float32), 0)
    check_outcome(False, result, error, f"images of shape {shape}")


@fuzz(10)
@given(data=st.data(), size=st.sampled_from([1, 8, 17, 32]))
def test_b03_nonlinear_wrong_size(model, data, size):
    """Regression test for B03 (fixed in 68c5d38). Before the fix: nonlinear_saliency does not
    check the model's input size: 8x8 images on the 16x16 model return a Trajectory, 1x1 images
    raise a raw Keras ValueError (MaxPooling2D 'Negative dimension size'); every other method
    raises TfsalError"""
    images = data.draw(good_images(1, size))
    result, error = call(tfsal.nonlinear_saliency, model, images, 0, levels=[0.5],
                         steps_per_level=1)
    check_outcome(False, result, error, f"{size}x{size} images")


@fuzz(5)
@given(n=st.integers(1, 3))
def test_b04_nonlinear_no_targets_per_image(model, n):
    """Regression test for B04 (fixed in 68c5d38). Before the fix: nonlinear_saliency with
    integer targets of shape (N, 0) raises ValueError 'not enough values to unpack (expected 8,
    got 0)' (nonlinear.py:265)"""
    images = np.full((n, SIZE, SIZE, 3), 0.5, np.float32)
    result, error = call(tfsal.nonlinear_saliency, model, images, np.zeros((n, 0), int),
                         levels=[0.5], steps_per_level=1)
    check_outcome(False, result, error, "(N, 0) targets")


@fuzz(10)
@given(baseline=st.sampled_from([np.nan, np.inf, -np.inf, None,
                                 np.full((SIZE, SIZE, 3), np.nan, np.float32)]),
       name=st.sampled_from(["integrated_gradients", "deeplift", "make_baseline"]))
def test_b05_non_finite_baselines(model, baseline, name):
    """Regression test for B05 (fixed in 68c5d38). Before the fix: non-finite baselines (nan,
    inf, None, arrays holding NaN) are accepted by make_baseline and give NaN/inf attributions
    from integrated_gradients and deeplift instead of a TfsalError"""
    images = np.full((2, SIZE, SIZE, 3), 0.5, np.float32)
    if name == "make_baseline":
        result, error = call(tfsal.make_baseline, images, baseline)
    else:
        result, error = call(run_method, name, model, images, 0, baseline=baseline)
    if error is None:
        assert_finite(result, images.shape)


@fuzz(10)
@given(baseline=st.sampled_from([{}, 1j, np.array(["a"]), ["x"], object()]),
       name=st.sampled_from(["integrated_gradients", "deeplift", "completeness_delta",
                             "make_baseline"]))
def test_b06_non_numeric_baselines(model, baseline, name):
    """Regression test for B06 (fixed in 68c5d38). Before the fix: baselines that are not
    numbers raise raw TypeError/ValueError from np.asarray(baseline, dtype=np.float32) in
    make_baseline (integrated.py:76): dict, complex, string arrays, lists of strings"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    if name == "make_baseline":
        result, error = call(tfsal.make_baseline, images, baseline)
    else:
        result, error = call(run_method, name, model, images, 0, baseline=baseline)
    check_outcome(False, result, error, f"baseline={baseline!r}")


@fuzz(10)
@given(blur_sigma=st.sampled_from([np.inf, "1", 1e12, np.nan, -1.0, True]),
       name=st.sampled_from(["integrated_gradients", "completeness_delta", "make_baseline"]))
def test_b07_blur_baseline_sigma(model, blur_sigma, name):
    """Regression test for B07 (fixed in 68c5d38). Before the fix: blur_sigma of the 'blur'
    baseline is not validated (integrated_gradients, completeness_delta, make_baseline): inf ->
    OverflowError, '1' -> TypeError, 1e12 -> MemoryError (all from
    scipy.ndimage.gaussian_filter); 1e6 takes ~15 s; nan and negative values are silently
    accepted"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    if name == "make_baseline":
        result, error = call(tfsal.make_baseline, images, "blur", blur_sigma=blur_sigma)
    else:
        result, error = call(run_method, name, model, images, 0, baseline="blur",
                             blur_sigma=blur_sigma)
    check_outcome(False, result, error, f"blur_sigma={blur_sigma!r}")


@fuzz(10)
@given(baseline=st.sampled_from(["noise", "blur", 0.5, "black", "white"]),
       kind=st.sampled_from(["list", "float64", "str"]))
def test_b08_make_baseline_images(baseline, kind):
    """Regression test for B08 (fixed in 68c5d38). Before the fix: make_baseline does not
    validate `images`: a nested list raises AttributeError ('list' object has no attribute
    'shape', integrated.py:68/78) for 'noise', 'blur' and array baselines; 'black'/'white'
    return float64 (or str) arrays"""
    images = np.full((1, 4, 4, 3), 0.5)
    images = {"list": images.tolist(), "float64": images, "str": "abc"}[kind]
    result, error = call(tfsal.make_baseline, images, baseline, seed=0)
    if error is None:
        assert_finite(result, (1, 4, 4, 3))


@fuzz(5)
@given(epsilon=st.sampled_from([0, 0.0, 1e-300]))
def test_b09_epsilon_zero(model, epsilon):
    """Regression test for B09 (fixed in 68c5d38). Before the fix: epsilon_lrp accepts
    epsilon=0 (and values that underflow float32, e.g. 1e-300) but then divides 0/0 wherever a
    pre-activation is exactly 0 (a black image): NaN attributions instead of a TfsalError or
    finite maps"""
    images = np.zeros((1, SIZE, SIZE, 3), np.float32)
    result, error = call(tfsal.epsilon_lrp, model, images, 0, epsilon=epsilon)
    if error is None:
        assert_finite(result, images.shape)


@fuzz(5)
@given(layers=st.sampled_from([0, 2, -1, 3.5]))
def test_b10_layer_attributions_scalar_layers(model, layers):
    """Regression test for B10 (fixed in 68c5d38). Before the fix:
    layer_attributions(layers=<int>) raises TypeError 'int object is not iterable'
    (model.py:402, layers_gradients iterates `layers`)"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    result, error = call(tfsal.layer_attributions, model, images, 0, layers=layers)
    if error is None:
        assert isinstance(result, dict)


@fuzz(5)
@given(score=st.sampled_from([np.array(["logit", "logit"]), np.array([1, 2])]))
def test_b11_score_array(model, score):
    """Regression test for B11 (fixed in 68c5d38). Before the fix: score given as a NumPy array
    raises ValueError 'truth value of an array ... is ambiguous' (model.py:223, `score or
    self.score` in Model._score)"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    result, error = call(tfsal.vanilla_gradient, model, images, 0, score=score)
    check_outcome(False, result, error, f"score={score!r}")


@fuzz(5)
@given(class_names=st.sampled_from([5, 1.5, object()]))
def test_b12_model_class_names(class_names):
    """Regression test for B12 (fixed in 68c5d38). Before the fix:
    tfsal.Model(class_names=<non-iterable>) raises TypeError (model.py:93, tuple(class_names))"""
    result, error = call(tfsal.Model, _shared_keras_model(), class_names=class_names)
    check_outcome(False, result, error, f"class_names={class_names!r}")


@fuzz(5)
@given(length=st.sampled_from([256, 300, 5000]), name=st.sampled_from(["load_model",
                                                                      "vanilla_gradient"]))
def test_b13_long_model_names(length, name):
    """Regression test for B13 (fixed in 68c5d38). Before the fix: a model name/path longer
    than the file-system limit raises OSError [Errno 36] 'File name too long' from
    pathlib.Path.is_dir in load_model (model.py:~475) — also through every method's `model`
    argument"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    source = "m" * length
    if name == "load_model":
        result, error = call(tfsal.load_model, source)
    else:
        result, error = call(tfsal.vanilla_gradient, source, images)
    check_outcome(False, result, error, f"a {length}-character model name")


@fuzz(10)
@given(name=st.sampled_from(["completeness_delta", "blur_below_level", "mask_below_level",
                             "selective_blur"]), junk=st.sampled_from(["abc", ["a"], {}]))
def test_b14_non_numeric_arrays(model, name, junk):
    """Regression test for B14 (fixed in 68c5d38). Before the fix: non-numeric arrays raise
    numpy's ValueError 'could not convert string to float' from np.asarray(..., np.float32):
    completeness_delta attributions (integrated.py:150), blur_below_level / mask_below_level
    sensitivity_norm (nonlinear.py:473), selective_blur maps (nonlinear.py:552)"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    if name == "completeness_delta":
        result, error = call(tfsal.completeness_delta, model, images, junk)
    elif name == "selective_blur":
        result, error = call(tfsal.selective_blur, model, images, junk)
    else:
        result, error = call(getattr(tfsal, name), images, junk, 0.5)
    check_outcome(False, result, error, f"{name} with {junk!r}")


@fuzz(5)
@given(sensitivity=st.sampled_from([5, "vanilla", [tfsal.vanilla_gradient]]))
def test_b15_nonlinear_sensitivity_not_callable(model, sensitivity):
    """Regression test for B15 (fixed in 68c5d38). Before the fix:
    nonlinear_saliency(sensitivity=<not callable>) raises TypeError 'object is not callable'
    (nonlinear.py:388) after the first model calls"""
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    result, error = call(tfsal.nonlinear_saliency, model, images, 0, levels=[0.5],
                         steps_per_level=1, sensitivity=sensitivity)
    check_outcome(False, result, error, f"sensitivity={sensitivity!r}")


@fuzz(20)
@given(data=st.data(), fn=st.sampled_from(["reduce_channels", "normalize", "clip_percentile",
                                           "upsample", "to_display"]))
def test_b16_visualize_zero_length_axes(data, fn):
    """Regression test for B16 (fixed in 68c5d38). Before the fix: visualize on maps with a
    zero-length axis: reduce_channels C=0 gives NaN ('mean') or ValueError ('max', 'abs-max');
    normalize / clip_percentile with N=0 raise ValueError (reshape(0, -1)), with H*W=0
    ValueError / IndexError; upsample with h or w = 0 ZeroDivisionError; to_display with H*W=0
    IndexError"""
    rank = 3 if fn == "upsample" else data.draw(st.sampled_from([3, 4]))
    shape = list(data.draw(st.lists(st.integers(1, 4), min_size=rank, max_size=rank)))
    shape[data.draw(st.integers(0, rank - 1))] = 0
    maps = np.zeros(shape, np.float32)
    kwargs = dict(reduction="max") if fn == "reduce_channels" else {}
    args = (4,) if fn == "upsample" else ()
    result, error = call(getattr(vis, fn), maps, *args, **kwargs)
    if error is None:
        assert np.isfinite(result).all()


@fuzz(10)
@given(case=st.sampled_from([("reduce_channels", 1e20, "l2"), ("reduce_channels", 3e38, "sum"),
                             ("normalize", 3e38, "minmax")]))
def test_b17_visualize_overflow(case):
    """Regression test for B17 (fixed in 68c5d38). Before the fix: visualize overflows float32
    silently: reduce_channels 'l2' of |x| > ~1.8e19 and 'sum' near 3e38 return inf;
    normalize('minmax') of maps spanning ±3e38 returns NaN (finite input, non-finite output)"""
    fn, magnitude, option = case
    maps = np.full((1, 2, 2, 3), magnitude, np.float32)
    if fn == "normalize":
        maps[..., 0] *= -1  # a span of 6e38
    result, error = call(getattr(vis, fn), maps, option)
    if error is None:
        assert np.isfinite(result).all()


@fuzz(10)
@given(args=st.sampled_from([dict(size=2.5), dict(size=np.nan), dict(size="ab"),
                             dict(size=(1, 2, 3)), dict(size=4, order=7),
                             dict(size=4, order=-1)]))
def test_b18_upsample_arguments(args):
    """Regression test for B18 (fixed in 68c5d38). Before the fix: upsample does not validate
    size / order: size 2.5 -> TypeError (slice), nan -> ValueError, 'ab' -> ValueError, a
    3-tuple -> ValueError (unpack), order outside 0-5 -> RuntimeError 'spline order not
    supported' (scipy)"""
    result, error = call(vis.upsample, np.zeros((1, 2, 2), np.float32), **args)
    check_outcome(False, result, error, f"upsample({args})")


@fuzz(10)
@given(case=st.sampled_from([("clip_percentile", ("a", 5)), ("clip_percentile", (None, 5)),
                             ("to_display", (1, 2, 3)), ("to_display", ("a", 50)),
                             ("to_display", 5)]))
def test_b19_percentile_arguments(case):
    """Regression test for B19 (fixed in 68c5d38). Before the fix: clip_percentile with non-
    numeric low/high raises TypeError (visualize.py:87); to_display(clip=<not a pair>) raises
    TypeError (visualize.py:202, clip_percentile(*clip))"""
    fn, bounds = case
    maps = np.zeros((1, 2, 2, 3), np.float32)
    if fn == "clip_percentile":
        result, error = call(vis.clip_percentile, maps, *bounds)
    else:
        result, error = call(vis.to_display, maps, clip=bounds)
    check_outcome(False, result, error, f"{fn} bounds {bounds!r}")


@fuzz(10)
@given(maps=map_inputs(), bounds=PERCENTILE_PAIR_OK)
def test_b20_clip_percentile_dtype(maps, bounds):
    """Regression test for B20 (fixed in 68c5d38). Before the fix: clip_percentile returns
    float64 for float32 maps (np.clip against the float64 percentiles of np.percentile,
    visualize.py:90); its docstring promises float32"""
    result, error = call(vis.clip_percentile, maps, *bounds)
    if error is None:
        assert_finite(result, np.shape(maps))


@fuzz_regression(10)
@given(name=st.sampled_from(["smoothgrad", "vargrad"]), noise_level=st.sampled_from([1e30, 1e25]))
def test_b21_smoothgrad_huge_noise(model, name, noise_level):
    images = np.random.default_rng(0).random((1, SIZE, SIZE, 3)).astype(np.float32)
    kwargs = dict(squared=True) if name == "smoothgrad" else {}
    result, error = call(METHODS[name], model, images, 0, method=tfsal.gradient_x_input,
                         n_samples=2, noise_level=noise_level, seed=0, **kwargs)
    if error is None:
        assert_finite(result, images.shape)


@fuzz_regression(5)
@given(steps=st.sampled_from([2**31, 2**40, 10**12]))
def test_b22_nonlinear_steps_beyond_int32(model, steps):
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    result, error = call(tfsal.nonlinear_saliency, model, images, 0, levels=[0.5],
                         steps_per_level=steps)
    check_outcome(False, result, error, f"steps_per_level={steps}")


@fuzz_regression(10)
@given(case=st.sampled_from(["integrated_gradients", "smoothgrad", "upsample"]))
def test_b23_huge_counts(model, case):
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    if case == "integrated_gradients":
        result, error = call(tfsal.integrated_gradients, model, images, 0, steps=10**12)
    elif case == "smoothgrad":
        result, error = call(tfsal.smoothgrad, model, images, 0, n_samples=10**12)
    else:
        result, error = call(vis.upsample, np.zeros((1, 2, 2), np.float32), 10**6)
    check_outcome(False, result, error, case)


@fuzz_regression(10)
@given(case=st.sampled_from(["cmap", "alpha", "channels"]))
def test_b24_colorize_overlay_arguments(case):
    maps = np.zeros((1, 4, 4), np.float32)
    images = np.zeros((1, 4, 4, 3), np.float32)
    if case == "cmap":
        result, error = call(vis.colorize, maps, ["heat"])
    elif case == "alpha":
        result, error = call(vis.overlay, images, maps, alpha="a")
    else:
        result, error = call(vis.overlay, np.zeros((1, 4, 4, 4), np.float32), maps)
    check_outcome(False, result, error, case)


@fuzz_regression(10)
@given(case=st.sampled_from(["panels", "cell", "pad", "float_pad", "titles", "title_len",
                             "empty_png"]))
def test_b25_grid_and_save_png_arguments(tmp_path, case):
    cell = np.zeros((2, 2, 3), np.uint8)
    if case == "empty_png":
        result, error = call(vis.save_png, np.zeros((2, 0), np.uint8), tmp_path / "e.png")
    else:
        kwargs = {"panels": dict(panels=5), "cell": dict(panels=[[5]]),
                  "pad": dict(panels=[[cell]], pad=-5),
                  "float_pad": dict(panels=[[cell]], pad=1.5),
                  "titles": dict(panels=[[cell]], row_titles=[3]),
                  "title_len": dict(panels=[[cell]], row_titles=5)}[case]
        result, error = call(vis.grid, **kwargs)
    check_outcome(False, result, error, case)


@fuzz_regression(10)
@given(blur_sigma=st.floats(4.5e307, 1.7e308),
       name=st.sampled_from(["nonlinear_saliency", "blur_below_level", "selective_blur"]))
def test_b26_huge_finite_blur_sigma(model, blur_sigma, name):
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    norm = np.ones((1, SIZE, SIZE), np.float32)
    if name == "nonlinear_saliency":
        result, error = call(tfsal.nonlinear_saliency, model, images, 0, levels=[0.5],
                             steps_per_level=1, blur_sigma=blur_sigma)
    elif name == "blur_below_level":
        result, error = call(tfsal.blur_below_level, images, norm, 0.5, blur_sigma=blur_sigma)
    else:
        result, error = call(tfsal.selective_blur, model, images, norm, blur_sigma=blur_sigma)
    check_outcome(False, result, error, f"blur_sigma={blur_sigma}")


# B27: steps up to the bound must not exhaust memory (Gauss-Legendre nodes were O(steps³)).
@fuzz_regression(3)
@given(steps=st.sampled_from([100000, 10001, 5000]))
def test_b27_gauss_legendre_steps_within_bound(model, steps):
    # A bound-respecting count: the call must return or raise TfsalError, not MemoryError.
    # (More than 75 GB of free memory would turn this into a long computation instead.)
    images = np.full((1, SIZE, SIZE, 3), 0.5, np.float32)
    result, error = call(tfsal.integrated_gradients, model, images, 0, steps=steps)
    if error is None:
        assert_finite(result, images.shape)
