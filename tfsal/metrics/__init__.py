"""Evaluation metrics of attribution maps (NumPy only; they never call a model)."""

from tfsal.metrics.localisation import mass_inside, nonzero_fraction

__all__ = ["mass_inside", "nonzero_fraction"]
