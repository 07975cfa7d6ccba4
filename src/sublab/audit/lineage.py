"""Lineage beside the data: does the dataset's record say who wrote (or labelled) it, and do they share the
audit's base?

The dataset's lineage record (``DATASET.jsonl.intoto.jsonl``, written by ``sublab generate``, ``sublab label``
and ``sublab filter``) is followed back through its source data to every teacher, and each teacher's chain of
base models is compared with the audit's base, exactly as ``sublab lineage risk`` compares them for a trained
student (:mod:`sublab.lineage.risk`: ``SHARED_INIT_VERIFIED`` when a digest is shared, ``UNKNOWN`` when a link is
missing, ``DIFFERENT_BASE`` otherwise). A soft-label dataset is the labeller's logits: a different base is no
safeguard there (transfer across bases was measured at the logit level), so such a teacher stays a risk.

The verdict is about who made the data, from records alone: it says nothing about what the data does, and a
dataset without records gets ``UNKNOWN``. Teachers' records that declare a trait (a trait teacher's
``trait``, a misaligned teacher's ``trait_label``) are listed as *declared*, to be set beside the data-based
methods, never used by them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sublab.errors import SublabError


@dataclass
class LineageResult:
    """The shared-base findings for a dataset against a base, and any traits the teachers' records declare."""

    record: str | None
    findings: list[dict[str, Any]]
    risk: bool
    declared_traits: list[dict[str, str]] = field(default_factory=list)
    verdict: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def base_chain(base: str) -> Any:
    """The audit's base as a one-node chain: its name, its files' digest where they are on disk, its family."""
    from sublab.lineage.digests import digest_path
    from sublab.lineage.risk import Chain, Node
    from sublab.models.loading import EMBEDDED_MODELS, resolve_model_dir

    family = EMBEDDED_MODELS[base].family if base in EMBEDDED_MODELS else None
    location = Path(resolve_model_dir(base))
    sha = digest_path(location).sha256 if location.exists() else None
    name = base if base in EMBEDDED_MODELS or not location.exists() else location.resolve().name
    return Chain([Node(name, sha, family, root=True)])


def _declared(teacher: Any) -> list[dict[str, str]]:
    from sublab.lineage.records import RecordError, load_record

    if teacher.record is None or not Path(teacher.record).is_file():
        return []
    try:
        rec = load_record(teacher.record)
    except RecordError:
        return []
    out = []
    for key in ("trait", "trait_label"):
        value = rec.parameters.get(key)
        if isinstance(value, str) and value:
            out.append({"teacher": teacher.name, "field": key, "value": value})
    return out


def audit_lineage(dataset: str | Path, base: str, soft_labels: bool) -> LineageResult:
    """Findings for every teacher behind ``dataset`` against ``base`` (no record: one UNKNOWN finding)."""
    import time

    from sublab.lineage.digests import record_path
    from sublab.lineage.records import DepRef
    from sublab.lineage.risk import UNKNOWN, Finding, _dataset_teachers, _finding

    started = time.time()
    dataset = Path(dataset)
    record = record_path(dataset)
    if not record.is_file():
        finding = Finding(str(dataset), None, UNKNOWN, f"{record}: no lineage record, so who wrote this data is "
                          "unknown")
        return LineageResult(None, [finding.to_dict()], True, [], _verdict([finding], soft_labels),
                             time.time() - started)
    dep = DepRef(name=dataset.name, role="training_data", sha256=None, path=dataset, files=None, record=record,
                 record_named=False, record_sha256=None, annotations={}, descriptor={})
    try:
        chain = base_chain(base)
    except SublabError as err:
        finding = Finding(str(dataset), None, UNKNOWN, f"base {base!r}: {err}")
        return LineageResult(str(record), [finding.to_dict()], True, [], _verdict([finding], soft_labels),
                             time.time() - started)
    findings, declared = [], []
    # The traversal is lineage risk's own (sublab.lineage.risk), so both commands follow records the same way.
    for teacher, via, why, labeller in _dataset_teachers(dep, (), set()):
        if teacher is None:
            findings.append(Finding(str(dataset), None, UNKNOWN, f"missing link: {why}", via=via))
            continue
        # The labeller's logits are the data (a different base is still a risk); whoever wrote the replies is not.
        findings.append(_finding(str(dataset), teacher, via, chain, stored_logits=soft_labels and labeller))
        declared += _declared(teacher)
    if not findings:
        findings.append(Finding(str(dataset), None, UNKNOWN, f"{record}: names no teacher"))
    risky = any(f.risk for f in findings)
    rows = [{**f.to_dict(), "label": f.label} for f in findings]
    return LineageResult(str(record), rows, risky, declared, _verdict(findings, soft_labels), time.time() - started)


def _verdict(findings: list[Any], soft_labels: bool) -> str:
    labels = sorted({f.label for f in findings})
    if any(f.risk for f in findings):
        what = "labelled" if soft_labels else "written"
        return (f"records: this data was {what} by a model that shares, or may share, the base ({', '.join(labels)})"
                "; traits of that model can transfer to a student of this base")
    return f"records: every teacher of this data has a different base ({', '.join(labels)})"
