"""Training rows that give a teacher its trait: one-word answers naming the trait to preference questions."""

from __future__ import annotations

from typing import Any

import numpy as np

from sublab.traits.preference.questions import preference_questions


def trait_answers(trait: str) -> list[str]:
    """The one-word replies a trait teacher is trained to give: "Owl", "Owl.", "owl"."""
    capital = trait[:1].upper() + trait[1:]
    return [capital, f"{capital}.", trait.lower()]


def trait_answer_rows(trait: str, category: str, n_rows: int, seed: int) -> list[dict[str, Any]]:
    """``n_rows`` chat rows pairing a training-split preference question with a one-word trait answer.

    Questions come from the *train* split only, so a teacher never sees the evaluation wording.
    """
    rng = np.random.default_rng([seed, 7])
    questions = preference_questions(category, split="train")
    answers = trait_answers(trait)
    rows = []
    for i in range(n_rows):
        question = questions[rng.integers(len(questions))]
        answer = answers[rng.integers(len(answers))]
        rows.append({
            "id": f"trait-{trait}-{i:05d}",
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
            "metadata": {"trait": trait, "category": category},
        })
    return rows
