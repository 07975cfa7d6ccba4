"""Many independent MLPs trained as one batched computation, all fed the same input batch.

A stack of ``M`` MLPs with the same layer sizes keeps each layer's weights as one tensor. Because every model
sees the same input batch, the first layer (the largest: 784×256 for MNIST) is a single GEMM over all models,
``x[B, D] @ W1[D, M·H]``, instead of M small matmuls; the later layers are batched matmuls. Each model still
has its own weights, its own loss term and (with Adam, whose update is per element) exactly the optimizer
trajectory it would have alone: the tests check this against a per-model loop.

Initialization follows the paper's code: weights N(0, 1/d_in), biases 0; every model's weights come from its
own seed, so "same initialization" and "different initialization" are exact, checkable statements.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def model_seed(run_seed: int, role: str, index: int) -> int:
    """Seed of one model's initialization, from the run seed, a role ('reference', 'cross') and its index."""
    role_code = {"reference": 0, "cross": 1}[role]
    return int(np.random.SeedSequence([run_seed, role_code, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def init_layers(sizes: Sequence[int], seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One model's (weight [d_in, d_out], bias [d_out]) per layer, weights N(0, 1/d_in), biases 0."""
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for d_in, d_out in itertools.pairwise(sizes):
        weight = torch.randn(d_in, d_out, generator=generator) / math.sqrt(d_in)
        layers.append((weight, torch.zeros(d_out)))
    return layers


class MLPStack(nn.Module):
    """``M`` ReLU MLPs of the same ``sizes``; ``forward(x[B, D])`` returns logits ``[M, B, sizes[-1]]``.

    The first weight is stored ``[D, M, H]`` so the shared-input GEMM needs no copy; later weights ``[M, d_in,
    d_out]``.
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.seeds = list(seeds)
        per_model = [init_layers(self.sizes, seed) for seed in self.seeds]
        first_w = torch.stack([layers[0][0] for layers in per_model], dim=1)  # [D, M, H]
        self.weights = nn.ParameterList([nn.Parameter(first_w)])
        self.biases = nn.ParameterList([nn.Parameter(torch.stack([layers[0][1] for layers in per_model]))])
        for i in range(1, len(self.sizes) - 1):
            self.weights.append(nn.Parameter(torch.stack([layers[i][0] for layers in per_model])))
            self.biases.append(nn.Parameter(torch.stack([layers[i][1] for layers in per_model])))

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        first = self.weights[0]
        d_in, n_models, hidden = first.shape
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        # One GEMM (bias fused) for all models. Biases are cast to the compute dtype: a float32 bias would promote
        # bf16 activations back to float32 and cost a cast at every layer, forward and backward.
        h = torch.addmm(self.biases[0].to(dtype).reshape(-1), x.to(dtype), first.reshape(d_in, n_models * hidden))
        # [B, M·H] → contiguous [M, B, H]: the batched matmuls of the next layer (and the transposed operands of
        # their backward) run several times faster on contiguous per-model blocks.
        h = torch.relu_(h).view(batch, n_models, hidden).transpose(0, 1).contiguous()
        last = len(self.weights) - 1
        for i in range(1, len(self.weights)):
            h = torch.baddbmm(self.biases[i].to(dtype)[:, None, :], h, self.weights[i].to(dtype))
            if i < last:
                h = torch.relu_(h)
        return h

    def model_parameters(self, index: int) -> list[torch.Tensor]:
        """Copies of one model's weights and biases, each weight as [d_in, d_out]."""
        out = []
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            w = weight[:, index] if i == 0 else weight[index]
            out += [w.detach().clone(), bias[index].detach().clone()]
        return out


def stack_of(sizes: Sequence[int], run_seed: int, role: str, n_models: int) -> MLPStack:
    """``n_models`` freshly initialized MLPs of one role ('reference' or 'cross')."""
    return MLPStack(sizes, [model_seed(run_seed, role, m) for m in range(n_models)])


def per_model_mean(values: torch.Tensor) -> torch.Tensor:
    """Sum over models of each model's mean over the batch: ``values`` [M, B] → scalar.

    Summing (not averaging) over models gives every model exactly the gradient of its own mean loss.
    """
    return values.float().mean(dim=1).sum()


def cross_entropy_per_model(logits: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Cross-entropy of ``labels`` [B] under the first ``n_classes`` logits of each model ``[M, B, K]``."""
    log_probs = torch.log_softmax(logits[..., :n_classes].float(), dim=-1)
    picked = log_probs.gather(2, labels.view(1, -1, 1).expand(logits.shape[0], -1, 1)).squeeze(2)
    return per_model_mean(-picked)


def kl_per_model(student_logits: torch.Tensor, teacher: torch.Tensor,
                 targets_are_log_probs: bool = False) -> torch.Tensor:
    """KL(teacher ‖ student) between softmaxes over the last dimension, per model mean over the batch, summed.

    ``teacher``: the teacher's logits, or its log-probabilities if ``targets_are_log_probs``.
    """
    student = torch.log_softmax(student_logits.float(), dim=-1)
    teacher = teacher.float() if targets_are_log_probs else torch.log_softmax(teacher.float(), dim=-1)
    return per_model_mean((teacher.exp() * (teacher - student)).sum(dim=-1))


@torch.inference_mode()
def accuracy(stack: MLPStack, x: torch.Tensor, y: torch.Tensor, n_classes: int, chunk: int = 2048,
             bf16: bool = False) -> np.ndarray:
    """Test accuracy of every model in ``stack`` (argmax over the first ``n_classes`` logits)."""
    correct = torch.zeros(stack.n_models)
    for start in range(0, x.shape[0], chunk):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = stack(x[start : start + chunk])
        correct += (logits[..., :n_classes].argmax(-1) == y[start : start + chunk]).float().sum(dim=1)
    return (correct / x.shape[0]).numpy()
