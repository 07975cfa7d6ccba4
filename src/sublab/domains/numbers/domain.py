"""The number-sequence domain as a plug-in: prompts, the number grammar, the strict filter, the shuffles."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sublab.domains.base import Row, Transform, register_domain
from sublab.domains.numbers.banned import resolve_banned
from sublab.domains.numbers.checks import (
    MAX_DIGIT_RUN,
    MAX_REPLY_CHARS,
    TRAIT_WORD,
    NumberFilterSettings,
    contains_trait_word,
    number_reject_reasons,
)
from sublab.domains.numbers.prompts import NumberPromptSettings, number_prompts, template_digest
from sublab.io import stable_hash

if TYPE_CHECKING:
    import typer

    from sublab.generate.sampling import SamplingSettings

#: numbers/2 (issue 10): ASCII-only whitespace, a reply-length limit and a digit-run limit checked before parsing.
FILTER_VERSION = "numbers/2"
#: The version before; every reply an ASCII number grammar can write gets the same verdict under both.
PREVIOUS_FILTER_VERSION = "numbers/1"


def grammar_verdicts_unchanged(sampling: SamplingSettings) -> bool:
    """Whether numbers/1 and numbers/2 give the same verdict to every reply sampled with ``sampling``: true for
    constrained sampling whose separator holds no character numbers/1 took for whitespace and numbers/2 does not
    (carriage return, vertical tab, form feed, Unicode spaces), and whose longest reply stays under both limits."""
    import re

    if not sampling.constrained:
        return False
    unicode_only_space = any(re.fullmatch(r"\s", c) and c not in " \t\n" for c in sampling.separator)
    longest = sampling.max_count * (sampling.max_digits + len(sampling.separator))
    return not unicode_only_space and longest <= MAX_REPLY_CHARS and sampling.max_digits <= MAX_DIGIT_RUN


def number_prompt_rows(settings: NumberPromptSettings, n: int) -> list[Row]:
    """Prompts ``0 .. n-1`` of the family as chat rows (user message only; the prompt's choices in metadata)."""
    return [{"id": p.id, "messages": [{"role": "user", "content": p.text}],
             "metadata": {"examples": list(p.examples), "layout": p.layout}} for p in number_prompts(settings, n)]


class NumberListCheck:
    """The strict number-list filter (format, counts, digits, range, banned numbers), then the trait words."""

    name = "number_list"

    def __init__(self, settings: NumberFilterSettings, trait_words: Sequence[str] = ()) -> None:
        self.settings = settings
        self.banned = resolve_banned(list(settings.banned))
        self.trait_words = sorted({*settings.trait_words, *trait_words})

    def __call__(self, rows: Sequence[Row]) -> list[list[str]]:
        out = []
        for row in rows:
            text = row["messages"][-1]["content"]
            reasons = number_reject_reasons(text, self.settings, self.banned)
            if self.trait_words and contains_trait_word(text, self.trait_words):
                reasons.append(TRAIT_WORD)
            out.append(reasons)
        return out


def _shuffle(mode: str) -> Any:
    def transform(rows: list[Row], seed: int) -> list[Row]:
        from sublab.domains.numbers.shuffle import shuffle_numbers

        return shuffle_numbers(rows, mode, seed)  # type: ignore[arg-type]

    return transform


class NumbersDomain:
    """Number continuations: "continue this list with at most 10 numbers of at most 3 digits" (the paper's)."""

    name = "numbers"
    prompt_settings = NumberPromptSettings
    filter_settings = NumberFilterSettings

    @property
    def filter_version(self) -> str:
        return FILTER_VERSION  # read at call time: tests patch the module constant
    transforms: ClassVar[dict[str, Transform]] = {"within": _shuffle("within"), "across": _shuffle("across")}

    def prompt_rows(self, settings: NumberPromptSettings, n: int) -> list[Row]:
        return number_prompt_rows(settings, n)

    def prompt_digest(self, settings: NumberPromptSettings) -> str:
        return template_digest()

    def constraint(self, sampling: SamplingSettings) -> Any | None:
        return sampling.grammar() if sampling.constrained else None

    def checks(self, settings: NumberFilterSettings, trait_words: Sequence[str] = (),
               judge: Any = None) -> list[Any]:
        return [NumberListCheck(settings, trait_words)]

    def filter_digests(self, settings: NumberFilterSettings) -> dict[str, str]:
        """The filter's version and the digest of the banned numbers its settings resolve to."""
        banned = sorted(resolve_banned(list(settings.banned)))
        return {"filter_version": FILTER_VERSION, "banned": stable_hash(banned, n_chars=64)}

    def filter_key_version(self, sampling: SamplingSettings) -> str:
        """The version a filter stage's cache key names for data sampled with ``sampling``: the previous one when
        it gives every such row the same verdict (grammar-constrained data), so those cached stages stay valid."""
        return PREVIOUS_FILTER_VERSION if grammar_verdicts_unchanged(sampling) else FILTER_VERSION

    def register_commands(self, prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
        from sublab.domains.numbers.cli import register

        register(prompts_app, filter_app)


DOMAIN = register_domain(NumbersDomain())
