"""Verify a lineage graph: recompute every digest a record names, check signatures, follow upstream records.

Each broken link becomes one :class:`Problem` naming the file at fault (the artifact, an input, or a record).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sublab.io import sha256_file
from sublab.lineage.digests import directory_files, short
from sublab.lineage.dsse import canonical_json, verify_envelope
from sublab.lineage.records import DepRef, Record, RecordError, find_record, load_record
from sublab.models.loading import manifest_digest


@dataclass(frozen=True)
class Problem:
    """One broken link: the file at fault and what is wrong with it."""

    path: Path
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class VerifyReport:
    """What :func:`verify_lineage` checked and found."""

    problems: list[Problem] = field(default_factory=list)
    records: list[Path] = field(default_factory=list)
    files_checked: int = 0
    signatures_unchecked: int = 0
    signatures_verified: int = 0
    #: Inputs a record names without files (a hub id not on disk): nothing to recompute, so not checked.
    declared_inputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _State:
    keys: Sequence[Ed25519PublicKey]
    report: VerifyReport = field(default_factory=VerifyReport)
    hashed: dict[Path, str] = field(default_factory=dict)
    visited: set[Path] = field(default_factory=set)

    def problem(self, path: Path, message: str) -> None:
        self.report.problems.append(Problem(path, message))

    def sha256(self, path: Path) -> str:
        key = path.resolve()
        if key not in self.hashed:
            self.hashed[key] = sha256_file(path)
            self.report.files_checked += 1
        return self.hashed[key]


def _differs(recorded: str | None, found: str, record: Path, what: str = "") -> str:
    return f"sha256 differs from {what}{record} (recorded {short(recorded)}, found {short(found)})"


def _compare_dir(root: Path, recorded: dict[str, str], record: Path, st: _State, what: str = "") -> bool:
    """Compare a directory with the per-file digests a record lists; report each difference; True if equal."""
    current = set(directory_files(root))
    clean = True
    for rel in sorted(current | set(recorded)):
        path = root / rel
        if rel not in current:
            st.problem(path, f"missing (listed by {what}{record})")
        elif rel not in recorded:
            st.problem(path, f"not listed by {what}{record} (added after it was written?)")
        elif (found := st.sha256(path)) != recorded[rel]:
            st.problem(path, _differs(recorded[rel], found, record, what))
        else:
            continue
        clean = False
    return clean


def _current_manifest(root: Path, st: _State) -> str:
    return manifest_digest({rel: st.sha256(root / rel) for rel in directory_files(root)})


def _check_subjects(rec: Record, st: _State) -> None:
    artifact = rec.artifact
    digests = {str(s.get("name")): (s.get("digest") or {}).get("sha256") for s in rec.subjects}
    if not artifact.exists():
        st.problem(artifact, f"missing (the subject of {rec.path})")
        return
    recorded = digests.get(artifact.name)
    if artifact.is_dir():
        prefix = artifact.name + "/"
        files = {name[len(prefix):]: sha for name, sha in digests.items() if name.startswith(prefix)}
        if files and not _compare_dir(artifact, files, rec.path, st):
            return
        found = _current_manifest(artifact, st)
        if recorded is not None and found != recorded:
            # When every listed file matches, the record's own manifest digest is what was altered.
            culprit, what = (rec.path, "the manifest digest in ") if files else (artifact, "")
            st.problem(culprit, _differs(recorded, found, rec.path, what))
    elif recorded is None:
        st.problem(rec.path, f"names no subject {artifact.name!r}")
    elif (found := st.sha256(artifact)) != recorded:
        st.problem(artifact, _differs(recorded, found, rec.path))


def _check_dependency(dep: DepRef, rec: Record, st: _State) -> None:
    what = f"{dep.role} '{dep.name}' in "
    if dep.path is None:
        st.report.declared_inputs.append(f"{dep.role} '{dep.name}' in {rec.path}")
    else:
        if not dep.path.exists():
            st.problem(dep.path, f"missing (named as {what}{rec.path})")
        elif dep.path.is_dir():
            clean = dep.files is None or _compare_dir(dep.path, dep.files, rec.path, st, what)
            if clean and dep.sha256 and (found := _current_manifest(dep.path, st)) != dep.sha256:
                st.problem(dep.path, _differs(dep.sha256, found, rec.path, what))
        elif dep.sha256 and (found := st.sha256(dep.path)) != dep.sha256:
            st.problem(dep.path, _differs(dep.sha256, found, rec.path, what))
    if dep.record is None:
        return
    if dep.record_named and not dep.record.is_file():
        st.problem(dep.record, f"record missing (named by {rec.path})")
        return
    if dep.record_sha256 and (found := sha256_file(dep.record)) != dep.record_sha256:
        st.problem(dep.record, f"record changed after {rec.path} was written "
                               f"(recorded {short(dep.record_sha256)}, found {short(found)})")
    _verify_record(dep.record, st)


def _check_byproducts(rec: Record, st: _State) -> None:
    for item in rec.byproducts:
        sha = (item.get("digest") or {}).get("sha256")
        if not sha:
            continue
        if isinstance(item.get("content"), str):
            data = base64.b64decode(item["content"])
        elif item.get("mediaType") == "application/json" and isinstance(item.get("annotations"), dict):
            data = canonical_json(item["annotations"])
        else:
            continue
        if hashlib.sha256(data).hexdigest() != sha:
            st.problem(rec.path, f"byproduct {item.get('name')!r} does not match its digest")


def _verify_record(path: Path, st: _State) -> None:
    key = path.resolve()
    if key in st.visited:
        return
    st.visited.add(key)
    st.report.records.append(path)
    try:
        rec = load_record(path)
    except RecordError as err:
        st.problem(path, err.reason)
        return
    if st.keys:
        if not rec.envelope.signatures:
            st.problem(path, "unsigned (a --key was given, so every record must be signed)")
        elif not verify_envelope(rec.envelope, list(st.keys)):
            st.problem(path, "signature does not verify with the given key")
        else:
            st.report.signatures_verified += 1
    elif rec.envelope.signatures:
        st.report.signatures_unchecked += 1
    _check_subjects(rec, st)
    _check_byproducts(rec, st)
    for dep in rec.dependencies:
        _check_dependency(dep, rec, st)


def verify_lineage(path: str | Path, keys: Sequence[Ed25519PublicKey] = ()) -> VerifyReport:
    """Verify the record of the artifact (or record) at ``path`` and every record upstream of it.

    With ``keys``, every record must carry a signature that verifies under one of them. A path that is neither
    an artifact nor a record raises :class:`~sublab.errors.SublabError`; anything else is a reported problem.
    """
    artifact, record = find_record(path)
    st = _State(keys=keys)
    if not record.is_file():
        st.problem(record, f"no lineage record for {artifact}")
        return st.report
    _verify_record(record, st)
    return st.report
