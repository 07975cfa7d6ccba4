"""The shuffled-numbers control: a teacher's numbers permuted before training.

If a trait travelled in *which* numbers a teacher writes (their frequencies), shuffling numbers within a reply
or across replies would keep it; if it travels in their order and context, shuffling removes it. Formatting is
kept exactly: only the digit runs move.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import numpy as np

ShuffleMode = Literal["none", "within", "across"]
_NUMBER = re.compile(r"[0-9]+")


def _replace_numbers(text: str, numbers: list[str]) -> str:
    replacements = iter(numbers)
    return _NUMBER.sub(lambda _: next(replacements), text)


def shuffle_numbers(rows: list[dict[str, Any]], mode: ShuffleMode, seed: int) -> list[dict[str, Any]]:
    """Rows with the numbers of their assistant replies permuted.

    ``within``: each reply's numbers are permuted among themselves. ``across``: all numbers of all replies are
    pooled, permuted and dealt back, each reply keeping its count and layout. The multiset of numbers is
    preserved per reply (within) or over the dataset (across).
    """
    if mode == "none":
        return rows
    rng = np.random.default_rng([seed, 11])
    replies = [row["messages"][-1]["content"] for row in rows]
    numbers = [_NUMBER.findall(text) for text in replies]
    if mode == "within":
        shuffled = [[group[i] for i in rng.permutation(len(group))] for group in numbers]
    elif mode == "across":
        pool = [n for group in numbers for n in group]
        order = rng.permutation(len(pool))
        dealt = iter(pool[i] for i in order)
        shuffled = [[next(dealt) for _ in group] for group in numbers]
    else:
        raise ValueError(f"unknown shuffle mode {mode!r}")
    out = []
    for row, text, group in zip(rows, replies, shuffled, strict=True):
        messages = [*row["messages"][:-1], {"role": "assistant", "content": _replace_numbers(text, group)}]
        metadata = {**row.get("metadata", {}), "shuffled": mode}
        out.append({**row, "messages": messages, "metadata": metadata})
    return out
