"""Apply the number filter to chat rows and files; kept and rejected rows are both written, with reasons."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sublab.domains.numbers.banned import resolve_banned
from sublab.domains.numbers.checks import (
    NOT_A_CHAT_ROW,
    TRAIT_WORD,
    NumberFilterSettings,
    contains_trait_word,
    number_reject_reasons,
)
from sublab.errors import SublabError
from sublab.io import iter_jsonl, write_jsonl

FILTER_VERSION = "numbers/1"


@dataclass
class FilterReport:
    """Counts of a filter pass: rows in, kept (written), capped, and per reject reason (a row can have several).

    A capped row passed the filter but was left out by ``max_kept``; it is neither kept nor rejected.
    """

    n_in: int = 0
    n_kept: int = 0
    n_capped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)

    @property
    def n_rejected(self) -> int:
        """Rows that failed the filter."""
        return self.n_in - self.n_kept - self.n_capped

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON (results.json ``data.filter``, the lineage byproduct)."""
        return {
            "filter": FILTER_VERSION,
            "n_in": self.n_in,
            "n_kept": self.n_kept,
            "n_capped": self.n_capped,
            "n_rejected": self.n_rejected,
            "reject_reasons": dict(sorted(self.reasons.items())),
        }


def assistant_text(row: dict[str, Any]) -> str | None:
    """The last assistant message of a chat row, or None if the row is not a chat row."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        return None
    return last["content"]


def row_reject_reasons(row: dict[str, Any], settings: NumberFilterSettings, banned: frozenset[int]) -> list[str]:
    """Reasons a chat row fails the number filter (empty: keep)."""
    text = assistant_text(row)
    if text is None:
        return [NOT_A_CHAT_ROW]
    reasons = number_reject_reasons(text, settings, banned)
    if settings.trait_words and contains_trait_word(text, settings.trait_words):
        reasons.append(TRAIT_WORD)
    return reasons


def filter_rows(
    rows: list[dict[str, Any]], settings: NumberFilterSettings
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], FilterReport]:
    """Split rows into kept and rejected; rejected rows carry ``metadata.reject_reasons``."""
    banned = resolve_banned(settings.banned)
    kept, rejected, report = [], [], FilterReport()
    for row in rows:
        report.n_in += 1
        reasons = row_reject_reasons(row, settings, banned)
        if reasons:
            report.reasons.update(reasons)
            metadata = dict(row.get("metadata") or {})
            metadata["reject_reasons"] = reasons
            rejected.append({**row, "metadata": metadata})
        else:
            report.n_kept += 1
            kept.append(row)
    return kept, rejected, report


def cap_kept(
    kept: list[dict[str, Any]], report: FilterReport, max_kept: int | None
) -> tuple[list[dict[str, Any]], FilterReport]:
    """Keep the first ``max_kept`` rows (all if None); the report moves the rest from kept to capped."""
    if max_kept is not None and max_kept < 1:
        raise SublabError(f"max_kept: must be at least 1, not {max_kept}")
    if max_kept is None or len(kept) <= max_kept:
        return kept, report
    capped = len(kept) - max_kept
    return kept[:max_kept], replace(report, n_kept=report.n_kept - capped, n_capped=report.n_capped + capped)


def filter_file(
    source: str | Path,
    output: str | Path,
    settings: NumberFilterSettings,
    rejected_path: str | Path | None = None,
    max_kept: int | None = None,
) -> FilterReport:
    """Filter a JSONL file of chat rows into ``output`` (and ``rejected_path``), atomically.

    ``max_kept`` caps the kept rows (the paper keeps at most 10,000), taking them in file order; the report counts
    the rows written as kept and the rows over the cap as ``n_capped``.
    """
    rows = list(iter_jsonl(source))
    kept, rejected, report = filter_rows(rows, settings)
    kept, report = cap_kept(kept, report, max_kept)
    write_jsonl(output, kept)
    if rejected_path is not None:
        write_jsonl(rejected_path, rejected)
    return report
