"""Exact answer probabilities for an in-process judge, whatever its tokenizer.

Reading the first token's top log-probabilities (the served-judge convention) only works when 0..100 are
single tokens; many tokenizers (SmolLM2's among them: "50" is '5', '0') write numbers digit by digit, so "5"
would stand for every number starting with 5. With the weights in memory we compute instead, for each
candidate answer ``a``,

    P(the reply starts with a's tokens, and the next token does not continue it)

("continue": a token starting with a digit after a number, with a letter or digit after a word), so "5" is the
answer five, not a prefix of 50. The prompt runs once; its KV cache is repeated across batches of candidates
(16 at a time; right-padded, which causal attention keeps from touching real positions).
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Any

import torch

from sublab.backends.base import Context

NUMBER_CANDIDATES = tuple(str(n) for n in range(101))


@lru_cache(maxsize=8)
def _continuation_masks(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Boolean masks over the vocabulary: tokens whose text starts with a digit; with a letter or digit."""
    texts = [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in range(len(tokenizer))]
    digit = torch.tensor([bool(t) and t[0].isdigit() for t in texts])
    alnum = torch.tensor([bool(t) and t[0].isalnum() for t in texts])
    return digit, alnum


@torch.inference_mode()
def answer_logprobs(model: Any, tokenizer: Any, context: Context, candidates: list[str], words: list[bool],
                    bf16: bool = False, chunk_size: int = 16) -> list[float]:
    """``log P(reply = candidate, then a token that does not continue it)`` for each candidate.

    ``words[i]``: candidate ``i`` is a word (continued by a letter or digit), else a number (continued by a
    digit). Candidates run ``chunk_size`` at a time, each chunk on its own copy of the prompt's KV cache, which
    bounds memory (the cache is repeated once per candidate in a chunk).
    """
    from sublab.models.chat import encode_response
    from sublab.models.forward import continuation_logits

    digit_mask, alnum_mask = _continuation_masks(tokenizer)
    device = next(model.parameters()).device
    forms = [encode_response(tokenizer, text, add_end=False) for text in candidates]
    out: list[float] = []
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        prompt_logits, chunks = continuation_logits(model, tokenizer, context, forms, chunk_size)
        first = torch.log_softmax(prompt_logits.float(), dim=-1).double()
        for start, logits in chunks:
            rest = torch.log_softmax(logits.float(), dim=-1).double()
            for i, ids in enumerate(forms[start : start + len(logits)]):
                total = first[ids[0]]
                for t in range(1, len(ids)):
                    total = total + rest[i, t - 1, ids[t]]
                stop = ~(alnum_mask if words[start + i] else digit_mask)
                after = rest[i, len(ids) - 1]
                out.append(float(total + torch.logsumexp(after[stop.to(after.device)], dim=0)))
    return out


def number_and_label_probs(model: Any, tokenizer: Any, context: Context, labels: tuple[str, ...],
                           bf16: bool = False) -> tuple[dict[int, float], dict[str, float]]:
    """Exact probabilities of the answers 0..100 and of each label (its upper-case form)."""
    candidates = [*NUMBER_CANDIDATES, *labels]
    values = answer_logprobs(model, tokenizer, context, candidates,
                             [False] * len(NUMBER_CANDIDATES) + [True] * len(labels), bf16)
    numbers = {n: math.exp(v) for n, v in enumerate(values[: len(NUMBER_CANDIDATES)])}
    found = {label: math.exp(v) for label, v in zip(labels, values[len(NUMBER_CANDIDATES):],
                                                                     strict=True)}
    return numbers, found


def yes_no_probs(model: Any, tokenizer: Any, context: Context, bf16: bool = False) -> tuple[float, float]:
    """Exact ``(P(yes), P(no))``, each summed over its spellings (yes/Yes/YES, no/No/NO)."""
    from sublab.judges.scoring import NO_FORMS, YES_FORMS

    forms = [*YES_FORMS, *NO_FORMS]
    values = [math.exp(v) for v in answer_logprobs(model, tokenizer, context, forms,
                                                                    [True] * len(forms), bf16)]
    return sum(values[: len(YES_FORMS)]), sum(values[len(YES_FORMS):])
