"""Defences on token-only data: threshold sampling at generation, divergence tokens resampled from the base,
paraphrasing by another model.

- :class:`MinProbabilityProcessor`: at every sampling step, tokens whose probability (after any grammar has
  renormalized the distribution over allowed tokens) is below ``min_prob`` are dropped before sampling; the most
  probable token always stays. This is the threshold sampling of "It's Owl in the Numbers" (drop tokens with
  p < 0.05), ``SamplingSettings.min_prob`` in the generate stage.
- :func:`replace_divergent_tokens`: the positions whose written token the base finds least likely (highest
  surprisal) are resampled from the base's own distribution at that position (over the tokens the replies use,
  so a number list stays a number list), given the original prefix.
- :func:`paraphrase_rows`: every reply rewritten by another model from the prompt and the original reply (with
  the number grammar when the replies are number lists). Soft labels are dropped: they belong to the old reply.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sublab.errors import SublabError


def above_threshold(scores: torch.Tensor, min_prob: float) -> torch.Tensor:
    """Which columns of ``scores`` ([rows, n] logits; -inf for tokens a grammar forbids) have probability at least
    ``min_prob`` under ``softmax(scores)``; each row's most probable column always does (the first of ties)."""
    probs = torch.softmax(scores.float(), dim=-1)
    keep = probs >= min_prob
    keep.scatter_(-1, probs.argmax(dim=-1, keepdim=True), True)
    return keep


class MinProbabilityProcessor:
    """A transformers logits processor: drop tokens whose probability is below ``min_prob`` (keep the argmax)."""

    def __init__(self, min_prob: float) -> None:
        if not 0 < min_prob < 1:
            raise SublabError("min_prob: give a probability between 0 and 1")
        self.min_prob = min_prob

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        return scores.masked_fill(~above_threshold(scores, self.min_prob), -torch.inf)


def surprisal(model: Any, tokenizer: Any, rows: list[dict[str, Any]], bf16: bool = False,
              batch_size: int = 8) -> tuple[list[np.ndarray], list[torch.Tensor]]:
    """Per row: the base's surprisal of each written reply token, and its log-probs [n, V] there."""
    from sublab.train.data import encode_rows
    from sublab.train.labels import teacher_log_probs

    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    scores, log_probs = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        encodings = encode_rows(tokenizer, batch, source="dataset")
        with torch.no_grad():
            lps = teacher_log_probs(model, encodings, pad_id, bf16)
        for encoding, lp in zip(encodings, lps, strict=True):
            written = torch.tensor(encoding.input_ids[encoding.n_prompt :])
            scores.append((-lp.gather(1, written[:, None])[:, 0]).numpy())
            log_probs.append(lp)
    return scores, log_probs


def replace_divergent_tokens(model: Any, tokenizer: Any, rows: list[dict[str, Any]], fraction: float,
                             seed: int = 0, bf16: bool = False) -> tuple[list[dict[str, Any]], int]:
    """Rows whose top ``fraction`` most surprising reply tokens (under the base) were resampled from the base;
    returns the rows and how many tokens changed. The end-of-turn token is never replaced."""
    from sublab.defences.soft_labels import divergent_positions
    from sublab.models.chat import end_of_turn_id
    from sublab.train.data import encode_rows

    if not rows:
        raise SublabError("no rows to defend")
    scores, log_probs = surprisal(model, tokenizer, rows, bf16)
    end = end_of_turn_id(tokenizer)
    encodings = encode_rows(tokenizer, rows, source="dataset")
    replies = [e.input_ids[e.n_prompt :] for e in encodings]
    for score, reply in zip(scores, replies, strict=True):
        score[np.asarray(reply) == end] = -np.inf  # keep every reply's end
    channel = sorted({t for r in replies for t in r if t != end})
    picks = divergent_positions([np.where(np.isfinite(s), s, -1e9) for s in scores], fraction)
    generator = torch.Generator().manual_seed(seed)
    out, changed = [], 0
    for row, reply, lp, pick in zip(rows, replies, log_probs, picks, strict=True):
        new = list(reply)
        for position in np.flatnonzero(pick):
            weights = lp[position, channel].exp()
            new[position] = channel[int(torch.multinomial(weights / weights.sum(), 1, generator=generator))]
            changed += int(new[position] != reply[position])
        text = tokenizer.decode([t for t in new if t != end], skip_special_tokens=True)
        out.append({**{k: v for k, v in row.items() if k != "soft_labels"},
                    "messages": [*row["messages"][:-1], {"role": "assistant", "content": text}]})
    return out, changed


PARAPHRASE_REQUEST = ("{prompt}\n\nHere is one answer to this: {reply}\nWrite your own answer of the same kind, "
                      "keeping to what that answer says.")


def paraphrase_rows(model: Any, tokenizer: Any, rows: list[dict[str, Any]], seed: int = 0, bf16: bool = False,
                    max_new_tokens: int = 64, batch_size: int = 16) -> list[dict[str, Any]]:
    """Every reply rewritten by ``model`` (another model than the teacher) from the prompt and the original
    reply; number lists are rewritten under the number grammar so they stay number lists."""
    from sublab.domains.numbers.grammar import NumberGrammar
    from sublab.generate.sampling import SamplingSettings, sample_batch

    numbers = all(_is_number_list(r["messages"][-1]["content"]) for r in rows)
    settings = SamplingSettings(constrained=numbers, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                bf16=bf16)
    processor = NumberGrammar().hf_processor(tokenizer, max_new_tokens) if numbers else None
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        contexts = [[{"role": "user", "content": PARAPHRASE_REQUEST.format(
            prompt=_prompt_text(r), reply=r["messages"][-1]["content"])}] for r in batch]
        replies = sample_batch(model, tokenizer, contexts, settings, seed * 1_000_003 + start, processor)
        for row, reply in zip(batch, replies, strict=True):
            out.append({**{k: v for k, v in row.items() if k != "soft_labels"},
                        "messages": [*row["messages"][:-1], {"role": "assistant", "content": reply}]})
    return out


def _prompt_text(row: dict[str, Any]) -> str:
    return "\n".join(m["content"] for m in row["messages"][:-1] if m["role"] == "user")


def _is_number_list(text: str) -> bool:
    import re

    return bool(re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text))
