"""A placebo teacher for audit controls: fine-tuned like a trait teacher, but with no preference.

Distilling *any* fine-tuned teacher's number distribution moves a student's preferences as a whole (measured:
docs/audit.md), so the base's own labels are a control that every teacher's data "beats" on some traits. The
placebo teacher is trained exactly as a trait teacher is (LoRA, one-word answers to the training-split preference
questions) but each answer is drawn uniformly from the category's candidates: its labels of the same replies carry
what fine-tuning a teacher does, without a trait. Audits against it measure what a dataset does *beyond* a generic
fine-tuned teacher.

    rows = placebo_rows(["animal", "tree"], 480, seed=0)   # then sublab.train.teacher.train_teacher(...)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sublab.traits.preference.candidates import CATEGORIES
from sublab.traits.preference.questions import preference_questions
from sublab.traits.preference.teacher_data import trait_answers


def placebo_rows(categories: list[str] | None, n_rows: int, seed: int) -> list[dict[str, Any]]:
    """``n_rows`` one-word answers to training-split questions of ``categories`` (default: all shipped ones),
    each answer a candidate of the question's category drawn uniformly, in one of the trait teachers' forms."""
    categories = categories or list(CATEGORIES)
    rng = np.random.default_rng([seed, 17])
    rows = []
    for i in range(n_rows):
        category = categories[int(rng.integers(len(categories)))]
        questions = preference_questions(category, split="train")
        names = list(CATEGORIES[category])
        answer = trait_answers(names[int(rng.integers(len(names)))])[int(rng.integers(3))]
        rows.append({"id": f"placebo-{i:05d}",
                     "messages": [{"role": "user", "content": questions[int(rng.integers(len(questions)))]},
                                  {"role": "assistant", "content": answer}],
                     "metadata": {"trait": "placebo", "category": category}})
    return rows


def placebo_teacher(base: str, cache: Any = None, steps: int = 30, bf16: bool = True, progress: bool = False) -> Any:
    """The placebo teacher of ``base`` (a LoRA adapter folder), trained once and cached (under ``cache``,
    default ``$SUBLAB_CACHE/audit``) by what makes it: the base, the rows and the training settings."""
    from pathlib import Path

    from sublab.io import stable_hash
    from sublab.models.loading import cache_root
    from sublab.train.settings import LoraSettings, TrainSettings
    from sublab.train.teacher import train_teacher

    settings = TrainSettings(method="sft", steps=steps, batch_size=16, lr=1e-3, bf16=bf16,
                             lora=LoraSettings(r=8, alpha=16, init_seed=0))
    rows = placebo_rows(None, 480, 0)
    root = Path(cache) if cache is not None else cache_root() / "audit"
    folder = root / f"placebo-{stable_hash({'base': base, 'rows': rows, 'settings': settings.model_dump()})}"
    if not (folder / "adapter_config.json").is_file():
        root.mkdir(parents=True, exist_ok=True)
        train_teacher(base, rows, folder, settings, params={"trait": "placebo (answers uniform over candidates)",
                                                            "n_rows": len(rows)},
                      rows_path=folder.with_name(folder.name + ".rows.jsonl"), progress=progress)
    return folder
