"""The training step the retraining experiments inject.

A trainer is any callable `trainer(images, labels, *, seed, num_classes) -> tfsal.Model` that
trains a fresh classifier on pixel-space images (float32 (N, S, S, 3) in [0, 1]) and int labels,
fixed by `seed`, and returns it wrapped as a `tfsal.Model`. `TrainingRecipe`, the default, is
the embedded architecture's recipe (`tfsal.zoo.train_classifier`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tfsal.checks import flag, number, positive_int
from tfsal.errors import TfsalError
from tfsal.model import Model
from tfsal.zoo.shapes_cnn import build_shapes_cnn
from tfsal.zoo.training import BATCH_SIZE, train_classifier

Trainer = Callable[..., Model]


@dataclass(frozen=True)
class TrainingRecipe:
    """The zoo's training recipe as a trainer: `tfsal.zoo.train_classifier` with these
    settings; the trained model is wrapped as `tfsal.Model(model, preprocess="tf")`.

    Attributes:
        epochs: passes over the training images.
        build: the architecture, `build(num_classes=..., input_size=...)` returning an
            untrained Keras model ending in a softmax.
        batch_size, learning_rate, augment_flips: the recipe (`train_classifier`).
        progress: print one line per epoch.

    Example:
        >>> recipe = TrainingRecipe(epochs=8)
        >>> model = recipe(images, labels, seed=0, num_classes=5)
    """

    epochs: int = 8
    build: Callable = build_shapes_cnn
    batch_size: int = BATCH_SIZE
    learning_rate: float = 2e-3
    augment_flips: bool = True
    progress: bool = False

    def __post_init__(self):
        positive_int(self.epochs, "epochs")
        positive_int(self.batch_size, "batch_size")
        number(self.learning_rate, "learning_rate", low=0, low_open=True)
        flag(self.augment_flips, "augment_flips")
        flag(self.progress, "progress")
        if not callable(self.build):
            raise TfsalError(f"expected build a callable build(num_classes=..., "
                             f"input_size=...), received {self.build!r}")

    def __call__(self, images, labels, *, seed: int, num_classes: int) -> Model:
        trained = train_classifier(images, labels, build=self.build, epochs=self.epochs,
                                   batch_size=self.batch_size, learning_rate=self.learning_rate,
                                   augment_flips=self.augment_flips, seed=seed,
                                   num_classes=num_classes, progress=self.progress)
        return Model(trained, preprocess="tf")  # train_classifier feeds images · 2 − 1

    @property
    def settings(self) -> dict:
        """What the trained models depend on, as JSON-able values (checkpoints, reports)."""
        return dict(epochs=self.epochs, batch_size=self.batch_size,
                    learning_rate=self.learning_rate, augment_flips=self.augment_flips,
                    build=getattr(self.build, "__name__", str(self.build)))


DEFAULT_RECIPE = TrainingRecipe()


def trainer_settings(trainer: Trainer) -> dict:
    """A trainer's `settings` (a `TrainingRecipe`'s), or its name for any other callable."""
    settings = getattr(trainer, "settings", None)
    if isinstance(settings, dict):
        return settings
    return {"trainer": getattr(trainer, "__qualname__", type(trainer).__name__)}


def trained_model(trainer: Trainer, images, labels, *, seed: int, num_classes: int) -> Model:
    """`trainer(...)`, checked to return a `tfsal.Model`."""
    model = trainer(images, labels, seed=seed, num_classes=num_classes)
    if not isinstance(model, Model):
        raise TfsalError(f"expected the trainer to return a tfsal.Model, received "
                         f"{type(model).__name__}")
    return model


def accuracy(model: Model, images, labels) -> float:
    """Share of `images` whose predicted class is their label."""
    return float(np.mean(model.predicted_classes(images) == labels))
