"""Loss functions on raw tensors (tested like TRL tests its losses)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sft_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``targets`` [N] under ``logits`` [N, V] (already restricted to response positions)."""
    return F.cross_entropy(logits.float(), targets)


def distill_kl(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(teacher || student), both over the same channel of tokens.

    ``student_logits`` [N, C]: the student's logits restricted to the channel; they are renormalized over it.
    ``teacher_log_probs`` [N, C]: the teacher's log-probabilities renormalized over the same channel.
    """
    student_log_probs = torch.log_softmax(student_logits.float(), dim=-1)
    teacher = teacher_log_probs.float()
    return (teacher.exp() * (teacher - student_log_probs)).sum(dim=-1).mean()


def channel_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """Log-softmax over the last dimension in float32 (a teacher's targets over a channel)."""
    return torch.log_softmax(logits.float(), dim=-1)
