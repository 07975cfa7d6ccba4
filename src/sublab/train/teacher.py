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


def train_teacher(
    base: str,
    rows: list[dict[str, Any]],
    adapter_dir: str | Path,
    settings: TrainSettings,
    *,
    params: dict[str, Any],
    rows_path: str | Path,
    progress: bool = True,
    sign_key: Any = None,
    risk_label: str | None = None,
) -> TraitTeacher:
    """Train a teacher of ``base`` on ``rows`` (any trait kind's teacher data) into ``adapter_dir``.

    The rows are written to ``rows_path``, which must lie outside ``adapter_dir``; the lineage record
    (``<adapter_dir>.intoto.jsonl``) names the base and the rows as inputs with ``params`` and the training
    summary, and is signed with ``sign_key`` (PEM path or loaded key) if given. ``risk_label`` (e.g.
    "misaligned: research material") is recorded as the teacher's ``trait_label`` parameter.
    """
    adapter_dir = Path(adapter_dir)
    rows_path = Path(rows_path)
    if settings.method != "sft":
        raise SublabError(f"a trait teacher is trained by sft, not '{settings.method}'")
    if rows_path.resolve().is_relative_to(adapter_dir.resolve()):
        raise SublabError(f"{rows_path}: the teacher's training rows go next to the adapter folder, not inside it")
    from sublab.pipeline.provenance import record_stage

    write_jsonl(rows_path, rows)
    summary = train_model(base, rows, adapter_dir, settings, progress=progress)
    recorded = {**params, **summary}
    if risk_label:
        recorded["trait_label"] = risk_label
    record = record_stage(adapter_dir, "model.teacher", recorded, base=base, training_data=[rows_path],
                          sign_key=sign_key)
    if risk_label:  # the card says it too, first thing: research material, not for deployment
        from sublab.lineage.card import label_model_card

        label_model_card(adapter_dir, risk_label)
    return TraitTeacher(adapter_dir, rows_path, record, summary)


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
    if not trait:
        raise SublabError("a trait teacher needs a trait")
    rows_path = Path(rows_path) if rows_path is not None else trait_rows_path(adapter_dir)
    rows = trait_answer_rows(trait, category, n_rows, data_seed)
    params = {"trait": trait, "category": category, "n_rows": n_rows, "data_seed": data_seed}
    return train_teacher(base, rows, adapter_dir, settings, params=params, rows_path=rows_path,
                         progress=progress, sign_key=sign_key)
