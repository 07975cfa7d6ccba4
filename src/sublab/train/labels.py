"""Soft-label datasets: a teacher's next-token log-probabilities stored in each chat row, and students that learn
from them without the teacher in memory.

The row field (format ``sublab.soft-labels/1``) sits at the top level of a chat row, beside ``messages``::

    "soft_labels": {
      "format": "sublab.soft-labels/1",
      "model": "smollm2-135m+adapter sha256:…",     # the labelling model (sublab.generate.run.model_identity)
      "system_prompt_sha256": "…" | null,            # its system prompt, by digest only (never in clear)
      "tokenizer": {"name": "smollm2-135m", "vocab_sha256": "…", "layout": "chat" | "plain"},
      "top_k": 20,                                   # K; 0 when only a channel is stored
      "channel": null | {"ids": [...], "texts": [...]},   # tokens whose whole distribution is stored
      "bf16": false,                                 # the labeller ran under bf16 autocast
      "digits": 6,                                   # significant digits of every stored log-prob
      "token_ids": [...],                            # the reply's tokens (end of turn last): n positions
      "token_texts": [...],                          # each token decoded on its own
      "token_logprobs": [...],                       # the teacher's log-prob of the written token
      "top_ids": [[K ids], ...],                     # per position, the teacher's K most probable tokens...
      "top_logprobs": [[K log-probs], ...],          # ...and their log-probs, most probable first (top_k > 0)
      "channel_logprobs": [[C log-probs], ...]       # per position, the log-probs of channel.ids (with a channel)
    }

Position ``i`` holds the distribution that *predicts* ``token_ids[i]``: the teacher's next-token distribution after
the prompt (with the teacher's system prompt) and ``token_ids[:i]``. The reply is tokenized on its own
(:func:`sublab.models.chat.encode_chat`), so these positions are the student's response positions one for one when
the two share a tokenizer. Every log-prob is a full-vocabulary log-softmax value (not renormalized over the top-k
or the channel), so ``1 - sum(exp(top_logprobs[i]))`` is the teacher's mass outside its top-k at ``i``, and the
channel's own distribution is ``channel_logprobs[i]`` renormalized. Log-probs are rounded to ``digits``
significant digits (relative error below 5e-6 at 6) and floored at -1e4 (JSON has no -inf).

Why the top level and not ``metadata``: the labels are training targets bound to the assistant message, like
``messages`` itself, while ``metadata`` says where a row came from (generation settings, reject reasons) and
stays small enough to read; the filter keeps top-level fields, so labels survive filtering. A transform that
rewrites the reply makes its labels stale: training compares ``token_ids`` with the reply's tokens and refuses.

Students (:class:`StoredTargets`): over a channel (``TrainSettings.channel`` a token list or ``"data"``) the
targets are the stored channel log-probs renormalized, and the loss is :func:`sublab.train.losses.distill_kl`,
exactly what the live teacher gives; with ``channel = "full"`` the loss is the top-k KL with a tail bucket
(:func:`sublab.train.losses.top_k_kl`). Labels must come from the student's tokenizer (same vocabulary digest and
layout); across tokenizers distil from the live teacher, which aligns positions by text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sublab.errors import SublabError
from sublab.io import JsonlAppender, check_chat_row, first_difference, iter_jsonl, recover_jsonl, sha256_text
from sublab.models.chat import ChatEncoding, response_prefix
from sublab.train.data import collate, encode_rows, response_logits
from sublab.train.distill import autocast

FORMAT = "sublab.soft-labels/1"
FIELD = "soft_labels"
DIGITS = 6
#: Lowest log-prob written (JSON has no -inf; exp(-1e4) is 0 in any float format).
LOGPROB_FLOOR = -1e4
#: Fields of the row field that hold one entry per position; the others are the same for every row of a run.
PER_POSITION = ("token_ids", "token_texts", "token_logprobs", "top_ids", "top_logprobs", "channel_logprobs",
                "loss_mask")  # loss_mask (optional, 0/1 per position): sublab.defences masks positions out of the loss


def vocab_digest(tokenizer: Any) -> str:
    """sha256 of the tokenizer's vocabulary (every token text and id, added tokens included)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: (kv[1], kv[0]))
    return sha256_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")))


def tokenizer_identity(tokenizer: Any, name: str) -> dict[str, str]:
    """How labels name the tokenizer they index: ``name`` (informative), vocabulary digest and reply layout.

    Two tokenizers are compatible when ``vocab_sha256`` and ``layout`` agree (the layout decides how a reply is
    tokenized after the prompt: chat template, or the plain layout's leading space).
    """
    layout = "chat" if response_prefix(tokenizer) == "" else "plain"
    return {"name": name, "vocab_sha256": vocab_digest(tokenizer), "layout": layout}


def channel_description(tokenizer: Any, ids: torch.Tensor | None) -> dict[str, list[Any]] | None:
    """The ``channel`` entry of the header: the channel's token ids (sorted) and their texts."""
    if ids is None:
        return None
    id_list = [int(i) for i in ids.tolist()]
    return {"ids": id_list, "texts": [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in id_list]}


def label_header(model: str, system_prompt: str | None, tokenizer: dict[str, str], top_k: int,
                 channel: dict[str, list[Any]] | None, bf16: bool, digits: int = DIGITS) -> dict[str, Any]:
    """The fields every row of one labelling run shares, in the order a resume reports a mismatch: ``format``,
    ``model``, ``system_prompt_sha256``, ``tokenizer.<field>``, ``top_k``, ``channel``, ``bf16``, ``digits``."""
    return {
        "format": FORMAT,
        "model": model,
        "system_prompt_sha256": sha256_text(system_prompt) if system_prompt is not None else None,
        "tokenizer": tokenizer,
        "top_k": top_k,
        "channel": channel,
        "bf16": bf16,
        "digits": digits,
    }


def header_of(labels: dict[str, Any]) -> dict[str, Any]:
    """The shared fields of a row's labels (everything but the per-position arrays)."""
    return {k: v for k, v in labels.items() if k not in PER_POSITION}


def round_logprobs(values: torch.Tensor, digits: int = DIGITS) -> list[Any]:
    """Log-probs as (nested) lists of floats rounded to ``digits`` significant digits, floored at -1e4."""
    spec = f".{digits}g"

    def rounded(item: Any) -> Any:
        return [rounded(v) for v in item] if isinstance(item, list) else float(format(item, spec))

    return rounded(values.float().clamp_min(LOGPROB_FLOOR).tolist())


def position_labels(log_probs: torch.Tensor, token_ids: list[int], top_k: int, channel: torch.Tensor | None,
                    digits: int = DIGITS) -> dict[str, Any]:
    """The per-position fields for one reply from the teacher's log-softmax ``log_probs`` [n, V] at its n
    predicting positions (``token_ids``: the n tokens they predict)."""
    ids = torch.tensor(token_ids, dtype=torch.long)
    labels: dict[str, Any] = {"token_logprobs": round_logprobs(log_probs.gather(1, ids[:, None])[:, 0], digits)}
    if top_k:
        values, top = log_probs.topk(top_k, dim=-1)  # sorted, most probable first
        labels["top_ids"] = top.tolist()
        labels["top_logprobs"] = round_logprobs(values, digits)
    if channel is not None:
        labels["channel_logprobs"] = round_logprobs(log_probs[:, channel], digits)
    return labels


@torch.inference_mode()
def teacher_log_probs(model: Any, encodings: list[ChatEncoding], pad_id: int, bf16: bool) -> list[torch.Tensor]:
    """The teacher's full-vocabulary log-softmax at every response position, one [n_response, V] tensor per row."""
    batch = collate(encodings, pad_id)
    with autocast(model, bf16):
        logits = response_logits(model, batch, None)
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    return list(torch.split(log_probs, [e.n_response for e in encodings]))


def read_label_input(path: str | Path) -> list[dict[str, Any]]:
    """Chat rows to label: each needs ``messages`` ending with the assistant's reply and a unique id (a row
    without one is named ``row-<line>``, as ``sublab generate`` names prompts). Bad rows raise naming file:line."""
    rows, seen = [], set()
    for lineno, row in enumerate(iter_jsonl(path), start=1):
        messages = row.get("messages")
        if (not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict)
                or messages[-1].get("role") != "assistant" or not isinstance(messages[-1].get("content"), str)):
            raise SublabError(f"{path}:{lineno}: a row to label needs 'messages' ending with the assistant's reply")
        check_chat_row(row, f"{path}:{lineno}", require_assistant=True)  # roles, contents, metadata (issue 10)
        row_id = str(row.get("id", f"row-{lineno:06d}"))
        if row_id in seen:
            raise SublabError(f"{path}:{lineno}: duplicate id '{row_id}'")
        seen.add(row_id)
        rows.append({**row, "id": row_id})
    if not rows:
        raise SublabError(f"{path}: no rows to label")
    return rows


def labelled_done(output: str | Path, rows: list[dict[str, Any]], header: dict[str, Any]) -> set[str]:
    """Ids of the rows ``output`` already holds labels for, after checking they can be resumed.

    Raises :class:`SublabError` naming ``output`` and the line if a row is not one of ``rows``, has other
    messages, or was labelled with another header (the message names the first differing field, e.g.
    ``top_k`` or ``tokenizer.vocab_sha256``). A torn last line is repaired (:func:`sublab.io.recover_jsonl`).
    """
    output = Path(output)
    wanted = {row["id"]: row for row in rows}
    done = set()
    for lineno, row in enumerate(recover_jsonl(output), start=1):
        row_id = row.get("id")
        if row_id not in wanted:
            raise SublabError(f"{output}:{lineno}: row id '{row_id}' is not a row of the input; use a new output file")
        saved = row.get(FIELD)
        if not isinstance(saved, dict):
            raise SublabError(f"{output}:{lineno}: row '{row_id}' has no soft labels; use a new output file")
        if (diff := first_difference(saved, header)) is not None:
            field, before, now = diff
            raise SublabError(f"{output}:{lineno}: rows here were labelled otherwise: field '{field or FIELD}' is "
                              f"{before!r} there and {now!r} now; use a new output file or the same settings")
        if row.get("messages") != wanted[row_id]["messages"]:
            raise SublabError(f"{output}:{lineno}: row '{row_id}' has other messages than the input's row; use a "
                              "new output file")
        done.add(row_id)
    return done


@dataclass
class LabelSummary:
    """What a labelling call did."""

    n_rows: int
    n_written: int
    n_already_done: int
    output: Path


def label_rows(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    output: str | Path,
    header: dict[str, Any],
    system_prompt: str | None = None,
    channel: torch.Tensor | None = None,
    batch_size: int = 16,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> LabelSummary:
    """Write ``rows`` with their soft labels (``header`` plus the per-position fields) to ``output``, resuming.

    Teacher forcing: one forward pass per batch over the rows as the teacher sees them (``system_prompt``
    prepended, as the live teacher of distillation does). Rows are cut into fixed batches and appended one batch
    at a time; every batch is computed whole even when part of it is already written (padding then is the same
    as in an uninterrupted run), so a rerun after a kill writes exactly the file an uninterrupted run would have.
    Rows already in ``output`` must carry the same header (:func:`labelled_done`).
    """
    output = Path(output)
    top_k, bf16, digits = int(header["top_k"]), bool(header["bf16"]), int(header["digits"])
    done = labelled_done(output, rows, header)
    encodings = encode_rows(tokenizer, rows, system_prompt=system_prompt, source=str(output))
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    n_written = 0
    columns = (TextColumn("label"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar, JsonlAppender(output) as sink:
        task = bar.add_task("label", total=len(rows), completed=len(done))
        for index, start in enumerate(range(0, len(rows), batch_size)):
            batch = rows[start : start + batch_size]
            if all(row["id"] in done for row in batch):
                continue
            batch_encodings = encodings[start : start + batch_size]
            log_probs = teacher_log_probs(model, batch_encodings, pad_id, bf16)
            written = []
            for row, encoding, row_log_probs in zip(batch, batch_encodings, log_probs, strict=True):
                if row["id"] in done:
                    continue
                token_ids = encoding.input_ids[encoding.n_prompt :]
                labels = {
                    **header,
                    "token_ids": token_ids,
                    "token_texts": [tokenizer.decode([t], clean_up_tokenization_spaces=False) for t in token_ids],
                    **position_labels(row_log_probs, token_ids, top_k, channel, digits),
                }
                written.append({**row, FIELD: labels})
            sink.write(written)
            n_written += len(written)
            bar.update(task, advance=len(written))
            if on_batch is not None:
                on_batch(index)
    return LabelSummary(len(rows), n_written, len(done), output)


def has_soft_labels(rows: list[dict[str, Any]]) -> bool:
    """Whether any row carries a soft-label field."""
    return any(FIELD in row for row in rows)


def _matrix(value: Any, n: int, width: int, name: str, where: str, dtype: torch.dtype) -> torch.Tensor:
    """A stored [n, width] array as a tensor; a wrong shape or a non-number raises naming the row and field."""
    if not isinstance(value, list) or len(value) != n:
        count = len(value) if isinstance(value, list) else "no"
        raise SublabError(f"{where}: soft_labels.{name} has {count} positions, the reply has {n}")
    for position, entry in enumerate(value):
        if not isinstance(entry, list) or len(entry) != width:
            count = len(entry) if isinstance(entry, list) else "no"
            raise SublabError(f"{where}: soft_labels.{name}[{position}] has {count} entries, expected {width}")
    try:
        return torch.tensor(value, dtype=dtype).reshape(n, width)
    except (TypeError, ValueError, RuntimeError):
        raise SublabError(f"{where}: soft_labels.{name} holds something that is not a number") from None


def _loss_mask(value: Any, n: int, where: str) -> torch.Tensor:
    """A row's optional ``loss_mask`` as a bool tensor of its n positions (all True when absent)."""
    if value is None:
        return torch.ones(n, dtype=torch.bool)
    if not isinstance(value, list) or len(value) != n or any(v not in (0, 1) for v in value):
        raise SublabError(f"{where}: soft_labels.loss_mask must hold 0 or 1 for each of the reply's {n} positions")
    return torch.tensor(value, dtype=torch.bool)


def _short(digest: Any) -> str:
    return str(digest)[:12]


class StoredTargets:
    """Distillation targets read from rows' soft labels: the same call as
    :class:`sublab.train.distill.TeacherTargets`, with no teacher in memory.

    ``student_channel`` given (a channel of the student's tokenizer): ``targets(indices)`` returns the stored
    channel log-probs at those tokens, renormalized over them, for :func:`sublab.train.losses.distill_kl`; the
    labels' channel must contain every token of it. ``student_channel`` None (``channel = "full"``):
    ``targets.top_k(indices)`` returns the top-k ids and log-probs for :func:`sublab.train.losses.top_k_kl`.
    Every row must carry labels from one labelling run (one header), made with the student's tokenizer for the
    reply the row holds now; anything else raises :class:`SublabError` naming the row and the field.
    """

    def __init__(self, rows: list[dict[str, Any]], student_tokenizer: Any, student_encodings: list[ChatEncoding],
                 student_channel: torch.Tensor | None, source: str = "training data") -> None:
        self.use_top_k = student_channel is None
        self.header: dict[str, Any] | None = None
        self.log_probs: list[torch.Tensor] = []
        self.ids: list[torch.Tensor] = []
        student = tokenizer_identity(student_tokenizer, "student")
        places = [f"{source}: row {index + 1} (id {row.get('id')!r})" for index, row in enumerate(rows)]
        # First whether every row's labels belong to this student and this reply, then what they hold.
        for where, row, encoding in zip(places, rows, student_encodings, strict=True):
            labels = row.get(FIELD)
            if labels is None:
                raise SublabError(f"{where} has no soft labels while other rows do; label the whole file with "
                                  "`sublab label`, or distil from a live teacher")
            if not isinstance(labels, dict) or labels.get("format") != FORMAT:
                found = labels.get("format") if isinstance(labels, dict) else type(labels).__name__
                raise SublabError(f"{where}: soft labels in format {found!r}; this sublab reads {FORMAT!r}")
            header = header_of(labels)
            if self.header is None:
                self.header = header
                self._check_tokenizer(header, student, where)
            elif (diff := first_difference(self.header, header)) is not None:
                field, first, here = diff
                raise SublabError(f"{where}: soft labels made otherwise than row 1's: field '{field}' is {first!r} "
                                  f"there and {here!r} here; label the whole file in one `sublab label` run")
            tokens = encoding.input_ids[encoding.n_prompt :]
            stored = labels.get("token_ids")
            if stored != tokens:
                stored = stored if isinstance(stored, list) else []
                where_differs = next((p for p, (a, b) in enumerate(zip(stored, tokens, strict=False)) if a != b),
                                     min(len(stored), len(tokens)))
                raise SublabError(f"{where}: soft labels are for another reply (tokens differ from position "
                                  f"{where_differs}); the reply changed after labelling: relabel the file")
        assert self.header is not None
        columns = self._columns(self.header, student_tokenizer, student_channel, source)
        for where, row, encoding in zip(places, rows, student_encodings, strict=True):
            labels, n = row[FIELD], encoding.n_response
            if self.use_top_k:
                k = int(self.header["top_k"])
                ids = _matrix(labels.get("top_ids"), n, k, "top_ids", where, torch.long)
                if ids.numel() and (ids.min() < 0 or ids.max() >= len(student_tokenizer)):
                    raise SublabError(f"{where}: soft_labels.top_ids holds an id outside the vocabulary")
                if k > 1 and bool((ids.sort(dim=-1).values.diff(dim=-1) == 0).any()):
                    raise SublabError(f"{where}: soft_labels.top_ids repeats a token at one position")
                self.ids.append(ids)
                self.log_probs.append(_matrix(labels.get("top_logprobs"), n, k, "top_logprobs", where,
                                              torch.float32))
            else:
                assert columns is not None
                width = len(self.header["channel"]["ids"])
                stored_lp = _matrix(labels.get("channel_logprobs"), n, width, "channel_logprobs", where,
                                    torch.float32)
                # Full-vocabulary log-probs of the channel tokens, renormalized over the training channel.
                self.log_probs.append(torch.log_softmax(stored_lp[:, columns], dim=-1))
        self.counts = [e.n_response for e in student_encodings]
        self.n_positions = sum(self.counts)
        # An optional per-position loss_mask (sublab.defences: divergence-token masking) drops positions.
        self.masks = [_loss_mask(row[FIELD].get("loss_mask"), e.n_response, where)
                      for where, row, e in zip(places, rows, student_encodings, strict=True)]
        self.n_aligned = int(sum(int(m.sum()) for m in self.masks))

    @staticmethod
    def _check_tokenizer(header: dict[str, Any], student: dict[str, str], where: str) -> None:
        made_with = header.get("tokenizer")
        made_with = made_with if isinstance(made_with, dict) else {}
        if (made_with.get("vocab_sha256"), made_with.get("layout")) != (student["vocab_sha256"], student["layout"]):
            raise SublabError(
                f"{where}: soft labels were made with another tokenizer ({made_with.get('name')!r}: vocab sha256 "
                f"{_short(made_with.get('vocab_sha256'))}, {made_with.get('layout')} layout) than the student's "
                f"(vocab sha256 {_short(student['vocab_sha256'])}, {student['layout']} layout); label with a model "
                "that shares the student's tokenizer, or distil from the live teacher (it aligns tokenizers by text)")

    def _columns(self, header: dict[str, Any], tokenizer: Any, student_channel: torch.Tensor | None,
                 source: str) -> torch.Tensor | None:
        """Refuse labels that lack what training asks for; the labels' channel column of each student channel
        token (None when training on the top-k)."""
        top_k, channel = header.get("top_k"), header.get("channel")
        if not isinstance(top_k, int) or top_k < 0 or not (channel is None or (
                isinstance(channel, dict) and isinstance(channel.get("ids"), list))):
            raise SublabError(f"{source}: soft labels with a malformed 'top_k' or 'channel' ({top_k!r}, {channel!r})")
        if self.use_top_k:
            if not top_k:
                raise SublabError(f"{source}: soft labels hold no top-k (labelled with --top-k 0); train over their "
                                  "channel (--channel data or --channel-token), or relabel with --top-k K")
            return None
        if channel is None:
            raise SublabError(f"{source}: soft labels hold no channel distribution (labelled without --channel); "
                              "train with --channel full to distil from their top-k, or relabel with --channel data")
        position = {int(token): column for column, token in enumerate(channel["ids"])}
        assert student_channel is not None
        for token in student_channel.tolist():
            if token not in position:
                text = tokenizer.decode([token], clean_up_tokenization_spaces=False)
                raise SublabError(f"{source}: the training channel's token {text!r} (id {token}) is not in the soft "
                                  f"labels' channel ({len(position)} tokens); relabel with a channel that holds it, "
                                  "or train over the labels' channel")
        return torch.tensor([position[token] for token in student_channel.tolist()], dtype=torch.long)

    def _student_index(self, indices: list[int]) -> torch.Tensor:
        # Every response position of every row has its label, so the batch's positions are all of them, in order.
        return torch.arange(sum(self.counts[i] for i in indices), dtype=torch.long)

    def __call__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch of rows: indices into the student's flattened response positions, and the target
        log-probabilities there (over the student's channel; the top-k log-probs when training on top-k)."""
        keep = torch.cat([self.masks[i] for i in indices])
        return self._student_index(indices)[keep], torch.cat([self.log_probs[i] for i in indices])[keep]

    def top_k(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Student position indices, the teacher's top-k log-probs [N, k] and their token ids [N, k]."""
        if not self.use_top_k:
            raise ValueError("these targets are over a channel, not top-k")
        index, log_probs = self(indices)
        keep = torch.cat([self.masks[i] for i in indices])
        return index, log_probs, torch.cat([self.ids[i] for i in indices])[keep]
