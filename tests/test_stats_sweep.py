"""Statistics across seeds on synthetic data with known effects: coverage, exact tests, Holm, effect sizes."""

import math

import numpy as np
import pytest
from scipy import stats

from sublab.evaluate.stats import (
    holm,
    min_permutation_p,
    mixed_model_difference,
    paired_effect_sizes,
    paired_permutation_test,
    permutation_seeds_needed,
    seed_summary,
)


def test_seed_summary_interval_covers_the_true_mean_about_95_percent():
    rng = np.random.default_rng(0)
    trials, hits = 2000, 0
    for _ in range(trials):
        entry = seed_summary(rng.normal(0.05, 0.01, size=5))
        low, high = entry["ci95"]
        hits += low <= 0.05 <= high
    assert 0.935 <= hits / trials <= 0.965


def test_seed_summary_keeps_per_seed_values():
    entry = seed_summary([0.1, 0.2, 0.3])
    assert entry["per_seed"] == [0.1, 0.2, 0.3] and entry["n"] == 3 and entry["mean"] == pytest.approx(0.2)


def test_difference_and_ratio_intervals_cover_known_effects():
    """Paired per-seed values with a seed effect shared by both students: difference and ratio cover the truth."""
    rng = np.random.default_rng(1)
    trials, diff_hits, ratio_hits = 1000, 0, 0
    for _ in range(trials):
        seed_effect = rng.normal(0, 0.3, size=6)
        control = np.exp(np.log(0.01) + seed_effect + rng.normal(0, 0.1, size=6))
        trait = np.exp(np.log(0.03) + seed_effect + rng.normal(0, 0.1, size=6))  # 3× the control, on average
        effects = paired_effect_sizes(trait, control)
        low, high = effects["ratio"]["ci95"]
        ratio_hits += low <= 3.0 <= high
        d = rng.normal(0.02, 0.01, size=6)
        low, high = paired_effect_sizes(0.01 + d, np.full(6, 0.01))["difference"]["ci95"]
        diff_hits += low <= 0.02 <= high
    assert 0.92 <= ratio_hits / trials <= 0.975
    assert 0.92 <= diff_hits / trials <= 0.975


def test_effect_sizes_by_hand():
    effects = paired_effect_sizes([0.04, 0.06, 0.05], [0.01, 0.02, 0.03])
    diff = np.array([0.03, 0.04, 0.02])
    assert effects["difference"]["mean"] == pytest.approx(0.03)
    assert effects["cohens_dz"] == pytest.approx(0.03 / diff.std(ddof=1))
    assert effects["ratio_of_means"] == pytest.approx(0.05 / 0.02)
    assert effects["ratio"]["mean"] == pytest.approx(math.exp(np.mean(np.log([4.0, 3.0, 5 / 3]))))
    assert effects["ratio"]["per_seed"] == pytest.approx([4.0, 3.0, 5 / 3])
    assert math.isnan(paired_effect_sizes([0.0, 0.1], [0.1, 0.1])["ratio"]["mean"])  # a zero: no log ratio


def test_exact_permutation_test_by_enumeration():
    """All 2^5 sign flips of the differences: p = share of flips with a mean at least as large."""
    a = np.array([0.05, 0.06, 0.055, 0.07, 0.04])
    b = np.array([0.01, 0.08, 0.02, 0.015, 0.011])
    d = a - b
    flips = np.array(np.meshgrid(*[[1, -1]] * 5)).reshape(5, -1).T
    means = (flips * d).mean(axis=1)
    expected = np.mean(means >= d.mean() - 1e-12)
    assert paired_permutation_test(a, b, "greater") == pytest.approx(expected)
    assert paired_permutation_test(a, b, "greater") == pytest.approx(2 / 32)  # only one flip ties or beats it
    two_sided = np.mean(np.abs(means) >= abs(d.mean()) - 1e-12)
    assert paired_permutation_test(a, b, "two-sided") == pytest.approx(two_sided)
    assert math.isnan(paired_permutation_test([0.1], [0.2]))


def test_min_permutation_p_and_seeds_needed():
    assert min_permutation_p(5) == 1 / 32 and min_permutation_p(5, "two-sided") == 1 / 16
    assert paired_permutation_test([1, 2, 3, 4, 5], [0, 0, 0, 0, 0]) == pytest.approx(min_permutation_p(5))
    # Holm over 10 traits at 0.05: the smallest p must be <= 0.005, so 2^-k <= 0.005: k >= 8.
    assert permutation_seeds_needed(10, 0.05) == 8
    assert permutation_seeds_needed(1, 0.05) == 5


def test_permutation_p_values_are_valid_under_the_null():
    """Null data: P(p <= x) <= x at every attainable level, and close to it (the exact test is not conservative)."""
    rng = np.random.default_rng(2)
    pvalues = np.array([paired_permutation_test(rng.normal(size=6), rng.normal(size=6)) for _ in range(1500)])
    for level in (2 / 64, 8 / 64, 16 / 64, 32 / 64):
        rate = np.mean(pvalues <= level + 1e-12)
        assert rate <= level + 0.03
        assert rate >= level - 0.03


def test_permutation_test_finds_a_strong_effect():
    rng = np.random.default_rng(3)
    control = rng.normal(0.01, 0.002, size=8)
    assert paired_permutation_test(control + 0.02, control) == pytest.approx(1 / 256)


def test_holm_matches_a_hand_checked_example():
    # Sorted: 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, then max(0.04·1, 0.06) = 0.06.
    adjusted, reject = holm([0.01, 0.04, 0.03, 0.005], alpha=0.05)
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert reject == [True, False, False, True]


def test_holm_skips_missing_p_values():
    adjusted, reject = holm([0.01, float("nan"), 0.02], alpha=0.05)
    assert adjusted[0] == pytest.approx(0.02) and adjusted[2] == pytest.approx(0.02)
    assert math.isnan(adjusted[1]) and reject == [True, False, True]


def _questions(rng, n_seeds, n_questions, effect, seed_sd=0.004, noise_sd=0.01):
    difficulty = rng.uniform(0.0, 0.05, n_questions)
    control = difficulty + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, noise_sd, (n_seeds, n_questions))
    trait = difficulty + effect + rng.normal(0, seed_sd, (n_seeds, 1)) + rng.normal(0, noise_sd, (n_seeds, n_questions))
    return trait, control


def test_mixed_model_recovers_a_known_effect():
    rng = np.random.default_rng(4)
    trait, control = _questions(rng, 6, 30, effect=0.02)
    fit = mixed_model_difference(trait, control)
    assert fit["ci95"][0] < 0.02 < fit["ci95"][1]
    assert fit["estimate"] == pytest.approx((trait - control).mean(), abs=1e-9)  # balanced: the mean difference
    assert fit["p"] < 0.01 and fit["df"] == 5


def test_mixed_model_p_values_are_roughly_uniform_under_the_null():
    rng = np.random.default_rng(5)
    pvalues = [mixed_model_difference(*_questions(rng, 5, 10, effect=0.0), alternative="two-sided")["p"]
               for _ in range(150)]
    assert stats.kstest(pvalues, "uniform").pvalue > 0.01
    assert np.mean(np.array(pvalues) < 0.05) < 0.12


def test_mixed_model_needs_two_seeds():
    fit = mixed_model_difference(np.ones((1, 4)), np.zeros((1, 4)))
    assert math.isnan(fit["p"])
    with pytest.raises(ValueError):
        mixed_model_difference(np.ones((2, 3)), np.ones((2, 4)))
