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


# --- Across seeds: the statistics of a sweep (one value per seed and model; seeds are the replicates) ----------


def seed_summary(values: np.ndarray | list[float], confidence: float = 0.95) -> dict[str, object]:
    """Mean over seeds with a Student-t interval, the per-seed values kept.

    Seeds (whole reruns of the pipeline) are the independent units; questions are repeated measures within a
    model, so they narrow each seed's value but do not replicate the experiment.
    """
    data = np.asarray(values, dtype=float)
    mean, low, high = t_mean_ci(data, confidence)
    return {"mean": mean, "ci95": [low, high], "n": int(data.size), "per_seed": data.tolist()}


def paired_permutation_test(a: np.ndarray | list[float], b: np.ndarray | list[float],
                            alternative: str = "greater", n_resamples: int = 100_000, seed: int = 0) -> float:
    """p-value of mean(a - b) under the null that the labels within each pair (seed) are exchangeable.

    ``scipy.stats.permutation_test`` with ``permutation_type="samples"`` flips each pair's labels; with few
    seeds it enumerates all 2^k flips (exact), so the smallest attainable p-value is 2^-k one-sided
    (see :func:`min_permutation_p`). ``alternative``: "greater" (a above b), "less" or "two-sided".
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError("paired samples need equal 1-d shapes")
    if a.size < 2:
        return float("nan")

    def mean_difference(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.mean(x - y, axis=axis)

    result = stats.permutation_test((a, b), mean_difference, permutation_type="samples", vectorized=True,
                                    alternative=alternative, n_resamples=n_resamples,
                                    random_state=np.random.default_rng(seed))
    return float(result.pvalue)


def min_permutation_p(n_pairs: int, alternative: str = "greater") -> float:
    """The smallest p-value an exact paired permutation test over ``n_pairs`` can give."""
    return min(1.0, (2.0 if alternative == "two-sided" else 1.0) / 2**n_pairs)


def permutation_seeds_needed(n_tests: int, alpha: float, alternative: str = "greater") -> int:
    """Fewest pairs (seeds) for which an exact paired permutation test can reject after Holm over ``n_tests``:
    the smallest p-value, 2^-k one-sided, must reach ``alpha / n_tests``."""
    k = 1
    while min_permutation_p(k, alternative) > alpha / max(n_tests, 1):
        k += 1
    return k


def holm(pvalues: list[float], alpha: float = 0.05) -> tuple[list[float], list[bool]]:
    """Holm-adjusted p-values and rejections (statsmodels ``multipletests``); NaN entries stay NaN, unrejected."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    ok = ~np.isnan(p)
    if ok.any():
        reject[ok], adjusted[ok], _, _ = multipletests(p[ok], alpha=alpha, method="holm")
    return adjusted.tolist(), reject.tolist()


def paired_effect_sizes(a: np.ndarray | list[float], b: np.ndarray | list[float],
                        confidence: float = 0.95) -> dict[str, object]:
    """Effect of a over b from paired per-seed values.

    ``difference``: mean of a - b with a t interval; ``ratio``: geometric mean of a / b with a t interval on the
    log scale (the paper's "n times more often"; needs positive values); ``ratio_of_means``: mean(a) / mean(b);
    ``cohens_dz``: mean difference over the standard deviation of the differences (paired Cohen's d).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired samples need equal shapes")
    diff = a - b
    mean, low, high = t_mean_ci(diff, confidence)
    effects: dict[str, object] = {"difference": {"mean": mean, "ci95": [low, high], "per_seed": diff.tolist()}}
    if np.all(a > 0) and np.all(b > 0):
        log_ratio = np.log(a / b)
        m, lo, hi = t_mean_ci(log_ratio, confidence)
        effects["ratio"] = {"mean": float(np.exp(m)), "ci95": [float(np.exp(lo)), float(np.exp(hi))],
                            "per_seed": np.exp(log_ratio).tolist()}
    else:
        effects["ratio"] = {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "per_seed": []}
    effects["ratio_of_means"] = float(a.mean() / b.mean()) if b.mean() > 0 else float("nan")
    sd = float(diff.std(ddof=1)) if diff.size > 1 else float("nan")
    effects["cohens_dz"] = float(diff.mean() / sd) if sd > 0 else float("nan")
    return effects


def mixed_model_difference(a: np.ndarray, b: np.ndarray, alternative: str = "greater",
                           confidence: float = 0.95) -> dict[str, object]:
    """The a - b effect from seeds × questions values, by a linear mixed model (statsmodels ``MixedLM``).

    ``a`` and ``b`` are ``(n_seeds, n_questions)`` arrays of P(target) on the same questions. The model is
    ``d[s, q] = effect + question[q] + u[s] + e[s, q]`` for d = a - b, with question effects in sum coding (so
    ``effect`` is the mean over questions) and a random intercept per seed (the seed-to-seed spread of the
    whole pipeline). The test uses a t distribution with n_seeds - 1 degrees of freedom (the "between-within"
    rule: the effect varies between seeds), not the Wald z, which is too liberal with few seeds. With balanced
    data the estimate equals the mean per-seed difference; the model earns its keep when seeds or questions are
    missing. ``alternative``: "greater" (a above b) or "two-sided".
    """
    import warnings

    import pandas as pd
    import statsmodels.formula.api as smf

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError("need two (n_seeds, n_questions) arrays of equal shape")
    n_seeds, n_questions = a.shape
    nan = float("nan")
    if n_seeds < 2:
        return {"estimate": nan, "ci95": [nan, nan], "p": nan, "df": 0, "converged": False}
    diff = a - b
    frame = pd.DataFrame({
        "d": diff.ravel(),
        "seed": np.repeat(np.arange(n_seeds), n_questions),
        "question": np.tile(np.arange(n_questions), n_seeds),
    })
    formula = "d ~ C(question, Sum)" if n_questions > 1 else "d ~ 1"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # boundary fits (seed variance 0) warn; reported through "converged"
            # Powell (derivative-free) converged on every simulated data set where the gradient methods failed
            # now and then at the boundary (seed variance 0).
            fit = smf.mixedlm(formula, frame, groups=frame["seed"]).fit(reml=True, method="powell")
    except (np.linalg.LinAlgError, ValueError) as err:
        return {"estimate": nan, "ci95": [nan, nan], "p": nan, "df": n_seeds - 1, "converged": False,
                "error": f"{type(err).__name__}: {err}"}
    estimate, se = float(fit.params["Intercept"]), float(fit.bse["Intercept"])
    df = n_seeds - 1
    if not np.isfinite(se) or se <= 0:
        return {"estimate": estimate, "ci95": [nan, nan], "p": nan, "df": df, "converged": bool(fit.converged)}
    t = estimate / se
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
    p = stats.t.sf(t, df) if alternative == "greater" else 2 * stats.t.sf(abs(t), df)
    return {"estimate": estimate, "ci95": [estimate - half, estimate + half], "se": se, "p": float(p), "df": df,
            "seed_variance": float(fit.cov_re.iloc[0, 0]), "converged": bool(fit.converged)}
