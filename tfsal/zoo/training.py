"""The zoo's training recipe as one reusable, seeded function.

Recipe (scripts/train_zoo.py; also the retraining step of ROAR/KAR and the random-patch
experiment): Adam with a cosine-decayed learning rate (to 5 % of the start), batch 32, sparse
categorical cross-entropy, random horizontal flips drawn afresh every epoch, inputs fed as
images · 2 − 1 — the "tf" preprocessing, so the trained model is wrapped as
`tfsal.Model(model, preprocess="tf")`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from tfsal.checks import integer, number, positive_int
from tfsal.errors import TfsalError
from tfsal.images import check_images
from tfsal.zoo.shapes_cnn import build_shapes_cnn

BATCH_SIZE = 32  # small batches: more steps per second of CPU, which is what training lacks here


def train_classifier(images, labels, *, build: Callable = build_shapes_cnn, epochs: int,
                     batch_size: int = BATCH_SIZE, learning_rate: float = 2e-3, seed: int = 0,
                     augment_flips: bool = True, validation=None, num_classes: int | None = None,
                     progress: bool = False):
    """Train a fresh classifier on pixel-space images with the zoo's recipe.

    Args:
        images: float32 (N, S, S, 3) in [0, 1] (square: builders take one `input_size`).
        labels: int (N,) class indices.
        build: `build(num_classes=..., input_size=...)` returning an untrained Keras model
            ending in a softmax (e.g. `build_shapes_cnn`, `build_shapes_resnet`).
        epochs: passes over the data (≥ 1).
        batch_size: images per step.
        learning_rate: start of the cosine schedule.
        seed: `keras.utils.set_random_seed(seed)` before building: weights, shuffling and the
            flip draws are fixed by it (same seed, same data → same weights on one machine).
        augment_flips: mirror a random half of the images every epoch (the shapes keep their
            class under mirroring; switch off for data where they do not).
        validation: optional (images, labels) evaluated after every epoch (reported only).
        num_classes: output classes (None: labels.max() + 1).
        progress: print one line per epoch (loss, accuracy, validation accuracy, seconds).

    Returns:
        the trained `keras.Model`; wrap it as `tfsal.Model(model, preprocess="tf")`.

    Raises:
        TfsalError: for bad images, labels or hyperparameters.

    Example:
        >>> data = tfsal.data.make_dataset(2000, seed=1)
        >>> model = train_classifier(data.images, data.labels, epochs=3)
    """
    import keras

    images, labels, num_classes = _check_data(images, labels, num_classes)
    epochs, batch_size = positive_int(epochs, "epochs"), positive_int(batch_size, "batch_size")
    seed = integer(seed, "seed", low=0)
    learning_rate = number(learning_rate, "learning_rate", low=0, low_open=True)
    val = None
    if validation is not None:
        val_images, val_labels, _ = _check_data(*validation, num_classes)
        val = (val_images * 2 - 1, val_labels)

    keras.utils.set_random_seed(int(seed))
    model = build(num_classes=num_classes, input_size=images.shape[1])
    steps = int(epochs) * int(np.ceil(len(images) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(float(learning_rate), steps, alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(int(seed))
    start = time.time()
    for epoch in range(int(epochs)):
        x = (_flip_half(images, rng) if augment_flips else images) * 2 - 1
        history = model.fit(x, labels, batch_size=int(batch_size), epochs=1, verbose=0,
                            validation_data=val).history
        if progress:
            shown = f" val {history['val_accuracy'][-1]:.3f}" if val is not None else ""
            print(f"epoch {epoch + 1}: loss {history['loss'][-1]:.3f} "
                  f"acc {history['accuracy'][-1]:.3f}{shown} ({time.time() - start:.0f}s)",
                  flush=True)
    return model


def accuracy(model, images, labels, *, batch_size: int = BATCH_SIZE) -> float:
    """Share of `images` whose arg-max class under a model trained by `train_classifier`
    (a raw Keras model, fed images · 2 − 1) equals `labels`."""
    images, labels, _ = _check_data(images, labels, None)
    predicted = model.predict(images * 2 - 1, batch_size=batch_size, verbose=0).argmax(axis=1)
    return float(np.mean(predicted == labels))


def _flip_half(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random horizontal flips of about half the images (a copy)."""
    flip = rng.random(len(images)) < 0.5
    out = images.copy()
    out[flip] = out[flip, :, ::-1]
    return out


def _check_data(images, labels, num_classes):
    images = check_images(images)
    if images.shape[1] != images.shape[2]:
        raise TfsalError(f"expected square images (the builders take one input_size), "
                         f"received {images.shape[1]}x{images.shape[2]}")
    labels = np.asarray(labels)
    if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer) \
            or labels.min() < 0:
        raise TfsalError(f"expected labels as {len(images)} non-negative ints, received "
                         f"{labels.dtype} of shape {labels.shape}")
    if num_classes is None:
        num_classes = int(labels.max()) + 1
    num_classes = integer(num_classes, "num_classes", low=max(2, int(labels.max()) + 1),
                          note=f"2 or more, above every label: the largest is {labels.max()}")
    return images, labels.astype(np.int64), num_classes
