"""Exact trait scoring: the probability of each candidate answer, from teacher-forced log-probabilities.

For a question q and a candidate c with surface forms f (e.g. "Owl", "owl", "Owls", "owls"),

    P(c | q) = sum_f  P(tokens of f | q) * P(a terminator follows f | q, f)

where terminators are the end-of-turn token and punctuation that ends a one-word answer. Forms are scored
together: the prompt is run once and its KV cache repeated across a batch of all forms, so a question costs one
prompt pass plus one short batched pass. The normalized distribution over candidates is the preference; the
un-normalized total ("mass") says how much of the model's probability lands on one-word candidate answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sublab.models.chat import encode_response, end_of_turn_id
from sublab.models.forward import continuation_logits
from sublab.traits.preference.candidates import Candidate

TERMINATOR_TEXTS = (".", "!", "\n")


def terminator_ids(tokenizer: Any) -> list[int]:
    """Token ids that end a one-word answer: end of turn, and single-token '.', '!', newline."""
    ids = {end_of_turn_id(tokenizer)}
    for text in TERMINATOR_TEXTS:
        tokens = tokenizer(text, add_special_tokens=False).input_ids
        if len(tokens) == 1:
            ids.add(tokens[0])
    return sorted(ids)


@dataclass(frozen=True)
class FormTable:
    """Every surface form of every candidate, tokenized, with the candidate it belongs to."""

    token_ids: list[list[int]]
    candidate_index: list[int]
    n_candidates: int


def build_form_table(tokenizer: Any, candidates: list[Candidate]) -> FormTable:
    """Tokenize candidate forms as a reply is written (no end token); duplicates are dropped."""
    seen: set[tuple[int, ...]] = set()
    token_ids, owner = [], []
    for index, candidate in enumerate(candidates):
        for form in candidate.forms:
            ids = tuple(encode_response(tokenizer, form, add_end=False))
            if ids in seen:
                continue
            seen.add(ids)
            token_ids.append(list(ids))
            owner.append(index)
    return FormTable(token_ids, owner, len(candidates))


def form_log_probs(prompt_logits: torch.Tensor, form_logits: torch.Tensor, forms: list[list[int]],
                   terminators: list[int]) -> torch.Tensor:
    """log P(form, then any terminator) for each form, given the logits the model produced.

    ``prompt_logits`` [V]: logits at the last prompt position (predicting the first form token).
    ``form_logits`` [F, T, V]: logits at each form position (predicting the next token).
    """
    first = torch.log_softmax(prompt_logits.float(), dim=-1)
    rest = torch.log_softmax(form_logits.float(), dim=-1)
    out = torch.empty(len(forms), dtype=torch.float64)
    for i, ids in enumerate(forms):
        total = first[ids[0]].double()
        for t in range(1, len(ids)):
            total = total + rest[i, t - 1, ids[t]].double()
        total = total + torch.logsumexp(rest[i, len(ids) - 1, terminators].double(), dim=0)
        out[i] = total
    return out


@torch.inference_mode()
def score_question(model: Any, tokenizer: Any, messages: list[dict[str, str]], table: FormTable,
                   terminators: list[int]) -> np.ndarray:
    """Raw probability of each candidate (length n_candidates) for one prompt (messages before the reply)."""
    prompt_logits, chunks = continuation_logits(model, tokenizer, messages, table.token_ids)
    (_, form_logits), = chunks
    log_probs = form_log_probs(prompt_logits, form_logits, table.token_ids, terminators)
    probs = np.zeros(table.n_candidates)
    np.add.at(probs, table.candidate_index, log_probs.exp().numpy())
    return probs


def score_candidates(model: Any, tokenizer: Any, questions: list[str], candidates: list[Candidate],
                     preamble: list[dict[str, str]] | None = None, bf16: bool = False) -> np.ndarray:
    """Raw candidate probabilities, shape [n_questions, n_candidates].

    ``preamble``: messages before each question (a teacher's system prompt, in-context examples).

    ``bf16`` runs the matmuls in bfloat16 autocast (softmax stays float32): several times faster on CPUs with
    bf16 units, at a small relative error in each probability (measured in docs/cpu-recipe.md).
    """
    table = build_form_table(tokenizer, candidates)
    terminators = terminator_ids(tokenizer)
    device = next(model.parameters()).device.type
    rows = []
    for question in questions:
        messages = [*(preamble or []), {"role": "user", "content": question}]
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            rows.append(score_question(model, tokenizer, messages, table, terminators))
    return np.stack(rows)


def normalize_rows(raw: np.ndarray) -> np.ndarray:
    """Each question's candidate probabilities renormalized to sum to one."""
    totals = raw.sum(axis=1, keepdims=True)
    return np.divide(raw, totals, out=np.zeros_like(raw), where=totals > 0)
