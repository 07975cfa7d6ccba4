"""Verify a lineage graph: recompute every digest a record names, check signatures, follow upstream records.

Each broken link becomes one :class:`Problem` naming the file at fault (the artifact, an input, or a record).

Records come from wherever the artifact came from, so what they name is read with care:

- only regular files are hashed: a device, FIFO or socket a record names is a problem and is never opened for
  reading (``/dev/zero`` used to hang verification forever); every file read is finite, so each takes bounded
  time;
- dependency paths resolve only inside the lineage's folders: the folder of the record verification starts
  from (the run's ``stages/`` folder when that record sits in a stage folder), the model caches (sublab's and
  Hugging Face's), model folders named in a model role (``config.json`` or ``adapter_config.json`` inside; their
  files must not link out), and the folders given in ``allow_outside`` (``--allow-outside``). Anything else
  (``../../../etc/passwd``) is not read and is listed in :attr:`VerifyReport.outside_inputs`;
- with keys, a record whose signature does not verify was changed after it was signed (or signed by another
  key): no file it names is read, neither its inputs nor its subject; only the records upstream of it (inside the
  lineage's folders) are visited, each reporting its own signature. An unsigned record is reported and still
  followed, so every unsigned record upstream is listed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sublab.lineage.digests import directory_files, record_path, short
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
    #: Inputs and upstream records named outside the lineage's folders: not read (widen with ``allow_outside``).
    outside_inputs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


#: Roles whose dependency is a model: its folder may live anywhere (a local model directory, a cache).
MODEL_ROLES = frozenset({"base_model", "teacher", "evaluated_model"})


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / "config.json").is_file() or (path / "adapter_config.json").is_file())


def default_roots(record: Path) -> list[Path]:
    """The folders a lineage starting at ``record`` may read without ``allow_outside``: the record's folder (the
    run's ``stages/`` folder when the record sits in one of its stage folders) and the model caches."""
    from huggingface_hub import constants

    from sublab.models.loading import cache_root

    folder = _real(record.parent)
    start = folder.parent if folder.parent.name == "stages" else folder
    return [_real(p) for p in (start, cache_root(), Path(constants.HF_HUB_CACHE))]


class _NotRegular(Exception):
    pass


def _sha256_regular(path: Path, chunk_bytes: int = 1 << 20) -> str:
    """sha256 of a regular file; anything else raises :class:`_NotRegular` before a byte is read.

    The file is opened non-blocking and checked on the open descriptor: a FIFO cannot block the open, and a
    path swapped for a device between a check and the open is still caught.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _NotRegular
        digest = hashlib.sha256()
        while chunk := os.read(fd, chunk_bytes):
            digest.update(chunk)
        return digest.hexdigest()
    finally:
        os.close(fd)


@dataclass
class _State:
    keys: Sequence[Ed25519PublicKey]
    roots: list[Path] = field(default_factory=list)
    report: VerifyReport = field(default_factory=VerifyReport)
    hashed: dict[Path, str | None] = field(default_factory=dict)
    visited: set[Path] = field(default_factory=set)

    def problem(self, path: Path, message: str) -> None:
        self.report.problems.append(Problem(path, message))

    def inside(self, path: Path) -> bool:
        """Whether ``path`` (links resolved) lies inside one of the lineage's folders."""
        real = _real(path)
        return any(real.is_relative_to(root) for root in self.roots)

    def sha256(self, path: Path) -> str | None:
        """The file's sha256, or None once the reason it was not read is reported."""
        key = path.resolve()
        if key not in self.hashed:
            try:
                self.hashed[key] = _sha256_regular(path)
                self.report.files_checked += 1
            except _NotRegular:
                self.hashed[key] = None
                self.problem(path, "not a regular file (a device, FIFO or socket); not read")
            except OSError as err:
                self.hashed[key] = None
                self.problem(path, f"cannot be read ({err.strerror})")
        return self.hashed[key]


def _differs(recorded: str | None, found: str, record: Path, what: str = "") -> str:
    return f"sha256 differs from {what}{record} (recorded {short(recorded)}, found {short(found)})"


def _links_out(root: Path, rel: str, st: _State) -> bool:
    """Whether a directory's entry resolves outside the directory and the lineage's folders (a link out)."""
    real = _real(root / rel)
    return not real.is_relative_to(_real(root)) and not st.inside(real)


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
        elif _links_out(root, rel, st):
            st.problem(path, f"links outside {root}; not read")
        elif (found := st.sha256(path)) is not None and found != recorded[rel]:
            st.problem(path, _differs(recorded[rel], found, record, what))
        elif found is not None:
            continue
        clean = False
    return clean


def _current_manifest(root: Path, st: _State) -> str | None:
    """The manifest digest of a directory as it is now, or None once a file that cannot be read is reported."""
    files = {}
    for rel in directory_files(root):
        if _links_out(root, rel, st):
            st.problem(root / rel, f"links outside {root}; not read")
            return None
        if (found := st.sha256(root / rel)) is None:
            return None
        files[rel] = found
    return manifest_digest(files)


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
        if recorded is not None and found is not None and found != recorded:
            # When every listed file matches, the record's own manifest digest is what was altered.
            culprit, what = (rec.path, "the manifest digest in ") if files else (artifact, "")
            st.problem(culprit, _differs(recorded, found, rec.path, what))
    elif recorded is None:
        st.problem(rec.path, f"names no subject {artifact.name!r}")
    elif (found := st.sha256(artifact)) is not None and found != recorded:
        st.problem(artifact, _differs(recorded, found, rec.path))


def _may_read(dep: DepRef, st: _State) -> bool:
    """Whether a dependency's path may be read: inside the lineage's folders, or a model folder in a model role."""
    assert dep.path is not None
    return st.inside(dep.path) or (dep.role in MODEL_ROLES and _is_model_dir(dep.path))


def _check_dependency(dep: DepRef, rec: Record, st: _State) -> None:
    what = f"{dep.role} '{dep.name}' in "
    if dep.path is None:
        st.report.declared_inputs.append(f"{dep.role} '{dep.name}' in {rec.path}")
    elif not dep.path.exists():
        st.problem(dep.path, f"missing (named as {what}{rec.path})")
    elif not _may_read(dep, st):
        st.report.outside_inputs.append(f"{dep.role} '{dep.name}' in {rec.path}: {dep.path}")
        return  # nor is a record beside it followed
    elif dep.path.is_dir():
        clean = dep.files is None or _compare_dir(dep.path, dep.files, rec.path, st, what)
        if clean and dep.sha256 and (found := _current_manifest(dep.path, st)) is not None and found != dep.sha256:
            st.problem(dep.path, _differs(dep.sha256, found, rec.path, what))
    elif dep.sha256 and (found := st.sha256(dep.path)) is not None and found != dep.sha256:
        st.problem(dep.path, _differs(dep.sha256, found, rec.path, what))
    if dep.record is None:
        return
    beside_a_model = dep.path is not None and dep.record == record_path(dep.path) and _may_read(dep, st)
    if not (st.inside(dep.record) or beside_a_model):
        st.report.outside_inputs.append(f"record of {dep.role} '{dep.name}' in {rec.path}: {dep.record}")
        return
    if dep.record_named and not dep.record.is_file():
        st.problem(dep.record, f"record missing (named by {rec.path})")
        return
    if dep.record_sha256:
        try:
            found = _sha256_regular(dep.record)
        except (_NotRegular, OSError):
            found = None  # reported when the record itself is read
        if found is not None and found != dep.record_sha256:
            st.problem(dep.record, f"record changed after {rec.path} was written "
                                   f"(recorded {short(dep.record_sha256)}, found {short(found)})")
    _verify_record(dep.record, st)


def _check_byproducts(rec: Record, st: _State) -> None:
    for item in rec.byproducts:
        sha = (item.get("digest") or {}).get("sha256")
        if not sha:
            continue
        if isinstance(item.get("content"), str):
            try:
                data = base64.b64decode(item["content"], validate=True)
            except ValueError:
                st.problem(rec.path, f"byproduct {item.get('name')!r} content is not base64")
                continue
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
            # Changed after signing (or signed by someone else): no file it names is read. Its upstream records
            # (inside the lineage's folders) are still visited, so each reports its own signature.
            for dep in rec.dependencies:
                if dep.record is not None and st.inside(dep.record):
                    _verify_record(dep.record, st)
            return
        else:
            st.report.signatures_verified += 1
    elif rec.envelope.signatures:
        st.report.signatures_unchecked += 1
    _check_subjects(rec, st)
    _check_byproducts(rec, st)
    for dep in rec.dependencies:
        _check_dependency(dep, rec, st)


def verify_lineage(path: str | Path, keys: Sequence[Ed25519PublicKey] = (),
                   allow_outside: Sequence[str | Path] = ()) -> VerifyReport:
    """Verify the record of the artifact (or record) at ``path`` and every record upstream of it.

    With ``keys``, every record must carry a signature that verifies under one of them; a record whose signature
    fails is not followed. Dependency paths are read only inside the lineage's folders (see the module
    docstring), widened by ``allow_outside``. A path that is neither an artifact nor a record raises
    :class:`~sublab.errors.SublabError`; anything else is a reported problem.
    """
    from sublab.errors import SublabError

    artifact, record = find_record(path)
    extra = []
    for folder in allow_outside:
        if not Path(folder).exists():
            raise SublabError(f"{folder}: --allow-outside names no such file or folder")
        extra.append(_real(Path(folder)))
    st = _State(keys=keys, roots=[*default_roots(record), *extra])
    if not record.is_file():
        st.problem(record, f"no lineage record for {artifact}")
        return st.report
    _verify_record(record, st)
    return st.report
