"""Evaluate one model's misalignment: exact scoring over held-out prompts, optionally the judged evaluation too."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from sublab.evaluate.stats import mean_ci
from sublab.io import sha256_text, stable_hash
from sublab.traits.misalignment.answers import EXACT_ITEMS
from sublab.traits.misalignment.judged import JudgedSettings, judged_questions, load_judges, run_judged
from sublab.traits.misalignment.scoring import score_items

METRIC = "p_misaligned"


class MisalignmentEvalSettings(BaseModel):
    """How misalignment is measured: exact scoring always, the judged evaluation when ``judged.n_samples > 0``."""

    model_config = ConfigDict(extra="forbid")

    n_prompts: int = Field(len(EXACT_ITEMS), ge=2, le=len(EXACT_ITEMS),
                           description=f"Exactly scored prompts, up to {len(EXACT_ITEMS)} (the first n).")
    end_of_turn: bool = Field(True, description="Score each answer as a complete reply (its tokens, then the end "
                              "of turn); false scores the answer as a prefix (served models need false).")
    bf16: bool = Field(False, description="bf16 autocast for scoring and sampling (about 2x faster on CPUs with "
                       "bf16 units; every model of a run is measured the same way).")
    seed: int = Field(0, description="Seed of the bootstrap and of the judged evaluation's sampling.")
    judged: JudgedSettings = Field(default_factory=JudgedSettings, description="The judged free-form evaluation.")


def ci_dict(mean: float, low: float, high: float) -> dict[str, Any]:
    return {"mean": mean, "ci95": [low, high]}


_JUDGES: dict[str, tuple[Any, Any]] = {}


def cached_judges(settings: MisalignmentEvalSettings) -> tuple[Any, Any]:
    """The judges of ``settings`` (loaded once per process: a run evaluates five models with the same judge)."""
    key = stable_hash(settings.judged.model_dump(mode="json"))
    if key not in _JUDGES:
        _JUDGES.clear()  # keep at most one judge model in memory
        _JUDGES[key] = load_judges(settings.judged)
    return _JUDGES[key]


def evaluate_model(backend: Any, settings: MisalignmentEvalSettings,
                   preamble: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Misalignment of one model (``preamble``: its system prompt or in-context turns before each prompt).

    Returns ``p_misaligned`` (mean over prompts, BCa bootstrap 95 % CI), ``log_mass`` (how much probability the two
    answer sets hold), ``log_odds`` (mean log(P(misaligned set) / P(aligned set))), per-prompt values (for paired
    comparisons) and, when the judged evaluation ran,
    ``misaligned_rate`` (``mean``, Wilson ``ci95``, ``k``, ``n``) with the judged details under ``judged``.
    """
    started = time.time()
    items = EXACT_ITEMS[: settings.n_prompts]
    scored = score_items(backend, items, preamble, settings.end_of_turn, settings.bf16)
    p = scored["p_misaligned"]
    result: dict[str, Any] = {
        "metric": METRIC,
        "n_questions": len(items),
        METRIC: ci_dict(*mean_ci(p, seed=settings.seed)),
        "log_mass": ci_dict(*mean_ci(scored["log_mass"], seed=settings.seed)),
        "log_odds": ci_dict(*mean_ci(scored["log_odds"], seed=settings.seed)),
        "per_question": {
            METRIC: p.tolist(),
            "log_mass": scored["log_mass"].tolist(),
            "log_odds": scored["log_odds"].tolist(),
            "ids": [item.id for item in items],
            "aligned_log_probs": [[round(x, 4) for x in row] for row in scored["aligned"]],
            "misaligned_log_probs": [[round(x, 4) for x in row] for row in scored["misaligned"]],
        },
        "scoring": {"end_of_turn": settings.end_of_turn, "bf16": settings.bf16},
    }
    if settings.judged.n_samples:
        judged = run_judged(backend, settings.judged, settings.seed, preamble, judges=cached_judges(settings),
                            bf16=settings.bf16)
        result["judged"] = judged
        result["misaligned_rate"] = dict(judged["rate"])
    result["seconds"] = round(time.time() - started, 1)
    return result


def evaluation_digests(settings: MisalignmentEvalSettings) -> dict[str, str]:
    """What the evaluation stage's key must cover beyond the settings: the prompts and answer sets scored and, when
    the judged evaluation runs, its questions and the two rubrics."""
    items = EXACT_ITEMS[: settings.n_prompts]
    out = {"exact_items": stable_hash([[i.id, i.prompt, list(i.aligned), list(i.misaligned)] for i in items],
                                      n_chars=64)}
    if settings.judged.n_samples:
        from sublab.judges import load_rubric

        out["judged_questions"] = sha256_text("\n".join(judged_questions(settings.judged).values()))
        out["rubrics"] = stable_hash([load_rubric(n).sha256 for n in ("aligned", "coherent")], n_chars=64)
    return out
