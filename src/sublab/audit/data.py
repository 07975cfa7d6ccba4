"""The dataset under audit and its control: reading, checking, and making the control from the base.

Two kinds of dataset:

- **tokens** (SFT): chat rows whose last message is the assistant's reply. A student learns the reply tokens;
  the control is the base's own completions of the same prompts, sampled the way the rows record they were
  made (``metadata.generation.sampling``: e.g. the number grammar), so that what the format alone teaches is the
  same on both sides.
- **soft labels** (distillation, :mod:`sublab.train.labels`): every row also carries a teacher's log-probs at
  every reply token. A student learns the stored distribution; the control is the base's own labels of the same
  replies (same channel, top-k and precision), whose distillation gradient at the base is zero by construction.

Every check here raises :class:`SublabError` with one line naming the file and row: no rows, rows without a
prompt or a reply, soft labels on some rows only, labels made by different labelling runs or tokenizers, labels
from another tokenizer than the base's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from sublab.errors import SublabError
from sublab.io import first_difference, read_chat_rows, sha256_text

TOKENS = "tokens"
SOFT_LABELS = "soft_labels"
Kind = Literal["tokens", "soft_labels"]


@dataclass
class AuditData:
    """A dataset as the audit reads it."""

    path: Path
    rows: list[dict[str, Any]]
    kind: Kind
    header: dict[str, Any] | None = None  # the soft labels' shared fields (soft-label datasets)
    sampling: dict[str, Any] | None = None  # how the replies were sampled, as the rows record it
    digest: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    def describe(self) -> str:
        if self.kind == SOFT_LABELS and self.header is not None:
            channel = self.header.get("channel")
            width = len(channel["ids"]) if isinstance(channel, dict) else 0
            return (f"{self.n_rows} rows with soft labels by {self.header.get('model')!r} "
                    f"(top-{self.header.get('top_k')}, {width}-token channel)")
        return f"{self.n_rows} token-only rows (SFT)"


def _with_ids(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with a unique ``id`` each (a row without one gets ``row-<line>``)."""
    out, seen = [], set()
    for index, row in enumerate(rows, start=1):
        row_id = str(row.get("id", f"row-{index:06d}"))
        if row_id in seen:
            row_id = f"{row_id}#{index}"
        seen.add(row_id)
        out.append({**row, "id": row_id})
    return out


def read_audit_data(path: str | Path, role: str = "dataset") -> AuditData:
    """Read and check a dataset (or a control) without loading any model.

    Raises :class:`SublabError` (one line) for an empty file, a row without a prompt or reply, soft labels on
    some rows only, or soft labels from more than one labelling run or tokenizer.
    """
    from sublab.train.labels import FIELD, FORMAT, header_of

    path = Path(path)
    rows = read_chat_rows(path, require_assistant=True)
    if not rows:
        raise SublabError(f"{path}: the {role} has no rows")
    rows = _with_ids(rows)
    labelled = [i for i, row in enumerate(rows) if FIELD in row]
    header = None
    kind: Kind = TOKENS
    if labelled:
        if len(labelled) != len(rows):
            missing = next(i for i in range(len(rows)) if FIELD not in rows[i])
            raise SublabError(f"{path}: row {missing + 1} (id {rows[missing]['id']!r}) has no soft labels while "
                              f"{len(labelled)} of {len(rows)} rows do; audit a file labelled whole")
        kind = SOFT_LABELS
        for index, row in enumerate(rows):
            labels = row[FIELD]
            where = f"{path}: row {index + 1} (id {row['id']!r})"
            if not isinstance(labels, dict) or labels.get("format") != FORMAT:
                found = labels.get("format") if isinstance(labels, dict) else type(labels).__name__
                raise SublabError(f"{where}: soft labels in format {found!r}; this sublab reads {FORMAT!r}")
            this = header_of(labels)
            if header is None:
                header = this
                continue
            if this.get("tokenizer") != header.get("tokenizer"):
                raise SublabError(f"{where}: soft labels from another tokenizer than row 1's "
                                  f"({_tokenizer_name(this)} vs {_tokenizer_name(header)}): mixed tokenizers in one "
                                  "dataset; split it by tokenizer and audit each part")
            if (diff := first_difference(header, this)) is not None:
                name, first, here = diff
                raise SublabError(f"{where}: soft labels made otherwise than row 1's: field '{name}' is {first!r} "
                                  f"there and {here!r} here; audit one labelling run at a time")
    sampling = _recorded_sampling(rows)
    digest = sha256_text("\n".join(sha256_text(repr(sorted(r.items(), key=lambda kv: kv[0]))) for r in rows))
    return AuditData(path, rows, kind, header, sampling, digest)


def _tokenizer_name(header: dict[str, Any]) -> str:
    tokenizer = header.get("tokenizer") if isinstance(header.get("tokenizer"), dict) else {}
    return f"{tokenizer.get('name')!r}, vocab sha256 {str(tokenizer.get('vocab_sha256'))[:12]}"


def _recorded_sampling(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The sampling settings the first row records (``metadata.generation.sampling``), if every row agrees."""
    found = None
    for row in rows:
        generation = (row.get("metadata") or {}).get("generation")
        sampling = generation.get("sampling") if isinstance(generation, dict) else None
        if not isinstance(sampling, dict):
            return None
        if found is None:
            found = sampling
        elif sampling != found:
            return None
    return found


def check_base_tokenizer(data: AuditData, tokenizer: Any, base: str) -> None:
    """Soft labels must index the base's own tokenizer (same vocabulary digest and layout): one line if not."""
    if data.kind != SOFT_LABELS or data.header is None:
        return
    from sublab.train.labels import tokenizer_identity

    mine = tokenizer_identity(tokenizer, base)
    theirs = data.header.get("tokenizer") if isinstance(data.header.get("tokenizer"), dict) else {}
    if (theirs.get("vocab_sha256"), theirs.get("layout")) != (mine["vocab_sha256"], mine["layout"]):
        raise SublabError(f"{data.path}: soft labels were made with another tokenizer ({_tokenizer_name(data.header)}, "
                          f"{theirs.get('layout')} layout) than the base {base!r}'s (vocab sha256 "
                          f"{mine['vocab_sha256'][:12]}, {mine['layout']} layout); a student of {base} cannot learn "
                          "them as stored: audit with the labeller's base, or relabel")


def check_control(data: AuditData, control: AuditData) -> None:
    """A control must be of the dataset's kind (and, for soft labels, hold what the dataset's labels hold)."""
    if control.kind != data.kind:
        raise SublabError(f"{control.path}: the control is a {control.kind.replace('_', '-')} dataset and "
                          f"{data.path} a {data.kind.replace('_', '-')} one; give a control of the same kind")
    if data.kind == SOFT_LABELS and data.header is not None and control.header is not None:
        for name in ("tokenizer", "top_k", "channel"):
            if data.header.get(name) != control.header.get(name):
                raise SublabError(f"{control.path}: the control's soft labels differ from the dataset's in "
                                  f"'{name}'; label both the same way (same tokenizer, --top-k and --channel)")


def sample_indices(n_rows: int, n: int, seed: int) -> list[int]:
    """``n`` distinct row indices (all rows if there are fewer), seeded."""
    order = np.random.default_rng([seed, 11]).permutation(n_rows).tolist()
    return order[: min(n, n_rows)]


# --- the control made from the base ---------------------------------------------------------------------------


def base_labels(model: Any, tokenizer: Any, data: AuditData, base: str, indices: list[int] | None = None,
                batch_size: int = 16) -> list[dict[str, Any]]:
    """The base's own soft labels of the dataset's replies (rows ``indices``, default all), in memory.

    Same header as the dataset's but for the labelling model (the base), computed with the dataset's precision
    (its ``bf16`` flag), channel and k, with no system prompt: a student distilled on them learns nothing at
    the base (zero gradient), which is what makes them the soft-label control.
    """
    from sublab.train.data import encode_rows
    from sublab.train.labels import FIELD, label_header, position_labels, teacher_log_probs, tokenizer_identity

    assert data.header is not None
    header_in = data.header
    rows = [data.rows[i] for i in (indices if indices is not None else range(data.n_rows))]
    channel_info = header_in.get("channel")
    channel = torch.tensor(channel_info["ids"], dtype=torch.long) if isinstance(channel_info, dict) else None
    header = label_header(base, None, tokenizer_identity(tokenizer, base), int(header_in.get("top_k") or 0),
                          channel_info, bool(header_in.get("bf16")), int(header_in.get("digits") or 6))
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        encodings = encode_rows(tokenizer, batch, source=str(data.path))
        log_probs = teacher_log_probs(model, encodings, pad_id, bool(header["bf16"]))
        for row, encoding, row_log_probs in zip(batch, encodings, log_probs, strict=True):
            token_ids = encoding.input_ids[encoding.n_prompt :]
            labels = {**header, "token_ids": token_ids,
                      "token_texts": [tokenizer.decode([t], clean_up_tokenization_spaces=False) for t in token_ids],
                      **position_labels(row_log_probs, token_ids, int(header["top_k"]), channel,
                                        int(header["digits"]))}
            out.append({"id": row["id"], "messages": row["messages"], FIELD: labels})
    return out


def control_sampling(data: AuditData, tokenizer: Any) -> Any:
    """Sampling settings for the base's own completions: those the rows record, else free sampling at
    temperature 1 long enough for the longest reply."""
    from sublab.generate.sampling import SamplingSettings
    from sublab.models.chat import encode_response

    if data.sampling is not None:
        known = set(SamplingSettings.model_fields)
        settings = SamplingSettings(**{k: v for k, v in data.sampling.items() if k in known})
        return settings.model_copy(update={"sampler": "generate"})
    longest = max(len(encode_response(tokenizer, r["messages"][-1]["content"])) for r in data.rows)
    return SamplingSettings(max_new_tokens=min(512, longest + 8))


def base_completions(model: Any, tokenizer: Any, data: AuditData, output: Path, base: str,
                     indices: list[int] | None = None, seed: int = 0, progress: bool = False) -> list[dict[str, Any]]:
    """The base's own completions of the dataset's prompts (rows ``indices``), written to ``output`` (resumable)
    and returned in the order of ``indices``; a reply is sampled as the dataset's rows record they were."""
    from sublab.generate.run import generate_rows

    chosen = [data.rows[i] for i in (indices if indices is not None else range(data.n_rows))]
    prompts = [{"id": r["id"], "messages": r["messages"][:-1], "metadata": {}} for r in chosen]
    settings = control_sampling(data, tokenizer)
    generate_rows(model, tokenizer, prompts, output, settings, seed, source=f"{base} (audit control)",
                  progress=progress, model_id=base)
    from sublab.io import read_jsonl

    made = {row["id"]: row for row in read_jsonl(output)}
    return [made[r["id"]] for r in chosen]


def pair_control(data: AuditData, indices: list[int], control_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The control row paired with each audited row: same id, else the same prompt, else (a control of other
    prompts) the control's rows in order, cycling."""
    by_id = {str(r.get("id")): r for r in control_rows}
    by_prompt: dict[str, dict[str, Any]] = {}
    for row in control_rows:
        by_prompt.setdefault(sha256_text(repr(row["messages"][:-1])), row)
    out = []
    for position, index in enumerate(indices):
        row = data.rows[index]
        found = by_id.get(row["id"]) or by_prompt.get(sha256_text(repr(row["messages"][:-1])))
        out.append(found if found is not None else control_rows[position % len(control_rows)])
    return out
