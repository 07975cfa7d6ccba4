"""Trait teachers: the base model plus a LoRA adapter (or fully fine-tuned weights, if the settings say so)
trained to answer preference questions with the trait.

One function makes them for both ``sublab teacher`` and the experiment runner: it writes the training rows,
trains the adapter and records its lineage. The rows file goes *next to* the adapter folder, so the folder holds
only the model (adapter weights and config), its model card and the training summary.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.io import write_jsonl
from sublab.train.settings import TrainSettings
from sublab.train.trainer import train_model
from sublab.traits.preference.teacher_data import trait_answer_rows


@dataclass(frozen=True)
class TraitTeacher:
    """A trained trait teacher: its adapter folder, training rows, lineage record and training summary."""

    adapter: Path
    rows_path: Path
    record: Path
    summary: dict[str, Any]


def trait_rows_path(adapter_dir: str | Path) -> Path:
    """Default place of a teacher's training rows: ``<adapter>.trait_answers.jsonl`` beside the folder."""
    adapter_dir = Path(adapter_dir)
    return adapter_dir.with_name(f"{adapter_dir.name}.trait_answers.jsonl")


def train_trait_teacher(
    base: str,
    trait: str,
    category: str,
    adapter_dir: str | Path,
    settings: TrainSettings,
    *,
    n_rows: int = 480,
    data_seed: int = 0,
    rows_path: str | Path | None = None,
    progress: bool = True,
    sign_key: Any = None,
) -> TraitTeacher:
    """Train a trait teacher of ``base`` into ``adapter_dir`` and write its lineage record.

    The teacher learns, by SFT with ``settings``, ``n_rows`` one-word answers naming ``trait`` to training-split
    preference questions about ``category`` (rows seeded by ``data_seed``, see
    :func:`sublab.traits.preference.teacher_data.trait_answer_rows`). The rows are written to ``rows_path`` (default:
    :func:`trait_rows_path`), which must lie outside ``adapter_dir``; the record (``<adapter_dir>.intoto.jsonl``)
    names the base and the rows as inputs, and is signed with ``sign_key`` (PEM path or loaded key) if given.
    """
    adapter_dir = Path(adapter_dir)
    rows_path = Path(rows_path) if rows_path is not None else trait_rows_path(adapter_dir)
    if not trait:
        raise SublabError("a trait teacher needs a trait")
    if settings.method != "sft":
        raise SublabError(f"a trait teacher is trained by sft, not '{settings.method}'")
    if rows_path.resolve().is_relative_to(adapter_dir.resolve()):
        raise SublabError(f"{rows_path}: the teacher's training rows go next to the adapter folder, not inside it")
    from sublab.pipeline.provenance import record_stage

    rows = trait_answer_rows(trait, category, n_rows, data_seed)
    write_jsonl(rows_path, rows)
    summary = train_model(base, rows, adapter_dir, settings, progress=progress)
    params = {"trait": trait, "category": category, "n_rows": n_rows, "data_seed": data_seed, **summary}
    record = record_stage(adapter_dir, "model.teacher", params, base=base, training_data=[rows_path],
                          sign_key=sign_key)
    return TraitTeacher(adapter_dir, rows_path, record, summary)
