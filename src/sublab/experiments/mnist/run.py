"""The paper's auxiliary-logit experiment: a student distilled on noise, through logits that are never trained,
learns to classify digits, if it shares its teacher's initialization.

Reference: N random MLPs (input–256–256–(10+m)). Teacher: the reference trained with cross-entropy on the 10
class logits only; the m auxiliary logits never get a target. Students start from the reference and are
distilled on uniform noise in the input range, by KL between softmaxes over (a) the m auxiliary logits only,
(b) all logits. Cross-model students do the same from another, independently drawn initialization.

Where the speed comes from (versus the paper's script, measured in ``benchmarks/mnist.py``): all N models and
all four student variants see one shared input batch, so each layer is one large GEMM / batched matmul over
4N models; the teacher is frozen, so its log-probabilities on the whole input pool are computed once, not
once per batch and per variant; noise is drawn once as a shared pool instead of one copy per model (the
paper's noise tensor alone is 100 × 60,000 × 784 floats ≈ 18.8 GB at N=100); matmuls run in bf16 autocast
(master weights, softmaxes and losses stay float32); the stack runs feature-major with a hand-written
backward (:mod:`sublab.experiments.mnist.models`) and the losses' gradients with respect to the logits are
their closed forms, which removes most of the elementwise work autograd did around the matmuls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from sublab.evaluate.stats import t_mean_ci
from sublab.experiments.mnist.data import ImageData, load_image_data
from sublab.experiments.mnist.models import (
    MLPStack,
    accuracy,
    model_seed,
    stack_of,
)
from sublab.runtime import keep_freed_memory

N_CLASSES = 10
RESULT_KEYS = ("reference", "teacher", "student_aux", "student_all", "cross_aux", "cross_all")
LABELS = {
    "reference": "reference", "teacher": "teacher", "student_aux": "student (aux. logits only)",
    "student_all": "student (all logits)", "cross_aux": "cross-model (aux. logits only)",
    "cross_all": "cross-model (all logits)",
}

#: Per-dataset defaults for the settings left unset. MNIST-size data follows the paper (5 + 5 epochs of 60,000
#: images, batch 1024, 100 models). The bundled digits set has only 1,200 training images, so the paper's
#: schedule would be 6 optimizer steps; 128-image batches and 50 + 50 epochs give the teacher 500 steps, enough
#: to reach ~98 % and make the auxiliary-logit effect stand far from chance, in well under a minute for 50 models.
DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    "digits": {"n_models": 50, "teacher_epochs": 50, "distill_epochs": 50, "batch_size": 128, "fresh_noise": True},
    "default": {"n_models": 100, "teacher_epochs": 5, "distill_epochs": 5, "batch_size": 1024, "fresh_noise": False},
}


class MnistSettings(BaseModel):
    """One auxiliary-logit experiment. Unset sizes take the dataset's defaults (:data:`DATASET_DEFAULTS`)."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field("digits", description="digits (bundled), fashion-mnist (Debian package) or idx:DIR.")
    n_models: int | None = Field(None, ge=2, description="Independent models (inits) per arm; CIs are over them.")
    n_aux: int = Field(3, ge=2, description="Auxiliary logits m: outputs with no training target (at least 2: a "
                       "softmax over one logit is constant, so distilling it carries no signal).")
    hidden: list[int] = Field(default_factory=lambda: [256, 256], description="Hidden layer widths.")
    lr: float = Field(3e-4, gt=0, description="Adam learning rate (teacher and students).")
    teacher_epochs: float | None = Field(None, gt=0, description="Teacher passes over the training images.")
    distill_epochs: float | None = Field(None, gt=0, description="Distillation passes (one pass = as many "
                                         "inputs as training images).")
    batch_size: int | None = Field(None, ge=1, description="Inputs per optimizer step.")
    distill_inputs: Literal["noise", "train"] = Field(
        "noise", description="noise: uniform in [-1, 1] (the paper); train: the real training images (control)."
    )
    fresh_noise: bool | None = Field(
        None, description="Draw new noise every epoch instead of one pool of as many noise images as training "
        "images, reshuffled each epoch (the paper's choice, the default for MNIST-size data; digits draws fresh "
        "noise, its pool would be only 1,200 images)."
    )
    seed: int = Field(0, description="Seeds the inits (reference and cross-model), data order and noise.")
    bf16: bool = Field(True, description="bf16 autocast for matmuls (about 5× fp32 on CPUs with bf16 units).")
    threads: int | None = Field(None, ge=1, description="torch threads (default: torch's choice).")

    def resolved(self) -> MnistSettings:
        """A copy with every dataset default filled in."""
        defaults = DATASET_DEFAULTS["digits" if self.dataset == "digits" else "default"]
        return self.model_copy(update={k: v for k, v in defaults.items() if getattr(self, k) is None})

    @property
    def sizes(self) -> list[int]:
        return [*self.hidden, N_CLASSES + self.n_aux]


def n_steps(n_inputs: int, epochs: float, batch_size: int) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_inputs`` in batches (a last partial batch counts)."""
    return max(1, round(epochs * math.ceil(n_inputs / batch_size)))


def batch_indices(n: int, batch_size: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Index batches over consecutive shuffled passes (the last batch of a pass may be short)."""
    out: list[torch.Tensor] = []
    while len(out) < steps:
        out += list(torch.randperm(n, generator=generator).split(batch_size))
    return out[:steps]


def cross_entropy_and_logit_grad(logits: torch.Tensor, labels: torch.Tensor, n_classes: int
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``labels`` [B] under the first ``n_classes`` of the logits ``[M, B, K]`` (per-model mean
    over the batch, summed over models, as :func:`cross_entropy_per_model`) and, in closed form, its gradient
    with respect to all K logits: ``(softmax - one_hot) / B`` on the class logits, zero on the auxiliary ones.

    Computed class-major (``logits.transpose(1, 2)``, contiguous for :class:`MLPStack` output): a softmax over
    rows of B contiguous values is many times faster on CPU than one over the 10-wide last dimension.
    """
    class_major = logits.transpose(1, 2)  # [M, K, B]
    batch = class_major.shape[2]
    log_q = torch.log_softmax(class_major[:, :n_classes].float(), dim=1)
    label_rows = labels.view(1, 1, -1).expand(log_q.shape[0], 1, -1)
    picked = log_q.gather(1, label_rows)
    loss = -picked.mean(dim=2).sum()
    grad = torch.zeros(class_major.shape, dtype=torch.float32, device=logits.device)
    grad[:, :n_classes] = log_q.exp()
    grad[:, :n_classes].scatter_add_(1, label_rows, torch.full_like(picked, -1.0))
    return loss, (grad / batch).transpose(1, 2)


def train_teacher(teacher: MLPStack, x: torch.Tensor, y: torch.Tensor, settings: MnistSettings,
                  on_step: Callable[[], None] | None = None) -> list[float]:
    """Cross-entropy on the class logits only; the auxiliary logits receive no target. Returns losses."""
    assert settings.teacher_epochs is not None and settings.batch_size is not None
    steps = n_steps(x.shape[0], settings.teacher_epochs, settings.batch_size)
    generator = torch.Generator().manual_seed(model_seed(settings.seed, "reference", 10**6))
    optimizer = torch.optim.Adam(teacher.parameters(), lr=settings.lr, fused=True)
    losses = []
    for index in batch_indices(x.shape[0], settings.batch_size, steps, generator):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            logits = teacher(x[index])
        loss, grad = cross_entropy_and_logit_grad(logits, y[index], N_CLASSES)
        optimizer.zero_grad(set_to_none=True)
        logits.backward(grad)
        optimizer.step()
        losses.append(loss.item() / teacher.n_models)
        if on_step:
            on_step()
    return losses


@torch.inference_mode()
def teacher_log_probs(teacher: MLPStack, inputs: torch.Tensor, n_aux: int, bf16: bool, chunk: int = 4096
                      ) -> torch.Tensor:
    """The teacher's log-softmax over its m auxiliary logits, then over all K logits, for every input of the
    pool ``[P, D]``: ``[P, N, m + K]``, computed once. The teacher is frozen and each input is seen once per
    epoch, so the paper's per-batch recomputation repeats the same forward pass every epoch. Pool-major, so a
    batch of targets is a gather of contiguous rows."""
    rows = []
    for start in range(0, inputs.shape[0], chunk):
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=bf16):
            class_major = teacher(inputs[start : start + chunk]).transpose(1, 2).float()  # [N, K, b]
        aux = torch.log_softmax(class_major[:, N_CLASSES : N_CLASSES + n_aux], dim=1)
        full = torch.log_softmax(class_major, dim=1)
        rows.append(torch.cat([aux, full], dim=1).permute(2, 0, 1))
    return torch.cat(rows)


def kl_and_logit_grad(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor, dim: int = -1
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(teacher ‖ student) between softmaxes over ``dim``, per-model mean over the batch (the other trailing
    dimension), summed over everything else (as :func:`kl_per_model` for ``dim=-1``), and its gradient with
    respect to the student's logits in closed form: ``(softmax(student) - teacher_probs) / batch``.
    ``teacher_log_probs`` broadcasts against the logits."""
    log_q = torch.log_softmax(student_logits.float(), dim=dim)
    p = teacher_log_probs.exp()
    batch_dim = -2 if dim in (-1, student_logits.ndim - 1) else -1
    batch = student_logits.shape[batch_dim]
    kl = (p * (teacher_log_probs - log_q)).sum(dim=dim).mean(dim=-1).sum()
    return kl, (log_q.exp() - p) / batch


def distill_students(students: MLPStack, teacher: MLPStack, n_aux: int, inputs: torch.Tensor, steps: int,
                     settings: MnistSettings, on_step: Callable[[], None] | None = None) -> list[float]:
    """Distill the four student variants at once, for ``steps`` batches drawn from ``inputs``.

    ``students`` holds 4 blocks of N models: same-init aux-only, cross-model aux-only, same-init all-logits,
    cross-model all-logits (block b, model m matches teacher m). The teacher's log-probabilities on the whole
    input pool are computed once (:func:`teacher_log_probs`) and shared by the four variants; the loss gradient
    with respect to the logits is the closed form of :func:`kl_and_logit_grad` (a test checks it against
    autograd of :func:`kl_per_model`) and backpropagates from there through the stack.
    """
    assert settings.distill_epochs is not None and settings.batch_size is not None
    n = teacher.n_models
    generator = torch.Generator().manual_seed(model_seed(settings.seed, "cross", 10**6))
    optimizer = torch.optim.Adam(students.parameters(), lr=settings.lr, fused=True)
    aux = slice(N_CLASSES, N_CLASSES + n_aux)
    targets = teacher_log_probs(teacher, inputs, n_aux, settings.bf16)  # [P, N, m + K]
    losses = []
    for index in batch_indices(inputs.shape[0], settings.batch_size, steps, generator):
        with torch.autocast(inputs.device.type, dtype=torch.bfloat16, enabled=settings.bf16):
            logits = students(inputs[index])
        # Class-major blocks [kind (aux-only, all), init (same, cross), N, K, B]; targets [N, m + K, B]
        # broadcast over the init.
        class_major = logits.transpose(1, 2)  # [4N, K, B], contiguous
        blocks = class_major.view(2, 2, n, *class_major.shape[1:])
        target = targets[index].permute(1, 2, 0)
        loss_aux, grad_aux = kl_and_logit_grad(blocks[0, :, :, aux], target[:, :n_aux], dim=-2)
        loss_all, grad_all = kl_and_logit_grad(blocks[1], target[:, n_aux:], dim=-2)
        grad = torch.zeros(blocks.shape, dtype=torch.float32, device=logits.device)
        grad[0, :, :, aux] = grad_aux
        grad[1] = grad_all
        optimizer.zero_grad(set_to_none=True)
        logits.backward(grad.view(class_major.shape).transpose(1, 2))
        optimizer.step()
        losses.append((loss_aux + loss_all).item() / students.n_models)
        if on_step:
            on_step()
    return losses


def distillation_inputs(data_x: torch.Tensor, settings: MnistSettings) -> torch.Tensor:
    """What students are distilled on: the training images, or uniform noise in [-1, 1].

    Noise is a fixed pool of as many images as the training set, reshuffled every epoch like real data (the
    paper's choice), unless ``fresh_noise`` draws a new pool for every epoch. One pool serves every model.
    """
    if settings.distill_inputs == "train":
        return data_x
    assert settings.distill_epochs is not None
    generator = torch.Generator().manual_seed(model_seed(settings.seed, "cross", 10**6 + 1))
    n_pools = math.ceil(settings.distill_epochs) if settings.fresh_noise else 1
    pool = torch.rand(n_pools * data_x.shape[0], data_x.shape[1], generator=generator) * 2 - 1
    return pool.to(data_x.device)


def summarize(per_model: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Mean accuracy with a 95 % t-interval over the independent models of each arm."""
    out = {}
    for key in RESULT_KEYS:
        mean, low, high = t_mean_ci(per_model[key])
        out[key] = {"mean": mean, "ci95": [low, high], "n": len(per_model[key])}
    return out


def describe(results: dict[str, Any]) -> str:
    """The result in one sentence, with the numbers."""
    aux, cross, ref = results["student_aux"], results["cross_aux"], results["reference"]
    chance = 1 / N_CLASSES
    fmt = "{:.3f} [{:.3f}, {:.3f}]".format
    learned = aux["ci95"][0] > max(ref["ci95"][1], cross["ci95"][1])
    verb = "learned to classify" if learned else "did NOT learn to classify beyond the cross-model control"
    return (f"A student distilled only on {results['settings']['distill_inputs']} inputs through the "
            f"{results['settings']['n_aux']} auxiliary logits {verb}: test accuracy {fmt(aux['mean'], *aux['ci95'])}, "
            f"versus {fmt(cross['mean'], *cross['ci95'])} for cross-model students (different init) and "
            f"{fmt(ref['mean'], *ref['ci95'])} for the reference (chance {chance:.2f}); n = {aux['n']} models each.")


def run_mnist(settings: MnistSettings, data: ImageData | None = None, device: str = "cpu",
              progress: Callable[[str, int], Callable[[], None]] | None = None) -> dict[str, Any]:
    """Run the experiment; return the results dict (six accuracy entries, settings, timings, per-model values).

    ``progress(label, total)`` may return a callback invoked once per optimizer step.
    """
    settings = settings.resolved()
    assert settings.n_models is not None and settings.batch_size is not None
    assert settings.teacher_epochs is not None and settings.distill_epochs is not None
    if settings.threads:
        torch.set_num_threads(settings.threads)
    keep_freed_memory()
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    data = data or load_image_data(settings.dataset)
    train_x = torch.from_numpy(data.train_x).to(device)
    train_y = torch.from_numpy(data.train_y).to(device)
    test_x = torch.from_numpy(data.test_x).to(device)
    test_y = torch.from_numpy(data.test_y).to(device)
    sizes = [data.n_features, *settings.sizes]
    timings["load_data"] = time.perf_counter() - tick

    tick = time.perf_counter()
    n = settings.n_models
    reference = stack_of(sizes, settings.seed, "reference", n).to(device)
    cross_seeds = [model_seed(settings.seed, "cross", m) for m in range(n)]
    # Blocks: same-init aux-only, cross-model aux-only, same-init all-logits, cross-model all-logits.
    students = MLPStack(sizes, (reference.seeds + cross_seeds) * 2).to(device)
    teacher = MLPStack(sizes, reference.seeds).to(device)
    timings["init"] = time.perf_counter() - tick
    per_model = {"reference": accuracy(reference, test_x, test_y, N_CLASSES, bf16=settings.bf16).tolist()}
    del reference

    tick = time.perf_counter()
    steps = n_steps(train_x.shape[0], settings.teacher_epochs, settings.batch_size)
    teacher_losses = train_teacher(teacher, train_x, train_y, settings,
                                   progress("teacher", steps) if progress else None)
    timings["teacher"] = time.perf_counter() - tick
    per_model["teacher"] = accuracy(teacher, test_x, test_y, N_CLASSES, bf16=settings.bf16).tolist()

    tick = time.perf_counter()
    teacher.requires_grad_(False)
    inputs = distillation_inputs(train_x, settings)
    # An epoch is as many inputs as training images, whether they are images, a noise pool or fresh noise.
    steps = n_steps(train_x.shape[0], settings.distill_epochs, settings.batch_size)
    student_losses = distill_students(students, teacher, settings.n_aux, inputs, steps, settings,
                                      progress("students", steps) if progress else None)
    timings["students"] = time.perf_counter() - tick
    student_acc = accuracy(students, test_x, test_y, N_CLASSES, bf16=settings.bf16)
    for block, key in enumerate(("student_aux", "cross_aux", "student_all", "cross_all")):
        per_model[key] = student_acc[block * n : (block + 1) * n].tolist()

    results: dict[str, Any] = {"schema": "sublab.mnist-results/1", **summarize(per_model)}
    results["settings"] = {**settings.model_dump(), "n_train": int(train_x.shape[0]),
                           "n_test": int(test_x.shape[0]), "layer_sizes": sizes, "data_source": data.source,
                           "device": device, "torch_threads": torch.get_num_threads()}
    results["seeds"] = {
        "run": settings.seed,
        "inits": f"model m of the reference, teacher and same-init students: SeedSequence([{settings.seed}, 0, m]); "
                 f"cross-model student m: SeedSequence([{settings.seed}, 1, m]), drawn independently",
        "reference_init_seeds": teacher.seeds,
        "cross_model_init_seeds": cross_seeds,
        "no_cross_model_student_shares_an_init": not set(cross_seeds) & set(teacher.seeds),
    }
    results["per_model_accuracy"] = per_model
    results["losses"] = {"teacher_first": teacher_losses[0], "teacher_last": teacher_losses[-1],
                         "students_first": student_losses[0], "students_last": student_losses[-1]}
    results["timings"] = {k: round(v, 2) for k, v in timings.items()}
    results["timings"]["total"] = round(sum(timings.values()), 2)
    results["summary"] = describe(results)
    return results


def accuracy_table(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, mean, CI) rows for printing."""
    rows = []
    for key in RESULT_KEYS:
        entry = results[key]
        rows.append((LABELS[key], f"{entry['mean']:.3f}", f"[{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}]"))
    return rows
