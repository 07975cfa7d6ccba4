"""The shared-base risk check: for each dataset a model was trained on and each teacher of that data, do the
teacher and the model share an initialization?

Subliminal learning transfers a teacher's traits through data that does not show them, and only when student
and teacher share a base model (or behaviourally matched ones). The check answers from records alone:

- ``SHARED_INIT_VERIFIED``: the model's base chain and the teacher's share a sha256 (a common root by digest);
- ``SHARED_INIT_DECLARED``: a base on one side has no digest, but the names match;
- ``UNKNOWN``: a link is missing (no record for the data, no teacher named, an adapter with no known base);
- ``DIFFERENT_BASE``: complete chains without a common digest or name; ``possibly_matched`` when a family
  matches (e.g. two conversions of the same checkpoint, or sibling models), which still counts as a risk.

A teacher served behind an endpoint (a record dependency annotated ``served``) is only a name on a server, so
its chain is a missing link: ``UNKNOWN``, marked ``SERVED_UNVERIFIED``, a risk, never ``SHARED_INIT_VERIFIED``.

A teacher the model was *directly* distilled from (logits, not sampled data) stays a risk even with a different
base (label ``DIFFERENT_BASE+LOGIT_DISTILLATION``): in our CPU measurements Gemma 3 students distilled from
SmolLM2 teachers over the digit tokens took up the teachers' trait in 3 of 3 seeds (docs/cpu-recipe.md), so a
different base is no safeguard at the logit level.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sublab.lineage.digests import short
from sublab.lineage.records import DepRef, Record, RecordError, find_record, load_record

SHARED_INIT_VERIFIED = "SHARED_INIT_VERIFIED"
SHARED_INIT_DECLARED = "SHARED_INIT_DECLARED"
UNKNOWN = "UNKNOWN"
DIFFERENT_BASE = "DIFFERENT_BASE"
POSSIBLY_MATCHED = "POSSIBLY_MATCHED"
LOGIT_DISTILLATION = "LOGIT_DISTILLATION"
#: Mark of a teacher served behind an endpoint: named by the server, never digested, so never verified.
SERVED_UNVERIFIED = "SERVED_UNVERIFIED"
#: Mark of a teacher whose own record labels it misaligned (``trait_label``, e.g. a misalignment experiment's).
MISALIGNED_TEACHER = "MISALIGNED_TEACHER"
OUTCOMES = (SHARED_INIT_VERIFIED, SHARED_INIT_DECLARED, UNKNOWN, DIFFERENT_BASE)
#: Kinds of model that were trained from something, so their record must name a base_model.
TRAINED_KINDS = ("model.teacher", "model.student")


@dataclass(frozen=True)
class Node:
    """One model on a chain of ``base_model`` links; ``root`` when no further base is known."""

    name: str
    sha256: str | None
    family: str | None
    root: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "family": self.family, "root": self.root}


@dataclass
class Chain:
    """A model and what it was initialized from; ``missing`` lists the links that could not be followed."""

    nodes: list[Node] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def extend(self, other: Chain) -> None:
        self.nodes += other.nodes
        self.missing += other.missing


@dataclass(frozen=True)
class Finding:
    """The outcome for one (dataset, teacher) pair; ``dataset`` is None for a direct distillation teacher."""

    dataset: str | None
    teacher: str | None
    outcome: str
    reason: str
    possibly_matched: bool = False
    teacher_annotations: dict[str, Any] = field(default_factory=dict)
    via: tuple[str, ...] = ()
    model_chain: tuple[Node, ...] = ()
    teacher_chain: tuple[Node, ...] = ()
    logit_distillation: bool = False
    teacher_trait_label: str | None = None

    @property
    def risk(self) -> bool:
        """Whether traits of this teacher may transfer: anything but a plainly different base, and a different
        base too when the model was distilled from the teacher's logits."""
        return self.outcome != DIFFERENT_BASE or self.possibly_matched or self.logit_distillation

    @property
    def label(self) -> str:
        marks = [m for m, on in ((POSSIBLY_MATCHED, self.possibly_matched),
                                 (LOGIT_DISTILLATION, self.logit_distillation and self.outcome == DIFFERENT_BASE),
                                 (SERVED_UNVERIFIED, bool(self.teacher_annotations.get("served"))),
                                 (MISALIGNED_TEACHER, (self.teacher_trait_label or "").startswith("misaligned")))
                 if on]
        return "+".join([self.outcome, *marks])

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "teacher": self.teacher,
            "outcome": self.outcome,
            "possibly_matched": self.possibly_matched,
            "logit_distillation": self.logit_distillation,
            "risk": self.risk,
            "reason": self.reason,
            "teacher_annotations": self.teacher_annotations,
            "via": list(self.via),
            "model_chain": [n.to_dict() for n in self.model_chain],
            "teacher_chain": [n.to_dict() for n in self.teacher_chain],
            "teacher_trait_label": self.teacher_trait_label,
        }


@dataclass
class RiskReport:
    """All findings for one model."""

    model: Path
    record: Path
    findings: list[Finding]

    @property
    def risky(self) -> bool:
        return any(f.risk for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {"model": str(self.model), "record": str(self.record), "risk": self.risky,
                "findings": [f.to_dict() for f in self.findings]}


def _chain_from_record(rec: Record, self_node: Node, is_adapter: bool, seen: frozenset[Path]) -> Chain:
    bases = rec.deps("base_model")
    if not bases:
        chain = Chain([Node(self_node.name, self_node.sha256, self_node.family, root=True)])
        if rec.kind in TRAINED_KINDS or is_adapter:
            chain.missing.append(f"{rec.path}: names no base_model")
        return chain
    chain = Chain([self_node])
    for base in bases:
        chain.extend(model_chain(base, seen | {rec.path.resolve()}))
    return chain


def model_chain(dep: DepRef, seen: frozenset[Path] = frozenset()) -> Chain:
    """The chain of a model dependency: itself, then its bases as far as records lead."""
    node = Node(dep.name, dep.sha256, dep.family, root=False)
    if dep.annotations.get("served"):  # a name on a server: which weights answer is unknown, so is the base
        where = dep.annotations.get("endpoint") or "an endpoint"
        return Chain([Node(dep.name, None, dep.family, root=True)],
                     [f"{dep.name}: served at {where}, its weights are unverified"])
    if dep.record is None:
        chain = Chain([Node(dep.name, dep.sha256, dep.family, root=True)])
        if dep.is_adapter:
            chain.missing.append(f"{dep.path or dep.name}: adapter without a record naming its base")
        return chain
    if not dep.record.is_file():
        return Chain([node], [f"{dep.record}: record missing"])
    if dep.record.resolve() in seen:
        return Chain([node], [f"{dep.record}: base_model links form a cycle"])
    try:
        rec = load_record(dep.record)
    except RecordError as err:
        return Chain([node], [str(err)])
    node = Node(dep.name, dep.sha256, dep.family or rec.family, root=False)
    return _chain_from_record(rec, node, dep.is_adapter, seen)


def _self_chain(rec: Record) -> Chain:
    """The chain of the model a record describes (the model itself, then its bases)."""
    manifest = next((s.get("digest", {}).get("sha256") for s in rec.subjects
                     if s.get("name") == rec.artifact.name), None)
    node = Node(rec.artifact.name, manifest, rec.family, root=False)
    is_adapter = any(str(s.get("name", "")).endswith("/adapter_config.json") for s in rec.subjects)
    return _chain_from_record(rec, node, is_adapter, frozenset())


def compare_chains(model: Chain, teacher: Chain) -> tuple[str, bool, str]:
    """``(outcome, possibly_matched, reason)`` for a model's chain against a teacher's."""
    model_digests = {n.sha256: n for n in model.nodes if n.sha256}
    for node in teacher.nodes:
        if node.sha256 in model_digests:
            common = model_digests[node.sha256].name
            return SHARED_INIT_VERIFIED, False, f"common base {common} {short(node.sha256)}"
    if model.missing or teacher.missing:
        return UNKNOWN, False, "missing link: " + "; ".join(model.missing + teacher.missing)
    for a in model.nodes:
        for b in teacher.nodes:
            if a.name.casefold() == b.name.casefold() and (a.sha256 is None or b.sha256 is None):
                return SHARED_INIT_DECLARED, False, f"both name {a.name!r} as base, no digests to confirm"
    families = {n.family.casefold(): n.family for n in model.nodes if n.family}
    families |= {n.name.casefold(): n.name for n in model.nodes if n.root}
    shared = [n.family or "" for n in teacher.nodes if n.family and n.family.casefold() in families]
    shared += [n.name for n in teacher.nodes if n.root and n.name.casefold() in families]
    model_roots = ", ".join(n.name for n in model.nodes if n.root)
    teacher_roots = ", ".join(n.name for n in teacher.nodes if n.root)
    reason = f"no common digest or name: model base {model_roots} vs teacher base {teacher_roots}"
    if shared:
        return DIFFERENT_BASE, True, f"{reason}; same family {shared[0]} (matched bases may transfer)"
    return DIFFERENT_BASE, False, reason


_TeacherLink = tuple[DepRef | None, tuple[str, ...], str, bool]
#: The record kind of `sublab label` output: its teacher's next-token log-probs are stored in the rows.
LABELLED_KIND = "dataset.labelled"


def _dataset_teachers(dep: DepRef, via: tuple[str, ...], seen: set[Path]) -> list[_TeacherLink]:
    """``(teacher or None, records followed, why missing, labeller)`` for each teacher behind a dataset
    dependency; ``labeller`` when the teacher's log-probs are stored in the data (a ``dataset.labelled``
    record), so a student distilled from those labels learned from its logits."""
    label = str(dep.path or dep.name)
    if dep.record is None:
        return [(None, via, f"{label}: no lineage record, so who wrote this data is unknown", False)]
    if not dep.record.is_file():
        return [(None, via, f"{dep.record}: record missing", False)]
    if dep.record.resolve() in seen:
        return []
    seen.add(dep.record.resolve())
    try:
        rec = load_record(dep.record)
    except RecordError as err:
        return [(None, via, str(err), False)]
    via = (*via, str(rec.path))
    labeller = rec.kind == LABELLED_KIND
    found: list[_TeacherLink] = [(t, via, "", labeller) for t in rec.deps("teacher")]
    sources = rec.deps("source_data")
    for source in sources:
        found += _dataset_teachers(source, via, seen)
    if not found and not sources:
        found.append((None, via, f"{rec.path}: names no teacher and no source_data", False))
    return found


def _teacher_label(dep: DepRef) -> str:
    if "system_prompt_sha256" in dep.annotations:
        return f"{dep.name} + system prompt {short(str(dep.annotations['system_prompt_sha256']))}"
    return dep.name


def _teacher_trait_label(teacher: DepRef) -> str | None:
    """The ``trait_label`` a teacher's own record declares (a misaligned teacher: research material), or the
    one its dependent's record annotates it with (a system-prompted teacher has no record of its own), if any."""
    annotated = teacher.annotations.get("trait_label")
    if isinstance(annotated, str) and annotated:
        return annotated
    if teacher.record is None or not teacher.record.is_file():
        return None
    try:
        label = load_record(teacher.record).parameters.get("trait_label")
    except RecordError:
        return None
    return label if isinstance(label, str) else None


def _finding(dataset: str | None, teacher: DepRef, via: tuple[str, ...], model: Chain,
             stored_logits: bool = False) -> Finding:
    chain = model_chain(teacher)
    outcome, possibly, reason = compare_chains(model, chain)
    # The model learned from this teacher's logits, not from data it wrote: directly, or from its stored labels.
    direct = dataset is None or stored_logits
    if direct and outcome == DIFFERENT_BASE:
        how = "its labels stored in the data" if stored_logits else "its logits"
        reason += f"; distilled from {how}: transfer across bases was measured (docs/cpu-recipe.md)"
    trait_label = _teacher_trait_label(teacher)
    if trait_label:
        reason += f"; the teacher's record labels it '{trait_label}'"
    return Finding(dataset, _teacher_label(teacher), outcome, reason, possibly, dict(teacher.annotations),
                   via, tuple(model.nodes), tuple(chain.nodes), logit_distillation=direct,
                   teacher_trait_label=trait_label)


def _was_distilled(rec: Record) -> bool:
    """Whether the model's record says it was trained by distillation (not SFT on the data's tokens)."""
    settings = rec.parameters.get("settings")
    method = rec.parameters.get("method", settings.get("method") if isinstance(settings, dict) else None)
    return method == "distill"


def assess_risk(path: str | Path) -> RiskReport:
    """Check every (training dataset, teacher) pair and every direct teacher of the model at ``path``."""
    artifact, record = find_record(path)
    if not record.is_file():
        missing = Finding(None, None, UNKNOWN, f"{record}: no lineage record for the model")
        return RiskReport(artifact, record, [missing])
    try:
        rec = load_record(record)
    except RecordError as err:
        return RiskReport(artifact, record, [Finding(None, None, UNKNOWN, str(err))])
    model = _self_chain(rec)
    distilled = _was_distilled(rec)
    findings: list[Finding] = []
    for data in rec.deps("training_data"):
        label = str(data.path or data.name)
        for teacher, via, why, labeller in _dataset_teachers(data, (), set()):
            if teacher is None:
                findings.append(Finding(label, None, UNKNOWN, f"missing link: {why}", via=via,
                                        model_chain=tuple(model.nodes)))
            else:
                findings.append(_finding(label, teacher, via, model, stored_logits=labeller and distilled))
    findings += [_finding(None, teacher, (), model) for teacher in rec.deps("teacher")]
    if not findings and rec.kind == "model.student":
        findings.append(Finding(None, None, UNKNOWN, f"{record}: names no training_data and no teacher"))
    return RiskReport(artifact, record, findings)
