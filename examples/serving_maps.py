"""A serving-side script: an exported SavedModel + a folder of images -> maps and a JSON summary.

    python examples/serving_maps.py /models/classifier photos/ --preprocess caffe --out maps/

The model directory may be a SavedModel or TF Serving's layout (<model>/<version>/, the newest
version unless --version). Signatures taking encoded image bytes work too: tfsal feeds the
decoded image tensor inside the graph (--input-tensor to name it). A softmax at the end of the
graph is found and its logits used. Every image suffix the CLI takes is read, in batches, so
folders of any size fit in memory; files in sub-folders keep their folder in the output name;
an unreadable file is recorded in the summary and skipped. Each map is written as .npy and .png.
"""

import argparse
import json
from pathlib import Path

import numpy as np

import tfsal
from tfsal import visualize
from tfsal.errors import TfsalError
from tfsal.files import save_json, save_npy
from tfsal.images import find_images, load_image


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--preprocess", default=None, help="caffe | tf | torch (default none)")
    parser.add_argument("--method", default="integrated_gradients", choices=sorted(tfsal.METHODS))
    parser.add_argument("--signature", default=None)
    parser.add_argument("--output-key", default=None)
    parser.add_argument("--input-tensor", default=None)
    parser.add_argument("--version", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("maps"))
    args = parser.parse_args(argv)

    model = tfsal.load_model(args.model, preprocess=args.preprocess, batch_size=args.batch_size,
                             signature=args.signature, output_key=args.output_key,
                             input_tensor=args.input_tensor, version=args.version)
    method = tfsal.METHODS[args.method]
    files = find_images([args.images])
    summary = {"model": repr(model), "method": args.method, "maps": [], "failed": []}
    for start in range(0, len(files), args.batch_size):
        batch, kept = [], []
        for path, stem in files[start:start + args.batch_size]:
            try:
                batch.append(load_image(path, model.input_size)[0])
                kept.append((path, stem))
            except TfsalError as exc:
                summary["failed"].append({"image": str(path), "error": str(exc)})
        if not batch:
            continue
        images = np.stack(batch)
        probabilities = model.predict(images, score="probability")
        targets = probabilities.argmax(axis=1).astype(np.int32)
        maps = method(model, images, targets)
        for (path, stem), image, attribution, target, p in zip(kept, images, maps, targets,
                                                               probabilities):
            npy = save_npy(attribution, args.out / f"{stem}.npy")
            png = visualize.save_png(visualize.render(image, attribution),
                                     args.out / f"{stem}.png")
            summary["maps"].append({"image": str(path), "target": int(target),
                                    "probability": round(float(p[target]), 4),
                                    "files": [str(npy), str(png)]})
    save_json(summary, args.out / "summary.json")
    print(json.dumps({"maps": len(summary["maps"]), "failed": len(summary["failed"])}))
    return summary


if __name__ == "__main__":
    main()
