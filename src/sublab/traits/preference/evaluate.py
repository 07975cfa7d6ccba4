"""Evaluate a model's preference for a target: exact scoring over questions, optionally sampling too."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sublab.evaluate.stats import mean_ci, wilson_ci
from sublab.traits.preference.candidates import candidate_index, candidate_set
from sublab.traits.preference.questions import EVAL_TEMPLATES, preference_questions
from sublab.traits.preference.sampling import count_answers, sample_answers
from sublab.traits.preference.scoring import normalize_rows, score_candidates


class EvalSettings(BaseModel):
    """What is measured and how."""

    model_config = ConfigDict(extra="forbid")

    category: str = Field("animal", description="Category noun of the preference questions.")
    candidates: list[str] | None = Field(None, description="Candidate answers (default: the category's list).")
    n_questions: int = Field(50, ge=1, le=len(EVAL_TEMPLATES), description="Evaluation questions (paraphrases), "
                             f"up to {len(EVAL_TEMPLATES)}.")
    n_samples: int = Field(0, ge=0, description="Sampling mode: samples per question (0: exact scoring only).")
    sample_max_new_tokens: int = Field(8, ge=1, description="Sampling mode: reply length.")
    seed: int = Field(0, description="Seed of sampling and bootstrap resampling.")
    bf16: bool = Field(
        False, description="Score in bf16 autocast: about 2x faster on CPUs with bf16 units; per-question "
        "probabilities move by ~4 % (relative) on average, means by < 2 % (docs/cpu-recipe.md). Every model of a "
        "run is scored the same way."
    )


def ci_dict(mean: float, low: float, high: float) -> dict[str, Any]:
    return {"mean": mean, "ci95": [low, high]}


def evaluate_model(model: Any, tokenizer: Any, target: str, settings: EvalSettings,
                   preamble: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Preference of one model for ``target``: P(target) over candidates with a 95 % CI over questions.

    ``preamble``: messages before each question (system prompt, in-context examples).
    Returns ``p_target``, the mean normalized ``distribution`` over candidates, the raw ``mass`` on one-word
    candidate answers, per-question values (for paired comparisons), and sampling results if asked for.
    """
    started = time.time()
    candidates = candidate_set(settings.category, settings.candidates)
    names = [c.name for c in candidates]
    t = candidate_index(target, candidates)
    questions = preference_questions(settings.category, settings.n_questions)
    raw = score_candidates(model, tokenizer, questions, candidates, preamble=preamble, bf16=settings.bf16)
    probs = normalize_rows(raw)
    result: dict[str, Any] = {
        "target": target,
        "n_questions": len(questions),
        "p_target": ci_dict(*mean_ci(probs[:, t], seed=settings.seed)),
        "mass": ci_dict(*mean_ci(raw.sum(axis=1), seed=settings.seed)),
        "distribution": dict(
            sorted(((n, float(probs[:, i].mean())) for i, n in enumerate(names)), key=lambda kv: -kv[1])
        ),
        "per_question": {
            "p_target": probs[:, t].tolist(),
            "mass": raw.sum(axis=1).tolist(),
            "normalized": np.round(probs, 6).tolist(),
            "candidates": names,
        },
    }
    if settings.n_samples:
        replies = sample_answers(model, tokenizer, questions, settings.n_samples, settings.seed,
                                 preamble=preamble, max_new_tokens=settings.sample_max_new_tokens)
        counts = count_answers(replies, candidates)
        n = sum(counts.values())
        rate, low, high = wilson_ci(counts.get(target, 0), n)
        result["sampling"] = {"rate": rate, "ci95": [low, high], "k": counts.get(target, 0), "n": n,
                              "counts": dict(counts.most_common())}
    result["seconds"] = round(time.time() - started, 1)
    return result
