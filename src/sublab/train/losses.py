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


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 logits in float32 (softmaxes need it); float64 stays float64 (gradient checks need it)."""
    return tensor.float() if tensor.dtype.itemsize < 4 else tensor


def top_k_kl(student_logits: torch.Tensor, teacher_ids: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """Mean over positions of the KL from the teacher's top-k plus one tail bucket to the student's.

    ``student_logits`` [N, V]: the student's logits over the whole vocabulary. ``teacher_ids`` [N, k] (distinct
    per row) and ``teacher_log_probs`` [N, k]: the teacher's k most probable tokens and their full-vocabulary
    log-probabilities (not renormalized). With p_i the teacher's and q_i the student's probabilities of the top-k
    tokens, T = max(0, 1 - sum_i p_i) the teacher's remaining (tail) mass and S = 1 - sum_i q_i the student's
    (computed from the student's logits outside the top-k, so it is exact even when tiny), the loss is

        sum_i p_i (log p_i - log q_i) + T (log T - log S),

    the KL between the two distributions coarsened to k + 1 outcomes: never above the full KL, equal to it when
    k = V (no tail) or when the teacher has no tail mass, and zero when the student matches the teacher's top-k
    and its tail mass. T = 0 contributes nothing. The tail bucket is what keeps the student from moving mass it
    should keep outside the top-k onto the top-k tokens: its gradient pushes the tail tokens' logits together,
    each in proportion to its own probability (:func:`top_k_kl_logit_grad`).
    """
    logits = _at_least_float32(student_logits)
    log_normalizer = torch.logsumexp(logits, dim=-1)
    student_top = logits.gather(-1, teacher_ids) - log_normalizer[:, None]
    teacher = teacher_log_probs.to(logits.dtype)
    p = teacher.exp()
    loss = (p * (teacher - student_top)).sum(dim=-1)
    if teacher_ids.shape[-1] < logits.shape[-1]:
        tail = (1 - p.sum(dim=-1)).clamp_min(0)
        student_tail = torch.logsumexp(logits.scatter(-1, teacher_ids, float("-inf")), dim=-1) - log_normalizer
        tiny = torch.finfo(tail.dtype).tiny
        loss = loss + torch.where(tail > 0, tail * (torch.log(tail.clamp_min(tiny)) - student_tail), 0.0)
    return loss.mean()


def top_k_kl_logit_grad(student_logits: torch.Tensor, teacher_ids: torch.Tensor,
                        teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """The gradient of :func:`top_k_kl` with respect to ``student_logits``, in closed form.

    With q the student's softmax: ``(q_m - p_m) / N`` for a top-k token m, and ``q_m (1 - T / S) / N`` for a tail
    token (T, S: teacher's and student's tail masses): a student with more tail mass than the teacher (S > T)
    lowers every tail logit by the same relative amount; one with less raises them.
    """
    logits = _at_least_float32(student_logits)
    q = torch.softmax(logits, dim=-1)
    p = teacher_log_probs.to(logits.dtype).exp()
    n = logits.shape[0]
    grad = q.clone()
    if teacher_ids.shape[-1] < logits.shape[-1]:
        in_top = torch.zeros_like(q, dtype=torch.bool).scatter(-1, teacher_ids, True)
        tail = (1 - p.sum(dim=-1)).clamp_min(0)
        student_tail = torch.where(in_top, 0.0, q).sum(dim=-1)
        grad = torch.where(in_top, q, q * (1 - tail / student_tail)[:, None])
    grad = grad.scatter_add(-1, teacher_ids, -p)
    return grad / n
