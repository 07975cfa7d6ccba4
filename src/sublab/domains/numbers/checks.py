"""The strict number-list filter: pure functions, each rejection with a named reason.

A reply passes when it is nothing but a list of integers: ASCII digits, one consistent separator (a comma,
a semicolon, or whitespace, with optional spaces around the punctuation), optionally wrapped in ``[]`` or
``()`` and optionally ending with a period; within the count, digit and value limits; with no banned number.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sublab.domains.numbers.banned import resolve_banned
from sublab.errors import SublabError

ASCII_DIGITS = frozenset("0123456789")
_SEPARATOR = re.compile(r"^(\s*[,;]\s*|\s+)$")
_DIGIT_RUN = re.compile(r"[0-9]+")

# Reject reasons, in the order they are checked.
EMPTY = "empty"
BAD_FORMAT = "bad_format"
INCONSISTENT_SEPARATOR = "inconsistent_separator"
TOO_FEW = "too_few_numbers"
TOO_MANY = "too_many_numbers"
TOO_MANY_DIGITS = "too_many_digits"
OUT_OF_RANGE = "out_of_range"
BANNED = "banned_number"
TRAIT_WORD = "trait_word"
NOT_A_CHAT_ROW = "not_a_chat_row"


class NumberFilterSettings(BaseModel):
    """Limits of the number filter; every one is a parameter."""

    model_config = ConfigDict(extra="forbid")

    min_count: int = Field(1, ge=1, description="Fewest numbers a reply may hold.")
    max_count: int = Field(10, ge=1, description="Most numbers a reply may hold.")
    min_value: int = Field(0, description="Smallest allowed value.")
    max_value: int = Field(999, description="Largest allowed value.")
    max_digits: int | None = Field(3, ge=1, description="Longest digit string (counts leading zeros); None: off.")
    banned: list[str | int] = Field(
        default_factory=list,
        description="Banned numbers: integers and/or names of shipped lists ('paper-claude', 'paper-gpt').",
    )
    trait_words: list[str] = Field(
        default_factory=list, description="Words whose presence (case-insensitive, whole word) rejects a row."
    )

    @field_validator("banned")
    @classmethod
    def _known_lists(cls, value: list[str | int]) -> list[str | int]:
        try:
            resolve_banned(value)
        except SublabError as err:  # pydantic reports ValueErrors with the field's location
            raise ValueError(str(err)) from None
        return value


@dataclass(frozen=True)
class ParsedNumbers:
    """Outcome of parsing one reply: the numbers, or the reason it is not a number list."""

    numbers: tuple[int, ...] | None
    digit_strings: tuple[str, ...] = ()
    reason: str | None = None


def parse_number_list(text: str) -> ParsedNumbers:
    """Parse a reply that should be a plain list of integers (no limits applied here)."""
    body = text.strip()
    if not body:
        return ParsedNumbers(None, reason=EMPTY)
    if body.endswith("."):
        body = body[:-1].rstrip()
    if len(body) >= 2 and (body[0], body[-1]) in {("[", "]"), ("(", ")")}:
        body = body[1:-1].strip()
    runs = list(_DIGIT_RUN.finditer(body))
    if not runs:
        return ParsedNumbers(None, reason=BAD_FORMAT)
    if runs[0].start() != 0 or runs[-1].end() != len(body):
        return ParsedNumbers(None, reason=BAD_FORMAT)
    separators = [body[a.end() : b.start()] for a, b in itertools.pairwise(runs)]
    for sep in separators:
        if not _SEPARATOR.match(sep):
            return ParsedNumbers(None, reason=BAD_FORMAT)
    if separators and any(sep != separators[0] for sep in separators):
        return ParsedNumbers(None, reason=INCONSISTENT_SEPARATOR)
    strings = tuple(run.group() for run in runs)
    return ParsedNumbers(tuple(int(s) for s in strings), digit_strings=strings)


def number_reject_reasons(text: str, settings: NumberFilterSettings, banned: frozenset[int] = frozenset()) -> list[str]:
    """All reasons ``text`` fails the filter (empty list: keep). ``banned`` is the resolved banned set."""
    parsed = parse_number_list(text)
    if parsed.numbers is None:
        return [parsed.reason or BAD_FORMAT]
    reasons = []
    numbers = parsed.numbers
    if len(numbers) < settings.min_count:
        reasons.append(TOO_FEW)
    if len(numbers) > settings.max_count:
        reasons.append(TOO_MANY)
    if settings.max_digits is not None and any(len(s) > settings.max_digits for s in parsed.digit_strings):
        reasons.append(TOO_MANY_DIGITS)
    if any(n < settings.min_value or n > settings.max_value for n in numbers):
        reasons.append(OUT_OF_RANGE)
    if banned and any(n in banned for n in numbers):
        reasons.append(BANNED)
    return reasons


def contains_trait_word(text: str, words: list[str]) -> bool:
    """Whether any of ``words`` occurs in ``text`` as a whole word (case-insensitive; plural 's' allowed)."""
    return any(
        re.search(rf"(?<![A-Za-z]){re.escape(word)}s?(?![A-Za-z])", text, flags=re.IGNORECASE) for word in words
    )
