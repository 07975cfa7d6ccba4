"""What the free-text domains (code, chain-of-thought) share: a filter-settings base that names its checks and
trait words, and the batched check that runs a domain's per-reply reasons function over rows.

A domain subclass sets ``known_checks`` and declares its own ``checks`` and ``judge`` fields (their defaults and
descriptions are the domain's); the base validates the check names, reads ``judge = false`` as no judge (TOML has
no null), and merges the trait words.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sublab.domains.base import Row
from sublab.filter.judged import reply_of
from sublab.filter.words import TraitWordMatcher


class ReplyFilterSettings(BaseModel):
    """Base of a free-text domain's filter settings: ``checks`` (by name, among ``known_checks``) and
    ``trait_words``."""

    model_config = ConfigDict(extra="forbid")
    known_checks: ClassVar[tuple[str, ...]] = ()

    trait_words: list[str] = Field(default_factory=list, description="Words whose presence rejects a row.")

    @field_validator("checks", check_fields=False)
    @classmethod
    def _known_checks(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in cls.known_checks]
        if unknown:
            raise ValueError(f"unknown check '{unknown[0]}' (known: {', '.join(cls.known_checks)})")
        return value

    @field_validator("judge", mode="before", check_fields=False)
    @classmethod
    def _judge_off(cls, value: Any) -> Any:
        # `judge = false` in a config: no judge, stated (TOML has no null). A trait kind's default judge (the
        # misalignment kind's alignment judge of CoT data) fills only a judge left unset, so this turns it off.
        return None if value is False else value

    def trait_words_with(self, extra: Sequence[str] = ()) -> list[str]:
        """The trait words a filter run looks for: the settings' and the caller's, sorted, once each."""
        return sorted({*self.trait_words, *extra})


#: A domain's reasons function: (reply text, settings, row metadata, trait-word matcher or None) -> reasons.
ReasonsOf = Callable[[str, Any, dict[str, Any] | None, TraitWordMatcher | None], list[str]]


class ReplyCheck:
    """A domain's check over the assistant reply of each row: the reasons its ``reasons_of`` gives (an empty
    list keeps the row), with the settings' and the caller's trait words."""

    def __init__(self, name: str, settings: ReplyFilterSettings, reasons_of: ReasonsOf,
                 trait_words: Sequence[str] = ()) -> None:
        self.name = name
        self.settings = settings
        self.matcher = TraitWordMatcher(settings.trait_words_with(trait_words))
        self._reasons_of = reasons_of

    def reasons(self, row: Row) -> list[str]:
        """The reject reasons of one row (empty: kept)."""
        return self._reasons_of(reply_of(row), self.settings, row.get("metadata"), self.matcher or None)

    def passes(self, row: Row) -> bool:
        """Whether the row passes every check (the judge's prefilter)."""
        return not self.reasons(row)

    def __call__(self, rows: Sequence[Row]) -> list[list[str]]:
        return [self.reasons(row) for row in rows]
