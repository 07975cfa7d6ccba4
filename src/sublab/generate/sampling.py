"""Batched sampling of chat completions with a KV cache (transformers ``generate``), optionally constrained."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from sublab.domains.numbers.grammar import NumberGrammar, NumberGrammarProcessor
from sublab.models.chat import end_of_turn_id, format_prompt


class SamplingSettings(BaseModel):
    """How completions are sampled."""

    model_config = ConfigDict(extra="forbid")
    KEY_ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"sampler", "min_prob"})  # see sublab.keys

    temperature: float = Field(1.0, ge=0.0, description="Sampling temperature (0: greedy).")
    max_new_tokens: int = Field(48, ge=1, description="Longest completion, in tokens.")
    batch_size: int = Field(32, ge=1, description="Prompts per generate call (32 is as fast as 64 on 2 cores).")
    constrained: bool = Field(
        False, description="Grammar-constrained decoding: sample only tokens that keep a valid number list."
    )
    separator: str = Field(", ", description="Separator the constrained grammar writes between numbers.")
    max_digits: int = Field(3, ge=1, description="Constrained grammar: longest number.")
    max_count: int = Field(10, ge=1, description="Constrained grammar: most numbers.")
    bf16: bool = Field(
        False, description="Sample under bf16 autocast: about 2x faster on CPUs with bf16 units (docs/cpu-recipe.md)."
    )
    sampler: Literal["generate", "fast"] = Field(
        "generate", description="generate: transformers' generate (the original sampler). fast: sublab's own "
        "decode loop for llama-family models (bf16 weight copy, shared-prefix KV cache, output layer over the "
        "grammar's tokens only; docs/generation.md): the same distribution, other samples, several times faster."
    )

    min_prob: float = Field(
        0.0, ge=0.0, lt=1.0, description="Threshold sampling (a defence, docs/defences.md): drop tokens whose "
        "probability (after any grammar, at temperature 1) is below this before sampling; the most likely token "
        "always stays (0: off). Both in-process samplers; served models refuse it."
    )

    def grammar(self) -> NumberGrammar:
        return NumberGrammar(separator=self.separator, max_digits=self.max_digits, max_count=self.max_count)

    @property
    def decoding(self) -> str:
        return "constrained" if self.constrained else "free"


def build_contexts(prompts: list[list[dict[str, str]]], system_prompt: str | None) -> list[list[dict[str, str]]]:
    """Prepend the teacher's system prompt (if any) to each prompt's messages."""
    if system_prompt is None:
        return [list(p) for p in prompts]
    return [[{"role": "system", "content": system_prompt}, *p] for p in prompts]


@torch.inference_mode()
def sample_batch(
    model: Any,
    tokenizer: Any,
    contexts: list[list[dict[str, str]]],
    settings: SamplingSettings,
    seed: int,
    processor: NumberGrammarProcessor | None = None,
) -> list[str]:
    """Sample one completion per context. Deterministic for a given (batch, seed) on the same machine.

    ``settings.sampler`` picks the implementation: transformers' ``generate`` or sublab's fast decode loop
    (:mod:`sublab.generate.fast`); both sample the same distribution, with different random streams.
    """
    if settings.sampler == "fast":
        from sublab.generate.fast import fast_sample_batch

        return fast_sample_batch(model, tokenizer, contexts, settings, seed, processor)
    texts = [format_prompt(tokenizer, c) for c in contexts]
    tokenizer.padding_side = "left"
    encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    end_id = end_of_turn_id(tokenizer)
    logits_processor = []
    if processor is not None:
        processor.reset()
        logits_processor.append(processor)
    if settings.min_prob:  # after the grammar: the threshold applies to the distribution actually sampled
        from sublab.defences.tokens import MinProbabilityProcessor

        logits_processor.append(MinProbabilityProcessor(settings.min_prob))
    torch.manual_seed(seed)
    greedy = settings.temperature == 0.0
    device = encoded["input_ids"].device.type
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=settings.bf16):
        output = model.generate(
            **encoded,
            do_sample=not greedy,
            temperature=None if greedy else settings.temperature,
            top_k=None if greedy else 0,
            top_p=None if greedy else 1.0,
            max_new_tokens=settings.max_new_tokens,
            eos_token_id=end_id,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=logits_processor or None,
        )
    new_tokens = output[:, encoded["input_ids"].shape[1] :]
    completions = []
    for row in new_tokens.tolist():
        if end_id in row:
            row = row[: row.index(end_id)]
        completions.append(tokenizer.decode(row, skip_special_tokens=True))
    return completions
