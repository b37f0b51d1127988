"""Exact per-row order statistics: the value at a given ascending rank of each row.

Shared by RectGrad's layer-wise percentile thresholds (`percentile_rank` turns q into a rank
by the authors' or NumPy's rule, `best_selection` picks a partial sort or the radix select)
and the nonlinear saliency loop's level selection, whose rank is a tensor: NumPy's
introselect on a CPU (cheaper than `top_k` there, BENCHMARKS.md, but a host round trip per step),
`top_k` on a GPU.

Every algorithm is exact, so they are interchangeable. With op determinism enabled
(`tf.config.experimental.enable_op_determinism()`) the radix select, whose bincounts have no
deterministic GPU kernel, is replaced by `top_k` in functions traced from then on.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfsal.devices import deterministic
from tfsal.errors import TfsalError

HOW = ("top_k", "numpy", "radix")


def select(flat, index, how: str):
    """(N,) the value at ascending rank `index` (0-based) of each row of `flat` (N, n).

    how: "top_k" (a partial sort from the nearer end), "numpy" (NumPy's introselect on the
    host) or "radix" (`_radix_select`, two counting passes; `top_k` under op determinism).
    `index` is an int or a scalar int32 tensor (a rank computed inside a compiled loop).
    """
    if how not in HOW:
        raise TfsalError(f"expected how in {HOW}, received {how!r}")
    if how == "numpy":
        tau = tf.numpy_function(_introselect, [flat, index], flat.dtype, stateful=False)
        return tf.reshape(tau, (-1,))
    if how == "radix" and not deterministic():
        return _radix_select(flat, index)
    if isinstance(index, (int, np.integer)):  # the nearer end, chosen while tracing
        n = int(flat.shape[1])
        return _top_k_select(flat, int(index), n, from_top=index >= n // 2)
    n = tf.shape(flat)[1]
    return tf.cond(index >= n // 2, lambda: _top_k_select(flat, index, n, from_top=True),
                   lambda: _top_k_select(flat, index, n, from_top=False))


def _top_k_select(flat, index, n, *, from_top: bool):
    """Rank `index` of n by a partial sort keeping the values from the top (n − index of
    them) or from the bottom (index + 1)."""
    if from_top:
        return tf.math.top_k(flat, k=n - index, sorted=True).values[:, -1]
    return -tf.math.top_k(-flat, k=index + 1, sorted=True).values[:, -1]


# How the "nearest" q-th percentile of n values picks its rank (`percentile_rank`).
RANKS = ("authors", "numpy")


def percentile_rank(n: int, q: float, rank: str = "authors") -> int:
    """The ascending rank (0-based) of the "nearest" q-th percentile among n values.

    rank="authors": TF 1.x `tf.contrib.distributions.percentile(x, q,
        interpolation="nearest")`, which the RectGrad authors' code calls: the values sorted
        in DESCENDING order (`top_k`) and the index i = round((n − 1) · (1 − q / 100)) taken
        from the top, every operation in float32 (q and n cast to float32, q / 100, 1 − ·,
        the product) and `tf.round` rounding half to even; ascending rank n − 1 − i.
    rank="numpy": `np.percentile(x, q, method="nearest")`: the ascending rank
        round((n − 1) · (q / 100)) in float64, half to even.

    The two agree except where the rounded fraction is (within float error) a half: always at
    q = 50 for even n, at q = 90 for n ≡ 16 (mod 20), at q = 98 for n ≡ 26 (mod 100), ...;
    there they pick adjacent ranks. (The later float64 versions of the TF / TFP percentile,
    not offered here, part from NumPy at other sizes: n ≡ 6 (mod 20) at q = 90, n ≡ 76
    (mod 100) at q = 98; comparisons with the authors' code show the float32 families.)
    """
    if rank == "authors":
        f32 = np.float32
        frac = f32(1.0) - f32(q) / f32(100.0)
        from_top = np.round((f32(n) - f32(1.0)) * frac)  # float32 stays float32; half to even
        return n - 1 - int(from_top)
    if rank == "numpy":
        return int(np.round((n - 1) * (float(q) / 100.0)))  # NumPy's own order of operations
    raise TfsalError(f"expected rank in {RANKS}, received {rank!r}")


def best_selection(n: int, index: int) -> str:
    """The faster exact way to find rank `index` of n values inside a compiled gradient.

    A partial sort (`top_k`) keeps min(index + 1, n − index) values: cheapest when that is a
    small share of a layer that is not too large (the radix select pays two fixed 65 536-bin
    passes). Otherwise the radix select, fused with the rule's elementwise work by XLA
    (NumPy's introselect, faster alone, loses there: a host round trip per layer and no
    fusion). Measured in BENCHMARKS.md (`make bench`). Always the partial sort under op
    determinism (module docstring).
    """
    kept = min(index + 1, n - index)
    if (n < _TOP_K_MAX and kept * 16 <= n) or n < 1 << 10 or deterministic():
        return "top_k"
    return "radix"


_TOP_K_MAX = 1 << 17  # larger layers: the radix select beats even a short partial sort
_BINS = 1 << 16
_SIGN = -(2**31)  # int32 with only the sign bit set


def _radix_select(flat, index: int):
    """Exact value at ascending rank `index` of each row of `flat` (N, n) float32 (int index).

    Floats become unsigned keys in the same order (flip every bit of negative floats, only the
    sign bit of the others). Pass 1 counts each row's keys by their high 16 bits and finds the
    bucket holding rank `index`; pass 2 counts that bucket's keys by their low 16 bits.
    """
    bits = tf.bitcast(flat, tf.int32)
    keys = tf.bitwise.bitwise_xor(bits, tf.bitwise.right_shift(bits, 31) | _SIGN)
    high = tf.bitcast(tf.bitwise.right_shift(tf.bitcast(keys, tf.uint32), 16), tf.int32)
    bucket, rank = _bucket_of_rank(high, tf.fill(tf.shape(flat)[:1], index), _BINS)
    low = tf.bitwise.bitwise_and(keys, _BINS - 1)
    low = tf.where(tf.equal(high, bucket[:, None]), low, _BINS)  # other buckets: an extra bin
    position, _ = _bucket_of_rank(low, rank, _BINS + 1)
    key = tf.bitwise.left_shift(bucket, 16) | position
    # back to float bits: keys with the top bit set came from non-negative floats
    bits = tf.bitwise.bitwise_xor(key, tf.where(key < 0, _SIGN, -1))
    return tf.bitcast(bits, tf.float32)


def _bucket_of_rank(bins, rank, n_bins: int):
    """Per row: the bin holding the element of ascending rank `rank`, and its rank inside."""
    counts = tf.raw_ops.DenseBincount(input=bins, size=tf.constant(n_bins, tf.int32),
                                      weights=tf.constant([], tf.int32), binary_output=False)
    below_and_in = tf.cumsum(counts, axis=1)
    bucket = tf.argmax(tf.cast(below_and_in > rank[:, None], tf.int32), axis=1,
                       output_type=tf.int32)
    below = tf.gather(below_and_in, bucket, batch_dims=1) - tf.gather(counts, bucket,
                                                                      batch_dims=1)
    return bucket, rank - below


def _introselect(rows: np.ndarray, index) -> np.ndarray:
    return np.partition(rows, index, axis=1)[:, index]
