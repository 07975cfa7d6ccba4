"""Read lineage records back: the envelope, the statement, and each dependency resolved against the disk."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.lineage.digests import is_sha256, record_path, split_record_path
from sublab.lineage.dsse import Envelope, EnvelopeError, open_envelope
from sublab.lineage.statement import PREDICATE_TYPE, RESERVED_ANNOTATIONS, STATEMENT_TYPE, kind_of


class RecordError(SublabError):
    """A lineage record that cannot be read; ``path`` is the record file."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.reason = message


@dataclass(frozen=True)
class DepRef:
    """A dependency as a record names it, its path and upstream record resolved against the record's folder.

    ``record`` is the upstream record the dependency names (``record_named``) or, failing that, one found
    beside its path on disk. ``annotations`` are the caller's facts (role, path and digests removed).
    """

    name: str
    role: str
    sha256: str | None
    path: Path | None
    files: dict[str, str] | None
    record: Path | None
    record_named: bool
    record_sha256: str | None
    annotations: dict[str, Any]
    descriptor: dict[str, Any]

    @property
    def is_adapter(self) -> bool:
        """Whether the dependency is a PEFT adapter directory (so it needs a base to be a model)."""
        if self.files is not None:
            return "adapter_config.json" in self.files
        return self.path is not None and (self.path / "adapter_config.json").is_file()

    @property
    def family(self) -> str | None:
        value = self.annotations.get("family")
        return str(value) if value else None


@dataclass(frozen=True)
class Record:
    """A parsed lineage record."""

    path: Path
    artifact: Path
    envelope: Envelope
    kind: str
    subjects: list[dict[str, Any]]
    parameters: dict[str, Any]
    dependencies: list[DepRef]
    byproducts: list[dict[str, Any]]
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def statement(self) -> dict[str, Any]:
        return self.envelope.statement

    def deps(self, *roles: str) -> list[DepRef]:
        """The dependencies with one of ``roles``."""
        return [d for d in self.dependencies if d.role in roles]

    @property
    def family(self) -> str | None:
        value = self.parameters.get("family")
        return str(value) if value else None


def _join(base: Path, rel: str) -> Path:
    return Path(os.path.normpath(base / rel))


def _local_copy(name: str) -> Path | None:
    """This machine's copy of an embedded or hub model, for records made elsewhere or before a move.

    Its digests are still checked against the record, so a different conversion or revision shows up as a
    mismatch.
    """
    from sublab.lineage.deps import local_model_dir

    return local_model_dir(name)


def dependency_ref(descriptor: dict[str, Any], record_dir: Path) -> DepRef:
    """Resolve one ResourceDescriptor of ``resolvedDependencies``."""
    annotations = descriptor.get("annotations") or {}
    if not isinstance(annotations, dict):
        annotations = {}
    digest = descriptor.get("digest") or {}
    sha = digest.get("sha256") if isinstance(digest, dict) else None
    path = _join(record_dir, annotations["path"]) if isinstance(annotations.get("path"), str) else None
    name = str(descriptor.get("name") or descriptor.get("uri") or "?")
    if path is not None and not path.exists():
        path = _local_copy(name) or path
    files = annotations.get("files") if isinstance(annotations.get("files"), dict) else None
    named = isinstance(annotations.get("record"), str)
    upstream = _join(record_dir, annotations["record"]) if named else None
    if upstream is None and path is not None and record_path(path).is_file():
        upstream = record_path(path)
    return DepRef(
        name=name,
        role=str(annotations.get("role", "unknown")),
        sha256=sha if is_sha256(sha) else None,
        path=path,
        files=files,
        record=upstream,
        record_named=named,
        record_sha256=annotations.get("record_sha256") if named else None,
        annotations={k: v for k, v in annotations.items() if k not in RESERVED_ANNOTATIONS},
        descriptor=descriptor,
    )


def _dig(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def parse_record(path: Path, envelope: Envelope) -> Record:
    """Interpret the statement of an opened envelope as a lineage record."""
    statement = envelope.statement
    if statement.get("_type") != STATEMENT_TYPE:
        raise RecordError(path, f"_type is {statement.get('_type')!r}, expected {STATEMENT_TYPE}")
    if statement.get("predicateType") != PREDICATE_TYPE:
        found = statement.get("predicateType")
        raise RecordError(path, f"predicateType is {found!r}, expected {PREDICATE_TYPE}")
    subjects = statement.get("subject")
    build_type = _dig(statement, "predicate", "buildDefinition", "buildType")
    if not isinstance(subjects, list) or not subjects or not isinstance(build_type, str):
        raise RecordError(path, "statement lacks subject or predicate.buildDefinition.buildType")
    deps = _dig(statement, "predicate", "buildDefinition", "resolvedDependencies") or []
    params = _dig(statement, "predicate", "buildDefinition", "externalParameters") or {}
    byproducts = _dig(statement, "predicate", "runDetails", "byproducts") or []
    metadata = _dig(statement, "predicate", "runDetails", "metadata") or {}
    if not isinstance(deps, list) or not all(isinstance(d, dict) for d in deps):
        raise RecordError(path, "resolvedDependencies is not a list of objects")
    artifact, _ = split_record_path(path)
    return Record(
        path=path,
        artifact=artifact,
        envelope=envelope,
        kind=kind_of(build_type),
        subjects=[s for s in subjects if isinstance(s, dict)],
        parameters=params if isinstance(params, dict) else {},
        dependencies=[dependency_ref(d, path.parent) for d in deps],
        byproducts=[b for b in byproducts if isinstance(b, dict)] if isinstance(byproducts, list) else [],
        metadata=metadata if isinstance(metadata, dict) else {},
    )


def read_envelope(path: Path) -> Envelope:
    """The first SLSA provenance envelope of a ``.intoto.jsonl`` file (other lines, if any, are ignored)."""
    if not path.is_file():
        raise RecordError(path, "record not found")
    try:
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    except OSError as err:
        raise RecordError(path, f"cannot read ({err.strerror})") from None
    if not lines:
        raise RecordError(path, "empty record")
    first_error = None
    for line in lines:
        try:
            envelope = open_envelope(line)
        except EnvelopeError as err:
            first_error = first_error or str(err)
            continue
        if envelope.statement.get("predicateType") == PREDICATE_TYPE:
            return envelope
    raise RecordError(path, first_error or "no SLSA provenance statement in the record")


def load_record(path: str | Path) -> Record:
    """Read and parse a record file (raises :class:`RecordError` naming it)."""
    path = Path(path)
    return parse_record(path, read_envelope(path))


def find_record(path: str | Path) -> tuple[Path, Path]:
    """``(artifact, record)`` for a path naming either; a path naming neither raises :class:`SublabError`."""
    artifact, record = split_record_path(Path(path))
    if not artifact.exists() and not record.exists():
        raise SublabError(f"{path}: no such artifact or record")
    return artifact, record
