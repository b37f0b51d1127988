"""Measure RectGrad's threshold sweep on the embedded model: `python scripts/rectgrad_sweep.py`."""

import argparse

import numpy as np

import tfsal
from tfsal.data import make_dataset
from tfsal.loading import load_model
from tfsal.metrics import mass_inside, nonzero_fraction
from tfsal.reproduce.rectified_gradient import sweep_table, threshold_sweep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-images", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2, help="data seed (2 = held-out test set)")
    args = parser.parse_args()
    model = load_model("shapes-cnn")
    data = make_dataset(args.n_images, size=model.input_size[0], seed=args.seed)
    print("| comparison method | mass inside object | pixels with attribution |\n|---|---|---|")
    for name in ("gradient_x_input", "guided_backprop", "integrated_gradients"):
        maps = tfsal.METHODS[name](model, data.images)
        if name == "guided_backprop":
            maps = maps * data.images
            name = "guided_backprop x input"
        print(f"| {name} | {np.nanmean(mass_inside(maps, data.masks)):.3f} | "
              f"{nonzero_fraction(maps).mean():.3f} |")
    for prr in (False, True):
        rows = threshold_sweep(model, data.images, data.masks, prr=prr)
        print(f"\npadding trick, prr={prr}, {args.n_images} images (seed {args.seed})\n")
        print(sweep_table(rows, float(data.masks.mean())))


if __name__ == "__main__":
    main()
