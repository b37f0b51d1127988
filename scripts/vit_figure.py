"""The embedded ViT explained by each attention method (README figure), and how much of each
map's mass falls on the object, beside the CNN's methods.

    .venv/bin/python scripts/vit_figure.py [--n-images 100] [--out docs/figures]

Images: the first `--n-images` held-out shapes images (seed 2, never used in training);
targets: each model's predicted class. mass inside = share of a map's absolute mass inside the
object mask (`tfsal.metrics.mass_inside`), patch-grid maps (attention, CAM family) first
upsampled bilinearly to 64×64 (`tfsal.visualize.upsample`); "uniform" is a constant map, i.e.
the object's share of the image. Prints a Markdown table (mean over the images) and writes
shapes_vit_attention.png (the first six images).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import tfsal
from tfsal import visualize
from tfsal.data import make_dataset
from tfsal.metrics import mass_inside

VIT_METHODS = {"raw attention (last layer)": ("attention_map", {}),
               "attention rollout": ("attention_rollout", {}),
               "gradient-weighted rollout": ("gradient_rollout", {}),
               "token Grad-CAM": ("token_grad_cam", {}),
               "vanilla gradient": ("vanilla_gradient", {}),
               "integrated gradients": ("integrated_gradients", {"steps": 32})}
CNN_METHODS = {"vanilla gradient": ("vanilla_gradient", {}),
               "integrated gradients": ("integrated_gradients", {"steps": 32}),
               "Grad-CAM": ("grad_cam", {}),
               "Guided Backprop": ("guided_backprop", {}),
               "RectGrad": ("rectgrad", {})}
SHOWN = 6


def _method(name):
    from tfsal import methods

    return getattr(methods, name)


def _pixel_maps(maps, size):
    return visualize.upsample(maps, size) if maps.ndim == 3 else maps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("docs/figures"))
    args = parser.parse_args()
    data = make_dataset(args.n_images, seed=2)
    uniform = float(mass_inside(np.ones(data.masks.shape), data.masks).mean())
    rows = [("uniform map", "—", uniform, "—")]
    panels = [[(image * 255).round().astype(np.uint8)] for image in data.images[:SHOWN]]
    for model_name, table in (("shapes-vit", VIT_METHODS), ("shapes-cnn", CNN_METHODS)):
        model = tfsal.load_model(model_name)
        predicted = model.predicted_classes(data.images)
        accuracy = float(np.mean(predicted == data.labels))
        for title, (name, options) in table.items():
            start = time.time()
            maps = _method(name)(model, data.images, predicted, **options)
            inside = mass_inside(_pixel_maps(maps, data.images.shape[1:3]), data.masks)
            rows.append((title, model_name, float(np.nanmean(inside)), f"{accuracy:.2f}"))
            print(f"{model_name} {title}: {np.nanmean(inside):.3f} "
                  f"({time.time() - start:.1f}s)", flush=True)
            if model_name == "shapes-vit":
                for i in range(SHOWN):
                    panels[i].append(visualize.render(data.images[i], maps[i]))
        if model_name == "shapes-vit":
            vit_predicted = predicted
    titles = [f"{data.class_names[data.labels[i]]} -> {data.class_names[vit_predicted[i]]}"
              for i in range(SHOWN)]
    sheet = visualize.grid(panels, row_titles=titles, col_titles=["image", *VIT_METHODS],
                           scale=3)
    args.out.mkdir(parents=True, exist_ok=True)
    path = visualize.save_png(sheet, args.out / "shapes_vit_attention.png")
    print(f"wrote {path}")
    print(f"\n| map | model | mass inside the object (mean of {args.n_images}) | "
          f"model accuracy on them |\n|---|---|---|---|")
    for title, model_name, value, accuracy in rows:
        print(f"| {title} | {model_name} | {value:.3f} | {accuracy} |")


if __name__ == "__main__":
    main()
