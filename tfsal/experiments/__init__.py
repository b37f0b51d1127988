"""Studies that retrain classifiers (the Face side, next to `tfsal.evaluation`): ROAR/KAR and
the random-patch experiment. The training step is injected (`trainer=`): the embedded
architecture's recipe (`TrainingRecipe`) by default, or any callable
`trainer(images, labels, *, seed, num_classes) -> tfsal.Model`. What they measure is scored by
the pure functions of `tfsal.metrics` (`roar_auc`, `kar_aoc`, `patch_scores`, ...)."""

from tfsal.experiments.random_patch import RandomPatch, paste, random_patch_experiment
from tfsal.experiments.roar import FRACTIONS, MODES, RoarKar, roar_kar
from tfsal.experiments.training import Trainer, TrainingRecipe

__all__ = ["FRACTIONS", "MODES", "RandomPatch", "RoarKar", "Trainer", "TrainingRecipe",
           "paste", "random_patch_experiment", "roar_kar"]
