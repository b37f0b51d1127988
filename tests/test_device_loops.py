"""The device paths of SmoothGrad, Integrated Gradients (used everywhere) and the nonlinear
loop (used on a GPU, forced here on the CPU): no host round trip in their compiled functions,
nothing moved through host memory, and the same results as the host loops for the same
seeds."""

import importlib
import warnings

import numpy as np
import pytest
import tensorflow as tf
from conftest import mixed_precision_pair, toy_cnn

import tfsal
from tfsal import devices
from tfsal.methods import integrated
from tfsal.methods._base import sum_over_points
from tfsal.selection import select

# the module (`tfsal.methods.smoothgrad` is the function)
smoothgrad = importlib.import_module("tfsal.methods.smoothgrad")

IMAGES = np.random.default_rng(4).random((5, 16, 16, 3)).astype(np.float32)
# Python-function ops: each call a host round trip (and a device synchronisation on a GPU).
HOST_OPS = ("PyFunc", "PyFuncStateless", "EagerPyFunc")


def _model():
    # batch 4 for 5 images: chunks straddle images and points, one chunk is partial
    return tfsal.Model(toy_cnn(seed=5), batch_size=4)


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture
def on_device(monkeypatch):
    """Force the device paths, as if TensorFlow saw a GPU."""
    monkeypatch.setattr(devices, "device_loops", lambda: True)


def _both(monkeypatch, call):
    """call() on the host path, then on the device path (the nonlinear loop's switch)."""
    monkeypatch.setattr(devices, "device_loops", lambda: False)
    host = call()
    monkeypatch.setattr(devices, "device_loops", lambda: True)
    return host, call()


def _recorded(model, monkeypatch) -> list:
    """The concrete functions the adapter hands out from now on (built or cached)."""
    seen = []
    compiled = model.compiled

    def recording(key, build):
        seen.append((key, compiled(key, build)))
        return seen[-1][1]

    monkeypatch.setattr(model, "compiled", recording)
    return seen


def _op_types(concrete) -> set:
    """Every op type in a concrete function, its nested functions (while-loop bodies, cond
    branches, called tf.functions) included."""
    graph = concrete.graph.as_graph_def()
    types = {node.op for node in graph.node}
    for function in graph.library.function:
        types |= {node.op for node in function.node_def}
    return types


def _host_loop(method):
    """`method` as a plain callable, which SmoothGrad calls batch by batch from its host loop
    (the loop every method ran in before the device path)."""

    def called(model, images, targets, **options):
        return method.compute(model, images, targets, **options)

    return called


def _ig_host_loop(model, images, targets, *, steps, schedule, baseline, seed):
    """Integrated Gradients as the host loop computed them: NumPy path points, one gradient
    call per batch, float64 sums (`sum_over_points`)."""
    alphas, weights = integrated.path_schedule(schedule, steps)
    base = integrated.make_baseline(images, baseline, seed=seed)
    diff = images - base
    nodes = alphas.astype(np.float32).reshape(-1, 1, 1, 1)
    targets = model.resolve_targets(images, targets)
    mean = sum_over_points(model, len(images), len(alphas),
                           lambda i, j: base[i] + nodes[j] * diff[i],
                           lambda batch, t: model.input_gradients(batch, t), targets, weights)
    return (mean * diff).astype(np.float32)


# ---------------------------------------------------------------- same results as the host
SMOOTHGRAD_CASES = {
    "smoothgrad": (tfsal.smoothgrad, tfsal.vanilla_gradient, {}),
    "smoothgrad squared": (tfsal.smoothgrad, tfsal.vanilla_gradient, {"squared": True}),
    "smoothgrad of probability": (tfsal.smoothgrad, tfsal.vanilla_gradient,
                                  {"score": "probability"}),
    "smoothgrad of gradient x input": (tfsal.smoothgrad, tfsal.gradient_x_input, {}),
    "vargrad": (tfsal.vargrad, tfsal.vanilla_gradient, {}),
    "vargrad of gradient x input": (tfsal.vargrad, tfsal.gradient_x_input, {}),
}


@pytest.mark.parametrize("case", list(SMOOTHGRAD_CASES))
def test_smoothgrad_on_the_device_equals_the_host_loop(case, model, monkeypatch):
    method, wrapped, options = SMOOTHGRAD_CASES[case]
    seen = _recorded(model, monkeypatch)
    device = method(model, IMAGES, 1, method=wrapped, n_samples=7, seed=3, **options)
    assert [key for key, _ in seen if key[0] == "sum_over_points"]  # the device path ran
    host = method(model, IMAGES, 1, method=_host_loop(wrapped), n_samples=7, seed=3,
                  **options)
    assert device.dtype == np.float32 and device.shape == IMAGES.shape
    assert np.abs(host).max() > 0
    np.testing.assert_allclose(device, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())


def test_smoothgrad_on_the_device_follows_its_seed(model):
    a = tfsal.smoothgrad(model, IMAGES, 1, n_samples=6, seed=11)
    np.testing.assert_array_equal(a, tfsal.smoothgrad(model, IMAGES, 1, n_samples=6, seed=11))
    assert not np.allclose(a, tfsal.smoothgrad(model, IMAGES, 1, n_samples=6, seed=12))
    v = tfsal.vargrad(model, IMAGES, 1, n_samples=6, seed=11)
    assert not np.allclose(v, tfsal.vargrad(model, IMAGES, 1, n_samples=6, seed=12))


def test_smoothgrad_without_noise_on_the_device_is_the_gradient(model):
    sg = tfsal.smoothgrad(model, IMAGES, 2, n_samples=3, noise_level=0.0, seed=0)
    np.testing.assert_allclose(sg, tfsal.vanilla_gradient(model, IMAGES, 2), rtol=1e-5,
                               atol=1e-7)
    assert np.abs(tfsal.vargrad(model, IMAGES, 2, n_samples=3, noise_level=0.0,
                                seed=0)).max() < 1e-10


def test_smoothgrad_noise_in_several_uploads_is_the_same(model, monkeypatch):
    host = tfsal.smoothgrad(model, IMAGES, 1, method=_host_loop(tfsal.vanilla_gradient),
                            n_samples=7, seed=2)
    monkeypatch.setattr(smoothgrad, "_NOISE_TABLE_BYTES", 3 * IMAGES[0].nbytes)  # 3 groups
    grouped = tfsal.smoothgrad(model, IMAGES, 1, n_samples=7, seed=2)
    np.testing.assert_allclose(grouped, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())


def test_noise_uploads_hold_whole_batches_of_pairs(monkeypatch):
    monkeypatch.setattr(smoothgrad, "_NOISE_TABLE_BYTES", 100 * 1000)  # 100 images of 1000 B
    per_upload = smoothgrad._samples_per_upload
    assert per_upload(1, 1000, 32) == 96  # 3 batches of 32 samples of one image
    assert per_upload(5, 1000, 4) == 100  # 500 pairs: 125 batches of 4
    assert per_upload(6, 1000, 32) == 96  # 6 · 16 pairs fill 3 batches: 16 | 96
    assert per_upload(1, 1000, 128) == 128  # one whole batch, 1.28 times the budget
    assert per_upload(1, 1000, 512) == 100  # a whole batch would take 5.12 times: what fits
    assert per_upload(1, 10**6, 1) == 1  # one sample over the budget still goes


def test_the_noise_table_holds_each_samples_own_draws():
    shape = (4, 5, 3)
    table = smoothgrad.noise_table(9, 2, 6, shape)
    for row, j in zip(table, range(2, 6)):  # what the host loop draws for sample j
        np.testing.assert_array_equal(
            row, np.random.default_rng([9, j]).standard_normal(shape, np.float32))


@pytest.mark.parametrize("schedule", integrated.SCHEDULES)
@pytest.mark.parametrize("baseline", ["black", "white", "noise", "blur", 0.25, "array"])
def test_integrated_gradients_on_the_device_equal_the_host_loop(schedule, baseline, model):
    if baseline == "array":
        baseline = np.random.default_rng(1).random((16, 16, 3)).astype(np.float32)
    options = dict(steps=5, schedule=schedule, baseline=baseline, seed=4)
    device = tfsal.integrated_gradients(model, IMAGES, 3, **options)
    host = _ig_host_loop(model, IMAGES, 3, **options)
    assert np.abs(host).max() > 0
    np.testing.assert_allclose(device, host, rtol=1e-5, atol=1e-6 * np.abs(host).max())


def test_integrated_gradients_on_the_device_follow_the_noise_seed(model):
    a = tfsal.integrated_gradients(model, IMAGES, 3, steps=4, baseline="noise", seed=1)
    np.testing.assert_array_equal(a, tfsal.integrated_gradients(
        model, IMAGES, 3, steps=4, baseline="noise", seed=1))
    assert not np.allclose(a, tfsal.integrated_gradients(model, IMAGES, 3, steps=4,
                                                         baseline="noise", seed=2))


def test_integrated_gradients_on_the_device_are_complete_for_a_linear_model():
    import keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(inp))
    linear = tfsal.Model(keras.Model(inp, out), batch_size=3)
    ig = tfsal.integrated_gradients(linear, IMAGES, 1, steps=3, baseline="white")
    w = linear.wrapped.layers[-1].kernel.numpy()[:, 1].reshape(16, 16, 3)
    np.testing.assert_allclose(ig, w * (IMAGES - 1.0), rtol=1e-4, atol=1e-6)  # w · (x − b)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_the_device_paths_on_a_mixed_precision_model(policy, on_device):
    """As tests/test_mixed_precision.py for the host paths: float32 maps close to the float32
    model's (cosine ≥ 0.95), probabilities within 0.02."""
    mixed, plain = mixed_precision_pair(policy)
    for method, options in [(tfsal.smoothgrad, dict(n_samples=8, seed=0)),
                            (tfsal.vargrad, dict(n_samples=8, seed=0)),
                            (tfsal.integrated_gradients, dict(steps=16))]:
        got, expected = (method(m, IMAGES, 2, **options).ravel() for m in (mixed, plain))
        assert got.dtype == np.float32
        assert got @ expected / (np.linalg.norm(got) * np.linalg.norm(expected)) >= 0.95
    loop = dict(levels=(0.0, 0.5), steps_per_level=2)
    np.testing.assert_allclose(tfsal.nonlinear_saliency(mixed, IMAGES, 2, **loop)
                               .target_probability,
                               tfsal.nonlinear_saliency(plain, IMAGES, 2, **loop)
                               .target_probability, atol=0.02)


TRAJECTORY_FIELDS = ("probabilities", "blurred_fraction", "images", "maps", "kept",
                     "best_step", "best_image", "best_map")


@pytest.mark.parametrize("linear", [False, True])
def test_the_nonlinear_loop_on_the_device_equals_the_host_loop(linear, model, monkeypatch):
    options = dict(levels=(0.0, 0.05, 0.5, 0.95, 1.0), steps_per_level=2, linear=linear)
    host, device = _both(monkeypatch, lambda: tfsal.nonlinear_saliency(model, IMAGES,
                                                                       **options))
    for field in TRAJECTORY_FIELDS:  # both selections are exact: bit-identical
        np.testing.assert_array_equal(getattr(device, field), getattr(host, field), field)
    assert host.blurred_fraction.max() > 0.9


def test_the_loop_driven_by_another_method_on_the_device_equals_the_host_loop(model,
                                                                               monkeypatch):
    options = dict(levels=(0.0, 0.5), steps_per_level=2, sensitivity=tfsal.gradient_x_input)
    host, device = _both(monkeypatch, lambda: tfsal.nonlinear_saliency(model, IMAGES[:2],
                                                                       **options))
    for field in TRAJECTORY_FIELDS:
        np.testing.assert_array_equal(getattr(device, field), getattr(host, field), field)


def test_the_loops_level_counts_on_the_host_equal_the_graphs():
    from tfsal.nonlinear import _count_of_level, _counts_of_levels

    levels = np.concatenate([np.linspace(0, 1, 401), [0.05, 0.1, 0.3, 0.75, 0.95]])
    for n in (16 * 16, 50 * 50, 224 * 224, 299 * 299, 7):
        expected = [int(_count_of_level(tf.constant(level, tf.float32), n)) for level in levels]
        np.testing.assert_array_equal(_counts_of_levels(levels, n), expected)
    # halves round to even: 2.5 -> 2, 3.5 -> 4
    assert _counts_of_levels([0.5], 5)[0] == 2 and _counts_of_levels([0.5], 7)[0] == 4


@pytest.mark.parametrize("rank", [0, 1, 99, 100, 101, 198, 199])
def test_select_by_top_k_takes_a_rank_computed_in_the_graph(rank):
    values = np.random.default_rng(rank).integers(0, 40, size=(3, 200)).astype(np.float32)
    values[0] = 0.0  # all tied, as the zero gradient of a saturated softmax

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32),
                                  tf.TensorSpec([], tf.int32)], autograph=False)
    def selected(flat, index):
        return select(flat, index, "top_k")

    np.testing.assert_array_equal(selected(values, rank).numpy(),
                                  np.sort(values, axis=1)[:, rank])
    with pytest.raises(tfsal.TfsalError, match="expected how in"):
        select(tf.constant(values), rank, "sort")


# ---------------------------------------------------------------- no host round trip
def test_the_device_functions_hold_no_python_ops(monkeypatch):
    model = _model()
    seen = _recorded(model, monkeypatch)
    monkeypatch.setattr(devices, "device_loops", lambda: True)
    tfsal.smoothgrad(model, IMAGES, 1, n_samples=3, seed=0)
    tfsal.vargrad(model, IMAGES, 1, n_samples=3, seed=0, method=tfsal.gradient_x_input)
    tfsal.integrated_gradients(model, IMAGES, 1, steps=3)
    tfsal.nonlinear_saliency(model, IMAGES, 1, levels=(0.0, 0.5), steps_per_level=2)
    tfsal.nonlinear_saliency(model, IMAGES, 1, levels=(0.0, 0.5), steps_per_level=2,
                             linear=True)
    loops = {key: concrete for key, concrete in seen
             if key[0] in ("sum_over_points", "nonlinear")}
    # attributed pairs of SmoothGrad, VarGrad of gradient × input and IG; weighted sums with
    # and without squares; the nonlinear and linear loops
    assert len(loops) == 7, list(loops)
    for key, concrete in loops.items():
        types = _op_types(concrete)
        assert not types & set(HOST_OPS), (key, types & set(HOST_OPS))
        assert "TopKV2" in types if key[0] == "nonlinear" else "MatMul" in types, key
    # Every gradient comes from inside these functions: nothing else was compiled.
    assert {key[0] for key, _ in seen} <= {"sum_over_points", "nonlinear"}


# What TensorFlow's GPU kernel registry says about the ops of a function: an op with a
# tensor of rank ≥ 2 whose GPU kernels take that tensor in host memory (int32 sums and
# comparisons) or that has no GPU kernel would copy it between host and device at every call.
def _gpu_kernels(op_type: str, cache={}) -> list:  # noqa: B006 (a memo of the registry)
    from tensorflow.python.framework import kernels

    if op_type not in cache:
        cache[op_type] = [k for k in kernels.get_registered_kernels_for_op(op_type).kernel
                          if k.device_type in ("GPU", "DEFAULT")]
    return cache[op_type]


def _arg_names(op, args) -> list:
    names = []
    for arg in args:
        count = (op.get_attr(arg.number_attr) if arg.number_attr
                 else len(op.get_attr(arg.type_list_attr)) if arg.type_list_attr else 1)
        names += [arg.name] * count
    return names


def _host_bound(op) -> str | None:
    """Why `op` would move a tensor of rank ≥ 2 through host memory on a GPU, or None."""
    tensors = list(zip(_arg_names(op, op.op_def.input_arg), op.inputs)) + list(
        zip(_arg_names(op, op.op_def.output_arg), op.outputs))
    big = {name for name, t in tensors if t.shape.rank is not None and t.shape.rank >= 2
           and t.dtype not in (tf.resource, tf.variant)}
    if not big or not op.inputs:
        return None

    def matches(kernel) -> bool:
        for constraint in kernel.constraint:
            try:
                value = op.get_attr(constraint.name)
            except ValueError:
                continue
            if value.as_datatype_enum not in constraint.allowed_values.list.type:
                return False
        return True

    found = [k for k in _gpu_kernels(op.type) if matches(k)]
    if not found:
        return "no GPU kernel"
    if all(big & set(k.host_memory_arg) for k in found):
        return f"host memory: {sorted(big & set(found[0].host_memory_arg))}"
    return None


def _graphs(graph, seen=None):
    """A function graph and every graph nested in it (loop bodies, branches, calls)."""
    seen = set() if seen is None else seen
    if id(graph) not in seen:
        seen.add(id(graph))
        yield graph
        for function in getattr(graph, "_functions", {}).values():
            yield from _graphs(function.graph, seen)


def _host_bound_ops(concrete) -> list:
    return [(op.type, op.name, why) for graph in _graphs(concrete.graph)
            for op in graph.get_operations() if (why := _host_bound(op))]


def test_the_device_functions_keep_their_tensors_in_device_memory(monkeypatch):
    if not _gpu_kernels("Conv2D"):
        pytest.skip("this TensorFlow build registers no GPU kernels")

    @tf.function(input_signature=[tf.TensorSpec([None, 8], tf.float32)], autograph=False)
    def int32_counts(x):  # the check can fail: a rank-2 int32 sum runs in host memory
        return tf.reduce_sum(tf.cast(x > 0, tf.int32), axis=1)

    assert _host_bound_ops(int32_counts.get_concrete_function())
    model = _model()
    seen = _recorded(model, monkeypatch)
    monkeypatch.setattr(devices, "device_loops", lambda: True)
    tfsal.smoothgrad(model, IMAGES, 1, n_samples=3, seed=0)
    tfsal.integrated_gradients(model, IMAGES, 1, steps=3)
    tfsal.nonlinear_saliency(model, IMAGES, 1, levels=(0.0, 0.5), steps_per_level=2)
    loops = {key: concrete for key, concrete in seen}
    assert {key[:2] for key in loops} == {("sum_over_points", "attributed"),
                                          ("sum_over_points", "weighted"),
                                          ("nonlinear", False)}, list(loops)
    for key, concrete in loops.items():
        assert not _host_bound_ops(concrete), key


def test_the_host_loop_is_seen_by_the_same_inspection(monkeypatch):
    """The check above can fail: the CPU loop's level selection is a Python op."""
    model = _model()
    seen = _recorded(model, monkeypatch)
    monkeypatch.setattr(devices, "device_loops", lambda: False)
    tfsal.nonlinear_saliency(model, IMAGES, 1, levels=(0.0, 0.5), steps_per_level=2)
    (concrete,) = {key: c for key, c in seen if key[0] == "nonlinear"}.values()
    assert _op_types(concrete) & set(HOST_OPS)


def test_other_wrapped_methods_keep_the_host_loop(monkeypatch):
    fresh = _model()
    seen = _recorded(fresh, monkeypatch)
    guided = tfsal.smoothgrad(fresh, IMAGES, 1, method=tfsal.guided_backprop, n_samples=3,
                              seed=0)
    np.testing.assert_array_equal(guided, tfsal.smoothgrad(
        fresh, IMAGES, 1, method=_host_loop(tfsal.guided_backprop), n_samples=3, seed=0))
    tfsal.smoothgrad(fresh, IMAGES, 1, method=tfsal.gradient_x_input, n_samples=2, seed=0,
                     multiply_by="model_input")
    assert seen and not [key for key, _ in seen if key[0] == "sum_over_points"]


@pytest.mark.parametrize("method, options", [
    (tfsal.smoothgrad, dict(n_samples=5, seed=1)), (tfsal.vargrad, dict(n_samples=5, seed=1)),
    (tfsal.integrated_gradients, dict(steps=5))], ids=["smoothgrad", "vargrad", "ig"])
def test_a_device_chunk_that_runs_out_of_memory_is_halved(method, options, model,
                                                          monkeypatch):
    expected = method(model, IMAGES, 1, **options)
    fresh = _model()
    compiled = fresh.compiled
    sizes = []

    def failing_above_two(key, build):
        concrete = compiled(key, build)
        if key[:2] != ("sum_over_points", "attributed"):
            return concrete

        def call(*args):
            start, stop = int(args[-2]), int(args[-1])
            if stop - start > 2:
                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating")
            sizes.append(stop - start)
            return concrete(*args)
        return call

    monkeypatch.setattr(fresh, "compiled", failing_above_two)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        halved = method(fresh, IMAGES, 1, **options)
    messages = [str(w.message) for w in caught]
    # 25 pairs in chunks of 4: the first 4 -> 2 (kept for the rest), then 1 at the end
    assert messages == ["tfsal: out of memory with a batch of 4; retrying with 2"]
    assert sizes == [2] * 12 + [1]
    # halves joined on the device and summed as one chunk: the same sums
    np.testing.assert_array_equal(halved, expected)


# ---------------------------------------------------------------- benchmarks/gpu_check.py
def _gpu_check():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "gpu_check.py")
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_counts_python_ops():
    gpu_check = _gpu_check()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def with_host_op(x):
        inner = tf.function(lambda y: tf.numpy_function(np.sort, [y], tf.float32),
                            autograph=False)
        return inner(x) + tf.numpy_function(np.abs, [x], tf.float32)

    plain = tf.function(lambda x: x * 2, input_signature=[tf.TensorSpec([None], tf.float32)])
    assert gpu_check.host_ops([with_host_op.get_concrete_function()]) == 2  # one nested
    assert gpu_check.host_ops([plain.get_concrete_function()]) == 0


def test_gpu_check_smoke_run(capsys):
    gpu_check = _gpu_check()
    switch = devices.device_loops
    assert gpu_check.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert set(tfsal.METHODS) | {"nonlinear loop"} <= set(rows)
    for name, cells in rows.items():
        if name == "method":
            continue
        assert float(cells[0]) > 0 and cells[5] == "0", (name, cells)  # seconds, host ops
        if name in ("smoothgrad", "vargrad", "integrated_gradients", "nonlinear loop"):
            assert cells[6] == "yes", name  # the device path ran
    assert "host round trips left in traced functions: 0" in out
    assert devices.device_loops is switch  # restored
