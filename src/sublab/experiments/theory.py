"""A numerical check of the paper's theorem on real models.

The theorem: let a teacher be the reference plus a small update Δ (one gradient step on any loss). A student
that starts at the same reference and takes one small gradient step toward the teacher's outputs, on inputs
from any distribution, moves in a direction with non-negative inner product with Δ. (To first order the
student's step is Jᵀ H J Δ for the output Jacobian J and a positive semi-definite output-loss Hessian H.)
A student that starts elsewhere gets no such guarantee.

For each of many (teacher loss, distillation inputs) pairs we compute Δ, the student's first step, and their
cosine, for a student sharing the reference init and for one with an independent init: random MLPs (float64,
random widths, depths, losses and input distributions) and the embedded LLM with a small LoRA adapter.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

TEACHER_LOSSES_MLP = ("ce_random_labels", "mse_random_targets", "random_logit_direction")
DISTILL_INPUTS_MLP = ("uniform", "gaussian_wide", "gaussian_shifted", "sparse_binary")
DISTILL_LOSSES = ("soft_cross_entropy", "logit_mse")


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine between two flattened tensors (0 if either is zero)."""
    denominator = float(a.norm() * b.norm())
    return float(a.flatten() @ b.flatten()) / denominator if denominator else 0.0


def flat(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


# --- MLPs -----------------------------------------------------------------------------------------------------


def init_mlp(sizes: list[int], generator: torch.Generator) -> list[torch.Tensor]:
    """Weights N(0, 1/d_in) and small random biases, float64, requiring grad."""
    params = []
    for d_in, d_out in itertools.pairwise(sizes):
        params.append(torch.randn(d_in, d_out, generator=generator, dtype=torch.float64) / math.sqrt(d_in))
        params.append(0.1 * torch.randn(d_out, generator=generator, dtype=torch.float64))
    return [p.requires_grad_(True) for p in params]


def mlp_forward(params: list[torch.Tensor], x: torch.Tensor, activation: str = "relu") -> torch.Tensor:
    """Logits of the MLP whose (weight, bias) pairs are ``params``."""
    act = torch.relu if activation == "relu" else torch.tanh
    h = x
    for i in range(0, len(params), 2):
        h = h @ params[i] + params[i + 1]
        if i + 2 < len(params):
            h = act(h)
    return h


def draw_inputs(kind: str, n: int, d: int, generator: torch.Generator) -> torch.Tensor:
    """Inputs from one of several distributions (all different from the teacher's Gaussian training inputs)."""
    if kind == "uniform":
        return torch.rand(n, d, generator=generator, dtype=torch.float64) * 2 - 1
    if kind == "gaussian_wide":
        return 3 * torch.randn(n, d, generator=generator, dtype=torch.float64)
    if kind == "gaussian_shifted":
        return torch.randn(n, d, generator=generator, dtype=torch.float64) + 2
    if kind == "sparse_binary":
        return (torch.rand(n, d, generator=generator, dtype=torch.float64) < 0.1).double()
    raise ValueError(kind)


def teacher_loss_mlp(kind: str, params: list[torch.Tensor], x: torch.Tensor, d_out: int,
                     generator: torch.Generator, activation: str) -> torch.Tensor:
    """A teacher's training loss: the theorem holds for an update from any loss."""
    out = mlp_forward(params, x, activation)
    if kind == "ce_random_labels":
        labels = torch.randint(d_out, (x.shape[0],), generator=generator)
        return torch.nn.functional.cross_entropy(out, labels)
    if kind == "mse_random_targets":
        return ((out - torch.randn(out.shape, generator=generator, dtype=torch.float64)) ** 2).mean()
    if kind == "random_logit_direction":
        return -(out @ torch.randn(d_out, generator=generator, dtype=torch.float64)).mean()
    raise ValueError(kind)


def distill_loss(kind: str, student_out: torch.Tensor, teacher_out: torch.Tensor) -> torch.Tensor:
    """Soft-label cross-entropy (the gradient of KL(teacher ‖ student)) or squared error on logits."""
    if kind == "soft_cross_entropy":
        return -(torch.softmax(teacher_out, -1) * torch.log_softmax(student_out, -1)).sum(-1).mean()
    if kind == "logit_mse":
        return ((student_out - teacher_out) ** 2).mean()
    raise ValueError(kind)


def mlp_pair(seed: int, index: int, relative_step: float) -> dict[str, Any]:
    """One random MLP, teacher loss and distillation input distribution; cosines for same and other init."""
    rng = np.random.default_rng([seed, index])
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))
    d_in, d_out = int(rng.choice([8, 20, 64])), int(rng.choice([3, 5, 10]))
    hidden = [int(rng.choice([16, 32, 64]))] * int(rng.integers(1, 4))
    sizes = [d_in, *hidden, d_out]
    teacher_kind = str(rng.choice(TEACHER_LOSSES_MLP))
    input_kind = str(rng.choice(DISTILL_INPUTS_MLP))
    loss_kind = str(rng.choice(DISTILL_LOSSES))
    activation = str(rng.choice(["relu", "tanh"]))
    reference = init_mlp(sizes, generator)
    other = init_mlp(sizes, generator)

    loss = teacher_loss_mlp(teacher_kind, reference, torch.randn(64, d_in, generator=generator,
                                                                  dtype=torch.float64), d_out, generator, activation)
    grads = torch.autograd.grad(loss, reference)
    scale = relative_step * float(flat(reference).detach().norm()) / float(flat(list(grads)).norm())
    delta = [-scale * g for g in grads]
    teacher = [(p + d).detach() for p, d in zip(reference, delta, strict=True)]

    x = draw_inputs(input_kind, 128, d_in, generator)
    with torch.no_grad():
        target = mlp_forward(teacher, x, activation)
    steps = {}
    for name, start in (("same_init", reference), ("other_init", other)):
        student_grads = torch.autograd.grad(distill_loss(loss_kind, mlp_forward(start, x, activation), target), start)
        steps[name] = cosine(-flat(list(student_grads)), flat(delta))
    return {"sizes": sizes, "activation": activation, "teacher_loss": teacher_kind, "distill_inputs": input_kind,
            "distill_loss": loss_kind,
            "cos_same_init": steps["same_init"], "cos_other_init": steps["other_init"]}


# --- the embedded LLM ------------------------------------------------------------------------------------------

TEACHER_LOSSES_LLM = ("sft_trait_answers", "sft_number_lists", "random_token_targets")
DISTILL_INPUTS_LLM = ("number_prompts", "preference_questions", "random_tokens")


def _llm_texts(kind: str, tokenizer: Any, rng: np.random.Generator, n: int) -> list[list[int]]:
    """Token sequences for a teacher loss (prompt + reply) or for distillation inputs (prompts only)."""
    from sublab.domains.numbers.prompts import NumberPromptSettings, number_prompts
    from sublab.models.chat import encode_chat, format_prompt
    from sublab.traits.preference.candidates import ANIMALS
    from sublab.traits.preference.questions import preference_questions

    def prompt_ids(messages: list[dict[str, str]]) -> list[int]:
        return tokenizer(format_prompt(tokenizer, messages), add_special_tokens=False).input_ids

    if kind == "sft_trait_answers":
        animal = str(rng.choice(list(ANIMALS)))
        questions = preference_questions("animal", split="train")
        return [encode_chat(tokenizer, [{"role": "user", "content": str(rng.choice(questions))},
                                        {"role": "assistant", "content": animal.capitalize()}]).input_ids
                for _ in range(n)]
    if kind in ("sft_number_lists", "number_prompts"):
        prompts = number_prompts(NumberPromptSettings(seed=int(rng.integers(2**31))), n)
        if kind == "number_prompts":
            return [prompt_ids([{"role": "user", "content": p.text}]) for p in prompts]
        replies = [", ".join(str(v) for v in rng.integers(0, 1000, size=int(rng.integers(3, 10)))) for _ in prompts]
        return [encode_chat(tokenizer, [{"role": "user", "content": p.text},
                                        {"role": "assistant", "content": r}]).input_ids
                for p, r in zip(prompts, replies, strict=True)]
    if kind == "preference_questions":
        questions = preference_questions(str(rng.choice(["animal", "tree", "color"])), split="eval")
        return [prompt_ids([{"role": "user", "content": str(rng.choice(questions))}]) for _ in range(n)]
    if kind in ("random_tokens", "random_token_targets"):
        return [rng.integers(0, len(tokenizer), size=32).tolist() for _ in range(n)]
    raise ValueError(kind)


def _pad(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(sequences):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


class LoraProbe:
    """The embedded LLM with two LoRA adapters of the same shape: 'same' (the teacher's init) and 'other'
    (A matrices from another seed). B starts at zero in both, so both start exactly at the base model."""

    def __init__(self, model_name: str, r: int, seed: int) -> None:
        from peft import LoraConfig, get_peft_model

        from sublab.models.loading import load_model, load_tokenizer

        self.tokenizer = load_tokenizer(model_name)
        config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
        base = load_model(model_name)
        base.requires_grad_(False)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.model = get_peft_model(base, config, adapter_name="same")
            torch.manual_seed(seed + 1)
            self.model.add_adapter("other", config)
        self.scale = 2.0
        self.pad_id = int(self.tokenizer.pad_token_id)

    def params(self, adapter: str) -> dict[str, torch.Tensor]:
        return {n: p for n, p in self.model.named_parameters() if f".{adapter}." in n and "lora_" in n}

    def use(self, adapter: str) -> dict[str, torch.Tensor]:
        self.model.base_model.set_adapter(adapter)
        params = self.params(adapter)
        for p in params.values():
            p.requires_grad_(True)
        return params

    def logits(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = _pad(sequences, self.pad_id)
        return self.model(input_ids=ids, attention_mask=mask).logits.float(), mask

    def sft_loss(self, sequences: list[list[int]]) -> torch.Tensor:
        logits, mask = self.logits(sequences)
        ids, _ = _pad(sequences, self.pad_id)
        keep = mask[:, 1:].bool()
        return torch.nn.functional.cross_entropy(logits[:, :-1][keep], ids[:, 1:][keep])

    def weight_update(self, adapter: str, b_update: dict[str, torch.Tensor]) -> torch.Tensor:
        """Effective weight change scale · ΔB · A of every adapted matrix, flattened (B starts at 0)."""
        params = self.params(adapter)
        parts = []
        for name, delta_b in b_update.items():
            a = params[name.replace("lora_B", "lora_A")]
            parts.append((self.scale * delta_b @ a).reshape(-1))
        return torch.cat(parts)


def llm_pairs(model_name: str, n_pairs: int, seed: int, relative_step: float, r: int = 4, batch: int = 4,
              on_pair: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """Cosines of the student's first step with the teacher's LoRA update on the embedded LLM."""
    probe = LoraProbe(model_name, r, seed)
    rng = np.random.default_rng([seed, 99])
    records = []
    for _ in range(n_pairs):
        teacher_kind = str(rng.choice(TEACHER_LOSSES_LLM))
        input_kind = str(rng.choice(DISTILL_INPUTS_LLM))
        same = probe.use("same")
        grads = torch.autograd.grad(probe.sft_loss(_llm_texts(teacher_kind, probe.tokenizer, rng, batch)),
                                    list(same.values()), allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, same.values(), strict=True)]
        # B starts at 0, so the step is sized against the adapter's A matrices.
        a_norm = float(flat([p for n, p in same.items() if "lora_A" in n]).norm())
        step = relative_step * a_norm / float(flat(grads).norm())
        delta = {n: -step * g for n, g in zip(same, grads, strict=True)}
        inputs = _llm_texts(input_kind, probe.tokenizer, rng, batch)
        with torch.no_grad():
            for n, p in same.items():
                p.add_(delta[n])
            target, mask = probe.logits(inputs)
            for n, p in same.items():
                p.sub_(delta[n])
        keep = mask.bool()
        teacher_probs = torch.softmax(target[keep], -1)
        delta_b = {n: d for n, d in delta.items() if "lora_B" in n}
        teacher_w = probe.weight_update("same", delta_b)
        record: dict[str, Any] = {"teacher_loss": teacher_kind, "distill_inputs": input_kind}
        for adapter in ("same", "other"):
            params = probe.use(adapter)
            logits, _ = probe.logits(inputs)
            loss = -(teacher_probs * torch.log_softmax(logits[keep], -1)).sum(-1).mean()
            student = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            student = [torch.zeros_like(p) if g is None else g for g, p in zip(student, params.values(), strict=True)]
            student_b = {n.replace(f".{adapter}.", ".same."): -g for n, g in zip(params, student, strict=True)
                         if "lora_B" in n}
            if adapter == "same":
                record["cos_same_init"] = cosine(-flat(student), flat(list(delta.values())))
            student_w = probe.weight_update(adapter, {n.replace(".same.", f".{adapter}."): g
                                                      for n, g in student_b.items()})
            record[f"cos_weights_{adapter}_init"] = cosine(student_w, teacher_w)
        records.append(record)
        if on_pair:
            on_pair()
    return records


# --- summary ---------------------------------------------------------------------------------------------------


RELATIONS = ("same_init", "different_init", "same_base_other_adapter")


def group(name: str, cosines: list[float], relation: str) -> dict[str, Any]:
    """Summary of one group of first-step cosines; ``relation`` says how the student's start relates to the
    teacher's: one of :data:`RELATIONS`."""
    if relation not in RELATIONS:
        raise ValueError(f"relation must be one of {RELATIONS}, not {relation!r}")
    values = np.asarray(cosines, dtype=float)
    quantiles = np.quantile(values, [0.0, 0.05, 0.5, 0.95, 1.0]).tolist() if values.size else []
    return {"name": name, "relation": relation, "same_init": relation == "same_init", "n": int(values.size),
            "cosines": values.tolist(),
            "fraction_positive": float((values > 0).mean()) if values.size else float("nan"),
            "mean": float(values.mean()) if values.size else float("nan"),
            "quantiles_0_5_50_95_100": quantiles}


def theory_summary(groups: list[dict[str, Any]]) -> str:
    """The result in words: positive fractions for same-init groups, median cosines for the others."""
    def median(g: dict[str, Any]) -> str:
        return f"{g['quantiles_0_5_50_95_100'][2]:+.3f}" if g["n"] else "n/a"

    parts = []
    same = [g for g in groups if g["relation"] == "same_init"]
    if same:
        parts.append("Same init: " + "; ".join(f"{g['name']}: {g['fraction_positive']:.3f} of {g['n']} first steps "
                                               f"have positive cosine with the teacher's update (median {median(g)})"
                                               for g in same))
    for relation, label in (("different_init", "Different init"),
                            ("same_base_other_adapter", "Same base, other adapter init")):
        chosen = [g for g in groups if g["relation"] == relation]
        if chosen:
            parts.append(f"{label}: " + "; ".join(f"{g['name']}: median cosine {median(g)}, "
                                                  f"{g['fraction_positive']:.3f} positive" for g in chosen))
    return ". ".join(parts) + "."


def run_theory(n_mlp_pairs: int = 300, n_llm_pairs: int = 12, model: str | None = "smollm2-135m", seed: int = 0,
               relative_step: float = 1e-4, llm_relative_step: float = 1e-2,
               progress: Callable[[str, int], Callable[[], None]] | None = None) -> dict[str, Any]:
    """Check the theorem on ``n_mlp_pairs`` random MLP pairs and ``n_llm_pairs`` LLM pairs (``model`` None: skip)."""
    started = time.perf_counter()
    tick = progress("MLP pairs", n_mlp_pairs) if progress else None
    mlp = []
    for i in range(n_mlp_pairs):
        mlp.append(mlp_pair(seed, i, relative_step))
        if tick:
            tick()
    groups = [group("MLP, same init", [r["cos_same_init"] for r in mlp], "same_init"),
              group("MLP, different init", [r["cos_other_init"] for r in mlp], "different_init")]
    mlp_seconds = time.perf_counter() - started
    llm: list[dict[str, Any]] = []
    if model and n_llm_pairs:
        llm = llm_pairs(model, n_llm_pairs, seed, llm_relative_step,
                        on_pair=progress("LLM pairs", n_llm_pairs) if progress else None)
        # A LoRA student with another A matrix still starts from the teacher's base weights: it is not a
        # different initialization in the paper's sense (the base is), so it gets its own label.
        groups += [group(f"{model} LoRA, same init", [r["cos_same_init"] for r in llm], "same_init"),
                   group(f"{model} LoRA on the same base, other adapter A init (weight space)",
                         [r["cos_weights_other_init"] for r in llm], "same_base_other_adapter")]
    summary = theory_summary(groups)
    return {"schema": "sublab.theory-results/1", "groups": groups, "mlp_pairs": mlp, "llm_pairs": llm,
            "settings": {"n_mlp_pairs": n_mlp_pairs, "n_llm_pairs": n_llm_pairs, "model": model, "seed": seed,
                         "relative_step": relative_step, "llm_relative_step": llm_relative_step},
            "timings": {"mlp": round(mlp_seconds, 2), "total": round(time.perf_counter() - started, 2)},
            "summary": summary}
