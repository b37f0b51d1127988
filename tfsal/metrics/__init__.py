"""Evaluation metrics of attribution maps."""

from tfsal.metrics.deletion import (
    FRACTIONS,
    Curve,
    allegiance_curve,
    deletion_curve,
    deletion_mask,
    insertion_curve,
)
from tfsal.metrics.localisation import (
    mass_in_region,
    mass_inside,
    mass_outside_mask,
    nonzero_fraction,
    total_variation,
)
from tfsal.metrics.sanity import RandomizationCheck, randomization_check

__all__ = ["FRACTIONS", "Curve", "allegiance_curve", "deletion_curve", "deletion_mask",
           "insertion_curve", "mass_in_region", "mass_inside", "mass_outside_mask",
           "nonzero_fraction", "randomization_check", "RandomizationCheck", "total_variation"]
