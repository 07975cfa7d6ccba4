"""The in-process backend: a transformers model (base, optional PEFT adapter, optional system prompt).

Everything is exact here: sampling with an optional grammar, teacher-forced scoring of continuations, and the
full next-token distribution (so ``top_logprobs`` is the true top-k). Stages that need the raw model (training,
the preference scorer's KV-cache reuse) use :attr:`HFBackend.model` and :attr:`HFBackend.tokenizer`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sublab.backends.base import CONSTRAINED, SAMPLE, SCORE, TOP_LOGPROBS, BackendIdentity, Context

if TYPE_CHECKING:
    from sublab.generate.sampling import SamplingSettings
    from sublab.models.spec import ModelSpec


class HFBackend:
    """A loaded transformers causal LM with its tokenizer."""

    capabilities = frozenset({SAMPLE, SCORE, TOP_LOGPROBS, CONSTRAINED})

    def __init__(self, model: Any, tokenizer: Any, identity: BackendIdentity, bf16: bool = False) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.identity = identity
        self.bf16 = bf16
        # One processor per constraint for the backend's life: building one decodes the whole vocabulary, and
        # its per-state masks are worth keeping across batches.
        self._processors: dict[Any, Any] = {}

    @classmethod
    def from_spec(cls, spec: ModelSpec, bf16: bool = False) -> HFBackend:
        """Load ``spec`` (base + adapter, merged) for inference."""
        from sublab.models.spec import load_spec

        model, tokenizer = load_spec(spec)
        return cls(model, tokenizer, hf_identity(spec), bf16=bf16)

    def _autocast(self) -> Any:
        device = next(self.model.parameters()).device.type
        return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=self.bf16)

    def sample(self, contexts: list[Context], settings: SamplingSettings, seed: int,
               constraint: Any = None) -> list[str]:
        from sublab.generate.sampling import sample_batch

        processor = None
        if constraint is not None:
            key = (constraint, settings.max_new_tokens)
            if key not in self._processors:
                self._processors[key] = constraint.hf_processor(self.tokenizer, settings.max_new_tokens)
            processor = self._processors[key]
        return sample_batch(self.model, self.tokenizer, contexts, settings, seed, processor)

    @torch.inference_mode()
    def score(self, context: Context, continuations: list[str]) -> list[float]:
        from sublab.models.chat import encode_response, format_prompt

        prompt = self.tokenizer(format_prompt(self.tokenizer, context), add_special_tokens=False).input_ids
        out = []
        for text in continuations:
            reply = encode_response(self.tokenizer, text, add_end=False)
            ids = torch.tensor([prompt + reply], device=self.model.device)
            with self._autocast():
                logits = self.model(input_ids=ids).logits[0].float()
            log_probs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)
            out.append(float(log_probs[torch.arange(len(reply)), torch.tensor(reply)].double().sum()))
        return out

    @torch.inference_mode()
    def top_logprobs(self, contexts: list[Context], k: int) -> list[dict[str, float]]:
        from sublab.models.chat import format_prompt

        out = []
        for context in contexts:
            ids = self.tokenizer(format_prompt(self.tokenizer, context), add_special_tokens=False,
                                 return_tensors="pt").input_ids.to(self.model.device)
            with self._autocast():
                logits = self.model(input_ids=ids).logits[0, -1].float()
            values, indices = torch.log_softmax(logits, dim=-1).topk(k)
            out.append({self.tokenizer.decode([int(i)], clean_up_tokenization_spaces=False): float(v)
                        for v, i in zip(values.tolist(), indices.tolist(), strict=True)})
        return out


def hf_identity(spec: ModelSpec) -> BackendIdentity:
    """Identity of an in-process model: its base, its adapter's file digest, its system prompt's digest."""
    from sublab.generate.run import model_identity
    from sublab.io import sha256_text

    digests = {}
    named = model_identity(spec)
    if "sha256:" in named:
        digests["adapter"] = named.split("sha256:", 1)[1]
    if spec.system_prompt is not None:
        digests["system_prompt"] = sha256_text(spec.system_prompt)
    return BackendIdentity(kind="transformers", model=spec.base, digests=digests, verified=True)
