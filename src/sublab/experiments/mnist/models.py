"""Many independent MLPs trained as one batched computation, all fed the same input batch.

A stack of ``M`` MLPs with the same layer sizes keeps each layer's weights as one tensor. Because every model
sees the same input batch, the first layer (the largest: 784×256 for MNIST) is a single GEMM over all models,
``W1[M·H, D] @ x[B, D]ᵀ``, instead of M small matmuls; the later layers are batched matmuls. Each model still
has its own weights, its own loss term and (with Adam, whose update is per element) exactly the optimizer
trajectory it would have alone: the tests check this against a per-model loop.

Layout: weights are stored like ``nn.Linear`` ([out, in] per model) and activations feature-major ([M, features,
B]). Then every matmul of the forward and backward pass reads and writes contiguous blocks (no transposing
copies between layers), bias gradients are sums over contiguous rows, and a softmax over the classes runs over
rows of B contiguous values. Measured on this CPU (295 Fashion-MNIST student steps, 40 models): 26.7 s
batch-major with a hand-written backward, 23.3 s feature-major with class-major losses.

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

    Weights are stored ``[M, d_out, d_in]`` and biases ``[M, d_out]``. The logits are a transposed view of a
    class-major ``[M, K, B]`` tensor: ``logits.transpose(1, 2)`` is contiguous, which is how the losses of
    :mod:`sublab.experiments.mnist.run` read them.
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int]) -> None:
        super().__init__()
        self.sizes = list(sizes)
        self.seeds = list(seeds)
        per_model = [init_layers(self.sizes, seed) for seed in self.seeds]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(len(self.sizes) - 1):
            self.weights.append(nn.Parameter(torch.stack([layers[i][0].T for layers in per_model]).contiguous()))
            self.biases.append(nn.Parameter(torch.stack([layers[i][1] for layers in per_model])))

    @property
    def n_models(self) -> int:
        return len(self.seeds)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else x.dtype
        return _StackForward.apply(x, dtype, *_interleave(self.weights, self.biases)).transpose(1, 2)

    def model_parameters(self, index: int) -> list[torch.Tensor]:
        """Copies of one model's weights and biases, each weight as [d_in, d_out]."""
        out = []
        for weight, bias in zip(self.weights, self.biases, strict=True):
            out += [weight[index].T.detach().clone(), bias[index].detach().clone()]
        return out


def _interleave(weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [t for pair in zip(weights, biases, strict=True) for t in pair]


def _stack_forward(x: torch.Tensor, dtype: torch.dtype, params: Sequence[torch.Tensor]
                   ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Class-major logits [M, K, B], the compute-dtype weights, and each layer's input (feature-major after the
    first: [M, d_in, B])."""
    weights = [w.to(dtype) for w in params[0::2]]
    biases = [b.to(dtype) for b in params[1::2]]
    n_models, hidden, d_in = weights[0].shape
    x = x.to(dtype)
    # One GEMM for all models: [M·H, D] @ [D, B]. Bias and ReLU are applied in place (oneDNN's fused-bias
    # addmm / baddbmm were measured slower here than the matmul followed by add_).
    h = torch.mm(weights[0].view(n_models * hidden, d_in), x.T).view(n_models, hidden, -1)
    h = h.add_(biases[0][:, :, None]).relu_()
    layer_inputs = [x, h]
    last = len(weights) - 1
    for i in range(1, len(weights)):
        h = torch.bmm(weights[i], h).add_(biases[i][:, :, None])
        if i < last:
            h = h.relu_()
            layer_inputs.append(h)
    return h, weights, layer_inputs


class _StackForward(torch.autograd.Function):
    """The stack's forward pass (returning class-major logits [M, K, B]) with a hand-written backward.

    Each layer's backward is its two matmuls, one bias sum and one ReLU mask, all on contiguous feature-major
    tensors. The arithmetic is autograd's for the same forward (matmuls in the compute dtype, gradients
    returned in the parameters' dtype); the tests check it against autograd on a per-model loop.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dtype: torch.dtype, *params: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        with torch.autocast(x.device.type, enabled=False):
            out, weights, layer_inputs = _stack_forward(x, dtype, params)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(*weights, *layer_inputs)
            ctx.n_layers = len(weights)
            ctx.param_dtypes = [p.dtype for p in params]
            ctx.x_dtype = x.dtype
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        weights, layer_inputs = saved[: ctx.n_layers], saved[ctx.n_layers :]
        x = layer_inputs[0]
        n_models, hidden, d_in = weights[0].shape
        grad = grad_out.to(weights[0].dtype).contiguous()  # [M, d_out, B] of the last layer
        weight_grads: list[torch.Tensor] = []
        bias_grads: list[torch.Tensor] = []
        for i in range(ctx.n_layers - 1, 0, -1):
            layer_input = layer_inputs[i]  # [M, d_in, B], after the ReLU of layer i - 1
            weight_grads.append(torch.bmm(grad, layer_input.transpose(1, 2)))
            bias_grads.append(grad.sum(dim=2))
            grad = torch.bmm(weights[i].transpose(1, 2), grad)
            grad = torch.ops.aten.threshold_backward(grad, layer_input, 0)
        grad = grad.view(n_models * hidden, -1)  # [M·H, B]
        weight_grads.append(torch.mm(grad, x).view(n_models, hidden, d_in))
        bias_grads.append(grad.sum(dim=1).view(n_models, hidden))
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad.T, weights[0].view(n_models * hidden, d_in)).to(ctx.x_dtype)
        grads = _interleave(weight_grads[::-1], bias_grads[::-1])
        return (grad_x, None, *(g.to(dtype) for g, dtype in zip(grads, ctx.param_dtypes, strict=True)))


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
        # Class-major [M, K, B]: the argmax runs over rows of contiguous values.
        predicted = logits.transpose(1, 2)[:, :n_classes].argmax(dim=1)
        correct += (predicted == y[start : start + chunk]).float().sum(dim=1)
    return (correct / x.shape[0]).numpy()
