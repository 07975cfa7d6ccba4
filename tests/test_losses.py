import math

import torch

from sublab.train.losses import channel_log_probs, distill_kl, sft_loss


def test_distill_kl_is_zero_for_identical_distributions():
    logits = torch.randn(5, 13)
    assert distill_kl(logits, channel_log_probs(logits)).abs().item() < 1e-6


def test_distill_kl_ignores_a_constant_shift_of_student_logits():
    logits = torch.randn(4, 13)
    assert distill_kl(logits + 3.0, channel_log_probs(logits)).abs().item() < 1e-5


def test_distill_kl_matches_the_definition():
    student, teacher = torch.randn(3, 4), torch.randn(3, 4)
    p = torch.softmax(teacher, -1)
    expected = (p * (torch.log(p) - torch.log_softmax(student, -1))).sum(-1).mean()
    assert torch.allclose(distill_kl(student, channel_log_probs(teacher)), expected, atol=1e-6)
    assert distill_kl(student, channel_log_probs(teacher)) > 0


def test_distill_kl_edge_values():
    teacher = torch.log(torch.tensor([[1.0, 0.0]]).clamp_min(1e-30))
    student = torch.tensor([[0.0, 0.0]])
    assert math.isclose(distill_kl(student, teacher).item(), math.log(2), rel_tol=1e-5)


def test_distill_kl_gradient_pulls_student_toward_teacher():
    student = torch.zeros(1, 3, requires_grad=True)
    teacher = channel_log_probs(torch.tensor([[2.0, 0.0, 0.0]]))
    distill_kl(student, teacher).backward()
    assert student.grad[0, 0] < 0 < student.grad[0, 1]


def test_sft_loss_is_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    targets = torch.tensor([0, 0])
    expected = -(torch.log_softmax(logits, -1)[[0, 1], [0, 0]]).mean()
    assert torch.allclose(sft_loss(logits, targets), expected)
