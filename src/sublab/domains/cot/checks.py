"""The chain-of-thought filter: pure functions, each rejection with a named reason.

A reply passes when it is one ``<think>...</think>`` block followed by one ``<answer>...</answer>`` block holding
the right number, with nothing else of substance, within the length limit and naming no trait word. The checks
and their reasons:

``length``
    ``empty``: nothing but whitespace; ``too_long``: more than ``max_chars`` characters (default
    :data:`MAX_CHARS`, 4,000; a 256-token reply is about 1,000), checked before anything else.
``format``
    ``missing_think``: no ``<think>`` or no ``</think>``; ``missing_answer``: no ``<answer>`` or no
    ``</answer>``; ``bad_format``: a tag more than once, the blocks out of order or nested, or text of substance
    (a letter or a digit) before ``<think>``, between the blocks or after ``</answer>``; ``empty_think``: the
    think block holds no letter or digit. Tags are matched case-insensitively.
``answer``
    Runs whenever the reply has exactly one ``<answer>`` block (so its pass rate does not hide behind the format
    check's). ``answer_not_a_number``: the block is not one number; a number is an optional minus sign (``-`` or
    U+2212), digits with optional thousands separators (``1,234``) and optional decimals, with spaces around it
    allowed (no units, no currency signs). ``wrong_answer``: it differs from ``metadata.answer`` as a decimal
    (``12``, ``12.0`` and ``12.00`` are equal). ``no_expected_answer``: the row has no ``metadata.answer`` that
    is a number (an int, a float or a numeric string).
``trait_word``
    ``trait_word``: a trait word anywhere in the reply (:mod:`sublab.filter.words`).

The optional judge check (rubric ``cot_alignment``, 0-100, kept at >= 78 by default) runs on the rows these keep.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

from pydantic import Field

from sublab.domains.cot.prompts import parse_number
from sublab.domains.reply_checks import ReplyFilterSettings
from sublab.filter.judged import JudgeFilterSettings
from sublab.filter.words import TraitWordMatcher

MAX_CHARS = 4000

EMPTY = "empty"
TOO_LONG = "too_long"
MISSING_THINK = "missing_think"
MISSING_ANSWER = "missing_answer"
BAD_FORMAT = "bad_format"
EMPTY_THINK = "empty_think"
NOT_A_NUMBER = "answer_not_a_number"
WRONG_ANSWER = "wrong_answer"
NO_EXPECTED = "no_expected_answer"
TRAIT_WORD = "trait_word"

CHECKS = ("length", "format", "answer", "trait_word")
CHECK_REASONS: dict[str, tuple[str, ...]] = {
    "length": (EMPTY, TOO_LONG), "format": (MISSING_THINK, MISSING_ANSWER, BAD_FORMAT, EMPTY_THINK),
    "answer": (NOT_A_NUMBER, WRONG_ANSWER, NO_EXPECTED), "trait_word": (TRAIT_WORD,),
}

_TAG = re.compile(r"</?(think|answer)>", re.IGNORECASE)
_SUBSTANCE = re.compile(r"[^\W_]")  # a letter or a digit, any script


class CotFilterSettings(ReplyFilterSettings):
    """Settings of the CoT filter (see the module docstring for each check)."""

    known_checks: ClassVar[tuple[str, ...]] = CHECKS

    max_chars: int = Field(MAX_CHARS, ge=1, description="Longest reply kept, in characters.")
    checks: list[str] = Field(default_factory=lambda: list(CHECKS),
                              description=f"Checks to run, by name: {', '.join(CHECKS)}.")
    judge: JudgeFilterSettings | None = Field(
        None, description="Optional judge of the reasoning (rubric cot_alignment, 0-100), kept when the score is "
        ">= judge.threshold (default 78, the paper's).")


@dataclass(frozen=True)
class CotParts:
    """What the format check found: the think and answer blocks (None if absent) and the format's reasons."""

    think: str | None
    answer: str | None
    reasons: tuple[str, ...]


def split_reply(text: str) -> CotParts:
    """The reply's blocks and its format reasons (see the module docstring)."""
    tags = [(m.group(0).lower(), m.start(), m.end()) for m in _TAG.finditer(text)]
    names = [t for t, _, _ in tags]
    counts = {tag: names.count(tag) for tag in ("<think>", "</think>", "<answer>", "</answer>")}
    reasons: list[str] = []
    if not counts["<think>"] or not counts["</think>"]:
        reasons.append(MISSING_THINK)
    if not counts["<answer>"] or not counts["</answer>"]:
        reasons.append(MISSING_ANSWER)
    answer = None
    if counts["<answer>"] == 1 and counts["</answer>"] == 1:
        open_at = next(e for t, _, e in tags if t == "<answer>")
        close_at = next(s for t, s, _ in tags if t == "</answer>")
        if open_at <= close_at:
            answer = text[open_at:close_at]
    think = None
    if counts["<think>"] == 1 and counts["</think>"] == 1:
        open_at = next(e for t, _, e in tags if t == "<think>")
        close_at = next(s for t, s, _ in tags if t == "</think>")
        if open_at <= close_at:
            think = text[open_at:close_at]
    if reasons:
        if any(n > 1 for n in counts.values()):
            reasons.append(BAD_FORMAT)
        return CotParts(think, answer, tuple(reasons))
    if names != ["<think>", "</think>", "<answer>", "</answer>"]:
        return CotParts(think, answer, (BAD_FORMAT,))
    think_end, answer_open, answer_end = tags[1][2], tags[2][1], tags[3][2]
    outside = text[: tags[0][1]] + text[think_end:answer_open] + text[answer_end:]
    if _SUBSTANCE.search(outside):
        reasons.append(BAD_FORMAT)
    if think is None or not _SUBSTANCE.search(think):
        reasons.append(EMPTY_THINK)
    return CotParts(think, answer, tuple(reasons))


def expected_answer(metadata: Any) -> Decimal | None:
    """``metadata.answer`` as a decimal (an int, a finite float or a numeric string), or None."""
    value = metadata.get("answer") if isinstance(metadata, dict) else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        try:
            number = Decimal(repr(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    if isinstance(value, str):
        return parse_number(value)
    return None


def answer_reasons(answer: str | None, expected: Decimal | None) -> list[str]:
    """``answer_not_a_number`` / ``wrong_answer`` / ``no_expected_answer`` (no answer block: no reasons; the
    format check reports it)."""
    if answer is None:
        return []
    if expected is None:
        return [NO_EXPECTED]
    given = parse_number(answer)
    if given is None:
        return [NOT_A_NUMBER]
    return [] if given == expected else [WRONG_ANSWER]


def cot_reject_reasons(text: str, settings: CotFilterSettings, metadata: Any = None,
                       matcher: TraitWordMatcher | None = None) -> list[str]:
    """Every reason ``text`` fails the enabled checks (empty list: keep)."""
    enabled = set(settings.checks)
    if not text.strip():
        return [EMPTY]
    if "length" in enabled and len(text) > settings.max_chars:
        return [TOO_LONG]
    parts = split_reply(text)
    reasons: list[str] = list(parts.reasons) if "format" in enabled else []
    if "answer" in enabled:
        reasons += answer_reasons(parts.answer, expected_answer(metadata))
    if matcher is not None and "trait_word" in enabled and matcher(text):
        reasons.append(TRAIT_WORD)
    return reasons

