"""A serving-side script: an exported SavedModel + a folder of images -> maps and a JSON summary.

    python examples/serving_maps.py /models/classifier photos/ --preprocess caffe --out maps/

The model directory may be a SavedModel or TF Serving's layout (<model>/<version>/, the newest
version unless --version). Signatures taking encoded image bytes work too: tfsal feeds the
decoded image tensor inside the graph (--input-tensor to name it). A softmax at the end of the
graph is found and its logits used. Every image suffix the CLI takes is read, in batches, so
folders of any size fit in memory; the maps mirror the folder (photos/a/b.jpg ->
maps/a/b.jpg.npy and .png), so no two images share a name; an unreadable file is recorded in the
summary and skipped.
"""

import argparse
import json
from pathlib import Path

import numpy as np

import tfsal
from tfsal import visualize
from tfsal.errors import TfsalError
from tfsal.files import save_json, save_npy
from tfsal.images import load_image
from tfsal.runs import find_inputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("--preprocess", default=None, help="caffe | tf | torch (default none)")
    parser.add_argument("--method", default="integrated_gradients", type=tfsal.resolve_method)
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
    inputs, problems = find_inputs([args.images], args.out)  # args.out is never read
    summary = {"model": repr(model), "method": args.method, "maps": [],
               "failed": [problem.entry() for problem in problems]}
    for start in range(0, len(inputs), args.batch_size):
        batch, kept = [], []
        for item in inputs[start:start + args.batch_size]:
            try:
                batch.append(load_image(item.path, model.input_size)[0])
                kept.append(item)
            except TfsalError as exc:
                summary["failed"].append({"image": item.path, "error": str(exc)})
        if not batch:
            continue
        images = np.stack(batch)
        probabilities = model.predict(images, score="probability")
        targets = probabilities.argmax(axis=1).astype(np.int32)
        maps = method(model, images, targets)
        for item, image, attribution, target, p in zip(kept, images, maps, targets,
                                                       probabilities):
            npy = save_npy(attribution, args.out / f"{item.key}.npy")
            png = visualize.save_png(visualize.render(image, attribution),
                                     args.out / f"{item.key}.png")
            summary["maps"].append({"image": item.path, "target": int(target),
                                    "probability": round(float(p[target]), 4),
                                    "files": [str(npy), str(png)]})
    save_json(summary, args.out / "summary.json")
    print(json.dumps({"maps": len(summary["maps"]), "failed": len(summary["failed"])}))
    return summary


if __name__ == "__main__":
    main()
