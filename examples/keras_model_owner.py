"""A Keras model owner adding explanations to their own model.

The model nests a pretrained base (MobileNetV2, `weights="imagenet"` when online; `--weights none`
offline) under a new head, is trained on tfsal's generated shapes, and a Keras callback saves
Grad-CAM and RectGrad maps of fixed validation images after every epoch — so you can watch
what the model learns to look at.

    python examples/keras_model_owner.py --weights imagenet --epochs 3 --out owner/
"""

import argparse
from pathlib import Path

import keras
import numpy as np

import tfsal
from tfsal import visualize
from tfsal.data import CLASS_NAMES, make_dataset


class SaliencyCallback(keras.callbacks.Callback):
    """Saves maps of fixed images at the end of every epoch (the model itself is not touched:
    tfsal evaluates logits and gradient rules on weight-sharing copies)."""

    def __init__(self, images, out: Path, methods=("grad_cam", "rectgrad")):
        super().__init__()
        self.images, self.out, self.methods = images, Path(out), methods

    def on_train_begin(self, logs=None):
        # One adapter for the whole run: its compiled functions read the variables at call
        # time, so every epoch sees the current weights without retracing.
        self.explained = tfsal.Model(self.model, preprocess="tf", class_names=CLASS_NAMES)

    def on_epoch_end(self, epoch, logs=None):
        explained = self.explained
        targets = explained.predicted_classes(self.images)
        row_titles = [CLASS_NAMES[t] for t in targets]
        rows = [[(im * 255).round().astype(np.uint8)] for im in self.images]
        for name in self.methods:
            maps = tfsal.METHODS[name](explained, self.images, targets)
            for row, image, attribution in zip(rows, self.images, maps):
                row.append(visualize.render(image, attribution))
        sheet = visualize.grid(rows, row_titles=row_titles, col_titles=["image", *self.methods],
                               scale=2)
        visualize.save_png(sheet, self.out / f"epoch{epoch + 1:02d}.png")


def build(weights, size: int) -> keras.Model:
    base = keras.applications.MobileNetV2(include_top=False, weights=weights,
                                          input_shape=(size, size, 3))
    inputs = keras.Input((size, size, 3))
    x = base(inputs)  # the pretrained base is one nested layer of the outer model
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASS_NAMES), activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="imagenet", help="imagenet or none")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=2000)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--methods", default="grad_cam,rectgrad")
    parser.add_argument("--out", type=Path, default=Path("owner"))
    args = parser.parse_args(argv)

    model = build(None if args.weights == "none" else args.weights, args.size)
    train = make_dataset(args.n_train, size=args.size, seed=1)
    fixed = make_dataset(4, size=args.size, seed=2).images
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train.images * 2 - 1, train.labels, epochs=args.epochs, batch_size=32,
              callbacks=[SaliencyCallback(fixed, args.out, args.methods.split(","))], verbose=2)
    return sorted(args.out.glob("epoch*.png"))


if __name__ == "__main__":
    print(main())
