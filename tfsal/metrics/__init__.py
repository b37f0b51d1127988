"""Evaluation metrics of attribution maps."""

from tfsal.metrics.deletion import (
    FRACTIONS,
    Curve,
    allegiance_curve,
    deletion_curve,
    deletion_mask,
    insertion_curve,
)
from tfsal.metrics.localisation import mass_inside, nonzero_fraction

__all__ = ["FRACTIONS", "Curve", "allegiance_curve", "deletion_curve", "deletion_mask",
           "insertion_curve", "mass_inside", "nonzero_fraction"]
