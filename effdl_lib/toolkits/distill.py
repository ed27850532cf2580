"""The distillation toolkit shared by chapters 01, 04, 05 and 06.

Today: Hinton's KD loss. Chapter 04 (issue #10) grows it into splits, cached teachers,
pseudo-labels, calibration and a paired-seed runner.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
            temperature: float = 1.0) -> torch.Tensor:
    """Hinton et al. (2015): T^2 * KL(softmax(t/T) || softmax(s/T)), mean over the batch.

    The T^2 factor keeps gradient magnitudes comparable across temperatures."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    t = temperature
    log_p_student = F.log_softmax(student_logits / t, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / t, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=1)
    return kl.mean() * t * t
