"""Confidence intervals used throughout the reports (scipy underneath)."""

from __future__ import annotations

import numpy as np
from scipy import stats


def mean_ci(values: np.ndarray | list[float], confidence: float = 0.95, n_resamples: int = 10_000,
            seed: int = 0) -> tuple[float, float, float]:
    """Mean and a bootstrap (BCa) confidence interval over independent units (e.g. questions).

    A constant sample has a degenerate interval at its mean; one value has no interval (NaN bounds).
    """
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size < 2:
        return mean, float("nan"), float("nan")
    if np.allclose(data, data[0]):
        return mean, mean, mean
    result = stats.bootstrap((data,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                             method="BCa", random_state=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return mean, float(low), float(high)


def paired_difference_ci(a: np.ndarray | list[float], b: np.ndarray | list[float], confidence: float = 0.95,
                         seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over paired units with a bootstrap CI (pairs keep question difficulty out of it)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired samples need equal shapes")
    return mean_ci(a - b, confidence=confidence, seed=seed)


def t_mean_ci(values: np.ndarray | list[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean with a Student-t interval (for few independent units, e.g. seeds or models)."""
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if data.size < 2:
        return mean, float("nan"), float("nan")
    sem = stats.sem(data)
    if sem == 0:
        return mean, mean, mean
    low, high = stats.t.interval(confidence, data.size - 1, loc=mean, scale=sem)
    return mean, float(low), float(high)


def wilson_ci(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Proportion with a Wilson score interval."""
    if trials == 0:
        return float("nan"), float("nan"), float("nan")
    interval = stats.binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return successes / trials, float(interval.low), float(interval.high)
