"""Natural photos that come with installed packages, for ImageNet models, offline.

All of them are free to use (no network, no download; the files are read from the installed
packages without importing them):

- ``chelsea`` (a tabby cat) and ``coffee`` (a cup of coffee): scikit-image's data folder; CC0,
  by the photographers Stefan van der Walt and Rachel Michetti.
- ``astronaut`` (Eileen Collins): scikit-image; NASA, no known copyright restrictions, public
  domain.
- ``rocket`` (DSCOVR launching on a Falcon 9): scikit-image; SpaceX photo released into the
  public domain.
- ``grace_hopper`` (Rear Admiral Grace Hopper in uniform): matplotlib's sample data; an
  official U.S. Navy portrait, a work of the U.S. federal government (public domain).

scikit-image (``pip install "tfsal[imagenet]"``) provides the first four, matplotlib
(``tfsal[plot]``) the last; photos whose package is missing are left out. ``photo_boxes.json``
holds a box around each photo's main object, drawn by hand for tfsal (`object_masks`).

Example:
    >>> from tfsal.zoo.photos import sample_photos
    >>> photos = sample_photos(size=224)  # {"chelsea": (224, 224, 3) float32, ...}
    >>> model = tfsal.load_model("efficientnet-lite0")
    >>> probabilities = model.predict(np.stack(list(photos.values())), score="probability")
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from tfsal.checks import integer
from tfsal.errors import TfsalError

# name -> (package, path inside the package)
PHOTOS = {
    "chelsea": ("skimage", "data/chelsea.png"),
    "coffee": ("skimage", "data/coffee.png"),
    "astronaut": ("skimage", "data/astronaut.png"),
    "rocket": ("skimage", "data/rocket.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}


def _package_dir(package: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def photo_paths() -> dict[str, Path]:
    """{name: file} of the photos whose package is installed, in `PHOTOS` order."""
    paths = {}
    for name, (package, relative) in PHOTOS.items():
        folder = _package_dir(package)
        if folder is not None and (folder / relative).is_file():
            paths[name] = folder / relative
    return paths


def _crop(h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of the centred square crop of an h × w photo."""
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side


def object_masks(size: int, names) -> np.ndarray:
    """(N, size, size) bool: each photo's hand-drawn object box (``photo_boxes.json``) in the
    centred, resized square that `sample_photos(size)` returns."""
    import json

    from PIL import Image

    boxes = json.loads((Path(__file__).parent / "photo_boxes.json").read_text())
    available = photo_paths()
    masks = []
    for name in names:
        if name not in boxes or name not in available:
            raise TfsalError(f"expected a bundled photo with a box {sorted(available)}, "
                             f"received {name!r}")
        with Image.open(available[name]) as img:
            w, h = img.size
        top, left, side = _crop(h, w)
        x0, y0, x1, y1 = boxes[name]["box"]
        scale = size / side
        rows = np.arange(size)[:, None] + 0.5
        cols = np.arange(size)[None, :] + 0.5
        masks.append((rows >= (y0 - top) * scale) & (rows < (y1 - top) * scale)
                     & (cols >= (x0 - left) * scale) & (cols < (x1 - left) * scale))
    return np.stack(masks)


def sample_photos(size: int | None = None, names=None) -> dict[str, np.ndarray]:
    """The bundled photos as float32 RGB (H, W, 3) in [0, 1].

    Args:
        size: None keeps each photo's own size; an int center-crops each photo to a square
            and resizes it (bilinear) to size × size, as ImageNet models are evaluated.
        names: the photos to return (default: all whose package is installed).

    Raises:
        TfsalError: for an unknown name, or a named photo whose package is not installed.
    """
    from PIL import Image

    from tfsal.images import load_image

    if size is not None:
        size = integer(size, "size", low=1, note="or None")
    available = photo_paths()
    wanted = list(available) if names is None else list(names)
    unknown = [n for n in wanted if n not in PHOTOS]
    if unknown:
        raise TfsalError(f"expected photo names in {tuple(PHOTOS)}, received {unknown}")
    missing = [n for n in wanted if n not in available]
    if missing:
        packages = sorted({PHOTOS[n][0] for n in missing})
        raise TfsalError(f"expected the packages {packages} for photos {missing}, received "
                         f'none installed: pip install "tfsal[imagenet,plot]"')
    photos = {}
    for name in wanted:
        image, _ = load_image(available[name])
        if size is not None:
            top, left, side = _crop(*image.shape[:2])
            square = (image[top:top + side, left:left + side] * 255).round().astype(np.uint8)
            resized = Image.fromarray(square).resize((int(size), int(size)), Image.BILINEAR)
            image = np.asarray(resized, dtype=np.float32) / 255.0
        photos[name] = image
    return photos
