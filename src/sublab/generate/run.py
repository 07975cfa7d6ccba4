"""The generate stage: prompts in, chat rows out; resumable at any moment without losing or duplicating a row.

Prompts are cut into fixed batches. Batch ``b`` is always sampled with seed ``(seed, b)``, and rows are appended
(and synced) one batch at a time, so a rerun after a kill skips finished batches, regenerates only the missing
rows of a torn one, and produces exactly the rows an uninterrupted run would have.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sublab.errors import SublabError
from sublab.generate.grammar import NumberGrammarProcessor
from sublab.generate.sampling import SamplingSettings, build_contexts, sample_batch
from sublab.io import JsonlAppender, iter_jsonl, recover_jsonl
from sublab.models.chat import end_of_turn_id


@dataclass
class GenerateSummary:
    """What a generate call did."""

    n_prompts: int
    n_written: int
    n_already_done: int
    output: Path


def batch_seed(seed: int, batch_index: int) -> int:
    """Seed of one batch: independent of how many batches ran before (resume gives identical rows)."""
    return (seed * 1_000_003 + batch_index) % (2**63 - 1)


def read_prompt_rows(path: str | Path) -> list[dict[str, Any]]:
    """Read prompt rows (``{"id", "messages": [...user...]}``); a trailing assistant message is dropped."""
    rows = []
    seen = set()
    for lineno, row in enumerate(iter_jsonl(path), start=1):
        messages = row.get("messages")
        if not isinstance(messages, list) or not messages:
            raise SublabError(f"{path}:{lineno}: a prompt row needs a non-empty 'messages' list")
        if messages[-1].get("role") == "assistant":
            messages = messages[:-1]
        row_id = str(row.get("id", f"row-{lineno:06d}"))
        if row_id in seen:
            raise SublabError(f"{path}:{lineno}: duplicate id '{row_id}'")
        seen.add(row_id)
        rows.append({"id": row_id, "messages": messages, "metadata": row.get("metadata", {})})
    return rows


def generate_rows(
    model: Any,
    tokenizer: Any,
    prompt_rows: list[dict[str, Any]],
    output: str | Path,
    settings: SamplingSettings,
    seed: int,
    system_prompt: str | None = None,
    source: str = "model",
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> GenerateSummary:
    """Sample one completion per prompt row into ``output`` (JSONL chat rows), resuming what is there.

    The system prompt (a teacher's trait) conditions sampling but is never written into the rows.
    ``source`` names the model in each row's metadata.
    """
    output = Path(output)
    wanted = {row["id"] for row in prompt_rows}
    existing = recover_jsonl(output)
    done = set()
    for row in existing:
        if row.get("id") not in wanted:
            raise SublabError(f"{output}: row id '{row.get('id')}' is not one of the prompts; use a new output file")
        done.add(row["id"])
    processor = (
        NumberGrammarProcessor(tokenizer, settings.grammar(), [end_of_turn_id(tokenizer)], settings.max_new_tokens)
        if settings.constrained
        else None
    )
    batches = [prompt_rows[i : i + settings.batch_size] for i in range(0, len(prompt_rows), settings.batch_size)]
    n_written = 0
    columns = (TextColumn("generate"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, JsonlAppender(output) as sink:
        task = bar.add_task("generate", total=len(prompt_rows), completed=len(done))
        for index, batch in enumerate(batches):
            missing = [row for row in batch if row["id"] not in done]
            if not missing:
                continue
            contexts = build_contexts([row["messages"] for row in batch], system_prompt)
            completions = sample_batch(model, tokenizer, contexts, settings, batch_seed(seed, index), processor)
            rows = []
            for row, completion in zip(batch, completions, strict=True):
                if row["id"] in done:
                    continue
                rows.append(
                    {
                        "id": row["id"],
                        "messages": [*row["messages"], {"role": "assistant", "content": completion}],
                        "metadata": {
                            **row.get("metadata", {}),
                            "source": source,
                            "decoding": settings.decoding,
                            "bf16": settings.bf16,
                            "temperature": settings.temperature,
                            "seed": seed,
                            "batch": index,
                        },
                    }
                )
            sink.write(rows)
            n_written += len(rows)
            bar.update(task, advance=len(rows))
            if on_batch is not None:
                on_batch(index)
    return GenerateSummary(len(prompt_rows), n_written, len(done), output)
