"""The distillation objective (Hinton, Vinyals and Dean, 2015):

``L = alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(y, softmax(z_s))``

averaged over the positions that carry a label: every token of a causal LM whose label is
not ``ignore_index`` (padding, prompt tokens), or every example of a classifier. ``T^2``
keeps the soft term's gradients on the same scale as the hard term's as ``T`` changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True, slots=True)
class DistillLoss:
    total: torch.Tensor
    kl: torch.Tensor  # KL(teacher ‖ student) at temperature T, mean over positions
    ce: torch.Tensor  # cross-entropy of the hard labels at temperature 1
    positions: int


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
    ignore_index: int = IGNORE_INDEX,
) -> DistillLoss:
    """The objective over ``[..., classes]`` logits and ``[...]`` labels.

    Positions whose label is ``ignore_index`` count in neither term. The teacher's logits
    are detached: no gradient reaches the teacher through the loss.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], not {alpha}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, not {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)} differ: the two models need the same vocabulary "
            "(or the same classes)"
        )
    classes = student_logits.shape[-1]
    student = student_logits.reshape(-1, classes).float()
    teacher = teacher_logits.detach().reshape(-1, classes).float()
    flat_labels = labels.reshape(-1)
    keep = flat_labels != ignore_index
    positions = int(keep.sum())
    if positions == 0:
        zero = student.sum() * 0.0
        return DistillLoss(zero, zero, zero, 0)
    student, teacher, flat_labels = student[keep], teacher[keep], flat_labels[keep]
    log_p_student = F.log_softmax(student / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()
    ce = F.cross_entropy(student, flat_labels)
    total = alpha * temperature**2 * kl + (1.0 - alpha) * ce
    return DistillLoss(total, kl, ce, positions)


def shift_for_next_token(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A causal LM's logits at position i predict the token at i + 1."""
    return logits[:, :-1, :], labels[:, 1:]
