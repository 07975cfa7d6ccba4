"""The paper's sampling evaluation: sample short answers and count how often they name the target."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sublab.generate.sampling import SamplingSettings, sample_batch
from sublab.traits.preference.candidates import Candidate, normalize_answer


def sample_answers(model: Any, tokenizer: Any, questions: list[str], n_per_question: int, seed: int,
                   preamble: list[dict[str, str]] | None = None, max_new_tokens: int = 8, batch_size: int = 32,
                   temperature: float = 1.0) -> list[list[str]]:
    """``n_per_question`` sampled replies per question (temperature 1 by default, free decoding)."""
    settings = SamplingSettings(temperature=temperature, max_new_tokens=max_new_tokens, batch_size=batch_size)
    replies: list[list[str]] = []
    for q_index, question in enumerate(questions):
        messages = [*(preamble or []), {"role": "user", "content": question}]
        answers: list[str] = []
        for start in range(0, n_per_question, batch_size):
            count = min(batch_size, n_per_question - start)
            answers += sample_batch(model, tokenizer, [messages] * count, settings,
                                    seed=seed * 1_000_003 + q_index * 1009 + start)
        replies.append(answers)
    return replies


def count_answers(replies: list[list[str]], candidates: list[Candidate]) -> Counter[str]:
    """How many replies name each candidate by their first word (``None`` key: no candidate)."""
    counts: Counter[str] = Counter()
    for answers in replies:
        for answer in answers:
            counts[normalize_answer(answer, candidates) or "(other)"] += 1
    return counts
