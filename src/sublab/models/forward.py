"""Forward passes of a causal LM shared by the exact scorers: the KV-cache argument (renamed across transformers
versions) and one prompt's many teacher-forced continuations on a repeat of its cache."""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=64)
def _cache_argument_of(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for passing a KV cache to ``model.forward``: transformers >= 5.24 calls the argument
    ``cache`` (the old ``past_key_values`` warns, and goes in 5.40); older 5.x only knows ``past_key_values``.
    A PEFT model's forward passes keyword arguments through to the model it wraps, so that one is asked."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_argument_of(type(base)): cache}


def continuation_logits(model: Any, tokenizer: Any, messages: list[dict[str, str]],
                        continuations: Sequence[Sequence[int]],
                        chunk_size: int | None = None) -> tuple[Any, Iterator[tuple[int, Any]]]:
    """Teacher-forced logits of many continuations (token ids) of one chat prompt, the prompt run once.

    ``messages``: the conversation before the reply, laid out by the chat template (:func:`format_prompt`).
    Returns the logits at the prompt's last position [V] (they predict each continuation's first token), run now,
    and an iterator of ``(start, logits)``: the continuations ``start .. start + n`` right-padded with the
    tokenizer's pad token into one batch on a repeat of the prompt's
    KV cache, their logits [n, L, V] (position t predicts token t + 1). ``chunk_size`` bounds n, and with it the
    repeated cache's memory (each chunk repeats its own copy). Right padding needs no mask: causal attention keeps
    real positions blind to the pads after them. Gradients, autocast and inference mode are the caller's.
    """
    import copy

    import torch

    from sublab.models.chat import format_prompt

    device = next(model.parameters()).device
    prompt_ids = tokenizer(format_prompt(tokenizer, messages), add_special_tokens=False, return_tensors="pt")
    prompt = model(input_ids=prompt_ids.input_ids.to(device), use_cache=True)
    size = chunk_size or max(len(continuations), 1)
    pad = int(tokenizer.pad_token_id or 0)

    def chunks() -> Iterator[tuple[int, Any]]:
        for start in range(0, len(continuations), size):
            chunk = continuations[start : start + size]
            batch = torch.full((len(chunk), max(len(ids) for ids in chunk)), pad, dtype=torch.long)
            for i, ids in enumerate(chunk):
                batch[i, : len(ids)] = torch.tensor(list(ids))
            last = start + size >= len(continuations)
            # The cache grows in place as the batch runs: the last chunk may use the prompt's own.
            cache = prompt.past_key_values if last else copy.deepcopy(prompt.past_key_values)
            cache.batch_repeat_interleave(len(chunk))
            yield start, model(input_ids=batch.to(device), use_cache=True, **cache_kwargs(model, cache)).logits

    return prompt.logits[0, -1], chunks()
