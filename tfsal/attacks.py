"""Adversarial attacks (lecture notes).

FGSM (Goodfellow et al. 2015): x' = clip(x + ε · sign(∇_x L), 0, 1), L the cross-entropy of the
target class (untargeted: away from it; targeted: towards it, x − ε · sign(∇_x L)).
BIM (Kurakin et al. 2017): `n_iter` FGSM steps of size `step_size`, each projected onto the
ε-ball around x (L∞) and onto [0, 1]. All in pixel space, through the model's preprocessing.

`tfsal.metrics.class_sensitivity` uses them to ask whether a method's map follows the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tfsal.checks import flag, non_negative, positive_int
from tfsal.errors import TfsalError
from tfsal.images import check_images
from tfsal.loading import as_model
from tfsal.targets import is_target_function, needs_classes


@dataclass(frozen=True)
class AttackResult:
    """Adversarial images and what the model predicts before and after.

    Attributes:
        images: (N, H, W, 3) adversarial images in [0, 1].
        targets: (N,) the attacked class (untargeted: the class pushed away from).
        before, after: (N,) predicted classes of the original and adversarial images.
        targeted: whether the attack pushed towards `targets`.
    """

    images: np.ndarray
    targets: np.ndarray
    before: np.ndarray
    after: np.ndarray
    targeted: bool

    @property
    def success(self) -> np.ndarray:
        """(N,) booleans: prediction moved off the target (untargeted) or onto it (targeted)."""
        return self.after == self.targets if self.targeted else self.after != self.targets


def fgsm(model, images, targets=None, *, epsilon: float = 8 / 255,
         targeted: bool = False) -> AttackResult:
    """Fast Gradient Sign Method.

    Args:
        model: a `tfsal.Model` or anything `tfsal.load_model` accepts.
        images: float32 (N, H, W, 3) in [0, 1].
        targets: the class to move away from (untargeted; None = predicted class) or towards
            (targeted; required). Callable targets are refused: the loss is a class's
            cross-entropy and success is read from the predicted classes.
        epsilon: L∞ size of the perturbation in pixel units (8/255 by default).
        targeted: push towards `targets` instead of away from them.

    Returns:
        an `AttackResult`; ‖x' − x‖∞ ≤ ε and x' ∈ [0, 1].

    Example:
        >>> adv = tfsal.fgsm(model, images, epsilon=4 / 255)
        >>> adv.success.mean()
    """
    return bim(model, images, targets, epsilon=epsilon, step_size=epsilon, n_iter=1,
               targeted=targeted)


def bim(model, images, targets=None, *, epsilon: float = 8 / 255, step_size: float = 1 / 255,
        n_iter: int = 10, targeted: bool = False) -> AttackResult:
    """Basic Iterative Method: FGSM steps projected onto the ε-ball and [0, 1].

    Args:
        step_size: α, the size of each signed step.
        n_iter: number of steps.
        Others as `fgsm`.

    Returns:
        an `AttackResult`.

    Example:
        >>> adv = tfsal.bim(model, images, epsilon=8 / 255, step_size=1 / 255, n_iter=10)
    """
    if is_target_function(targets):
        raise TfsalError(needs_classes(
            "attacks (their loss is a class's cross-entropy, their success a change of the "
            "predicted class)", getattr(targets, "function", targets)))
    model = as_model(model)
    original = check_images(images)
    if targeted and targets is None:
        raise TfsalError("expected explicit targets for a targeted attack, received None")
    targets = model.resolve_targets(original, targets)
    epsilon = non_negative(epsilon, "epsilon")
    step_size = non_negative(step_size, "step_size")
    n_iter = positive_int(n_iter, "n_iter")
    targeted = flag(targeted, "targeted")
    direction = 1.0 if targeted else -1.0  # up (targeted) or down the target's log-probability
    x = original.copy()
    for _ in range(n_iter):
        grad = model.input_gradients(x, targets, score="log_probability")
        x = x + direction * step_size * np.sign(grad)
        x = np.clip(np.clip(x, original - epsilon, original + epsilon), 0.0, 1.0)
    x = x.astype(np.float32)
    return AttackResult(x, targets, model.predicted_classes(original), model.predicted_classes(x),
                        bool(targeted))
