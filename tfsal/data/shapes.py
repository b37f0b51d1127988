"""A seeded, procedurally generated image data set with object masks.

Each image holds one object of one of eight shape classes, at random colour, size, position
and rotation, on a cluttered, textured background (a colour gradient, a periodic or noise
texture and small distractor marks that belong to no class). Image i depends only on
(seed, start + i), so any slice can be regenerated on its own. NumPy and Pillow only.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from PIL import Image, ImageDraw

from tfsal.checks import integer
from tfsal.errors import TfsalError

CLASS_NAMES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow")

_SUPERSAMPLE = 2  # draw masks at 2x and box-filter down: anti-aliased edges


@dataclass(frozen=True)
class ShapesDataset:
    """Images (N, H, W, 3) float32 in [0, 1], labels (N,) int64, object masks (N, H, W) bool."""

    images: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)


def make_dataset(n: int, *, size: int = 64, seed: int = 0, start: int = 0) -> ShapesDataset:
    """Generate `n` images (indices start … start + n − 1 of the stream for `seed`).

    Args:
        n: number of images (≥ 0).
        size: image side in pixels (≥ 32).
        seed: data-set seed (int ≥ 0).
        start: index of the first image in the stream.

    Returns:
        a `ShapesDataset`.

    Raises:
        TfsalError: for non-integer or out-of-range arguments.

    Example:
        >>> data = make_dataset(100, seed=0)
        >>> data.images.shape, data.labels[:3]
    """
    n, size = integer(n, "n", low=0), integer(size, "size", low=32)
    seed, start = integer(seed, "seed", low=0), integer(start, "start", low=0)
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.empty((n, size, size), bool)
    labels = np.empty(n, np.int64)
    for k in range(n):
        rng = np.random.default_rng([int(seed), int(start) + k])
        labels[k] = rng.integers(len(CLASS_NAMES))
        images[k], masks[k] = _render(rng, int(labels[k]), int(size))
    return ShapesDataset(images, labels, masks)


# ----------------------------------------------------------------------------- rendering
@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [0, 1) (constant per size; cached because it is pure)."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(axis, axis, indexing="xy")


def _render(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    background = _background(rng, size)
    colour = _contrasting_colour(rng, background.reshape(-1, 3).mean(axis=0))
    alpha = _shape_alpha(rng, label, size)
    shading = 1.0 + rng.uniform(-0.12, 0.12) * (_grid(size)[0] - 0.5)  # a soft light gradient
    obj = np.clip(colour[None, None, :] * shading[..., None], 0, 1)
    image = alpha[..., None] * obj + (1 - alpha[..., None]) * background
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)  # sensor noise
    return np.clip(image, 0, 1), alpha > 0.5


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    x, y = _grid(size)
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    angle = rng.uniform(0, 2 * np.pi)
    t = np.clip(0.5 + (x - 0.5) * np.cos(angle) + (y - 0.5) * np.sin(angle), 0, 1)
    image = c0 + t[..., None] * (c1 - c0)
    kind = rng.integers(3)
    if kind == 0:  # stripes
        freq, phi = rng.uniform(4, 12), rng.uniform(0, 2 * np.pi)
        theta = rng.uniform(0, np.pi)
        texture = np.sin(2 * np.pi * freq * (x * np.cos(theta) + y * np.sin(theta)) + phi)
    elif kind == 1:  # checks
        cells = rng.integers(4, 10)
        texture = ((np.floor(x * cells) + np.floor(y * cells)) % 2) * 2 - 1.0
    else:  # smooth noise: a coarse random grid upsampled bilinearly
        coarse = rng.uniform(-1, 1, (6, 6)).astype(np.float32)
        texture = np.asarray(Image.fromarray(coarse, mode="F").resize((size, size),
                                                                      Image.BILINEAR))
    amplitude = rng.uniform(0.05, 0.15)
    image = image + amplitude * texture[..., None] * rng.uniform(0.5, 1.0, 3)
    return _distractors(rng, np.clip(image, 0, 1).astype(np.float32), size)


def _distractors(rng: np.random.Generator, image: np.ndarray, size: int) -> np.ndarray:
    """Small line segments and dots: clutter that resembles no class."""
    canvas = Image.fromarray((image * 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.integers(3, 8)):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = rng.uniform(0, size, 2)
        if rng.random() < 0.5:
            length, angle = rng.uniform(3, size / 6), rng.uniform(0, np.pi)
            draw.line([(x, y), (x + length * np.cos(angle), y + length * np.sin(angle))],
                      fill=colour, width=1)
        else:
            r = rng.uniform(0.8, 2.0)
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    return np.asarray(canvas, dtype=np.float32) / 255.0


def _contrasting_colour(rng: np.random.Generator, reference: np.ndarray) -> np.ndarray:
    """A random colour at least 0.45 (Euclidean, RGB in [0, 1]) from the background mean."""
    for _ in range(50):
        colour = rng.uniform(0, 1, 3)
        if np.linalg.norm(colour - reference) >= 0.45:
            return colour.astype(np.float32)
    return (1.0 - reference).astype(np.float32)


def _shape_alpha(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Anti-aliased coverage (size, size) in [0, 1] of one randomly placed shape."""
    big = size * _SUPERSAMPLE
    radius = rng.uniform(0.18, 0.34) * big  # the object spans ~35–70 % of the image side
    cx, cy = rng.uniform(radius + 1, big - radius - 1, 2)
    angle = rng.uniform(0, 2 * np.pi)
    canvas = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(canvas)
    for points, fill in _outline(CLASS_NAMES[label]):
        pts = np.asarray(points, np.float64)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        xy = pts @ rot.T * radius + (cx, cy)
        draw.polygon([tuple(p) for p in xy], fill=fill)
    return np.asarray(canvas.resize((size, size), Image.BOX), np.float32) / 255.0


def _circle(r: float = 1.0, n: int = 48, dx: float = 0.0) -> list:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return list(zip(dx + r * np.cos(t), r * np.sin(t)))


def _regular(k: int, r: float = 1.0, phase: float = 0.0) -> list:
    t = phase + np.arange(k) * 2 * np.pi / k
    return list(zip(r * np.cos(t), r * np.sin(t)))


@cache
def _outline(name: str) -> tuple:
    """Polygons (unit radius) to fill with 255 (object) or 0 (holes), in drawing order."""
    if name == "circle":
        return ((_circle(0.9), 255),)
    if name == "square":
        return ((_regular(4, 1.0, np.pi / 4), 255),)
    if name == "triangle":
        return ((_regular(3, 1.0, -np.pi / 2), 255),)
    if name == "star":
        outer, inner = _regular(5, 1.0, -np.pi / 2), _regular(5, 0.42, -np.pi / 2 + np.pi / 5)
        return (([p for pair in zip(outer, inner) for p in pair], 255),)
    if name == "cross":
        a, b = 0.3, 1.0
        return (([(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b), (-a, -b), (-a, -a),
                  (-b, -a), (-b, a), (-a, a), (-a, b)], 255),)
    if name == "ring":
        return ((_circle(1.0), 255), (_circle(0.55), 0))
    if name == "crescent":
        return ((_circle(1.0), 255), (_circle(0.85, dx=0.55), 0))
    if name == "arrow":
        return (([(-1.0, -0.22), (0.2, -0.22), (0.2, -0.6), (1.0, 0.0), (0.2, 0.6), (0.2, 0.22),
                  (-1.0, 0.22)], 255),)
    raise TfsalError(f"expected a class name in {CLASS_NAMES}, received {name!r}")
