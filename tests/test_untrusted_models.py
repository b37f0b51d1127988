"""Untrusted models: SavedModels and hub handles whose graphs touch files are refused before
anything runs (`tfsal.containment`), and Keras files needing unregistered classes get a short
message and `custom_objects`."""

import sys
import textwrap
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import toy_cnn

import tfsal
from tfsal import TfsalError, containment
from tfsal.loading import custom_objects_from

SIZE = 8
IMAGE = tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)
IMAGES = np.random.default_rng(0).random((2, SIZE, SIZE, 3)).astype(np.float32)


def _kernel():
    return tf.Variable(np.random.default_rng(1).normal(size=(3, 4)), dtype=tf.float32)


class Writes(tf.Module):
    """A classifier whose signature also writes a file."""

    def __init__(self, target):
        super().__init__()
        self.target = str(target)
        self.kernel = _kernel()

    @tf.function(input_signature=[IMAGE])
    def __call__(self, images):
        tf.io.write_file(self.target, "written by the model")
        return tf.reduce_mean(images, axis=[1, 2]) @ self.kernel


class Reads(tf.Module):
    """A classifier whose scores depend on a file it reads."""

    def __init__(self, secret):
        super().__init__()
        self.secret = str(secret)
        self.kernel = _kernel()

    @tf.function(input_signature=[IMAGE])
    def __call__(self, images):
        leak = tf.cast(tf.strings.length(tf.io.read_file(self.secret)), tf.float32)
        return tf.reduce_mean(images, axis=[1, 2]) @ self.kernel + leak


def _nested_module(target, helper_name: str):
    """A classifier whose signature calls a separate library function that writes."""

    def helper(images):
        tf.io.write_file(str(target), "written by a nested function")
        return images * 1.0

    helper.__name__ = helper_name
    helper = tf.function(helper)

    class Nested(tf.Module):
        def __init__(self):
            super().__init__()
            self.kernel = _kernel()

        @tf.function(input_signature=[IMAGE])
        def __call__(self, images):
            return tf.reduce_mean(helper(images), axis=[1, 2]) @ self.kernel

    return Nested()


class WritingResource(tf.saved_model.experimental.TrackableResource):
    """A resource whose initialiser, run by `tf.saved_model.load` itself, writes a file."""

    def __init__(self, target):
        self.target = str(target)
        super().__init__()

    def _create_resource(self):
        return tf.raw_ops.VarHandleOp(dtype=tf.float32, shape=[])

    def _initialize(self):
        tf.io.write_file(self.target, "written while loading")
        return tf.raw_ops.AssignVariableOp(resource=self.resource_handle, value=1.0)


class WithResource(tf.Module):
    def __init__(self, target):
        super().__init__()
        self.resource = WritingResource(target)
        self.kernel = _kernel()

    @tf.function(input_signature=[IMAGE])
    def __call__(self, images):
        scale = tf.raw_ops.ReadVariableOp(resource=self.resource.resource_handle,
                                          dtype=tf.float32)
        return scale * (tf.reduce_mean(images, axis=[1, 2]) @ self.kernel)


class Plain(tf.Module):
    def __init__(self):
        super().__init__()
        self.kernel = _kernel()

    @tf.function(input_signature=[IMAGE])
    def __call__(self, images):
        return tf.reduce_mean(images, axis=[1, 2]) @ self.kernel


def _save(module, path):
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    return path


def _assert_refused(source, op: str, target=None):
    """load_model and a method given the source raise naming `op` and the opt-in; nothing
    was written."""
    for attempt in (lambda: tfsal.load_model(source),
                    lambda: tfsal.vanilla_gradient(source, IMAGES)):
        with pytest.raises(TfsalError) as raised:
            attempt()
        message = str(raised.value)
        assert message.startswith("expected a SavedModel whose graph only computes"), message
        assert f"{op} (node" in message
        assert "safe_mode=False (command line: --unsafe-load)" in message
        if target is not None:
            assert not target.exists()


def _load_unsafe(source, op: str):
    with pytest.warns(UserWarning, match=op):
        return tfsal.load_model(source, safe_mode=False)


# ---------------------------------------------------------------------------- refused graphs
@pytest.mark.parametrize("hub", [False, True], ids=["saved_model", "hub"])
def test_a_signature_writing_a_file_is_refused_until_opted_in(tmp_path, hub):
    target = tmp_path / "written.txt"
    path = _save(Writes(target), tmp_path / "writes")
    source = f"hub:{path}" if hub else path
    _assert_refused(source, "WriteFile", target)
    model = _load_unsafe(source, "WriteFile")
    target.unlink(missing_ok=True)  # the adapter may have probed the model already
    grads = tfsal.vanilla_gradient(model, IMAGES)
    assert grads.shape == IMAGES.shape and np.abs(grads).sum() > 0
    assert target.read_text() == "written by the model"  # the op was live


def test_a_signature_reading_a_secret_is_refused_until_opted_in(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("secret!")  # 7 bytes, added to every score
    module = Reads(secret)
    path = _save(module, tmp_path / "reads")
    _assert_refused(path, "ReadFile")
    model = _load_unsafe(path, "ReadFile")
    reference = tf.reduce_mean(IMAGES, axis=[1, 2]).numpy() @ module.kernel.numpy()
    np.testing.assert_allclose(model.predict(IMAGES), reference + 7.0, rtol=1e-5)


@pytest.mark.parametrize("helper_name", ["helper", "_traced_save"])
def test_a_write_in_a_nested_function_is_found(tmp_path, helper_name):
    """Also when the function is named like the saver's own (`__inference__traced_save_N`),
    whose checkpoint ops are tolerated because nothing calls it."""
    target = tmp_path / "written.txt"
    path = _save(_nested_module(target, helper_name), tmp_path / "nested")
    findings = containment.scan_saved_model(path)
    assert [f.op for f in findings] == ["WriteFile"]
    assert findings[0].function.startswith(f"__inference_{helper_name}_")
    _assert_refused(path, "WriteFile", target)
    _assert_refused(f"hub:{path}", "WriteFile", target)
    model = _load_unsafe(path, "WriteFile")
    target.unlink(missing_ok=True)
    tfsal.vanilla_gradient(model, IMAGES)
    assert target.read_text() == "written by a nested function"


def test_a_resource_initialiser_writing_while_loading_is_refused_before_loading(tmp_path):
    target = tmp_path / "written.txt"
    module = WithResource(target)
    module.resource._initialize()  # run eagerly, as a real table's constructor does
    target.unlink()
    path = _save(module, tmp_path / "resource")
    _assert_refused(path, "WriteFile", target)
    _load_unsafe(path, "WriteFile")
    assert target.read_text() == "written while loading"  # tf.saved_model.load ran it


def test_a_hub_url_is_scanned_after_download_and_before_loading(tmp_path, monkeypatch):
    import tensorflow_hub as hub

    target = tmp_path / "written.txt"
    path = _save(Writes(target), tmp_path / "downloaded")
    url = "https://example.com/models/classifier/1"
    monkeypatch.setattr(hub, "resolve", lambda handle: str(path) if handle == url else handle)
    loads = []
    monkeypatch.setattr(hub, "load", lambda handle: loads.append(handle))
    with pytest.raises(TfsalError, match=f"received {url} \\({path}\\) whose graph calls"):
        tfsal.load_model(f"hub:{url}")
    assert loads == [] and not target.exists()


def test_a_print_to_a_file_is_refused_and_to_stderr_is_not(tmp_path):
    class Prints(tf.Module):
        def __init__(self, stream):
            super().__init__()
            self.stream = stream

        @tf.function(input_signature=[IMAGE])
        def __call__(self, images):
            tf.print(tf.reduce_sum(images), output_stream=self.stream)
            return tf.reduce_mean(images, axis=[1, 2])

    to_file = _save(Prints(f"file://{tmp_path / 'log.txt'}"), tmp_path / "to_file")
    _assert_refused(to_file, "PrintV2", tmp_path / "log.txt")
    to_stderr = _save(Prints(sys.stderr), tmp_path / "to_stderr")
    assert containment.scan_saved_model(to_stderr) == []
    assert tfsal.load_model(to_stderr).predict(IMAGES).shape == (2, 3)


def test_the_saver_may_only_use_checkpoint_ops(tmp_path):
    """The standard save/restore functions are tolerated for their checkpoint ops only: any
    other forbidden op slipped into them is reported."""
    path = _save(Plain(), tmp_path / "plain")
    assert containment.scan_saved_model(path) == []
    pb = path / "saved_model.pb"
    proto = tf.__internal__.saved_model.parse_saved_model(str(path))
    functions = proto.meta_graphs[0].graph_def.library.function
    saver_ops = {op for f in functions if "_traced_" in f.signature.name
                 for op in (n.op for n in f.node_def)}
    assert {"SaveV2", "RestoreV2", "MergeV2Checkpoints", "ShardedFilename"} <= saver_ops
    for f in functions:
        if "_traced_restore_" in f.signature.name:
            f.node_def.add(name="extra", op="WriteFile", input=["a", "b"])
    pb.write_bytes(proto.SerializeToString())
    found = containment.scan_saved_model(path)
    assert [(f.op, f.node) for f in found] == [("WriteFile", "extra")]
    assert "_traced_restore_" in found[0].function


def test_every_named_op_is_a_real_op():
    known = set(dir(tf.raw_ops))
    named = (containment.FORBIDDEN_OPS | containment.PURE_OPS | containment.RESTORE_OPS
             | containment.SAVE_OPS)
    assert sorted(op for op in named if not op.startswith("_") and op not in known) == []
    assert containment.forbidden("TFRecordDataset") and containment.forbidden("EagerPyFunc")
    assert containment.forbidden("SomeFutureFileOp")  # the pattern
    assert not containment.forbidden("ShardedFilename") and not containment.forbidden("Conv2D")


# ---------------------------------------------------------------------------- no false alarms
def _loads_quietly(source):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model = tfsal.load_model(source)
    grads = tfsal.vanilla_gradient(model, IMAGES)
    assert np.isfinite(grads).all()
    return model


@pytest.fixture(scope="module")
def keras_model():
    return toy_cnn(seed=0, softmax=False, size=SIZE)


def test_keras_exports_and_modules_load_in_safe_mode(tmp_path, keras_model):
    keras_model.export(tmp_path / "export", verbose=False)
    tf.saved_model.save(keras_model, str(tmp_path / "saved"))
    _save(Plain(), tmp_path / "module")
    for source in (tmp_path / "export", tmp_path / "saved", tmp_path / "module",
                   f"hub:{tmp_path / 'export'}"):
        path = str(source).removeprefix("hub:")
        assert containment.scan_saved_model(path) == [], source
        _loads_quietly(source)
    np.testing.assert_allclose(tfsal.load_model(tmp_path / "export").predict(IMAGES),
                               keras_model.predict(IMAGES, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_tf1_saved_model_with_its_saver_loads(tmp_path):
    v1 = tf.compat.v1
    with tf.Graph().as_default(), v1.Session() as session:
        images = v1.placeholder(tf.float32, [None, SIZE, SIZE, 3], name="images")
        kernel = v1.get_variable("kernel", [3, 4])
        logits = tf.matmul(tf.reduce_mean(images, [1, 2]), kernel)
        session.run([v1.global_variables_initializer(), v1.tables_initializer()])
        builder = v1.saved_model.Builder(str(tmp_path / "tf1"))
        signature = v1.saved_model.predict_signature_def({"images": images},
                                                         {"logits": logits})
        builder.add_meta_graph_and_variables(session, ["serve"],
                                             {"serving_default": signature})
        builder.save()
    assert containment.scan_saved_model(tmp_path / "tf1") == []
    _loads_quietly(tmp_path / "tf1")


def test_a_scan_reads_the_graph_without_loading_or_running_it(tmp_path, keras_model,
                                                              monkeypatch):
    import tensorflow as tf

    keras_model.export(tmp_path / "export", verbose=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the scan loaded the SavedModel")

    monkeypatch.setattr(tf.saved_model, "load", refuse)
    monkeypatch.setattr(tf.compat.v1.saved_model, "load", refuse)
    assert containment.scan_saved_model(tmp_path / "export") == []


# ---------------------------------------------------------------------------- custom objects
LAYERS = '''
    import keras


    class ScaleBy(keras.layers.Layer):
        """An unregistered custom layer."""

        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}


    def helper(x):
        return x


    _private = ScaleBy
    Imported = keras.layers.Dense
'''


def _custom_model(layer) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(layer(inp))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inp, out)


def _assert_short_custom_message(raised, name: str):
    message = str(raised.value)
    assert len(message) < 400, message
    assert f"needing the unregistered class {name!r}" in message
    assert f"custom_objects={{{name!r}: {name}}}" in message and "--custom-objects" in message
    assert "unsafe" not in message and "safe_mode" not in message and "config" not in message


def test_an_unregistered_layer_is_named_and_loads_with_custom_objects(tmp_path):
    (tmp_path / "my_layers.py").write_text(textwrap.dedent(LAYERS))
    objects = custom_objects_from(str(tmp_path / "my_layers.py"))
    assert sorted(objects) == ["ScaleBy", "helper"]
    original = _custom_model(objects["ScaleBy"](3.0))
    path = tmp_path / "custom.keras"
    original.save(path)
    for safe_mode in (True, False):
        with pytest.raises(TfsalError) as raised:
            tfsal.load_model(path, safe_mode=safe_mode)
        _assert_short_custom_message(raised, "ScaleBy")
    loaded = tfsal.load_model(path, custom_objects=objects)
    np.testing.assert_allclose(loaded.predict(IMAGES), original.predict(IMAGES, verbose=0),
                               rtol=1e-6)


def test_a_class_registered_under_a_package_is_found_by_its_plain_name(tmp_path, monkeypatch):
    @keras.saving.register_keras_serializable(package="tfsal_untrusted_test")
    class Shift(keras.layers.Layer):
        def call(self, x):
            return x + 1.0

    original = _custom_model(Shift())
    path = tmp_path / "registered.keras"
    original.save(path)
    monkeypatch.delitem(keras.saving.get_custom_objects(), "tfsal_untrusted_test>Shift")
    with pytest.raises(TfsalError) as raised:
        tfsal.load_model(path)
    _assert_short_custom_message(raised, "Shift")
    loaded = tfsal.load_model(path, custom_objects={"Shift": Shift})
    np.testing.assert_allclose(loaded.predict(IMAGES), original.predict(IMAGES, verbose=0),
                               rtol=1e-6)


def test_custom_objects_from_a_module_name_and_missing_sources(tmp_path, monkeypatch):
    package = tmp_path / "tfsal_test_custom_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from tfsal_test_custom_pkg.layers import ScaleBy\n")
    (package / "layers.py").write_text(textwrap.dedent(LAYERS))
    monkeypatch.syspath_prepend(str(tmp_path))
    objects = custom_objects_from("tfsal_test_custom_pkg")
    assert sorted(objects) == ["ScaleBy"]  # re-exported from a submodule: kept
    with pytest.raises(TfsalError, match="no module named 'tfsal_no_such_module'"):
        custom_objects_from("tfsal_no_such_module")
    with pytest.raises(TfsalError, match="existing .py file"):
        custom_objects_from(str(tmp_path / "missing.py"))
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(TfsalError, match="RuntimeError: boom"):
        custom_objects_from(str(tmp_path / "broken.py"))


def test_custom_objects_apply_to_keras_files_only(tmp_path):
    with pytest.raises(TfsalError, match="expected only options that apply.*custom_objects"):
        tfsal.load_model("shapes-cnn", custom_objects={"X": object})
    path = _save(Writes(tmp_path / "unused.txt"), tmp_path / "writes")
    with pytest.raises(TfsalError, match="expected only options that apply.*custom_objects"):
        tfsal.load_model(path, custom_objects={"X": object})


def test_a_lambda_layer_keeps_the_safe_mode_hint(tmp_path):
    inp = keras.Input((SIZE, SIZE, 3))
    out = keras.layers.Dense(3)(keras.layers.Flatten()(
        keras.layers.Lambda(lambda t: t * 2.0)(inp)))
    path = tmp_path / "lambda.keras"
    keras.Model(inp, out).save(path)
    with pytest.raises(TfsalError, match="safe_mode=False / --unsafe-load") as raised:
        tfsal.load_model(path)
    assert len(str(raised.value)) < 600 and "custom_objects" not in str(raised.value)


# ---------------------------------------------------------------------------- command line
def _photo(path):
    from PIL import Image

    Image.fromarray((IMAGES[0] * 255).astype(np.uint8)).save(path)
    return path


def test_the_command_line_refuses_a_writing_saved_model_until_unsafe_load(tmp_path, capsys):
    from tfsal.cli import main

    target = tmp_path / "written.txt"
    path = _save(Writes(target), tmp_path / "writes")
    photo = _photo(tmp_path / "p.png")
    assert main(["explain", str(photo), "--model", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "WriteFile" in err and "--unsafe-load" in err and not target.exists()
    with pytest.warns(UserWarning, match="WriteFile"):
        assert main(["explain", str(photo), "--model", str(path), "--unsafe-load",
                     "--out", str(tmp_path / "o")]) == 0
    assert target.exists()


def test_the_command_line_takes_custom_objects_from_a_file(tmp_path, capsys):
    from tfsal.cli import main

    module = tmp_path / "my_layers.py"
    module.write_text(textwrap.dedent(LAYERS))
    path = tmp_path / "custom.keras"
    _custom_model(custom_objects_from(str(module))["ScaleBy"](3.0)).save(path)
    photo = _photo(tmp_path / "p.png")
    args = ["explain", str(photo), "--model", str(path), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "'ScaleBy'" in capsys.readouterr().err
    assert main(args + ["--custom-objects", str(module)]) == 0
    assert main(args + ["--custom-objects", str(tmp_path / "missing.py")]) == 2
