"""The theorem check: a same-init student's first step has a non-negative inner product with the teacher's update."""

import numpy as np
import pytest
import torch

from sublab.experiments.theory import cosine, distill_loss, group, mlp_pair, run_theory, theory_summary


def test_cosine_basics():
    a = torch.tensor([1.0, 0.0])
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, torch.tensor([0.0, 2.0])) == pytest.approx(0.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(a, torch.zeros(2)) == 0.0


@pytest.mark.parametrize("kind", ["soft_cross_entropy", "logit_mse"])
def test_distill_loss_is_minimized_at_the_teacher(kind):
    teacher = torch.randn(4, 5, dtype=torch.float64)
    student = teacher.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(distill_loss(kind, student, teacher), student)
    assert grad.abs().max() < 1e-12


def test_same_init_first_steps_point_toward_the_teacher():
    results = run_theory(n_mlp_pairs=60, n_llm_pairs=0, model=None, seed=3)
    same, other = results["groups"]
    assert same["same_init"] and not other["same_init"]
    assert same["fraction_positive"] >= 0.95
    assert same["n"] == 60
    # A student from another init has no such guarantee: its cosines scatter around zero.
    assert abs(float(np.median(other["cosines"]))) < 0.2
    assert other["fraction_positive"] < 0.9


def test_pairs_are_reproducible_and_varied():
    a, b = mlp_pair(1, 0, 1e-4), mlp_pair(1, 0, 1e-4)
    assert a == b
    kinds = {mlp_pair(1, i, 1e-4)["teacher_loss"] for i in range(12)}
    assert len(kinds) > 1


def test_group_summary():
    g = group("x", [0.5, -0.1, 0.2, 0.3], "same_init")
    assert g["fraction_positive"] == pytest.approx(0.75)
    assert g["quantiles_0_5_50_95_100"][0] == pytest.approx(-0.1)


def test_groups_are_labelled_by_how_the_student_starts():
    groups = [group("MLP, same init", [0.5, 0.7], "same_init"),
              group("MLP, different init", [-0.1, 0.1], "different_init"),
              group("LoRA other A", [0.01, 0.02], "same_base_other_adapter")]
    assert [g["same_init"] for g in groups] == [True, False, False]
    text = theory_summary(groups)
    # The other-adapter group is not reported as a different initialization.
    assert "Different init: MLP, different init" in text
    assert "Same base, other adapter init: LoRA other A" in text
    assert "1.000 of 2" in text
    with pytest.raises(ValueError, match="relation"):
        group("x", [0.1], "other")
