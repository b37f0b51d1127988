"""A serving-side script: an exported SavedModel + a folder of images -> maps and a JSON summary.

    python examples/serving_maps.py /models/classifier photos/ --preprocess caffe --out maps/

The model directory may be a SavedModel or TF Serving's layout (<model>/<version>/, the newest
version is used). Images are read and explained in batches, so folders of any size fit in memory;
an unreadable file is recorded in the summary and skipped.
"""

import argparse
import json
from pathlib import Path

import numpy as np

import tfsal
from tfsal.errors import TfsalError
from tfsal.files import save_json, save_npy
from tfsal.images import load_image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--preprocess", default=None, help="caffe | tf | torch (default none)")
    parser.add_argument("--method", default="integrated_gradients")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("maps"))
    args = parser.parse_args(argv)

    model = tfsal.load_model(args.model, preprocess=args.preprocess, batch_size=args.batch_size)
    method = tfsal.METHODS[args.method]
    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".png", ".jpg"))
    summary = {"model": str(args.model), "method": args.method, "maps": [], "failed": []}
    for start in range(0, len(files), args.batch_size):
        batch, names = [], []
        for path in files[start:start + args.batch_size]:
            try:
                batch.append(load_image(path, model.input_size)[0])
                names.append(path)
            except TfsalError as exc:
                summary["failed"].append({"image": str(path), "error": str(exc)})
        if not batch:
            continue
        images = np.stack(batch)
        probabilities = model.predict(images, score="probability")
        targets = probabilities.argmax(axis=1)
        for path, attribution, target, p in zip(names, method(model, images, targets), targets,
                                                 probabilities):
            npy = save_npy(attribution, args.out / f"{path.stem}.npy")
            summary["maps"].append({"image": str(path), "target": int(target),
                                    "probability": round(float(p[target]), 4),
                                    "map": str(npy)})
    save_json(summary, args.out / "summary.json")
    print(json.dumps({"maps": len(summary["maps"]), "failed": len(summary["failed"])}))
    return summary


if __name__ == "__main__":
    main()
