"""First-order prediction: the paper's one-step theorem turned into an audit.

At the base θ₀, a student's first optimizer step on the dataset moves its parameters by Δθ; to first order each
trait's score s_c (``log P(c)``, :mod:`sublab.audit.battery`) changes by ``∇s_c · Δθ``. The audit computes

1. ``g_m``: the gradient at θ₀ of the student's training loss on minibatch ``m`` of the dataset **minus** the
   same on the matching control rows (:class:`sublab.audit.objective.StudentObjective`), for M minibatches;
2. the step each one implies, ``Δθ_m = -lr · g_m`` (``geometry="sgd"``) or ``-lr · g_m / (|g_m| + ε)``
   (``"adam"``: Adam's first update is ``m̂/(√v̂ + ε)`` with ``m̂ = g``, ``√v̂ = |g|``, i.e. ``sign(g)``
   element-wise whatever the gradient's scale; the students of this project are trained with AdamW);
3. the directional derivative of *every* trait's score along ``Δθ_m`` in one forward-mode pass through the exact
   scorer (``jvp="forward"``: torch forward-mode AD, exact; ``"finite_difference"``: central differences of two
   scorings, cheaper under bf16), so the cost is one pass per minibatch, not one backward per trait;
4. per trait, the mean over minibatches with a Student-t 95 % interval, scaled to ``steps`` steps (a linear
   extrapolation: the first step's rate, held).

**LoRA parametrization** (``parametrization="lora"``, the default, the students' own): ``W = W₀ + (α/r) B A``
with ``B = 0`` at the start, so ``∂L/∂A = (α/r) Bᵀ ∂L/∂W = 0`` and only B moves in the first step (Adam's first
update of A is exactly zero too). The gradient and the direction are therefore taken over the B matrices only,
with A fixed at the probe students' seeded initialization: this is exactly the student's first step, not an
approximation. The cost is that the prediction depends on that A (another seed gives another, equally valid,
first step). ``parametrization="full"`` takes every weight of the model instead (a fully fine-tuned student).

The prediction is linear in the data: a dataset whose labels equal the base's own (the soft-label control)
has ``g = 0`` and predicts no change for any trait.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from sublab.audit.battery import TraitGroup, group_log_probs, trait_names, trait_scores
from sublab.audit.objective import StudentObjective
from sublab.evaluate.stats import t_mean_ci


class FirstOrderSettings(BaseModel):
    """How the first-order prediction is computed."""

    model_config = ConfigDict(extra="forbid")

    parametrization: Literal["lora", "full"] = Field("lora", description="LoRA B matrices at B = 0, or every weight.")
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_init_seed: int = Field(1000, description="Seed of the LoRA A matrices (the probe students' first seed).")
    geometry: Literal["adam", "sgd"] = Field("adam", description="Step direction: Adam's first step or plain SGD.")
    n_minibatches: int = Field(4, ge=2, description="Minibatches (the CI is over them).")
    rows_per_minibatch: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0, description="The student's learning rate.")
    steps: int = Field(20, ge=1, description="Steps the prediction is extrapolated to (the student's).")
    n_questions: int = Field(5, ge=1, description="Prompts per trait group scored in the directional pass.")
    jvp: Literal["forward", "finite_difference"] = Field(
        "finite_difference", description="forward: forward-mode AD (exact, float32 unless jvp_bf16); "
        "finite_difference: one extra bf16 scoring per direction (several times cheaper; LoRA only)")
    jvp_bf16: bool = Field(False, description="forward: run the dual pass under bf16 autocast (faster, coarser).")
    fd_scale: float = Field(1.0, gt=0, description="finite_difference: the probe step, in units of one lr step.")
    # Central by default: a forward difference over a full Adam step picks up the loss surface's curvature, which
    # does not depend on the step's sign, so even a dataset with no signal (the base's own labels, whose gradient
    # is bf16 noise that Adam's sign step blows up to full size) was predicted to move 'tiger' by x12 and flagged;
    # central differences cancel that term (measured: benchmarks/audit.py, docs/audit.md).
    fd_central: bool = Field(True, description="finite_difference: central (two scorings per direction) instead "
                             "of forward differences (one, plus one scoring of the base shared by all).")
    bf16: bool = Field(True, description="bf16 autocast in the gradient pass (and the finite-difference scorings).")
    channel: str | list[str] = Field("data", description="Distillation channel of a soft-label dataset.")
    seed: int = Field(0, description="Seed of the row sample.")


@dataclass
class FirstOrderResult:
    """Per trait: predicted change of ``log P(trait)`` after ``steps`` steps, per minibatch, mean and CI."""

    traits: list[str]
    per_minibatch: np.ndarray  # [M, n_traits]
    settings: FirstOrderSettings
    n_rows: int
    seconds: dict[str, float] = field(default_factory=dict)
    base_scores: np.ndarray | None = None  # log P(trait) at the base on the directional pass's prompts
    gradient_norms: list[float] = field(default_factory=list)

    def mean(self) -> np.ndarray:
        return self.per_minibatch.mean(axis=0)

    def ci(self, confidence: float = 0.95) -> np.ndarray:
        """[n_traits, 2] Student-t intervals over minibatches."""
        return np.array([t_mean_ci(self.per_minibatch[:, j], confidence)[1:] for j in range(len(self.traits))])

    def table(self) -> list[dict[str, Any]]:
        ci = self.ci()
        rows = [{"trait": t, "predicted_log_ratio": float(m), "ci95": [float(lo), float(hi)],
                 "per_minibatch": [float(v) for v in self.per_minibatch[:, j]]}
                for j, (t, m, (lo, hi)) in enumerate(zip(self.traits, self.mean(), ci, strict=True))]
        return sorted(rows, key=lambda r: -r["predicted_log_ratio"])


def trainable(model: Any, settings: FirstOrderSettings) -> tuple[Any, dict[str, torch.nn.Parameter]]:
    """The student's parametrization: a LoRA-wrapped model and its B matrices, or the model and all weights."""
    from sublab.train.settings import LoraSettings, TrainSettings
    from sublab.train.trainer import attach_trainable

    if settings.parametrization == "full":
        model.requires_grad_(True)
        return model, {n: p for n, p in model.named_parameters()}
    model.requires_grad_(False)
    train = TrainSettings(steps=1, lora=LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha,
                                                     init_seed=settings.lora_init_seed))
    wrapped = attach_trainable(model, train)
    params = {}
    for name, param in wrapped.named_parameters():
        # B is the only LoRA matrix with a nonzero gradient at B = 0 (see the module docstring).
        param.requires_grad_("lora_B" in name)
        if "lora_B" in name:
            params[name] = param
    return wrapped, params


def minibatch_gradients(model: Any, params: dict[str, torch.nn.Parameter], objective: StudentObjective,
                        minibatches: list[list[int]]) -> list[dict[str, torch.Tensor]]:
    """The gradient of the excess loss (data minus control) for each minibatch of objective rows."""
    grads = []
    model.train()
    for positions in minibatches:
        loss = objective.excess_loss(model, positions)
        values = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        grads.append({n: (g if g is not None else torch.zeros_like(p)).detach().float()
                      for (n, p), g in zip(params.items(), values, strict=True)})
    model.eval()
    return grads


def step_direction(gradient: dict[str, torch.Tensor], geometry: str, lr: float,
                   eps: float = 1e-8) -> dict[str, torch.Tensor]:
    """The parameter change of one step: ``-lr * g`` (sgd) or Adam's first step ``-lr * g / (|g| + eps)``
    (bias-corrected moments of one gradient: ``m̂ = g``, ``√v̂ = |g|``; AdamW's default ``eps``), which is
    ``-lr * sign(g)`` wherever the gradient is well above ``eps``."""
    if geometry == "adam":
        return {n: -lr * g / (g.abs() + eps) for n, g in gradient.items()}
    return {n: -lr * g for n, g in gradient.items()}


@contextlib.contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Eager attention for the duration (forward-mode AD has no rule for the fused CPU attention kernel)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(base.config, "_attn_implementation", None)
    if before is not None and before != "eager":
        base.set_attn_implementation("eager")
    try:
        yield
    finally:
        if before is not None and before != "eager":
            base.set_attn_implementation(before)


def _module_and_attr(model: Any, name: str) -> tuple[Any, str]:
    module_name, attr = name.rsplit(".", 1)
    return model.get_submodule(module_name), attr


@contextlib.contextmanager
def dual_parameters(model: Any, params: dict[str, torch.nn.Parameter],
                    tangents: dict[str, torch.Tensor]) -> Iterator[None]:
    """Inside a forward-AD dual level, replace each parameter by a dual tensor carrying its tangent."""
    import torch.autograd.forward_ad as fwad

    swapped = []
    with fwad.dual_level():
        try:
            for name, param in params.items():
                module, attr = _module_and_attr(model, name)
                delattr(module, attr)
                setattr(module, attr, fwad.make_dual(param.detach(), tangents[name].to(param.dtype)))
                swapped.append((module, attr, param))
            yield
        finally:
            for module, attr, param in swapped:
                delattr(module, attr)
                module.register_parameter(attr, param)


def directional_scores(model: Any, tokenizer: Any, groups: list[TraitGroup], params: dict[str, torch.nn.Parameter],
                       direction: dict[str, torch.Tensor], bf16: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(scores at the base, their directional derivatives along ``direction``) by forward-mode AD (float32, or
    under bf16 autocast)."""
    import torch.autograd.forward_ad as fwad

    values, derivatives = [], []
    device = next(model.parameters()).device.type
    with eager_attention(model), dual_parameters(model, params, direction), \
            torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        for group in groups:
            scores = trait_scores(group_log_probs(model, tokenizer, group))
            primal, tangent = fwad.unpack_dual(scores)
            values.append(primal.detach().numpy())
            derivatives.append(tangent.detach().numpy() if tangent is not None else np.zeros(len(group.traits)))
    return np.concatenate(values), np.concatenate(derivatives)


@torch.no_grad()
def _score_all(model: Any, tokenizer: Any, groups: list[TraitGroup], bf16: bool) -> np.ndarray:
    device = next(model.parameters()).device.type
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        return np.concatenate([trait_scores(group_log_probs(model, tokenizer, g)).numpy() for g in groups])


@torch.no_grad()
def _shift(params: dict[str, torch.nn.Parameter], direction: dict[str, torch.Tensor], scale: float) -> None:
    for name, param in params.items():
        param.add_(direction[name].to(param.dtype), alpha=scale)


def finite_difference_scores(model: Any, tokenizer: Any, groups: list[TraitGroup],
                             params: dict[str, torch.nn.Parameter], direction: dict[str, torch.Tensor],
                             scale: float, bf16: bool, base: np.ndarray | None = None) -> np.ndarray:
    """Directional derivatives by finite differences with step h = ``scale``: forward, (s(θ + h d) - s(θ)) / h,
    when the base's scores ``base`` are given, else central, (s(θ + h d) - s(θ - h d)) / 2h.

    Under bf16 this is exact enough for LoRA's B (a perturbation of B = 0 is represented at full relative
    precision) but not for full fine-tuning, whose small steps on large weights round away in bf16."""
    offset = 0.0  # how far the parameters are from θ, in units of ``direction``: restored whatever happens
    try:
        _shift(params, direction, scale)
        offset = scale
        plus = _score_all(model, tokenizer, groups, bf16)
        if base is not None:
            return (plus - base) / scale
        _shift(params, direction, -2 * scale)
        offset = -scale
        minus = _score_all(model, tokenizer, groups, bf16)
    finally:
        _shift(params, direction, -offset)
    return (plus - minus) / (2 * scale)


def first_order_prediction(model: Any, tokenizer: Any, objective: StudentObjective, groups: list[TraitGroup],
                           settings: FirstOrderSettings) -> FirstOrderResult:
    """Predicted change of every trait's ``log P`` after ``settings.steps`` steps on the objective's rows.

    ``model`` is the bare base (it is wrapped with LoRA here for ``parametrization="lora"``); ``objective`` holds
    the sampled rows and their control, split into ``n_minibatches`` consecutive minibatches.
    """
    seconds: dict[str, float] = {}
    started = time.time()
    model, params = trainable(model, settings)
    size = settings.rows_per_minibatch
    minibatches = [list(range(i * size, (i + 1) * size)) for i in range(settings.n_minibatches)]
    minibatches = [m for m in minibatches if m and m[-1] < objective.n]
    if len(minibatches) < 2:
        raise ValueError("first-order prediction needs at least two full minibatches of rows")
    grads = minibatch_gradients(model, params, objective, minibatches)
    seconds["gradients"] = time.time() - started
    scored = [g.limited(settings.n_questions) for g in groups]
    tick = time.time()
    rows, base = [], None
    if settings.jvp == "finite_difference":
        base = _score_all(model, tokenizer, scored, settings.bf16)
    for gradient in grads:
        direction = step_direction(gradient, settings.geometry, 1.0)  # unit lr; scaled below
        if settings.jvp == "forward":
            base, derivative = directional_scores(model, tokenizer, scored, params, direction, settings.jvp_bf16)
        else:
            derivative = finite_difference_scores(model, tokenizer, scored, params, direction,
                                                  settings.fd_scale * settings.lr, settings.bf16,
                                                  None if settings.fd_central else base)
        rows.append(derivative * settings.lr * settings.steps)
    seconds["directional"] = time.time() - tick
    seconds["total"] = time.time() - started
    norms = [float(torch.sqrt(sum((g.double() ** 2).sum() for g in grad.values()))) for grad in grads]
    _unwrap(model)
    return FirstOrderResult(trait_names(groups), np.array(rows), settings, objective.n, seconds, base, norms)


def _unwrap(model: Any) -> None:
    """Remove the LoRA wrapper so the caller's base model is left as it was given."""
    if hasattr(model, "unload"):
        model.unload()
