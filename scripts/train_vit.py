"""Train the embedded ViT (shapes-vit) and write its weights and training record into tfsal/zoo/.

    .venv/bin/python scripts/train_vit.py [--n-train 16000] [--epochs 16] [--lr 1e-3]

Same data and recipe as scripts/train_zoo.py (training data seed 1, validation seed 3, held-out
test seed 2, never used for training; `tfsal.zoo.training.train_classifier`: Adam + cosine
decay, batch 32, flips), with the ViT's smaller learning rate. The held-out accuracy in the
json is measured here, on the test images, after training.
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import tensorflow as tf

from tfsal.data import make_dataset
from tfsal.zoo.shapes_vit import SHAPES_VIT, build_shapes_vit
from tfsal.zoo.training import BATCH_SIZE, accuracy, train_classifier

TRAIN_SEED, TEST_SEED, VAL_SEED = 1, 2, 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=16000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args()

    t0 = time.time()
    train = make_dataset(args.n_train, seed=TRAIN_SEED)
    val = make_dataset(1000, seed=VAL_SEED)
    test = make_dataset(args.n_test, seed=TEST_SEED)
    print(f"data generated in {time.time() - t0:.0f}s", flush=True)

    t1 = time.time()
    model = train_classifier(train.images, train.labels, build=build_shapes_vit,
                             epochs=args.epochs, learning_rate=args.lr, seed=0,
                             validation=(val.images, val.labels), progress=True)
    train_time = time.time() - t1
    test_accuracy = accuracy(model, test.images, test.labels)
    print(f"held-out test accuracy {test_accuracy:.4f}, training {train_time:.0f}s", flush=True)

    bare = build_shapes_vit()  # weights only: no optimizer state
    bare.set_weights(model.get_weights())
    bare.save_weights(SHAPES_VIT.weights)
    facts = {
        "test_accuracy": round(test_accuracy, 4), "n_train": args.n_train,
        "n_test": args.n_test, "train_seed": TRAIN_SEED, "test_seed": TEST_SEED,
        "val_seed": VAL_SEED, "epochs": args.epochs, "train_seconds": round(train_time),
        "parameters": int(model.count_params()), "tensorflow": tf.__version__,
        "keras": keras.__version__, "architecture": "shapes-vit", "batch_size": BATCH_SIZE,
        "learning_rate": args.lr, "weights_bytes": SHAPES_VIT.weights.stat().st_size,
    }
    SHAPES_VIT.metadata.write_text(json.dumps(facts, indent=2) + "\n")


if __name__ == "__main__":
    main()
