"""tfsal's own generated data: images of eight shape classes with object masks."""

from tfsal.data.shapes import CLASS_NAMES, ShapesDataset, make_dataset

__all__ = ["CLASS_NAMES", "ShapesDataset", "make_dataset"]
