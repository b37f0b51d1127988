"""One-off check: tfsal's Keras EfficientNet-Lite0 against a PyTorch reference of the same weights.

    .venv/bin/python scripts/compare_efficientnet_lite_torch.py [--torch-python PATH]

torch is not a dependency of tfsal: it lives in a separate virtual environment, e.g.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch numpy

This script runs twice. In tfsal's environment it loads "efficientnet-lite0" (converting the
.pth without torch), preprocesses the bundled photos (224², center-cropped) and a few random
images, and takes the Keras logits; then it runs itself under --torch-python with
``--torch-side``, which loads the same .pth with `torch.load` (independently of tfsal's reader),
runs a reference forward pass written in plain torch ops after the port's architecture
(ml-illustrated/EfficientNet-Lite-PyTorch: Conv2dStaticSamePadding = TensorFlow SAME padding,
BN ε 1e-3, ReLU6, no squeeze-excitation, skip where stride 1 and width kept), and returns its
logits and state dict. It prints the largest differences (target: relative ≤ 1e-4).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
BN_EPS = 1e-3


# ------------------------------------------------------------------------------ torch side
def torch_side(pth: str, inputs: str, out: str) -> None:
    import torch
    import torch.nn.functional as F

    state = torch.load(pth, map_location="cpu", weights_only=True)

    def same_pad(x, kernel, stride):
        """The port's Conv2dStaticSamePadding: pad so the output is ceil(size / stride),
        half (rounded down) before, the rest after."""
        h, w = x.shape[-2:]
        pad_h = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
        pad_w = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
        return F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])

    def conv(x, key, stride=1, groups=1):
        weight = state[key]
        x = same_pad(x, weight.shape[-1], stride)
        return F.conv2d(x, weight, None, stride, 0, 1, groups)

    def bn(x, prefix):
        return F.batch_norm(x, state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"],
                            state[f"{prefix}.weight"], state[f"{prefix}.bias"], False, 0.0,
                            BN_EPS)

    def forward(x):
        x = F.relu6(bn(conv(x, "_conv_stem.weight", 2), "_bn0"))
        index, width = 0, 32
        for repeats, _kernel, stride, expand, output in STAGES:
            for r in range(repeats):
                p = f"_blocks.{index}"
                s = stride if r == 0 else 1
                y = x
                if expand != 1:
                    y = F.relu6(bn(conv(y, f"{p}._expand_conv.weight"), f"{p}._bn0"))
                y = F.relu6(bn(conv(y, f"{p}._depthwise_conv.weight", s, groups=y.shape[1]),
                               f"{p}._bn1"))
                y = bn(conv(y, f"{p}._project_conv.weight"), f"{p}._bn2")
                if s == 1 and width == output:
                    y = y + x
                x, width, index = y, output, index + 1
        x = F.relu6(bn(conv(x, "_conv_head.weight"), "_bn1"))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return F.linear(x, state["_fc.weight"], state["_fc.bias"])  # dropout: identity in eval

    with np.load(inputs) as data:
        x = torch.from_numpy(data["x"]).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    with torch.no_grad():
        logits = forward(x).numpy()
    np.savez(out, logits=logits, **{f"state/{k}": v.numpy() for k, v in state.items()})


# ------------------------------------------------------------------------------ tfsal side
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default="/tmp/torchenv/bin/python")
    parser.add_argument("--torch-side", nargs=3, metavar=("PTH", "INPUTS", "OUT"))
    args = parser.parse_args()
    if args.torch_side:
        torch_side(*args.torch_side)
        return 0

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tfsal
    from tfsal.zoo import efficientnet_lite
    from tfsal.zoo.photos import sample_photos

    model = tfsal.load_model("efficientnet-lite0")
    photos = sample_photos(size=224)
    noise = np.random.default_rng(0).random((3, 224, 224, 3)).astype(np.float32)
    images = np.concatenate([np.stack(list(photos.values())), noise])
    names = [*photos, "random0", "random1", "random2"]
    keras_logits = model.predict(images, score="logit")
    x = np.asarray(efficientnet_lite.preprocess(images), np.float32)
    pth = efficientnet_lite.pth_path()
    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = Path(tmp) / "inputs.npz", Path(tmp) / "out.npz"
        np.savez(inputs, x=x)
        subprocess.run([args.torch_python, __file__, "--torch-side", str(pth), str(inputs),
                        str(out)], check=True)
        with np.load(out) as data:
            torch_logits = data["logits"]
            torch_state = {k[len("state/"):]: data[k] for k in data.files
                           if k.startswith("state/")}

    ours = efficientnet_lite.read_legacy_state_dict(pth)
    same = set(ours) == set(torch_state) and all(
        ours[k].dtype == torch_state[k].dtype and np.array_equal(ours[k], torch_state[k])
        for k in ours)
    print(f"tfsal's reader vs torch.load: {len(ours)} entries, "
          f"{'bit-identical' if same else 'DIFFERENT'}")
    classes = model.class_names
    worst = 0.0
    for name, ka, ta in zip(names, keras_logits, torch_logits):
        diff = np.abs(ka - ta)
        relative = float(diff.max() / np.abs(ta).max())
        worst = max(worst, relative)
        print(f"{name:14s} max |Δlogit| {diff.max():.3e}  relative {relative:.3e}  top-1 keras "
              f"{classes[ka.argmax()]}, torch {classes[ta.argmax()]}")
    elementwise = np.abs(keras_logits - torch_logits) / np.maximum(np.abs(torch_logits), 1.0)
    print(f"max relative difference (max |Δ| / max |logit| per image): {worst:.3e}")
    print(f"max elementwise |Δ| / max(|logit|, 1): {elementwise.max():.3e}")
    ok = same and worst <= 1e-4 and np.array_equal(keras_logits.argmax(1),
                                                   torch_logits.argmax(1))
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
