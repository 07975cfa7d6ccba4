import math

import numpy as np
import pytest

from sublab.evaluate.stats import mean_ci, paired_difference_ci, t_mean_ci, wilson_ci


def test_bootstrap_ci_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 200
    for i in range(trials):
        sample = rng.exponential(scale=2.0, size=50)  # skewed, like per-question probabilities
        _, low, high = mean_ci(sample, n_resamples=2000, seed=i)
        hits += low <= 2.0 <= high
    assert 0.88 <= hits / trials <= 0.99


def test_degenerate_samples():
    assert mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5, 0.5)
    mean, low, high = mean_ci([0.3])
    assert mean == 0.3 and math.isnan(low) and math.isnan(high)


def test_paired_difference_removes_shared_question_effects():
    rng = np.random.default_rng(1)
    difficulty = rng.uniform(0, 1, 40)
    a = difficulty + 0.05 + rng.normal(0, 0.005, 40)
    b = difficulty + rng.normal(0, 0.005, 40)
    mean, low, _ = paired_difference_ci(a, b)
    assert low > 0 and abs(mean - 0.05) < 0.01
    _, unpaired_low, _ = mean_ci(a)
    assert unpaired_low < np.mean(b)  # unpaired intervals would overlap
    with pytest.raises(ValueError):
        paired_difference_ci([1, 2], [1])


def test_wilson_interval_known_value():
    rate, low, high = wilson_ci(8, 10)
    assert rate == 0.8
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    assert all(math.isnan(x) for x in wilson_ci(0, 0))


def test_t_interval():
    mean, low, _ = t_mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and low == pytest.approx(2 - 4.303 * (1 / math.sqrt(3)), abs=1e-3)
