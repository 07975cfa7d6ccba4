"""The judge stage: chat rows in, the same rows out with ``metadata.judgments[rubric]``; resumable.

Rows are cut into fixed batches of ``batch_size``; batch ``b`` is always judged the same way (parse mode:
seed from ``(seed, b)``), and finished rows are appended and synced one batch at a time. A rerun after a kill
repairs a torn last line, keeps every row already judged by the same judge (same key: backend, rubric digest,
mode, settings), redoes only the missing rows of a torn batch and gives the output an uninterrupted run would.
The output file is the cache: a row already there with another judge's key is refused, naming the field that
differs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sublab.errors import SublabError
from sublab.io import JsonlAppender, check_chat_row, iter_jsonl, recover_jsonl
from sublab.judges.judge import Judge, question_answer


@dataclass
class JudgeSummary:
    """What a judge run did, and what the output holds now."""

    n_rows: int
    n_written: int
    n_already_done: int
    output: Path
    statuses: Counter[str] = field(default_factory=Counter)
    labels: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    mean_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"n_rows": self.n_rows, "n_written": self.n_written, "n_already_done": self.n_already_done,
                "statuses": dict(self.statuses), "labels": dict(self.labels), "reasons": dict(self.reasons),
                "mean_score": self.mean_score}


def read_judge_rows(path: str | Path) -> list[dict[str, Any]]:
    """Chat rows to judge; each needs an assistant message; ids default to ``row-NNNNNN`` and must be unique."""
    rows, seen = [], set()
    for lineno, row in enumerate(iter_jsonl(path), start=1):
        try:
            question_answer(row)
        except ValueError as err:
            raise SublabError(f"{path}:{lineno}: {err}") from None
        check_chat_row(row, f"{path}:{lineno}")  # roles, contents, metadata, a user message (issue 10)
        row_id = str(row.get("id", f"row-{lineno:06d}"))
        if row_id in seen:
            raise SublabError(f"{path}:{lineno}: duplicate id '{row_id}'")
        seen.add(row_id)
        rows.append({**row, "id": row_id})
    return rows


#: Fields of a stored judgment compared on resume, in the order a mismatch is reported.
RESUME_FIELDS = ("judge", "rubric", "mode", "method", "key")


def judged_rows(output: str | Path, rows: list[dict[str, Any]], judge: Judge) -> dict[str, dict[str, Any]]:
    """The rows ``output`` already holds (by id), after checking each was judged by this judge."""
    output = Path(output)
    wanted = {row["id"] for row in rows}
    name = judge.rubric.name
    current = {"judge": judge.label(), "rubric": judge.rubric.to_dict(), "mode": judge.mode,
               "method": judge.method, "key": judge.key}
    done = {}
    for lineno, row in enumerate(recover_jsonl(output), start=1):
        if row.get("id") not in wanted:
            raise SublabError(f"{output}: row id '{row.get('id')}' is not in the input; use a new output file")
        saved = ((row.get("metadata") or {}).get("judgments") or {}).get(name)
        if not isinstance(saved, dict):
            raise SublabError(f"{output}:{lineno}: row '{row['id']}' has no '{name}' judgment; use a new output file")
        for key in RESUME_FIELDS:
            if saved.get(key) != current[key]:
                raise SublabError(f"{output}:{lineno}: rows here were judged differently: field '{key}' is "
                                  f"{saved.get(key)!r} there and {current[key]!r} now (a different judge, rubric "
                                  "or setting); use a new output file or the same judge")
        done[row["id"]] = row
    return done


def summarize(rows: list[dict[str, Any]], rubric: str) -> dict[str, Any]:
    """Counts of statuses, labels and no-score reasons, and the mean score, over judged rows."""
    statuses: Counter[str] = Counter()
    labels: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    scores = []
    for row in rows:
        j = row["metadata"]["judgments"][rubric]
        statuses[j["status"]] += 1
        if j.get("label"):
            labels[j["label"]] += 1
        if j.get("reason_code"):
            reasons[j["reason_code"]] += 1
        if j.get("score") is not None:
            scores.append(float(j["score"]))
    return {"statuses": statuses, "labels": labels, "reasons": reasons,
            "mean_score": sum(scores) / len(scores) if scores else None}


def judge_file(source: str | Path, output: str | Path, judge: Judge, progress: bool = True,
               on_batch: Callable[[int], None] | None = None) -> JudgeSummary:
    """Judge every row of ``source`` into ``output`` (resuming what is there; see the module docstring)."""
    output = Path(output)
    rows = read_judge_rows(source)
    done = judged_rows(output, rows, judge)
    size = judge.settings.batch_size
    n_written = 0
    columns = (TextColumn("judge"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, JsonlAppender(output) as sink:
        task = bar.add_task("judge", total=len(rows), completed=len(done))
        for index, start in enumerate(range(0, len(rows), size)):
            batch = rows[start : start + size]
            if all(row["id"] in done for row in batch):
                continue
            judgments = judge.score_batch([question_answer(r) for r in batch], index, [r["id"] for r in batch])
            out = []
            for row, judgment in zip(batch, judgments, strict=True):
                if row["id"] in done:
                    continue
                metadata = dict(row.get("metadata") or {})
                metadata["judgments"] = {**(metadata.get("judgments") or {}), judge.rubric.name: judgment.to_dict()}
                out.append({**row, "metadata": metadata})
            sink.write(out)
            n_written += len(out)
            done.update({row["id"]: row for row in out})
            bar.update(task, advance=len(out))
            if on_batch is not None:
                on_batch(index)
    counts = summarize([done[row["id"]] for row in rows], judge.rubric.name)
    return JudgeSummary(len(rows), n_written, len(rows) - n_written, output, **counts)
