"""Train an embedded model and write its weights and training record into tfsal/zoo/.

    .venv/bin/python scripts/train_zoo.py [--arch shapes-cnn] [--n-train 16000] [--epochs 12]
    .venv/bin/python scripts/train_zoo.py --arch shapes-resnet

Training data: seed 1; validation: seed 3; held-out test: seed 2 (never used for training).
The recipe is `tfsal.zoo.training.train_classifier` (Adam + cosine decay, batch 32, flips).
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import tensorflow as tf

from tfsal.data import make_dataset
from tfsal.zoo.shapes_cnn import SHAPES_CNN, build_shapes_cnn
from tfsal.zoo.shapes_resnet import SHAPES_RESNET, build_shapes_resnet
from tfsal.zoo.training import BATCH_SIZE, accuracy, train_classifier

TRAIN_SEED, TEST_SEED, VAL_SEED = 1, 2, 3
# name -> (model info, builder, default n_train, default epochs, learning rate)
ARCHITECTURES = {
    "shapes-cnn": (SHAPES_CNN, build_shapes_cnn, 16000, 12, 2e-3),
    # Fewer images and epochs: about ten minutes on two shared CPU cores (see its json).
    "shapes-resnet": (SHAPES_RESNET, build_shapes_resnet, 12000, 12, 2e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(ARCHITECTURES), default="shapes-cnn")
    parser.add_argument("--n-train", type=int, default=None,
                        help="training images (default: 16000 shapes-cnn, 12000 shapes-resnet)")
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: 12 shapes-cnn, 12 shapes-resnet)")
    args = parser.parse_args()
    info, build, n_train, epochs, learning_rate = ARCHITECTURES[args.arch]
    n_train = args.n_train if args.n_train is not None else n_train
    epochs = args.epochs if args.epochs is not None else epochs

    t0 = time.time()
    train = make_dataset(n_train, seed=TRAIN_SEED)
    val = make_dataset(1000, seed=VAL_SEED)
    test = make_dataset(args.n_test, seed=TEST_SEED)
    print(f"data generated in {time.time() - t0:.0f}s")

    t1 = time.time()
    model = train_classifier(train.images, train.labels, build=build, epochs=epochs,
                             learning_rate=learning_rate, seed=0,
                             validation=(val.images, val.labels), progress=True)
    train_time = time.time() - t1
    test_accuracy = accuracy(model, test.images, test.labels)
    print(f"held-out test accuracy {test_accuracy:.4f}, training {train_time:.0f}s")

    if args.arch == "shapes-cnn":
        model.save_weights(info.weights)  # as shipped (includes the optimizer's slots)
    else:  # weights only: an uncompiled copy has no optimizer state to save (a third the size)
        bare = build()
        bare.set_weights(model.get_weights())
        bare.save_weights(info.weights)
    facts = {
        "test_accuracy": round(test_accuracy, 4), "n_train": n_train, "n_test": args.n_test,
        "train_seed": TRAIN_SEED, "test_seed": TEST_SEED, "val_seed": VAL_SEED,
        "epochs": epochs, "train_seconds": round(train_time), "parameters":
        int(model.count_params()), "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    if args.arch != "shapes-cnn":  # the shapes-cnn record keeps its original keys
        facts.update(architecture=args.arch, batch_size=BATCH_SIZE, learning_rate=learning_rate,
                     weights_bytes=info.weights.stat().st_size)
    info.metadata.write_text(json.dumps(facts, indent=2) + "\n")


if __name__ == "__main__":
    main()
