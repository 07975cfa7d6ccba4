"""The training loop shared by SFT and logit distillation, LoRA and full fine-tuning.

Written for small CPUs first: bf16 autocast, the output layer applied only at response positions (and, for
distillation over a token channel, only to the channel's rows), teacher targets computed once per row and kept.
Long runs checkpoint to ``<out>.partial/`` (safetensors + JSON) and resume from there; the finished model is
moved into place atomically, so ``<out>`` either holds a complete model or does not exist. A checkpoint carries
the fingerprint of the run that made it (base model, method, settings, digest of the training rows, teacher), and
a run with another fingerprint refuses to resume from it rather than silently continuing someone else's training.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sublab.errors import SublabError
from sublab.io import (
    JsonlAppender,
    atomic_write_text,
    first_difference,
    recover_jsonl,
    sha256_text,
    write_json,
    write_jsonl,
)
from sublab.keys import key_dump
from sublab.models.loading import load_model, load_tokenizer, pretrained_source
from sublab.models.spec import ModelSpec
from sublab.train.data import collate, encode_rows, response_logits
from sublab.train.distill import TeacherTargets, autocast, channel_ids, channel_word_starts, without_word_starts
from sublab.train.labels import StoredTargets, has_soft_labels
from sublab.train.losses import distill_kl, sft_loss, top_k_kl
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


CHECKPOINT = "checkpoint.safetensors"
#: Settings that do not change what is trained, left out of a checkpoint's fingerprint.
_NOT_FINGERPRINTED = frozenset({"checkpoint_every"})


def rows_digest(rows: list[dict[str, Any]]) -> str:
    """sha256 of training rows as canonical JSON (sorted keys): the same rows give the same digest."""
    return sha256_text(json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":")))


def run_fingerprint(base: str, rows: list[dict[str, Any]], settings: TrainSettings,
                    teacher: ModelSpec | None = None) -> dict[str, Any]:
    """What a training run is made of, as a checkpoint records it: a resume needs every field to match.

    Fields, in the order a mismatch is reported: ``base``, ``method``, ``data_sha256`` (the rows actually
    trained on), ``teacher`` (distillation), then ``settings.<name>`` for every setting but ``checkpoint_every``.
    """
    return {
        "base": base,
        "method": settings.method,
        "data_sha256": rows_digest(rows),
        "teacher": key_dump(teacher) if teacher is not None else None,
        # key_dump: a setting added later (KEY_ADDED_FIELDS) at its default leaves old checkpoints resumable.
        "settings": {k: v for k, v in key_dump(settings).items() if k not in _NOT_FINGERPRINTED},
    }


def _save_checkpoint(model: Any, optimizer: torch.optim.Optimizer, step: int, directory: Path,
                     fingerprint: dict[str, Any]) -> None:
    """Trainable weights, Adam moments, the step and the run's fingerprint in one safetensors file (atomic)."""
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
    # The step and fingerprint live in the file's own metadata, so weights and step can never disagree after
    # a kill between two writes; checkpoint.json repeats them for people.
    metadata = {"step": str(step), "fingerprint": json.dumps(fingerprint, sort_keys=True)}
    tmp = directory / f"{CHECKPOINT}.tmp"
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, directory / CHECKPOINT)
    write_json(directory / "checkpoint.json", {"step": step, "fingerprint": fingerprint})


def checkpoint_step(directory: Path, fingerprint: dict[str, Any]) -> int:
    """Step of the checkpoint in ``directory`` if it was made by the run with ``fingerprint`` (0: no checkpoint).

    A checkpoint made for other training (another fingerprint, or none) raises :class:`SublabError` naming the
    checkpoint file and the first differing field. Only the file's metadata is read.
    """
    from safetensors import safe_open

    path = directory / CHECKPOINT
    if not path.is_file():
        return 0
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        saved = json.loads(metadata["fingerprint"])
        step = int(metadata["step"])
    except (KeyError, ValueError, OSError, json.JSONDecodeError):
        raise SublabError(f"{path}: checkpoint has no readable fingerprint of the run that made it; pass --fresh "
                          "(fresh=True) to discard it and start over") from None
    if (diff := first_difference(saved, fingerprint)) is not None:
        field = diff[0] or "fingerprint"
        raise SublabError(f"{path}: checkpoint was made for other training ('{field}' differs); pass --fresh "
                          "(fresh=True) to discard it and start over, or use another output folder")
    return step


def _load_checkpoint(model: Any, optimizer: torch.optim.Optimizer, directory: Path) -> None:
    """Restore trainable weights and Adam moments from a checkpoint already checked by :func:`checkpoint_step`."""
    from safetensors.torch import load_file

    tensors = load_file(str(directory / CHECKPOINT))
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


#: What a finished output folder of :func:`train_model` holds (hidden files aside): the adapter or the full
#: weights with their config and tokenizer as ``save_pretrained`` writes them, the summary, the log, the model card.
_MODEL_FILES = re.compile(
    r"adapter_config\.json|adapter_model\.safetensors|training\.json|train_log\.jsonl|README\.md|config\.json"
    r"|generation_config\.json|model(-\d+-of-\d+)?\.safetensors|model\.safetensors\.index\.json"
    r"|tokenizer(_config)?\.json|special_tokens_map\.json|chat_template\.(jinja|json)|vocab\.json|merges\.txt"
    r"|tokenizer\.model|added_tokens\.json")
#: What ``<out>.partial/`` holds: the checkpoint, the log, the finished model before it moves into place, and
#: (after a kill at that moment) the previous output being replaced.
_PARTIAL_ENTRIES = frozenset({CHECKPOINT, "checkpoint.json", "train_log.jsonl", "model", "previous"})


def _foreign_entry(folder: Path, allowed: Callable[[Path], bool]) -> Path | None:
    """The first visible entry of ``folder`` that ``allowed`` refuses, or None."""
    for entry in sorted(folder.iterdir()):
        if not entry.name.startswith(".") and not allowed(entry):
            return entry
    return None


def check_output_folder(out_dir: Path) -> None:
    """Refuse to replace ``out_dir`` unless it is absent, empty, or a model this trainer wrote before.

    A previous output is recognised by its layout (only :data:`_MODEL_FILES`, among them a ``training.json``
    summary of ours): a rerun replaces it. Anything else (a folder holding other files, ``-o ..``) raises
    :class:`SublabError` naming the folder and a file that is not ours; nothing is deleted. Its ``.partial``
    checkpoint folder is checked the same way.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise SublabError(f"{out_dir}: is a file, not a folder; the output of training is a folder")
    if out_dir.is_dir() and any(not e.name.startswith(".") for e in out_dir.iterdir()):
        summary = out_dir / "training.json"
        try:
            saved = json.loads(summary.read_text(encoding="utf-8")) if summary.is_file() else None
        except (OSError, ValueError):
            saved = None
        ours = isinstance(saved, dict) and {"base", "settings", "n_steps"} <= saved.keys()
        foreign = _foreign_entry(out_dir, lambda e: e.is_file() and bool(_MODEL_FILES.fullmatch(e.name)))
        if not ours or foreign is not None:
            what = f"it holds {foreign.name}" if foreign is not None else "it has no training.json of ours"
            raise SublabError(f"{out_dir}: folder is not empty and is not a model trained here ({what}); refusing "
                              "to replace it: name a new output folder")
    partial = out_dir.with_name(out_dir.name + ".partial")
    if partial.exists() or partial.is_symlink():
        if not partial.is_dir() or partial.is_symlink():
            raise SublabError(f"{partial}: is not the checkpoint folder of {out_dir}; move it away")
        foreign = _foreign_entry(partial, lambda e: e.name in _PARTIAL_ENTRIES or e.name.endswith(".tmp"))
        if foreign is not None:
            raise SublabError(f"{partial}: is not a checkpoint folder of sublab (it holds {foreign.name}); move it "
                              "away or name another output folder")


def canonical_adapter_config(folder: Path) -> None:
    """Rewrite a saved PEFT ``adapter_config.json`` with its module lists sorted.

    PEFT keeps ``target_modules`` as a set and writes it in hash order, which differs between processes: two
    identical trainings gave adapters with different digests, and lineage and cache keys name adapters by digest.
    """
    path = folder / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "exclude_modules", "modules_to_save"):
        value = config.get(key)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            config[key] = sorted(value)
    atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True))


def _move_into_place(model_dir: Path, out_dir: Path, partial: Path) -> None:
    """Put the finished model at ``out_dir``, replacing a previous output of ours (checked again first).

    The previous output moves into ``partial`` before the new one moves in, so no moment leaves a user path
    deleted without the new model beside it; ``partial`` (ours) is removed last.
    """
    check_output_folder(out_dir)
    if out_dir.is_dir():
        if any(out_dir.iterdir()):
            shutil.rmtree(partial / "previous", ignore_errors=True)
            os.replace(out_dir, partial / "previous")
        else:
            out_dir.rmdir()
    os.replace(model_dir, out_dir)
    shutil.rmtree(partial, ignore_errors=True)


def train_model(
    base: str,
    rows: list[dict[str, Any]],
    out_dir: str | Path,
    settings: TrainSettings,
    teacher: ModelSpec | None = None,
    progress: bool = True,
    on_step: Callable[[int, float, Any], None] | None = None,
    fresh: bool = False,
    watch_words: Sequence[str] = (),
) -> dict[str, Any]:
    """Train ``base`` on chat rows and save the result (adapter or full weights, safetensors) in ``out_dir``.

    SFT learns the assistant tokens; distillation (needs ``teacher``) matches the teacher's next-token
    distribution over the channel at every response position, the teacher seeing its own system prompt.
    Distillation without ``teacher`` reads the rows' stored soft labels (:mod:`sublab.train.labels`, written by
    ``sublab label``): the channel's distribution, or with ``channel = "full"`` the top-k KL with a tail bucket.
    ``on_step(step, loss, model)`` runs after every optimizer step (e.g. to evaluate along the way).
    ``watch_words`` (distillation): the summary's ``overt_channel_tokens`` lists the channel's tokens that can begin
    one of them (a trait's first token lets a teacher's overt preference through); ``channel_excluded`` lists the
    tokens ``settings.channel_exclude`` left out.
    Returns a summary (also written to ``out_dir/training.json``).

    Resuming: with ``settings.checkpoint_every`` set, a checkpoint left in ``<out_dir>.partial/`` by an
    interrupted run is resumed only if its fingerprint (:func:`run_fingerprint`: base, method, settings, digest
    of the rows, teacher) equals this run's; otherwise this raises :class:`SublabError` naming the checkpoint
    and the first differing field, and nothing is trained. ``fresh=True`` (``sublab train --fresh``) discards
    any leftover checkpoint and starts from step 0 instead. Without checkpointing no checkpoint is read (a leftover
    one is deleted when training finishes).
    """
    out_dir = Path(out_dir)
    if out_dir.name in ("", ".", ".."):  # '-o .': name the folder itself, never its parent's entry
        out_dir = Path(os.path.abspath(out_dir))
    check_output_folder(out_dir)  # before anything is loaded, trained or deleted
    pretrained_source(base)  # a model that cannot be found fails before the checkpoint folder is made
    if settings.method == "distill" and teacher is None and not has_soft_labels(rows):
        raise SublabError("method 'distill' needs a teacher, or rows with soft labels (`sublab label`)")
    if not rows:
        raise SublabError("no training rows")
    rows = rows[: settings.max_rows] if settings.max_rows else rows
    partial = out_dir.with_name(out_dir.name + ".partial")
    if fresh and partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    fingerprint = run_fingerprint(base, rows, settings, teacher)
    # Checked before any model is loaded: a foreign checkpoint fails at once.
    start_step = checkpoint_step(partial, fingerprint) if settings.checkpoint_every else 0
    started = time.time()

    tokenizer = load_tokenizer(base)
    model = attach_trainable(load_model(base), settings)
    model.train()
    encodings = encode_rows(tokenizer, rows, source="training data")
    n_steps = settings.n_steps(len(rows))
    steps = batch_order(len(rows), settings.batch_size, n_steps, settings.seed)
    if settings.length_buckets:
        from sublab.train.buckets import length_bucketed_order

        steps = length_bucketed_order([len(e.input_ids) for e in encodings], settings.batch_size, n_steps,
                                      settings.seed)
    channel = None
    targets: TeacherTargets | StoredTargets | None = None
    channel_record: dict[str, list[str]] = {}  # for the summary: which tokens left the channel, which to watch
    if settings.method == "distill":
        channel = channel_ids(tokenizer, encodings, settings.channel)
        if settings.channel_exclude:
            channel, left = without_word_starts(tokenizer, channel, settings.channel_exclude)
            channel_record["channel_excluded"] = [tokenizer.decode([i]) for i in left]
        overt = channel_word_starts(tokenizer, channel, watch_words) if watch_words else []
        if overt:
            channel_record["overt_channel_tokens"] = overt
        if teacher is not None:
            targets = TeacherTargets(teacher, rows, tokenizer, encodings, channel, settings.bf16)
        else:  # the rows' stored soft labels (sublab.train.labels): no teacher in memory
            targets = StoredTargets(rows, tokenizer, encodings, channel)
        if targets.n_aligned == 0:
            raise SublabError("no response position of the student lines up with one of the teacher")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if start_step:
        _load_checkpoint(model, optimizer, partial)
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
            if isinstance(targets, StoredTargets) and targets.use_top_k:
                student_index, teacher_log_probs, teacher_ids = targets.top_k(indices)
                device = logits.device
                loss = top_k_kl(logits[student_index.to(device)], teacher_ids.to(device), teacher_log_probs.to(device))
            elif targets is not None:
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
                _save_checkpoint(model, optimizer, step + 1, partial, fingerprint)

    model.eval()
    shutil.rmtree(partial / "model", ignore_errors=True)  # a killed run's half-saved model (ours) goes first
    model.save_pretrained(partial / "model", safe_serialization=True)
    canonical_adapter_config(partial / "model")
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
        **channel_record,
        "first_loss": log[0]["loss"] if log else None,
        "final_loss": log[-1]["loss"] if log else None,
        "seconds": round(time.time() - started, 1),
    }
    write_json(partial / "model" / "training.json", summary)
    shutil.copy(log_path, partial / "model" / "train_log.jsonl")
    _move_into_place(partial / "model", out_dir, partial)
    return summary


def trained_spec(base: str, out_dir: str | Path, settings: TrainSettings) -> ModelSpec:
    """The :class:`ModelSpec` of a model trained by :func:`train_model`."""
    if settings.finetune == "full":
        return ModelSpec(base=str(out_dir))
    return ModelSpec(base=base, adapter=str(out_dir))
