"""A fast sampler for llama-family models: sublab's own decode loop instead of transformers' ``generate``.

It samples the distribution :func:`sublab.generate.sampling.sample_batch` samples with ``generate`` (same
prompts, temperature, grammar and end of turn; under ``bf16`` the precision of bf16 autocast, the rounding in
another order), with much less work per row (docs/generation.md measures each part):

- **Weights cast once.** Under ``bf16`` every linear layer gets a bf16 copy (q/k/v and gate/up fused),
  prepacked for oneDNN, while the residual stream, norms and rotary embeddings stay in the model's float32 and
  attention is torch's fused kernel with float32 scores: autocast's precision, without autocast re-casting every
  weight at every step.
- **Shared prefix.** The batch's longest common token prefix (the chat template's system text, a teacher's
  system prompt) is prefilled once (and kept for the next batch), then copied into every row's KV cache.
- **Packed, chunked prefill.** Each row's own prompt tokens go through the linear layers packed (no padding
  work), rows sorted by length, about 1,024 tokens at a time; only attention sees a padded layout.
- **Static KV cache.** One reused buffer; each row's tokens sit at their positions, so a length mask is the
  whole attention mask. Rows that ended are dropped from the batch once a quarter of it has ended (the cache is
  compacted in place, :func:`compact_cache`).
- **Output layer over the allowed tokens only.** With a grammar constraint (:class:`TokenConstraint`), logits
  are computed for the ~40 tokens any grammar state can allow instead of the whole vocabulary; the grammar's
  mask over them is exactly :class:`~sublab.domains.numbers.grammar.NumberGrammarProcessor`'s mask. A token the
  grammar forces (the only one allowed) is fed with the sampled one before it instead of costing a step.
- **Per-row random streams.** Row *i*'s *n*-th token uses the *n*-th uniform of row *i* of
  ``torch.rand(rows, max_new_tokens, generator=Generator(seed))``, by inverse CDF (float64 sums) over the
  renormalised allowed probabilities: a row's sample depends on the seed, its place in the batch and its own
  probabilities, not on how many rows the batch has or what they contain (up to floating-point rounding of the
  batched arithmetic).

Supported: ``LlamaForCausalLM`` and ``Qwen2ForCausalLM`` without sliding-window layers (SmolLM2, Llama, Qwen2.5);
anything else raises :class:`~sublab.errors.SublabError` (use ``sampler = "generate"``). One batch at a time per
model (the KV buffer is the model's).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from sublab.defences.tokens import above_threshold
from sublab.errors import SublabError
from sublab.models.chat import end_of_turn_id, format_prompt

SUPPORTED_MODEL_TYPES = ("llama", "qwen2")
#: Prompt tokens per prefill chunk (measured on a 2-core EPYC: see docs/generation.md).
PREFILL_CHUNK_TOKENS = 1024
#: Compact the KV cache once this fraction of its rows has ended.
COMPACT_FRACTION = 0.25
#: generation_config fields that would change what ``generate`` samples; the fast sampler applies none of them.
_GENERATION_FIELDS = ("repetition_penalty", "no_repeat_ngram_size", "encoder_repetition_penalty", "bad_words_ids",
                      "suppress_tokens", "begin_suppress_tokens", "min_length", "min_new_tokens",
                      "forced_bos_token_id", "forced_eos_token_id", "sequence_bias", "exponential_decay_length_penalty",
                      "epsilon_cutoff", "eta_cutoff", "typical_p", "min_p", "renormalize_logits")


class TokenConstraint(Protocol):
    """What the fast sampler needs from a grammar (``NumberGrammarProcessor`` provides it)."""

    def start_state(self) -> Any:
        """The state of an empty reply."""

    def candidate_ids(self) -> list[int]:
        """Every token some state may allow, ascending (the only logits computed)."""

    def candidate_masks(self, states: list[Any], n_generated: int | list[int]) -> torch.Tensor:
        """Allowed candidates per row, ``[len(states), len(candidate_ids())]`` bool, after ``n_generated``
        tokens (one count for all rows or one per row)."""

    def advance(self, state: Any, token_id: int) -> Any:
        """The state after a token."""


def unsupported_reason(model: Any) -> str | None:
    """Why the fast sampler cannot run ``model`` (None when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        name = type(model).__name__
        return f"{name} (model_type {model_type!r}) is not one of {', '.join(SUPPORTED_MODEL_TYPES)}"
    layer_types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types) or getattr(config, "use_sliding_window", False):
        return "the model has sliding-window attention layers"
    base = getattr(model, "model", None)
    layers = getattr(base, "layers", None)
    if base is None or layers is None or getattr(model, "lm_head", None) is None:
        return f"{type(model).__name__} has no .model.layers / .lm_head (a PEFT wrapper? merge the adapter first)"
    for layer in layers:
        attn, mlp = getattr(layer, "self_attn", None), getattr(layer, "mlp", None)
        if attn is None or mlp is None or any(
            getattr(attn, n, None) is None for n in ("q_proj", "k_proj", "v_proj", "o_proj")
        ) or any(getattr(mlp, n, None) is None for n in ("gate_proj", "up_proj", "down_proj")):
            return "a decoder layer is not laid out as llama's (self_attn.q/k/v/o_proj, mlp.gate/up/down_proj)"
        if any(hasattr(attn, n) for n in ("q_norm", "k_norm")):
            return "the attention has q/k norms (not llama's layout)"
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            if not isinstance(getattr(attn, name), torch.nn.Linear):
                return f"self_attn.{name} is a {type(getattr(attn, name)).__name__}, not a plain Linear"
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        from transformers import GenerationConfig

        default = GenerationConfig()
        for field in _GENERATION_FIELDS:
            value, usual = getattr(gen, field, None), getattr(default, field, None)
            if value != usual and not (field == "repetition_penalty" and value in (None, 1.0)):
                return f"its generation_config sets {field}={value!r}, which generate applies and this sampler does not"
    return None


# ----------------------------------------------------------------------------------------------- the weights


@dataclass
class _Layer:
    norm_in: torch.Tensor
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    out: torch.Tensor
    out_bias: torch.Tensor | None
    norm_mlp: torch.Tensor
    gate_up: torch.Tensor
    gate_up_bias: torch.Tensor | None
    down: torch.Tensor
    down_bias: torch.Tensor | None


class FastModel:
    """A llama-family model's weights laid out for batched decoding in ``compute_dtype``.

    Linear layers run in ``compute_dtype`` (their weights cast once); the residual stream, the norms and the
    rotary embeddings stay in the model's own dtype, as under autocast.
    """

    def __init__(self, model: Any, compute_dtype: torch.dtype) -> None:
        config = model.config
        base = model.model
        self.compute_dtype = compute_dtype
        self.dtype = base.embed_tokens.weight.dtype
        self.n_heads = config.num_attention_heads
        self.n_kv = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.n_heads
        self.scaling = self.head_dim**-0.5
        first = base.layers[0]
        self.eps = float(first.input_layernorm.variance_epsilon)
        self.final_eps = float(base.norm.variance_epsilon)
        self.act = first.mlp.act_fn
        self.intermediate = first.mlp.gate_proj.weight.shape[0]
        self.rotary = base.rotary_emb
        self.embed = base.embed_tokens.weight.detach()
        self.final_norm = base.norm.weight.detach()
        self.lm_head = model.lm_head.weight.detach().to(compute_dtype)
        self.lm_bias = _cast(model.lm_head.bias, compute_dtype)

        def fused(linears: list[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
            weight = torch.cat([lin.weight.detach().to(compute_dtype) for lin in linears])
            biases = [lin.bias for lin in linears]
            if all(b is None for b in biases):
                return weight, None
            bias = torch.cat([(b.detach() if b is not None else torch.zeros(lin.weight.shape[0], dtype=self.dtype))
                              for b, lin in zip(biases, linears, strict=True)])
            return weight, bias.to(compute_dtype)

        self.layers = []
        self.prepacked = compute_dtype == torch.bfloat16 and _prepacking_works()
        pack = _prepack if self.prepacked else (lambda w: w)
        for layer in base.layers:
            attn, mlp = layer.self_attn, layer.mlp
            qkv, qkv_bias = fused([attn.q_proj, attn.k_proj, attn.v_proj])
            gate_up, gate_up_bias = fused([mlp.gate_proj, mlp.up_proj])
            self.layers.append(_Layer(
                norm_in=layer.input_layernorm.weight.detach(), qkv=pack(qkv), qkv_bias=qkv_bias,
                out=pack(attn.o_proj.weight.detach().to(compute_dtype)),
                out_bias=_cast(attn.o_proj.bias, compute_dtype),
                norm_mlp=layer.post_attention_layernorm.weight.detach(), gate_up=pack(gate_up),
                gate_up_bias=gate_up_bias, down=pack(mlp.down_proj.weight.detach().to(compute_dtype)),
                down_bias=_cast(mlp.down_proj.bias, compute_dtype),
            ))
        self.lm_head_packed = pack(self.lm_head)
        self._prefix: tuple[tuple[int, ...], torch.Tensor, torch.Tensor] | None = None
        self._buffer: tuple[torch.Tensor, torch.Tensor] | None = None
        self._candidate_rows: tuple[tuple[int, ...], torch.Tensor, torch.Tensor | None] | None = None

    # -- building blocks, each the same arithmetic as transformers' llama under autocast --

    def _linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.prepacked:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
        return F.linear(x, weight, bias)

    @staticmethod
    def _rms_norm(h: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        if h.dtype == torch.float32 and weight.dtype == torch.float32:  # one fused kernel, the same arithmetic
            return F.rms_norm(h, (h.shape[-1],), weight, eps)
        x = h.to(torch.float32)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return weight * x.to(h.dtype)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return (x * cos) + (rotated * sin)

    def _rotary(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for ``positions`` ([N]), shaped [N, 1, head_dim] (broadcast over heads)."""
        probe = self.embed[:1]  # its dtype is the dtype transformers' rotary module returns (the residual's)
        cos, sin = self.rotary(probe, positions[None, :])
        return cos[0, :, None, :], sin[0, :, None, :]

    def _run_layers(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attend: Any,
                    outputs: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder layers over tokens ``h`` ([N, d]); ``attend(i, q, k, v)`` does layer i's attention.

        ``outputs``: the tokens whose final hidden state is wanted (default all); the last layer's output
        projection and MLP run for those only (every token's keys and values are still written)."""
        n = h.shape[0]
        last = len(self.layers) - 1
        cd = self.compute_dtype
        q_width, kv_width = self.n_heads * self.head_dim, self.n_kv * self.head_dim
        for index, layer in enumerate(self.layers):
            x = self._rms_norm(h, layer.norm_in, self.eps)
            qkv = self._linear(x.to(cd), layer.qkv, layer.qkv_bias)
            # Queries and keys rotated together (one set of ops for both heads' kinds).
            qk = self._rope(qkv[:, : q_width + kv_width].view(n, self.n_heads + self.n_kv, self.head_dim), cos, sin)
            qk = qk.to(cd)
            q, k = qk[:, : self.n_heads], qk[:, self.n_heads :]
            attn = attend(index, q, k, qkv[:, q_width + kv_width :].view(n, self.n_kv, self.head_dim))
            if index == last and outputs is not None:
                h, attn = h[outputs], attn[outputs]
            h = h.add_(self._linear(attn, layer.out, layer.out_bias))  # h is always this loop's own tensor
            x = self._rms_norm(h, layer.norm_mlp, self.eps)
            gate, up = self._linear(x.to(cd), layer.gate_up, layer.gate_up_bias).split(self.intermediate, dim=-1)
            h = h.add_(self._linear(self.act(gate).mul_(up), layer.down, layer.down_bias))
        return h

    def new_cache(self, n_rows: int, length: int, reuse: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Key and value caches, ``[layers, rows, kv heads, length, head_dim]``.

        Slots a row has not written are read under the attention mask, so they must hold finite numbers: a new
        buffer is zeroed; with ``reuse`` the model keeps one buffer and hands out views of it, holding what
        earlier batches wrote (finite) instead of zeroing hundreds of megabytes per batch. One batch at a time.
        """
        if not reuse:
            shape = (len(self.layers), n_rows, self.n_kv, length, self.head_dim)
            return torch.zeros(shape, dtype=self.compute_dtype), torch.zeros(shape, dtype=self.compute_dtype)
        if self._buffer is None or self._buffer[0].shape[1] < n_rows or self._buffer[0].shape[3] < length:
            rows = max(n_rows, self._buffer[0].shape[1] if self._buffer is not None else 0)
            slots = max(length, self._buffer[0].shape[3] if self._buffer is not None else 0)
            self._buffer = None  # free the old one first
            self._buffer = self.new_cache(rows, slots, reuse=False)
        keys, values = self._buffer
        return keys[:, :n_rows, :, :length], values[:, :n_rows, :, :length]

    def prefill(self, keys: torch.Tensor, values: torch.Tensor, rows: list[list[int]], start: int) -> torch.Tensor:
        """Run each row's tokens at positions ``start, start+1, ...`` after the cached slots ``[0, start)``,
        writing their keys and values; returns the hidden state of each row's last token ([rows, d], before the
        final norm)."""
        lengths = torch.tensor([len(r) for r in rows])
        n_rows, longest = len(rows), int(lengths.max())
        row_of = torch.repeat_interleave(torch.arange(n_rows), lengths)
        offset = torch.arange(int(lengths.sum())) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        positions = start + offset
        h = self.embed[torch.tensor([t for r in rows for t in r])]
        cos, sin = self._rotary(positions)
        span = start + longest
        gqa = self.n_heads != self.n_kv
        # Query s of every row sits at slot start + s and sees the slots up to its own: one mask for the chunk.
        # A row's padding keys (after its last token) are seen only by its padding queries, which are dropped.
        slots = torch.arange(span)
        allowed = slots[None, :] <= (start + torch.arange(longest))[:, None]  # [longest, span]
        padded = torch.zeros(n_rows, longest, self.n_heads, self.head_dim, dtype=self.compute_dtype)  # all layers

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys[index][row_of, :, positions] = k
            values[index][row_of, :, positions] = v
            padded[row_of, offset] = q  # the other entries stay zero
            out = F.scaled_dot_product_attention(padded.transpose(1, 2), keys[index][:, :, :span],
                                                 values[index][:, :, :span], attn_mask=allowed,
                                                 scale=self.scaling, enable_gqa=gqa)
            return out.transpose(1, 2)[row_of, offset].reshape(-1, self.n_heads * self.head_dim)

        return self._run_layers(h, cos, sin, attend, outputs=lengths.cumsum(0) - 1)

    def prefill_chunked(self, keys: torch.Tensor, values: torch.Tensor, rows: list[list[int]], start: int,
                        chunk_tokens: int | None = None) -> torch.Tensor:
        """:meth:`prefill` over consecutive chunks of rows of about ``chunk_tokens`` tokens each."""
        budget = chunk_tokens or PREFILL_CHUNK_TOKENS
        hidden, first, count = [], 0, 0
        for index, row in enumerate(rows):
            count += len(row)
            if count >= budget or index == len(rows) - 1:
                hidden.append(self.prefill(keys[:, first : index + 1], values[:, first : index + 1],
                                           rows[first : index + 1], start))
                first, count = index + 1, 0
        return torch.cat(hidden)

    def decode(self, keys: torch.Tensor, values: torch.Tensor, tokens: torch.Tensor,
               positions: torch.Tensor) -> torch.Tensor:
        """One token per cache row at ``positions``; returns their hidden states (before the final norm)."""
        n_rows = tokens.shape[0]
        h = self.embed[tokens]
        cos, sin = self._rotary(positions)
        span = int(positions.max()) + 1
        mask = (torch.arange(span)[None, :] <= positions[:, None])[:, None, None, :]  # [rows, 1, 1, span]
        rows = torch.arange(n_rows)
        groups = self.n_heads // self.n_kv

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys[index][rows, :, positions] = k
            values[index][rows, :, positions] = v
            # One query token: the query heads of a key/value head form its "query length" (no repeat_kv copy).
            grouped = q.reshape(n_rows, self.n_kv, groups, self.head_dim)
            out = F.scaled_dot_product_attention(grouped, keys[index][:, :, :span], values[index][:, :, :span],
                                                 attn_mask=mask, scale=self.scaling)
            return out.reshape(n_rows, self.n_heads * self.head_dim)

        return self._run_layers(h, cos, sin, attend)

    def decode_many(self, keys: torch.Tensor, values: torch.Tensor, rows: list[list[int]],
                    positions: torch.Tensor) -> torch.Tensor:
        """Each cache row's tokens ``rows[i]`` at positions ``positions[i], positions[i] + 1, ...`` (a sampled
        token and the tokens the grammar forces after it); returns each row's last hidden state."""
        lengths = torch.tensor([len(r) for r in rows])
        width = int(lengths.max())
        if width == 1:
            return self.decode(keys, values, torch.tensor([r[0] for r in rows]), positions)
        n_rows, groups = len(rows), self.n_heads // self.n_kv
        row_of = torch.repeat_interleave(torch.arange(n_rows), lengths)
        offset = torch.arange(int(lengths.sum())) - torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        slots = positions[row_of] + offset
        h = self.embed[torch.tensor([t for r in rows for t in r])]
        cos, sin = self._rotary(slots)
        span = int(slots.max()) + 1
        query_slots = positions[:, None] + torch.arange(width)[None, :]
        mask = torch.arange(span)[None, None, :] <= query_slots[:, :, None]  # [rows, width, span]
        mask = mask.repeat(1, groups, 1)[:, None]  # query (g, j) of a key/value head at index g * width + j
        padded = torch.zeros(n_rows, width, self.n_heads, self.head_dim, dtype=self.compute_dtype)  # every layer

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            keys[index][row_of, :, slots] = k
            values[index][row_of, :, slots] = v
            padded[row_of, offset] = q  # the other entries stay zero
            grouped = padded.view(n_rows, width, self.n_kv, groups, self.head_dim).permute(0, 2, 3, 1, 4)
            out = F.scaled_dot_product_attention(grouped.reshape(n_rows, self.n_kv, groups * width, self.head_dim),
                                                 keys[index][:, :, :span], values[index][:, :, :span],
                                                 attn_mask=mask, scale=self.scaling)
            out = out.view(n_rows, self.n_kv, groups, width, self.head_dim).permute(0, 3, 1, 2, 4)
            return out.reshape(n_rows, width, self.n_heads * self.head_dim)[row_of, offset]

        return self._run_layers(h, cos, sin, attend, outputs=lengths.cumsum(0) - 1)

    def logits(self, hidden: torch.Tensor, token_ids: list[int] | None) -> torch.Tensor:
        """Logits of ``token_ids`` (float32), or of every token (None; in the compute dtype, the values
        ``generate`` under autocast rounds them to) after the final norm."""
        x = self._rms_norm(hidden, self.final_norm, self.final_eps).to(self.compute_dtype)
        if token_ids is None:  # left in the compute dtype: choose_tokens converts it a few rows at a time
            return self._linear(x, self.lm_head_packed, self.lm_bias)
        key = tuple(token_ids)
        if self._candidate_rows is None or self._candidate_rows[0] != key:
            index = torch.tensor(token_ids, dtype=torch.long)
            bias = self.lm_bias[index] if self.lm_bias is not None else None
            self._candidate_rows = (key, self.lm_head[index].contiguous(), bias)
        _, weight, bias = self._candidate_rows
        return F.linear(x, weight, bias).float()

    def prefix_cache(self, prefix: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of ``prefix`` alone ([layers, 1, kv, len, head_dim]); the last one is kept."""
        key = tuple(prefix)
        if self._prefix is None or self._prefix[0] != key:
            keys, values = self.new_cache(1, len(prefix), reuse=False)
            self.prefill(keys, values, [list(prefix)], 0)
            self._prefix = (key, keys, values)
        return self._prefix[1], self._prefix[2]


def _prepack(weight: torch.Tensor) -> torch.Tensor:
    """A bf16 weight reordered once into oneDNN's blocked layout (as torch.compile's freezing does), so no call
    reorders it again: the same kernel and result as ``F.linear``, 5-25 % faster at these shapes."""
    return torch.ops.mkldnn._reorder_linear_weight(weight, 128)


def _prepacking_works() -> bool:
    """Whether this torch build has oneDNN's prepacked linear and it gives ``F.linear``'s result exactly."""
    try:
        weight = torch.randn(24, 16).to(torch.bfloat16)
        x = torch.randn(5, 16).to(torch.bfloat16)
        packed = torch.ops.mkldnn._linear_pointwise(x, _prepack(weight), None, "none", [], "")
        return torch.equal(packed, F.linear(x, weight))
    except (AttributeError, RuntimeError):
        return False


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if tensor is None else tensor.detach().to(dtype)


_PREPARED: weakref.WeakKeyDictionary[Any, dict[torch.dtype, tuple[tuple, FastModel]]] = weakref.WeakKeyDictionary()


def _weights_signature(model: Any) -> tuple:
    # A parameter's version counter moves with every in-place update (an optimizer step), so a model trained
    # after it was prepared gets prepared again.
    return tuple((p.data_ptr(), p._version) for p in model.parameters())


def prepared_model(model: Any, bf16: bool) -> FastModel:
    """The :class:`FastModel` of ``model`` (built once per model, weights and compute dtype)."""
    reason = unsupported_reason(model)
    if reason is not None:
        raise SublabError(f"sampler 'fast' cannot run this model: {reason}; use sampler 'generate'")
    compute_dtype = torch.bfloat16 if bf16 else next(model.parameters()).dtype
    signature = _weights_signature(model)
    per_dtype = _PREPARED.setdefault(model, {})
    entry = per_dtype.get(compute_dtype)
    if entry is None or entry[0] != signature:
        with torch.inference_mode():
            entry = (signature, FastModel(model, compute_dtype))
        per_dtype[compute_dtype] = entry
    return entry[1]


# ------------------------------------------------------------------------------------------------- sampling


def common_prefix_length(rows: list[list[int]]) -> int:
    """Length of the longest common prefix of ``rows``, leaving every row at least one token of its own."""
    shortest = min(len(r) for r in rows)
    first = rows[0]
    n = 0
    while n < shortest - 1 and all(r[n] == first[n] for r in rows):
        n += 1
    return n


def row_uniforms(seed: int, n_rows: int, n_steps: int) -> torch.Tensor:
    """``[n_rows, n_steps]`` float64 uniforms in [0, 1): row i's are the same for any ``n_rows`` > i."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n_rows, n_steps, generator=generator, dtype=torch.float64)


def _inverse_cdf(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The first column whose float64 cumulative probability exceeds ``target`` ([rows, 1]), never a column
    without probability (``target`` can round up to the total)."""
    cdf = probs.double().cumsum(dim=-1)
    chosen = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    last_positive = probs.shape[1] - 1 - (probs > 0).flip(-1).to(torch.int8).argmax(dim=-1)
    return torch.minimum(chosen, last_positive)


#: Vocabulary-wide sampling goes by blocks of this many tokens (cumulative sums over blocks, then in one block),
#: this many rows at a time.
SAMPLING_BLOCK = 256
SAMPLING_ROWS = 8


def threshold_mask(logits: torch.Tensor, allowed: torch.Tensor | None, min_prob: float) -> torch.Tensor:
    """``allowed`` narrowed to the columns whose probability (softmax at temperature 1 over the allowed columns)
    is at least ``min_prob``; each row's highest allowed column always stays. The rule of
    :class:`sublab.defences.tokens.MinProbabilityProcessor` in ``generate``, where it runs after the grammar and
    before the temperature."""
    masked = logits.float()
    if allowed is not None:
        masked = masked.masked_fill(~allowed, float("-inf"))
    keep = above_threshold(masked, min_prob)
    return keep if allowed is None else keep & allowed


def choose_tokens(logits: torch.Tensor, allowed: torch.Tensor | None, temperature: float,
                  uniforms: torch.Tensor | None, min_prob: float = 0.0) -> torch.Tensor:
    """Sample one column per row of ``logits`` ([rows, n]) among ``allowed`` ones.

    Temperature 0: the first highest allowed logit (transformers' greedy choice). Otherwise inverse-CDF sampling
    with ``uniforms`` ([rows]) from ``softmax(logits / temperature)`` (float32, as ``generate``) renormalised
    over the allowed columns, with float64 cumulative sums so no column's share is lost to rounding. Over a
    whole vocabulary the search goes block by block (the same column, without a float64 copy of every
    probability), a few rows at a time so that the work stays in the CPU's caches. ``min_prob`` > 0 is
    threshold sampling (:func:`threshold_mask`).
    """
    if min_prob and temperature != 0.0:  # greedy already keeps only the argmax
        allowed = threshold_mask(logits, allowed, min_prob)
    if temperature == 0.0:
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        return logits.argmax(dim=-1)
    n_rows, n_columns = logits.shape
    if n_columns < 8 * SAMPLING_BLOCK or n_columns % SAMPLING_BLOCK:
        logits = logits.float()
        if allowed is not None:
            logits = logits.masked_fill(~allowed, float("-inf"))
        probs = torch.softmax(logits / temperature, dim=-1)
        return _inverse_cdf(probs, (uniforms * probs.double().sum(-1)).unsqueeze(-1))
    out = []
    for start in range(0, n_rows, SAMPLING_ROWS):
        chunk = logits[start : start + SAMPLING_ROWS].to(torch.float32, copy=True)  # changed in place below
        if allowed is not None:
            chunk = chunk.masked_fill_(~allowed[start : start + SAMPLING_ROWS], float("-inf"))
        if temperature != 1.0:
            chunk = chunk.div_(temperature)
        probs = torch.softmax(chunk, dim=-1)
        blocks = probs.view(probs.shape[0], -1, SAMPLING_BLOCK)
        block_mass = blocks.sum(-1).double()  # a float32 sum of 256 probabilities is exact to ~1e-7 of itself
        block_cdf = block_mass.cumsum(dim=-1)
        target = (uniforms[start : start + SAMPLING_ROWS] * block_cdf[:, -1]).unsqueeze(-1)
        block = _inverse_cdf(block_mass, target)
        rows = torch.arange(probs.shape[0])
        before = torch.where(block > 0, block_cdf[rows, (block - 1).clamp(min=0)], 0.0)
        inside = _inverse_cdf(blocks[rows, block], (target.squeeze(-1) - before).unsqueeze(-1))
        out.append(block * SAMPLING_BLOCK + inside)
    return torch.cat(out)


def compact_cache(keys: torch.Tensor, values: torch.Tensor, ended: torch.Tensor, written: int) -> list[int]:
    """Drop the ended rows of a KV cache in place; returns the old row of each new row (the kept rows).

    The kept rows end up first: each hole among the first ``n_kept`` rows receives a kept row from beyond them,
    its ``written`` slots only (the slots after them hold nothing yet). This moves a few rows' written slots
    instead of gathering every kept row into a new tensor (``keys[:, keep]``, hundreds of megabytes per
    compaction): on a batch whose cache memory was new, that gather's page faults cost 1.3 of 9.9 s (torch
    profiler, two threads); in the benchmark's steady state, ~0.1 ms per row either way.
    """
    kept = (~ended).nonzero().squeeze(-1).tolist()
    n_kept = len(kept)
    holes = [row for row in range(n_kept) if bool(ended[row])]
    movers = [row for row in kept if row >= n_kept]  # as many as there are holes
    order = list(range(n_kept))
    for hole, mover in zip(holes, movers, strict=True):
        keys[:, hole, :, :written] = keys[:, mover, :, :written]
        values[:, hole, :, :written] = values[:, mover, :, :written]
        order[hole] = mover
    return order


@dataclass(frozen=True)
class FastOptions:
    """Switches to measure what each part of the fast sampler pays (benchmarks/generation.py); all on by
    default, and none changes the rows sampled (only the work done)."""

    share_prefix: bool = True
    candidates_only: bool = True
    compact: bool = True
    #: Feed the tokens the grammar forces (the only allowed token, e.g. the space of ", ") with the sampled
    #: token before them, instead of spending a decode step on each.
    jump_forward: bool = True


class _Profile:
    """Seconds per phase and work counts, accumulated into a caller's dict (or nowhere)."""

    def __init__(self, into: dict[str, float] | None) -> None:
        import time

        self.into = into
        self.clock = time.perf_counter
        self.since = self.clock()

    def phase(self, name: str) -> None:
        now = self.clock()
        if self.into is not None:
            self.into[name] = self.into.get(name, 0.0) + now - self.since
        self.since = now

    def count(self, name: str, value: float) -> None:
        if self.into is not None:
            self.into[name] = self.into.get(name, 0.0) + value


@torch.inference_mode()
def fast_sample_ids(model: Any, prompts: list[list[int]], max_new_tokens: int, temperature: float, seed: int,
                    end_id: int, constraint: TokenConstraint | None = None, bf16: bool = False,
                    profile: dict[str, float] | None = None, options: FastOptions = FastOptions(),
                    min_prob: float = 0.0) -> list[list[int]]:
    """Sample up to ``max_new_tokens`` token ids after each prompt (token ids); each reply ends at ``end_id``
    (not included). ``profile``, if given, accumulates seconds per phase (prefill, decode, logits, sampling,
    grammar, compaction) and token counts (``*_tokens``, ``logit_cells``: rows x columns of output layer).
    ``min_prob`` > 0: threshold sampling, as ``generate`` with ``SamplingSettings.min_prob``."""
    clock = _Profile(profile)
    fast = prepared_model(model, bf16)
    n_rows = len(prompts)
    n_prefix = common_prefix_length(prompts) if options.share_prefix else 0
    suffixes = [p[n_prefix:] for p in prompts]
    keys, values = fast.new_cache(n_rows, n_prefix + max(len(s) for s in suffixes) + max_new_tokens)
    if n_prefix:
        cached = fast._prefix is not None and fast._prefix[0] == tuple(prompts[0][:n_prefix])
        prefix_keys, prefix_values = fast.prefix_cache(prompts[0][:n_prefix])
        keys[:, :, :, :n_prefix] = prefix_keys
        values[:, :, :, :n_prefix] = prefix_values
        clock.count("prefill_tokens", 0 if cached else n_prefix)
    # Cache rows in order of prompt length, prefilled a chunk of similar rows at a time: little padding in
    # attention, and activations that stay in the CPU's caches.
    order = sorted(range(n_rows), key=lambda i: len(suffixes[i]))
    hidden = fast.prefill_chunked(keys, values, [suffixes[i] for i in order], n_prefix)
    positions = torch.tensor([len(prompts[i]) for i in order])
    clock.count("prefill_tokens", sum(len(s) for s in suffixes))
    clock.phase("prefill")

    candidates = constraint.candidate_ids() if constraint is not None else None
    candidate_tensor = torch.tensor(candidates) if candidates is not None else None
    scored = candidates if options.candidates_only else None
    states = [constraint.start_state() for _ in range(n_rows)] if constraint is not None else None
    uniforms = row_uniforms(seed, n_rows, max_new_tokens) if temperature > 0 else None
    replies: list[list[int]] = [[] for _ in range(n_rows)]
    live = torch.tensor(order)  # original row of each cache row
    ended = torch.zeros(n_rows, dtype=torch.bool)  # per cache row
    while True:
        logits = fast.logits(hidden, scored)
        clock.count("logit_cells", logits.numel())
        clock.phase("logits")
        rows = live.tolist()
        # A row's n-th token is always drawn with its n-th uniform, whatever the steps before did.
        counts = [min(len(replies[r]), max_new_tokens - 1) for r in rows]
        allowed = None
        if constraint is not None:
            allowed = constraint.candidate_masks([states[r] for r in rows], counts)
            clock.phase("grammar")
            if scored is None:  # the whole vocabulary was scored: the same mask, spread over it
                spread = torch.zeros(logits.shape, dtype=torch.bool)
                spread[:, candidate_tensor] = allowed
                allowed = spread
        u = uniforms[live, torch.tensor(counts)] if uniforms is not None else None
        picked = choose_tokens(logits, allowed, temperature, u, min_prob)
        tokens = candidate_tensor[picked] if scored is not None else picked
        clock.phase("sampling")
        feed = []
        for cache_row, (row, token) in enumerate(zip(rows, tokens.tolist(), strict=True)):
            if ended[cache_row] or token == end_id:
                ended[cache_row] = True
                feed.append([token])  # an ended row stays in the cache until compaction: its input is ignored
                continue
            reply = replies[row]
            reply.append(token)
            fed = [token]
            if states is not None:
                states[row] = constraint.advance(states[row], token)
                while options.jump_forward and len(reply) < max_new_tokens:
                    only = constraint.candidate_masks([states[row]], len(reply))[0]
                    if int(only.sum()) != 1:
                        break
                    forced = candidates[int(only.nonzero())]
                    if forced == end_id:  # the grammar can only end here: the row ends, as sampling would
                        ended[cache_row] = True
                        break
                    reply.append(forced)
                    fed.append(forced)
                    states[row] = constraint.advance(states[row], forced)
            if len(reply) >= max_new_tokens:
                ended[cache_row] = True
            feed.append(fed)
        clock.phase("grammar")
        if bool(ended.all()):
            break
        if options.compact and int(ended.sum()) >= max(1, math.ceil(COMPACT_FRACTION * len(live))):
            order = compact_cache(keys, values, ended, int(positions.max()))
            keys, values = keys[:, : len(order)], values[:, : len(order)]
            index = torch.tensor(order)
            live, positions, ended = live[index], positions[index], ended[index]
            feed = [feed[i] for i in order]
            clock.phase("compaction")
        hidden = fast.decode_many(keys, values, feed, positions)
        positions = positions + torch.tensor([len(f) for f in feed])
        clock.count("decode_tokens", sum(len(f) for f in feed))
        clock.phase("decode")
    return replies


def fast_sample_batch(model: Any, tokenizer: Any, contexts: list[list[dict[str, str]]], settings: Any, seed: int,
                      processor: Any = None, profile: dict[str, float] | None = None,
                      options: FastOptions = FastOptions()) -> list[str]:
    """:func:`sublab.generate.sampling.sample_batch` with the fast sampler (same arguments, same replies'
    distribution)."""
    if processor is not None and not all(hasattr(processor, n) for n in ("candidate_ids", "candidate_masks",
                                                                         "start_state", "advance")):
        raise SublabError(f"sampler 'fast' needs a constraint with candidate_ids/candidate_masks/start_state/"
                          f"advance; {type(processor).__name__} has not: use sampler 'generate'")
    texts = [format_prompt(tokenizer, c) for c in contexts]
    prompts = [tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    end_id = end_of_turn_id(tokenizer)
    replies = fast_sample_ids(model, prompts, settings.max_new_tokens, settings.temperature, seed, end_id,
                              processor, bf16=settings.bf16, profile=profile, options=options,
                              min_prob=settings.min_prob)
    return [tokenizer.decode(r, skip_special_tokens=True) for r in replies]
