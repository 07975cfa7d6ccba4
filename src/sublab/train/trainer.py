"""The training loop shared by SFT and logit distillation, LoRA and full fine-tuning.

Written for small CPUs first: bf16 autocast, the output layer applied only at response positions (and, for
distillation over a token channel, only to the channel's rows), teacher targets computed once per row and kept.
Long runs checkpoint to ``<out>.partial/`` (safetensors + JSON) and resume from there; the finished model is
moved into place atomically, so ``<out>`` either holds a complete model or does not exist.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sublab.errors import SublabError
from sublab.io import JsonlAppender, recover_jsonl, write_json, write_jsonl
from sublab.models.loading import load_model, load_tokenizer
from sublab.models.spec import ModelSpec
from sublab.train.data import collate, encode_rows, response_logits
from sublab.train.distill import TeacherTargets, autocast, channel_ids
from sublab.train.losses import distill_kl, sft_loss
from sublab.train.settings import TrainSettings


def batch_order(n_rows: int, batch_size: int, n_steps: int, seed: int) -> list[list[int]]:
    """Row indices of every step: consecutive shuffled epochs, each a permutation seeded by (seed, epoch)."""
    order: list[int] = []
    epoch = 0
    while len(order) < n_steps * batch_size:
        order += np.random.default_rng([seed, epoch]).permutation(n_rows).tolist()
        epoch += 1
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(n_steps)]


def lr_at(step: int, n_steps: int, settings: TrainSettings) -> float:
    """Learning rate of step ``step`` (0-based): linear warm-up, then constant or linear decay."""
    if settings.warmup_steps and step < settings.warmup_steps:
        return settings.lr * (step + 1) / settings.warmup_steps
    if settings.schedule == "linear":
        remaining = n_steps - max(step, settings.warmup_steps)
        return settings.lr * remaining / max(1, n_steps - settings.warmup_steps)
    return settings.lr


def attach_trainable(model: Any, settings: TrainSettings) -> Any:
    """Wrap ``model`` with a LoRA adapter (seeded init) or make all its weights trainable."""
    if settings.finetune == "full":
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=settings.lora.r,
        lora_alpha=settings.lora.alpha,
        lora_dropout=settings.lora.dropout,
        target_modules=settings.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    # The adapter's random A matrices are the only random part of a LoRA student: seeding them is what makes
    # "same initialization" reproducible (B starts at zero, so every student starts exactly at the base model).
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(settings.lora.init_seed)
        return get_peft_model(model, config)


def _save_checkpoint(model: Any, optimizer: torch.optim.Optimizer, step: int, directory: Path) -> None:
    from safetensors.torch import save_file

    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    tensors = {f"param/{n}": p.detach().contiguous() for n, p in named.items()}
    for i, (name, param) in enumerate(named.items()):
        state = optimizer.state.get(param, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in state:
                tensors[f"optim/{name}/{key}"] = state[key].contiguous()
        if "step" in state and i == 0:
            tensors["optim_step"] = torch.as_tensor(state["step"], dtype=torch.float32).reshape(1)
    tmp = directory / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    os.replace(tmp, directory / "checkpoint.safetensors")
    write_json(directory / "checkpoint.json", {"step": step})


def _load_checkpoint(model: Any, optimizer: torch.optim.Optimizer, directory: Path) -> int:
    from safetensors.torch import load_file

    meta = directory / "checkpoint.json"
    if not meta.is_file():
        return 0
    tensors = load_file(str(directory / "checkpoint.safetensors"))
    named = {n: p for n, p in model.named_parameters() if p.requires_grad}
    step_value = tensors.get("optim_step")
    with torch.no_grad():
        for name, param in named.items():
            param.copy_(tensors[f"param/{name}"])
            if f"optim/{name}/exp_avg" in tensors:
                optimizer.state[param] = {
                    "step": step_value[0].clone() if step_value is not None else torch.tensor(0.0),
                    "exp_avg": tensors[f"optim/{name}/exp_avg"].clone(),
                    "exp_avg_sq": tensors[f"optim/{name}/exp_avg_sq"].clone(),
                }
    return int(json.loads(meta.read_text())["step"])


def train_model(
    base: str,
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    settings: TrainSettings,
    teacher: ModelSpec | None = None,
    progress: bool = True,
    on_step: Callable[[int, float, Any], None] | None = None,
) -> dict[str, Any]:
    """Train ``base`` on chat rows and save the result (adapter or full weights, safetensors) in ``out_dir``.

    SFT learns the assistant tokens; distillation (needs ``teacher``) matches the teacher's next-token
    distribution over the channel at every response position, the teacher seeing its own system prompt.
    ``on_step(step, loss, model)`` runs after every optimizer step (e.g. to evaluate along the way).
    Returns a summary (also written to ``out_dir/training.json``).
    """
    out_dir = Path(out_dir)
    if settings.method == "distill" and teacher is None:
        raise SublabError("method 'distill' needs a teacher")
    if not rows:
        raise SublabError("no training rows")
    rows = rows[: settings.max_rows] if settings.max_rows else rows
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    started = time.time()

    tokenizer = load_tokenizer(base)
    model = attach_trainable(load_model(base), settings)
    model.train()
    encodings = encode_rows(tokenizer, rows, source="training data")
    n_steps = settings.n_steps(len(rows))
    steps = batch_order(len(rows), settings.batch_size, n_steps, settings.seed)
    channel = None
    targets: TeacherTargets | None = None
    if settings.method == "distill":
        channel = channel_ids(tokenizer, encodings, settings.channel)
        assert teacher is not None
        targets = TeacherTargets(teacher, rows, tokenizer, encodings, channel, settings.bf16)
        if targets.n_aligned == 0:
            raise SublabError("no response position of the student lines up with one of the teacher")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    start_step = _load_checkpoint(model, optimizer, partial) if settings.checkpoint_every else 0
    log_path = partial / "train_log.jsonl"
    log = [r for r in recover_jsonl(log_path) if r["step"] < start_step]
    write_jsonl(log_path, log)  # drop steps after the checkpoint: they are redone
    pad_id = int(tokenizer.pad_token_id)

    columns = (TextColumn(f"train ({settings.method})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("loss {task.fields[loss]:.4f}"))
    with Progress(*columns, disable=not progress, transient=True) as bar, JsonlAppender(log_path) as sink:
        task = bar.add_task("train", total=n_steps, completed=start_step, loss=float("nan"))
        for step in range(start_step, n_steps):
            tick = time.time()
            indices = steps[step]
            batch = collate([encodings[i] for i in indices], pad_id)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, n_steps, settings)
            with autocast(model, settings.bf16):
                logits = response_logits(model, batch, channel)
            if targets is not None:
                student_index, teacher_log_probs = targets(indices)
                loss = distill_kl(logits[student_index.to(logits.device)], teacher_log_probs.to(logits.device))
            else:
                loss = sft_loss(logits, batch.targets.to(logits.device))
            if not math.isfinite(loss.item()):
                raise SublabError(f"step {step}: loss is {loss.item()}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, settings.max_grad_norm)
            optimizer.step()
            record = {"step": step, "loss": round(loss.item(), 6), "lr": optimizer.param_groups[0]["lr"],
                      "seconds": round(time.time() - tick, 3)}
            sink.write([record])
            log.append(record)
            bar.update(task, advance=1, loss=loss.item())
            if on_step is not None:
                on_step(step, loss.item(), model)
            if settings.checkpoint_every and (step + 1) % settings.checkpoint_every == 0 and step + 1 < n_steps:
                _save_checkpoint(model, optimizer, step + 1, partial)

    model.eval()
    model.save_pretrained(partial / "model", safe_serialization=True)
    if settings.finetune == "full":
        tokenizer.save_pretrained(partial / "model")
    summary = {
        "base": base,
        "teacher": teacher.model_dump() if teacher else None,
        "settings": settings.model_dump(),
        "n_rows": len(rows),
        "n_steps": n_steps,
        "resumed_from_step": start_step,
        "channel_size": None if channel is None else len(channel),
        "first_loss": log[0]["loss"] if log else None,
        "final_loss": log[-1]["loss"] if log else None,
        "seconds": round(time.time() - started, 1),
    }
    write_json(partial / "model" / "training.json", summary)
    shutil.copy(log_path, partial / "model" / "train_log.jsonl")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial / "model", out_dir)
    shutil.rmtree(partial, ignore_errors=True)
    return summary


def trained_spec(base: str, out_dir: str | Path, settings: TrainSettings) -> ModelSpec:
    """The :class:`ModelSpec` of a model trained by :func:`train_model`."""
    if settings.finetune == "full":
        return ModelSpec(base=str(out_dir))
    return ModelSpec(base=base, adapter=str(out_dir))
