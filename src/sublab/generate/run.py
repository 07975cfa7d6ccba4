"""The generate stage: prompts in, chat rows out; resumable at any moment without losing or duplicating a row.

Prompts are cut into fixed batches. Batch ``b`` is always sampled with seed ``(seed, b)``, and rows are appended
(and synced) one batch at a time, so a rerun after a kill skips finished batches, regenerates only the missing
rows of a torn one, and produces exactly the rows an uninterrupted run would have. Every row records what made
it (model, system prompt digest, decoding mode, sampling settings, seed) under ``metadata.generation``; a resume
appends only to rows made the same way and refuses, naming the file and the first differing field, otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sublab.errors import SublabError
from sublab.generate.sampling import SamplingSettings, build_contexts
from sublab.io import (
    JsonlAppender,
    check_chat_row,
    first_difference,
    iter_jsonl,
    recover_jsonl,
    sha256_file,
    sha256_text,
)
from sublab.keys import key_dump
from sublab.models.spec import ModelSpec

#: Default of ``constraint``: the number grammar when the sampling settings say ``constrained``.
DEFAULT_CONSTRAINT: Any = object()


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
        row_id = str(row.get("id", f"row-{lineno:06d}"))
        if row_id in seen:
            raise SublabError(f"{path}:{lineno}: duplicate id '{row_id}'")
        seen.add(row_id)
        check_chat_row(row, f"{path}:{lineno}")  # roles, contents, metadata, a user message: one line if not
        if messages[-1]["role"] == "assistant":
            messages = messages[:-1]
        rows.append({"id": row_id, "messages": messages, "metadata": row.get("metadata", {})})
    return rows


def model_identity(spec: ModelSpec) -> str:
    """How a generated row names the model that wrote it: the base, plus the digest of an adapter's files.

    The system prompt is not part of it (rows record its digest separately). An adapter is named by content,
    so a retrained adapter in the same folder counts as another model.
    """
    if not spec.adapter:
        return spec.base
    folder = Path(spec.adapter)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("adapter_")) \
        if folder.is_dir() else []
    digest = sha256_text("\n".join(f"{p.name} {sha256_file(p)}" for p in files))
    return f"{spec.base}+adapter sha256:{digest}"


def generation_metadata(settings: SamplingSettings, seed: int, model: str,
                        system_prompt: str | None = None) -> dict[str, Any]:
    """What makes the rows of a generate run, as each row records it under ``metadata.generation``.

    Fields, in the order a resume reports a mismatch: ``model`` (see :func:`model_identity`),
    ``system_prompt_sha256`` (the teacher's prompt, never written in clear), ``decoding`` (constrained or free),
    ``sampling.<name>`` for every sampling setting, ``seed``.
    """
    return {
        "model": model,
        "system_prompt_sha256": sha256_text(system_prompt) if system_prompt is not None else None,
        "decoding": settings.decoding,
        "sampling": key_dump(settings),  # a field added later appears only when it is not its default
        "seed": seed,
    }


def prompt_digest(messages: list[dict[str, Any]]) -> str:
    """sha256 of a prompt's messages (canonical JSON): what each generated row records as
    ``metadata.generation.prompt_sha256``, so a resume notices a prompt whose text changed under the same id."""
    return sha256_text(json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def _shown(field: str, value: Any) -> str:
    """A recorded value in a resume error; key_dump leaves a later-added sampling field out at its default."""
    return "the default" if value is None and field.startswith("sampling.") else repr(value)


def rows_done(output: str | Path, prompt_rows: list[dict[str, Any]], metadata: dict[str, Any]) -> set[str]:
    """Ids of the prompts ``output`` already holds rows for, after checking those rows can be resumed.

    Raises :class:`SublabError` naming ``output`` if a row answers no prompt, or was made with other generation
    metadata (:func:`generation_metadata`): the message names the first differing field; or was generated for
    another text of its prompt (the row's ``prompt_sha256``, see :func:`prompt_digest`; a row written before rows
    carried it is compared by the prompt messages it holds). A torn last line is repaired (see
    :func:`sublab.io.recover_jsonl`).
    """
    output = Path(output)
    wanted = {row["id"]: row for row in prompt_rows}
    done = set()
    for lineno, row in enumerate(recover_jsonl(output), start=1):
        if row.get("id") not in wanted:
            raise SublabError(f"{output}: row id '{row.get('id')}' is not one of the prompts; use a new output file")
        saved = (row.get("metadata") or {}).get("generation")
        if saved is None:
            raise SublabError(f"{output}:{lineno}: row '{row['id']}' has no generation metadata (written by an "
                              "older sublab); use a new output file")
        if (diff := first_difference(saved, metadata)) is not None:
            field, before, now = diff
            field = field or "generation"
            raise SublabError(f"{output}:{lineno}: rows here were generated with other settings: field "
                              f"'{field}' is {_shown(field, before)} there and {_shown(field, now)} now; use a "
                              "new output file or the same settings")
        recorded = saved.get("prompt_sha256") if isinstance(saved, dict) else None
        if recorded is None:  # a row written before rows carried the digest: its own messages are its prompt
            messages = row.get("messages")
            recorded = prompt_digest(messages[:-1]) if isinstance(messages, list) and messages else None
        if recorded != prompt_digest(wanted[row["id"]]["messages"]):
            raise SublabError(f"{output}:{lineno}: row '{row['id']}' was generated for another text of prompt "
                              f"'{row['id']}' (the prompts changed since); use a new output file")
        done.add(row["id"])
    return done


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
    model_id: str | None = None,
    constraint: Any = DEFAULT_CONSTRAINT,
) -> GenerateSummary:
    """:func:`sample_rows` with an in-process transformers model (see there)."""
    from sublab.backends.base import BackendIdentity
    from sublab.backends.hf import HFBackend

    backend = HFBackend(model, tokenizer, BackendIdentity(kind="transformers", model=model_id or source))
    return sample_rows(backend, prompt_rows, output, settings, seed, system_prompt=system_prompt, source=source,
                       progress=progress, on_batch=on_batch, model_id=model_id, constraint=constraint)


def sample_rows(
    backend: Any,
    prompt_rows: list[dict[str, Any]],
    output: str | Path,
    settings: SamplingSettings,
    seed: int,
    system_prompt: str | None = None,
    source: str = "model",
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    model_id: str | None = None,
    constraint: Any = DEFAULT_CONSTRAINT,
) -> GenerateSummary:
    """Sample one completion per prompt row into ``output`` (JSONL chat rows) with ``backend``, resuming what
    is there.

    The system prompt (a teacher's trait) conditions sampling but is never written into the rows (only its
    sha256). ``source`` describes the model in each row's metadata; ``model_id`` identifies it for resuming
    (default: ``source``; :func:`model_identity` gives one for a :class:`ModelSpec`). Rows already in ``output``
    must have been made with the same model, system prompt, sampling settings and seed (see :func:`rows_done`).
    ``constraint``: the domain's generation constraint (e.g. the number grammar) or None; by default the number
    grammar of ``settings`` when ``settings.constrained`` (what every caller meant before domains existed).
    """
    output = Path(output)
    metadata = generation_metadata(settings, seed, model_id if model_id is not None else source, system_prompt)
    done = rows_done(output, prompt_rows, metadata)
    if constraint is DEFAULT_CONSTRAINT:
        constraint = settings.grammar() if settings.constrained else None
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
            completions = backend.sample(contexts, settings, batch_seed(seed, index), constraint)
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
                            "generation": {**metadata, "prompt_sha256": prompt_digest(row["messages"])},
                        },
                    }
                )
            sink.write(rows)
            n_written += len(rows)
            bar.update(task, advance=len(rows))
            if on_batch is not None:
                on_batch(index)
    return GenerateSummary(len(prompt_rows), n_written, len(done), output)
