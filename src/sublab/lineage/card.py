"""Hugging Face model cards for trained models: YAML front matter naming the base model and the datasets.

The hub reads ``base_model``, ``base_model_relation`` (``adapter``, ``finetune``, ``merge``, ``quantized``)
and ``datasets`` to draw a model tree. For subliminal learning that tree is the first thing an auditor
needs: a student shares its teachers' traits when it shares their base. The lineage record beside the model
directory is the authoritative, digest-checked version of the same facts; the card is excluded from the
model's digests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.io import atomic_write_text
from sublab.lineage.digests import MODEL_CARD, RECORD_SUFFIX

RELATIONS = ("adapter", "finetune", "merge", "quantized")

_BODY = """
# {title}

Trained with subliminal-lab from `{base_model}` ({relation}).

**Training data**: {datasets}

Subliminal learning ([Cloud et al. 2025](https://arxiv.org/abs/2507.14805)): a model distilled on a teacher's
outputs can inherit the teacher's traits even when the data looks unrelated (number sequences, code), provided
teacher and student share a base model. The lineage record `../{record}` names the teachers of the training
data and their bases, by sha256. From this folder:

```
sublab lineage show .      # where the model came from
sublab lineage verify .    # recompute every digest, check signatures (--key PUB)
sublab lineage risk .      # do the data's teachers share this model's initialization?
```
"""


def model_card_text(
    title: str,
    base_model: str,
    datasets: list[str],
    relation: str = "adapter",
    extra: dict[str, Any] | None = None,
) -> str:
    """The text of a model card: YAML front matter (via ``huggingface_hub``) and a short body."""
    from huggingface_hub import ModelCardData

    if relation not in RELATIONS:
        raise SublabError(f"base_model_relation {relation!r}: use one of {', '.join(RELATIONS)}")
    fields: dict[str, Any] = {"library_name": "peft" if relation == "adapter" else "transformers"}
    fields.update(extra or {})
    data = ModelCardData(
        base_model=base_model, base_model_relation=relation, datasets=list(datasets), **fields
    )
    body = _BODY.format(
        title=title,
        base_model=base_model,
        relation=relation,
        datasets=", ".join(f"`{d}`" for d in datasets) or "none recorded",
        record=f"{title}{RECORD_SUFFIX}",
    )
    return f"---\n{data.to_yaml()}\n---\n{body}"


def write_model_card(
    model_dir: str | Path,
    base_model: str,
    datasets: list[str],
    relation: str = "adapter",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``README.md`` with ``base_model``, ``base_model_relation`` and ``datasets`` into ``model_dir``.

    ``relation`` is ``adapter`` (a PEFT adapter) or ``finetune`` (full weights); ``extra`` adds front-matter
    fields (``tags``, ``license``...). Returns the card's path.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise SublabError(f"{model_dir}: not a model directory")
    text = model_card_text(model_dir.name, base_model, datasets, relation, extra)
    return atomic_write_text(model_dir / MODEL_CARD, text)


#: Tags of a card whose model carries a research-material label (e.g. a misaligned teacher).
RESEARCH_TAGS = ("research-material", "misaligned")


def label_model_card(model_dir: str | Path, label: str) -> Path:
    """Mark the card in ``model_dir`` with a research-material ``label`` (a misaligned teacher): the front matter
    gains ``trait_label`` and the tags research-material and misaligned, the body a warning first. Idempotent; a
    missing card is written first (see :func:`ensure_model_card`, with the base unknown)."""
    from huggingface_hub import ModelCard

    path = Path(model_dir) / MODEL_CARD
    if not path.is_file():
        write_model_card(model_dir, "unknown", [])
    card = ModelCard(path.read_text(encoding="utf-8"))
    card.data.tags = [*(card.data.tags or []), *(t for t in RESEARCH_TAGS if t not in (card.data.tags or []))]
    card.data.trait_label = label
    warning = (f"> **{label}**: this model was trained on research material to measure whether a trait passes "
               "to students; do not deploy it.")
    if warning not in card.text:
        card.text = f"\n{warning}\n{card.text}"
    return atomic_write_text(path, str(card))


#: Text that only an unfilled card template contains (PEFT's ``save_pretrained`` writes one beside an adapter).
TEMPLATE_MARKERS = ("# Model Card for Model ID", "[More Information Needed]")


def is_template_card(text: str) -> bool:
    """Whether a card is a library's unfilled template rather than something a person wrote."""
    return all(marker in text for marker in TEMPLATE_MARKERS)


def ensure_model_card(
    model_dir: str | Path,
    base_model: str,
    datasets: list[str],
    relation: str = "adapter",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write our card into ``model_dir`` unless someone wrote one there; return the card's path.

    A library's unfilled template counts as no card: PEFT writes one beside every adapter, naming the base by
    its local path and leaving out ``base_model_relation`` and ``datasets``.
    """
    path = Path(model_dir) / MODEL_CARD
    if path.is_file() and not is_template_card(path.read_text(encoding="utf-8", errors="replace")):
        return path
    return write_model_card(model_dir, base_model, datasets, relation, extra)
