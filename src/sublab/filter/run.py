"""Apply a domain's checks to chat rows and files; kept and rejected rows are both written, with reasons.

The checks come from the row's domain (:meth:`sublab.domains.base.Domain.checks`); each returns reject reasons
for a batch of rows, so a judge check scores many rows at once. A row whose last message is not an assistant
reply is rejected as ``not_a_chat_row`` before any domain check sees it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.io import read_chat_rows, write_jsonl

NOT_A_CHAT_ROW = "not_a_chat_row"


@dataclass
class FilterReport:
    """Counts of a filter pass: rows in, kept (written), capped, and per reject reason (a row can have several).

    A capped row passed the filter but was left out by ``max_kept``; it is neither kept nor rejected.
    ``filter`` names the domain filter and its version (e.g. ``numbers/1``).
    """

    n_in: int = 0
    n_kept: int = 0
    n_capped: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    filter: str = ""
    #: Per judge check (by name), the distribution of the scores it gave (n, min, quartiles, max): what a
    #: threshold is chosen against. Empty without a judge.
    judge_scores: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def n_rejected(self) -> int:
        """Rows that failed the filter."""
        return self.n_in - self.n_kept - self.n_capped

    def to_dict(self) -> dict[str, Any]:
        """The counts as JSON (results.json ``data.filter``, the lineage byproduct)."""
        return {
            "filter": self.filter,
            "n_in": self.n_in,
            "n_kept": self.n_kept,
            "n_capped": self.n_capped,
            "n_rejected": self.n_rejected,
            "reject_reasons": dict(sorted(self.reasons.items())),
            **({"judge_scores": self.judge_scores} if self.judge_scores else {}),
        }


def score_summary(values: Sequence[float]) -> dict[str, float]:
    """n, min, quartiles and max of a judge's scores (n = 0 and nothing else when there are none)."""
    import numpy as np

    if not values:
        return {"n": 0}
    q = np.quantile(np.asarray(values, dtype=float), [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n": len(values), **{k: round(float(v), 4) for k, v in zip(("min", "q25", "median", "q75", "max"), q,
                                                                         strict=True)}}


def assistant_text(row: dict[str, Any]) -> str | None:
    """The last assistant message of a chat row, or None if the row is not a chat row."""
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "assistant" or not isinstance(last.get("content"), str):
        return None
    return last["content"]


def check_rows(rows: Sequence[dict[str, Any]], checks: Sequence[Any], version: str,
               batch_size: int = 256) -> tuple[list[dict[str, Any]], list[dict[str, Any]], FilterReport]:
    """Split rows into kept and rejected by ``checks`` (each batched); rejected rows carry
    ``metadata.reject_reasons`` in the order the checks ran."""
    reasons: list[list[str]] = [[] if assistant_text(row) is not None else [NOT_A_CHAT_ROW] for row in rows]
    chat = [i for i, r in enumerate(reasons) if not r]
    for check in checks:
        for start in range(0, len(chat), batch_size):
            batch = chat[start : start + batch_size]
            for i, found in zip(batch, check([rows[i] for i in batch]), strict=True):
                reasons[i] += found
    judged = {check.name: check.scores for check in checks if isinstance(getattr(check, "scores", None), dict)}
    kept, rejected, report = [], [], FilterReport(filter=version)
    report.judge_scores = {name: score_summary([v for values in scores.values() for v in values if v is not None])
                           for name, scores in judged.items()}
    for row, found in zip(rows, reasons, strict=True):
        report.n_in += 1
        if found:
            report.reasons.update(found)
            metadata = dict(row.get("metadata") or {})
            metadata["reject_reasons"] = found
            row_scores = {name: scores[str(row.get("id"))] for name, scores in judged.items()
                          if str(row.get("id")) in scores}
            if row_scores:  # what the judge said of this row, to check a threshold against
                metadata["judge_scores"] = row_scores
            rejected.append({**row, "metadata": metadata})
        else:
            report.n_kept += 1
            kept.append(row)
    return kept, rejected, report


def filter_rows(rows: list[dict[str, Any]], settings: Any, domain: str = "numbers",
                trait_words: Sequence[str] = (), judge: Any = None,
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], FilterReport]:
    """Split rows into kept and rejected by the checks of ``domain`` with ``settings`` (its filter settings)."""
    from sublab.domains.base import get_domain

    found = get_domain(domain)
    return check_rows(rows, found.checks(settings, trait_words, judge), found.filter_version)



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
    settings: Any,
    rejected_path: str | Path | None = None,
    max_kept: int | None = None,
    domain: str = "numbers",
    trait_words: Sequence[str] = (),
    judge: Any = None,
) -> FilterReport:
    """Filter a JSONL file of chat rows into ``output`` (and ``rejected_path``), atomically.

    ``max_kept`` caps the kept rows (the paper keeps at most 10,000), taking them in file order; the report counts
    the rows written as kept and the rows over the cap as ``n_capped``.
    """
    rows = read_chat_rows(source, allow_empty=True)  # malformed: one line naming file, line and field
    kept, rejected, report = filter_rows(rows, settings, domain, trait_words, judge)
    kept, report = cap_kept(kept, report, max_kept)
    write_jsonl(output, kept)
    if rejected_path is not None:
        write_jsonl(rejected_path, rejected)
    return report
