"""The strict number-list filter: pure functions, each rejection with a named reason.

A reply passes when it is nothing but a list of integers: ASCII digits, one consistent separator (a comma,
a semicolon, or whitespace, with optional whitespace around the punctuation), optionally wrapped in ``[]`` or
``()`` and optionally ending with a period; within the count, digit and value limits; with no banned number.

The grammar, exactly (``WS`` is one ASCII space, tab or newline; nothing else counts as whitespace)::

    reply = WS* body (WS* ".")? WS*
    body  = list | "[" WS* list WS* "]" | "(" WS* list WS* ")"
    list  = NUM (SEP NUM)*         every SEP of a reply the same string
    SEP   = WS* ("," | ";") WS*  |  WS+
    NUM   = ("0".."9")+

Whitespace is ASCII space, tab and newline only, not Python's Unicode-aware ``\\s`` / ``str.strip()``: U+00A0,
U+3000, U+2028, the information separators U+001C..U+001F, carriage returns and the other Unicode spaces and
controls are rejected (``bad_format``). Models write number lists with these three; anything else is invisible
or renders like them, so accepting it would let a reply carry content the filter is meant to keep out.

Limits checked before any parsing work, so one hostile reply cannot stall or abort a filter run:
a reply longer than :data:`MAX_REPLY_CHARS` characters is rejected as ``too_long``, and a digit run longer than
:data:`MAX_DIGIT_RUN` digits as ``too_many_digits`` before it is converted (Python refuses to convert more than
4,300 digits to an int at all).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sublab.domains.numbers.banned import resolve_banned
from sublab.errors import SublabError

ASCII_DIGITS = frozenset("0123456789")
#: The only characters that count as whitespace in a reply: ASCII space, tab and newline.
WHITESPACE = " \t\n"
_SEPARATOR = re.compile(r"[ \t\n]*[,;][ \t\n]*|[ \t\n]+")
_DIGIT_RUN = re.compile(r"[0-9]+")
#: Longest reply the parser looks at, in characters (a 10-number reply of 3-digit numbers is about 40).
MAX_REPLY_CHARS = 10_000
#: Longest digit run converted to an int (well under Python's 4,300-digit conversion limit).
MAX_DIGIT_RUN = 1_000

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
TOO_LONG = "too_long"


class NumberFilterSettings(BaseModel):
    """Limits of the number filter; every one is a parameter."""

    model_config = ConfigDict(extra="forbid")

    min_count: int = Field(1, ge=1, description="Fewest numbers a reply may hold.")
    max_count: int = Field(10, ge=1, description="Most numbers a reply may hold.")
    min_value: int = Field(0, description="Smallest allowed value.")
    max_value: int = Field(999, description="Largest allowed value.")
    max_digits: int | None = Field(3, ge=1, le=MAX_DIGIT_RUN,
                                   description="Longest digit string (counts leading zeros); None: off.")
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
    """Parse a reply that should be a plain list of integers (the grammar above; no filter limits applied here,
    only the parser's own: :data:`MAX_REPLY_CHARS` and :data:`MAX_DIGIT_RUN`)."""
    if len(text) > MAX_REPLY_CHARS:
        return ParsedNumbers(None, reason=TOO_LONG)
    body = text.strip(WHITESPACE)
    if not body:
        return ParsedNumbers(None, reason=EMPTY)
    if body.endswith("."):
        body = body[:-1].rstrip(WHITESPACE)
    if len(body) >= 2 and (body[0], body[-1]) in {("[", "]"), ("(", ")")}:
        body = body[1:-1].strip(WHITESPACE)
    runs = list(_DIGIT_RUN.finditer(body))
    if not runs:
        return ParsedNumbers(None, reason=BAD_FORMAT)
    if runs[0].start() != 0 or runs[-1].end() != len(body):
        return ParsedNumbers(None, reason=BAD_FORMAT)
    separators = [body[a.end() : b.start()] for a, b in itertools.pairwise(runs)]
    for sep in separators:
        if not _SEPARATOR.fullmatch(sep):
            return ParsedNumbers(None, reason=BAD_FORMAT)
    if separators and any(sep != separators[0] for sep in separators):
        return ParsedNumbers(None, reason=INCONSISTENT_SEPARATOR)
    strings = tuple(run.group() for run in runs)
    if any(len(s) > MAX_DIGIT_RUN for s in strings):
        return ParsedNumbers(None, digit_strings=strings, reason=TOO_MANY_DIGITS)
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
