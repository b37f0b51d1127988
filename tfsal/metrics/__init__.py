"""Measurements of attribution maps and of the models they explain: deletion curves,
localisation and smoothness scores, sanity and invariance checks, the ROAR/KAR and
random-patch scores. Metrics only measure: the retraining experiments that produce ROAR/KAR
accuracies and random-patch models live in `tfsal.experiments`; model surgery (copies,
re-initialised layers, shifted inputs) is the adapter's (`tfsal.Model`)."""

from tfsal.metrics._common import pixel_maps
from tfsal.metrics.adversarial import ClassSensitivity, class_sensitivity
from tfsal.metrics.blurring import SelectiveBlur, selective_blur
from tfsal.metrics.deletion import (
    FRACTIONS,
    Curve,
    allegiance_curve,
    deletion_curve,
    deletion_mask,
    insertion_curve,
)
from tfsal.metrics.input_shift import ShiftInvariance, input_shift_invariance
from tfsal.metrics.localisation import (
    mass_in_region,
    mass_inside,
    mass_outside_mask,
    nonzero_fraction,
    total_variation,
)
from tfsal.metrics.random_patch import patch_scores, reference_threshold
from tfsal.metrics.roar import kar_aoc, occlude, rank_pixels, roar_auc
from tfsal.metrics.sanity import RandomizationCheck, randomization_check

__all__ = ["FRACTIONS", "ClassSensitivity", "Curve", "RandomizationCheck", "SelectiveBlur",
           "ShiftInvariance", "allegiance_curve", "class_sensitivity", "deletion_curve",
           "deletion_mask", "input_shift_invariance", "insertion_curve", "kar_aoc",
           "mass_in_region", "mass_inside", "mass_outside_mask", "nonzero_fraction", "occlude",
           "patch_scores", "pixel_maps", "randomization_check", "rank_pixels",
           "reference_threshold", "roar_auc", "selective_blur", "total_variation"]

# Names that moved out of `tfsal.metrics`, and where they live now.
_MOVED = {**dict.fromkeys(("RoarKar", "roar_kar", "RandomPatch", "random_patch_experiment",
                           "paste"), "tfsal.experiments"),
          "shift_compensated_model": "tfsal.Model.shift_compensated"}


def __getattr__(name: str):
    if name in _MOVED:
        raise AttributeError(f"tfsal.metrics.{name} moved: use {_MOVED[name]}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
