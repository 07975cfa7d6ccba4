"""Digests of artifacts on disk: a file is its sha256, a directory is a manifest of its files' sha256s.

A directory's identity (its *manifest digest*) is the sha256 of the sorted lines
``"<relative path> <sha256>\\n"`` over its files, the same construction as
:func:`sublab.models.loading.manifest_digest`. Files that are not part of what a model or dataset *is*
are left out: hidden names (``.cache/``, temporary files), lineage records (``*.intoto.jsonl``) and the
top-level ``README.md`` (the model card, which is derived from the record and may be rewritten by hub
tooling without changing a single weight).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from sublab.errors import SublabError
from sublab.io import sha256_file
from sublab.models.loading import manifest_digest

RECORD_SUFFIX = ".intoto.jsonl"
MODEL_CARD = "README.md"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class PathDigest:
    """The digest of a file or directory: ``sha256`` (file hash or manifest) and a directory's files."""

    sha256: str
    is_dir: bool
    files: dict[str, str] = field(default_factory=dict)


def is_sha256(value: object) -> bool:
    """Whether ``value`` is a lowercase hex sha256."""
    return isinstance(value, str) and bool(_HEX64.match(value))


def _skipped(name: str, top_level: bool) -> bool:
    return name.startswith(".") or name.endswith(RECORD_SUFFIX) or (top_level and name == MODEL_CARD)


def directory_files(root: str | Path) -> list[str]:
    """Relative POSIX paths of the files that make up a directory artifact, sorted."""
    root = Path(root)
    found: list[str] = []
    for current, dirs, files in os.walk(root):
        top = Path(current) == root
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not _skipped(name, top):
                found.append((Path(current) / name).relative_to(root).as_posix())
    return sorted(found)


_SEEN: dict[tuple[str, int, int, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered for this process while its inode, size and times stay the same.

    A base model is named by most records of a run; this reads its weights once. (Verification does not use
    it: :mod:`sublab.lineage.verify` always reads the bytes.)
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        raise SublabError(f"{path}: not a regular file (a device, FIFO or socket); not read")
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _SEEN:
        _SEEN[key] = sha256_file(path)
    return _SEEN[key]


def directory_digests(root: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` for every file of a directory artifact."""
    root = Path(root)
    return {rel: file_sha256(root / rel) for rel in directory_files(root)}


def digest_path(path: str | Path) -> PathDigest:
    """Digest a file (its sha256) or a directory (manifest digest plus each file's sha256)."""
    path = Path(path)
    if path.is_file():
        return PathDigest(sha256=file_sha256(path), is_dir=False)
    if path.is_dir():
        files = directory_digests(path)
        return PathDigest(sha256=manifest_digest(files), is_dir=True, files=files)
    if path.exists():
        raise SublabError(f"{path}: not a regular file or folder (a device, FIFO or socket); not read")
    raise SublabError(f"{path}: no such file or directory")


def named_path(path: str | Path) -> Path:
    """``path`` itself, or its absolute form when it has no name of its own (``.``, ``..``)."""
    path = Path(path)
    return Path(os.path.abspath(path)) if path.name in ("", "..") else path


def record_path(artifact: str | Path) -> Path:
    """Where the lineage record of ``artifact`` lives: ``<artifact>.intoto.jsonl`` beside it."""
    artifact = named_path(artifact)
    return artifact.with_name(artifact.name + RECORD_SUFFIX)


def split_record_path(path: str | Path) -> tuple[Path, Path]:
    """``(artifact, record)`` for a path that names either an artifact or its record."""
    path = named_path(path)
    if path.name.endswith(RECORD_SUFFIX) and len(path.name) > len(RECORD_SUFFIX):
        return path.with_name(path.name[: -len(RECORD_SUFFIX)]), path
    return path, record_path(path)


def short(digest: str | None, n: int = 12) -> str:
    """A digest shortened for display (``sha256:0123abcd…``), or ``-`` when there is none."""
    return f"sha256:{digest[:n]}…" if digest else "-"
