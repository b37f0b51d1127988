"""A researcher regenerating one figure: the RectGrad paper's threshold sweep (its Figure 4).

    python examples/regenerate_figure.py --out sweep/                  # embedded model, offline
    python examples/regenerate_figure.py --model vgg16 --images photos/ --out sweep/  # ImageNet

RectGrad keeps, at every ReLU, only the units whose importance a * R is above the layer's q-th
percentile. The paper reports maps that barely change for 20 <= q <= 80 and turn sparse and
object-focused above q = 95; the script draws the maps for each q and prints how many pixels
still carry attribution.
"""

import argparse
from pathlib import Path

import numpy as np

import tfsal
from tfsal import visualize
from tfsal.data import make_dataset
from tfsal.images import load_image

PERCENTILES = (20, 50, 80, 95, 98, 99)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="shapes-cnn")
    parser.add_argument("--images", type=Path, help="folder of photos (default: generated data)")
    parser.add_argument("--n-images", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("sweep"))
    args = parser.parse_args(argv)

    model = tfsal.load_model(args.model)
    if args.images:
        files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        images = np.stack([load_image(p, model.input_size)[0] for p in files[:args.n_images]])
    else:
        images = make_dataset(args.n_images, size=model.input_size[0], seed=2).images
    targets = model.predicted_classes(images)

    rows = [[(image * 255).round().astype(np.uint8)] for image in images]
    for q in PERCENTILES:
        maps = tfsal.rectgrad(model, images, targets, percentile=q)
        share = np.mean(np.abs(maps).sum(axis=-1) > 0)
        print(f"q = {q:2d}: {share:.0%} of pixels carry attribution")
        for row, picture in zip(rows, visualize.to_display(maps)):  # the paper's rendering
            row.append(picture)
    sheet = visualize.grid(rows, col_titles=["image", *(f"q={q}" for q in PERCENTILES)],
                           scale=max(1, 128 // images.shape[1]))
    path = visualize.save_png(sheet, args.out / "threshold_sweep.png")
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
