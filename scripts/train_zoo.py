"""Train the embedded shapes CNN and write its weights and training record into tfsal/zoo/.

    .venv/bin/python scripts/train_zoo.py [--n-train 16000] [--epochs 12]

Training data: seed 1; validation: seed 3; held-out test: seed 2 (never used for training).
"""

from __future__ import annotations

import argparse
import json
import time

import keras
import numpy as np
import tensorflow as tf

from tfsal.data import make_dataset
from tfsal.zoo.shapes_cnn import SHAPES_CNN, build_shapes_cnn

TRAIN_SEED, TEST_SEED, VAL_SEED = 1, 2, 3
BATCH = 32  # small batches: more steps per second of CPU, which is what training lacks here


def augment(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random flips: shapes keep their class under mirroring."""
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-train", type=int, default=16000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    t0 = time.time()
    train = make_dataset(args.n_train, seed=TRAIN_SEED)
    val = make_dataset(1000, seed=VAL_SEED)
    test = make_dataset(args.n_test, seed=TEST_SEED)
    print(f"data generated in {time.time() - t0:.0f}s")

    model = build_shapes_cnn()
    steps = args.epochs * int(np.ceil(args.n_train / BATCH))
    schedule = keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    t1 = time.time()
    for epoch in range(args.epochs):
        x = augment(train.images, rng) * 2 - 1
        history = model.fit(x, train.labels, batch_size=BATCH, epochs=1, verbose=0,
                            validation_data=(val.images * 2 - 1, val.labels))
        print(f"epoch {epoch + 1}: loss {history.history['loss'][-1]:.3f} "
              f"acc {history.history['accuracy'][-1]:.3f} "
              f"val {history.history['val_accuracy'][-1]:.3f} ({time.time() - t1:.0f}s)")
    train_time = time.time() - t1
    accuracy = float(np.mean(model.predict(test.images * 2 - 1, verbose=0).argmax(1)
                             == test.labels))
    print(f"held-out test accuracy {accuracy:.4f}, training {train_time:.0f}s")

    model.save_weights(SHAPES_CNN.weights)
    SHAPES_CNN.metadata.write_text(json.dumps({
        "test_accuracy": round(accuracy, 4), "n_train": args.n_train, "n_test": args.n_test,
        "train_seed": TRAIN_SEED, "test_seed": TEST_SEED, "val_seed": VAL_SEED,
        "epochs": args.epochs, "train_seconds": round(train_time), "parameters":
        int(model.count_params()), "tensorflow": tf.__version__, "keras": keras.__version__,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
