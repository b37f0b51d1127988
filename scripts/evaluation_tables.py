"""Regenerate the retraining and invariance tables (ROAR/KAR, random patch, input shift).

    .venv/bin/python scripts/evaluation_tables.py [--out tables.md] [--only roar patch shift]

Reduced sizes (the defaults) fit about an hour of two shared CPU cores; every size is a flag.
ROAR/KAR and the random patch run at 32×32 (the CIFAR size of the RectGrad experiments; the
plain shapes CNN needs ~500 steps to leave its initial plateau and ~2000 to be useful, which
at 64×64 would not fit ~76 retrainings into the budget): the embedded architecture
(`build_shapes_cnn(input_size=32)`) is trained on 32×32 shapes for the maps and retrained
for every (method, fraction, mode). The input-shift table uses the shipped 64×64 models.
Methods follow the RectGrad authors' settings: SmoothGrad σ = 0.1·(max − min) with 50
samples, IG with 50 steps, a black baseline and a right Riemann sum, DeepLIFT (Rescale) from
black, RectGrad q = 98 with its zero threshold, explaining the predicted class's logit.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import tfsal
from tfsal.data import CLASS_NAMES, make_dataset
from tfsal.experiments import TrainingRecipe, random_patch_experiment, roar_kar
from tfsal.metrics import input_shift_invariance
from tfsal.zoo import build_shapes_cnn, build_shapes_resnet, train_classifier
from tfsal.zoo.training import accuracy

PUBLISHED = {  # RectGrad paper, Table 1 (CIFAR-10): ROAR AUC, KAR AOC
    "random": (0.5562, 0.4438), "rectgrad": (0.5385, 0.3382), "saliency": (0.5568, 0.4455),
    "guided_backprop": (0.5504, 0.4270), "smoothgrad": (0.5536, 0.4444),
    "gradient_x_input": (0.5408, 0.4176), "integrated_gradients": (0.5428, 0.4185),
    "deeplift": (0.5519, 0.3928),
}
# label -> registry name; "saliency" is the RectGrad paper's name for the vanilla gradient.
RANKED = {"saliency": "vanilla", "gradient_x_input": "gradient_x_input",
          "guided_backprop": "guided_backprop", "smoothgrad": "smoothgrad",
          "integrated_gradients": "integrated_gradients", "deeplift": "deeplift",
          "rectgrad": "rectgrad"}
SETTINGS = {"smoothgrad": {"n_samples": 50, "noise_level": 0.1, "seed": 0},
            "integrated_gradients": {"steps": 50, "schedule": "right", "baseline": "black"},
            "deeplift": {"baseline": "black"}}


def roar_table(args) -> str:
    train = make_dataset(args.n_train, size=args.size, seed=1)
    test = make_dataset(args.n_test, size=args.size, seed=2)
    t0 = time.time()
    build = {"cnn": build_shapes_cnn, "resnet": build_shapes_resnet}[args.roar_arch]
    if args.roar_model == "train":  # the original model: same data, a longer run
        saved = (Path(args.checkpoint).with_suffix(".map.weights.h5") if args.checkpoint
                 else None)
        if saved is not None and saved.exists():  # resuming: the same model, not retrained
            keras_model = build(num_classes=len(CLASS_NAMES), input_size=args.size)
            keras_model.load_weights(saved)
        else:
            keras_model = train_classifier(train.images, train.labels, build=build,
                                           epochs=args.map_epochs, num_classes=len(CLASS_NAMES),
                                           batch_size=args.batch_size, seed=100, progress=True)
            if saved is not None:
                keras_model.save_weights(saved)
        model = tfsal.Model(keras_model, preprocess="tf", class_names=CLASS_NAMES,
                            name=f"{build.__name__}_{args.size}px")
        about = (f"`{build.__name__}({args.size})` trained on the same images for "
                 f"{args.map_epochs} epochs (seed 100, test accuracy "
                 f"{accuracy(keras_model, test.images, test.labels):.3f})")
    else:
        model, about = args.roar_model, f"`{args.roar_model}`"
    recipe = TrainingRecipe(epochs=args.epochs, build=build, batch_size=args.batch_size)
    result = roar_kar(RANKED, train=train, test=test, trainer=recipe,
                      repeats=args.repeats, model=model,
                      method_kwargs={k: v for k, v in SETTINGS.items() if k in RANKED},
                      seed=0, checkpoint=args.checkpoint, progress=True)
    seconds = time.time() - t0
    lines = [f"### ROAR / KAR ({args.size}×{args.size} shapes, retrained "
             f"`{build.__name__}`)", "",
             f"Maps: {about}. {args.n_train} training / {args.n_test} test images (streams "
             f"1 / 2), retraining {args.epochs} epochs, batch {args.batch_size}, "
             f"{args.repeats} repeat(s); retrained on clean data "
             f"{np.mean(result.clean_accuracy):.3f} (= 0 % removed); chance "
             f"{result.chance_accuracy:.3f} (= 100 % removed); {seconds / 60:.0f} min.", "",
             "| method | " + " | ".join(f"ROAR {p:.0%}" for p in result.fractions) + " | "
             + " | ".join(f"KAR {p:.0%}" for p in result.fractions)
             + " | ROAR AUC | KAR AOC | paper AUC | paper AOC |",
             "|---" * (2 * len(result.fractions) + 5) + "|"]
    for i, label in enumerate(result.methods):
        roar = " | ".join(f"{v:.3f}" for v in result.roar[i].mean(axis=-1))
        kar = " | ".join(f"{v:.3f}" for v in result.kar[i].mean(axis=-1))
        auc, aoc = PUBLISHED.get(label, (np.nan, np.nan))
        lines.append(f"| {label} | {roar} | {kar} | {result.roar_auc[i]:.4f} | "
                     f"{result.kar_aoc[i]:.4f} | {auc:.4f} | {aoc:.4f} |")
    if result.mirrored_random:
        lines += ["", "Random KAR at p reuses random ROAR at 1 − p (same distribution), so "
                      "its AUC + AOC = 1 as in the paper."]
    raw = {"methods": result.methods, "fractions": result.fractions.tolist(),
           "roar": result.roar.tolist(), "kar": result.kar.tolist(),
           "clean_accuracy": result.clean_accuracy.tolist(),
           "chance_accuracy": result.chance_accuracy, "settings": result.settings}
    return "\n".join(lines) + "\n\n<!-- raw: " + json.dumps(raw) + " -->\n"


def patch_table(args) -> str:
    methods = dict(RANKED, rectgrad_prr="rectgrad")
    kwargs = {k: v for k, v in SETTINGS.items() if k in methods}
    kwargs["rectgrad_prr"] = {"prr": True}
    t0 = time.time()
    result = random_patch_experiment(methods, n_train=args.patch_n_train,
                                     n_eval=args.patch_n_eval,
                                     trainer=TrainingRecipe(epochs=args.patch_epochs,
                                                            batch_size=args.batch_size,
                                                            progress=True),
                                     size=args.size,
                                     method_kwargs=kwargs, control=True, seed=0,
                                     progress=True)
    seconds = time.time() - t0
    lines = ["### Random patch (10×10 noise, scored top-left 8×8)", "",
             f"`build_shapes_cnn({args.size})` trained on {args.patch_n_train} patched "
             f"{args.size}×{args.size} images, "
             f"{args.patch_epochs} epochs, batch {args.batch_size}: accuracy on "
             f"{args.patch_n_eval} patched test images {result.accuracy:.3f}; control "
             f"(clean data and test images) {result.control_accuracy:.3f}; "
             f"{seconds / 60:.0f} min. Baselines with the 95th-percentile final threshold, "
             "RectGrad with its zero threshold. `sum`: the paper's score (units differ by "
             "method); `fraction`: share of |map| in the 8×8 after those thresholds; `raw "
             "fraction`: the same share without any threshold (the square is "
             f"{64 / args.size ** 2:.2%} of the pixels). Control: the same recipe on clean "
             "images, scored on clean test images.", "",
             "| method | sum q25 / median / q75 | fraction q25 / median / q75 | raw fraction "
             "q25 / median / q75 | control raw fraction median |", "|---" * 5 + "|"]
    for label, row in result.summary().items():
        s, f, r = row["sum"], row["fraction"], row["raw_fraction"]
        lines.append(f"| {label} | {s[0]:.3g} / {s[1]:.3g} / {s[2]:.3g} | {f[0]:.4f} / "
                     f"{f[1]:.4f} / {f[2]:.4f} | {r[0]:.4f} / {r[1]:.4f} / {r[2]:.4f} | "
                     f"{row['control_raw_fraction'][1]:.4f} |")
    return "\n".join(lines) + "\n"


def shift_table(args) -> str:
    images = make_dataset(args.shift_n, seed=777).images
    methods = {"vanilla": ("vanilla", {}), "gradient_x_input": ("gradient_x_input", {}),
               "integrated_gradients (black)": ("integrated_gradients", {"baseline": "black"}),
               "integrated_gradients (white)": ("integrated_gradients", {"baseline": "white"}),
               "smoothgrad (seed 0)": ("smoothgrad", {"n_samples": 20, "seed": 0}),
               "guided_backprop": ("guided_backprop", {}), "deconvnet": ("deconvnet", {}),
               "rectgrad": ("rectgrad", {}), "deeplift (black)": ("deeplift", {}),
               "grad_cam": ("grad_cam", {}), "cam": ("cam", {})}
    out = []
    for name in args.shift_models:
        model = tfsal.load_model(name)
        plain = input_shift_invariance(model, images, "vanilla", args.shift,
                                       border_correction=False)
        lines = [f"### Input shift +{args.shift} per channel ({name}, {len(images)} images)",
                 "", f"Compensated copy vs original, logits: max |Δ| "
                 f"{{exact}} with the border correction, {plain.logit_error.max():.3g} with "
                 f"the plain bias compensation (logits up to {plain.logit_scale.max():.3g}); "
                 f"plain compensation moves vanilla-gradient maps by a median "
                 f"{np.median(plain.relative_l2):.3f} relative L2.", "",
                 "| method | relative L2 median | relative L2 max | max abs Δ / max abs map "
                 "| invariant (≤ 1e-2) |", "|---" * 5 + "|"]
        exact = 0.0
        for label, (method, kwargs) in methods.items():
            r = input_shift_invariance(model, images, method, args.shift,
                                       method_kwargs=kwargs)
            exact = max(exact, float(r.logit_error.max()))
            ratio = np.max(r.max_abs_difference / np.maximum(r.map_scale, 1e-30))
            lines.append(f"| {label} | {np.median(r.relative_l2):.2e} | "
                         f"{r.relative_l2.max():.2e} | {ratio:.2e} | "
                         f"{'yes' if r.invariant else 'no'} |")
        lines[2] = lines[2].replace("{exact}", f"{exact:.2g}")
        out.append("\n".join(lines) + "\n")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=("roar", "patch", "shift"),
                        default=("shift", "patch", "roar"))
    parser.add_argument("--out", help="also write the markdown to this file")
    parser.add_argument("--size", type=int, default=32, help="image side for ROAR and patch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--roar-model", default="train",
                        help="'train' (a longer run on the same data) or a model name/path "
                             "for the maps (e.g. shapes-cnn with --size 64)")
    parser.add_argument("--map-epochs", type=int, default=30)
    parser.add_argument("--checkpoint", help="JSON file to resume an interrupted ROAR/KAR run")
    parser.add_argument("--roar-arch", choices=("cnn", "resnet"), default="cnn",
                        help="architecture of the map model and of every retrained model")
    parser.add_argument("--patch-n-train", type=int, default=8000)
    parser.add_argument("--patch-n-eval", type=int, default=200)
    parser.add_argument("--patch-epochs", type=int, default=10)
    parser.add_argument("--shift", type=float, default=0.1)
    parser.add_argument("--shift-n", type=int, default=32)
    parser.add_argument("--shift-models", nargs="+", default=("shapes-cnn", "shapes-resnet"))
    args = parser.parse_args()
    parts = {"shift": shift_table, "patch": patch_table, "roar": roar_table}
    text = "\n".join(parts[name](args) for name in ("shift", "patch", "roar")
                     if name in args.only)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)


if __name__ == "__main__":
    main()
