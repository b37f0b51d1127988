"""Evaluation metrics of attribution maps."""

from tfsal.metrics.deletion import (
    FRACTIONS,
    Curve,
    allegiance_curve,
    deletion_curve,
    deletion_mask,
    insertion_curve,
)
from tfsal.metrics.input_shift import (
    ShiftInvariance,
    input_shift_invariance,
    shift_compensated_model,
)
from tfsal.metrics.localisation import (
    mass_in_region,
    mass_inside,
    mass_outside_mask,
    nonzero_fraction,
    total_variation,
)
from tfsal.metrics.random_patch import (
    RandomPatch,
    paste,
    patch_scores,
    random_patch_experiment,
    reference_threshold,
)
from tfsal.metrics.roar import RoarKar, kar_aoc, occlude, rank_pixels, roar_auc, roar_kar
from tfsal.metrics.sanity import RandomizationCheck, randomization_check

__all__ = ["FRACTIONS", "Curve", "allegiance_curve", "deletion_curve", "deletion_mask",
           "insertion_curve", "mass_in_region", "mass_inside", "mass_outside_mask",
           "nonzero_fraction", "randomization_check", "RandomizationCheck", "total_variation",
           "RandomPatch", "RoarKar", "ShiftInvariance", "input_shift_invariance", "kar_aoc",
           "occlude", "paste", "patch_scores", "random_patch_experiment", "rank_pixels",
           "reference_threshold", "roar_auc", "roar_kar", "shift_compensated_model"]
