"""File helpers shared by every stage: atomic writes, JSONL with line-numbered errors, digests.

Writes go to a temporary file in the same directory and are renamed into place, so a killed process never
leaves a half-written artifact behind. Append-only JSONL (used by resumable stages) is the one exception: a
torn last line is detected and dropped on the next read.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sublab.errors import SublabError


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    ``mode`` (e.g. ``0o600`` for a private key) is set on the temporary file before the rename, so the file
    never exists at ``path`` with looser permissions; by default the usual umask-based mode is used.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is None:
            # mkstemp creates files readable by their owner only; give artifacts the usual umask-based mode.
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, mode: int | None = None) -> Path:
    """Write ``text`` (UTF-8) atomically (``mode``: see :func:`atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a missing or malformed file raises :class:`SublabError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise SublabError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines, atomically."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a JSONL file; a bad line raises :class:`SublabError` with ``file:line``."""
    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{path}: file not found")
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise SublabError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
            if not isinstance(row, dict):
                raise SublabError(f"{path}:{lineno}: expected a JSON object per line")
            yield row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read all rows of a JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))


def recover_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read an append-only JSONL file written by a resumable stage, repairing a torn tail.

    A process killed mid-write can leave a last line cut short. That line is truncated away (the stage
    rewrites it on resume); a malformed line anywhere else is a real error and raises :class:`SublabError`.
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        is_last = lineno == len(lines) or (lineno == len(lines) - 1 and not lines[-1])
        if line.strip():
            try:
                rows.append(json.loads(line))
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                if not is_last:
                    raise SublabError(f"{path}:{lineno}: invalid JSON ({err})") from None
                with path.open("r+b") as handle:
                    handle.truncate(offset)
                break
            if lineno == len(lines):  # complete JSON but no newline yet: finish the line
                with path.open("ab") as handle:
                    handle.write(b"\n")
        offset += len(line) + 1
    return rows


class JsonlAppender:
    """Append rows to a JSONL file, flushing and syncing after each batch so a kill loses at most a batch."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def read_toml(path: str | Path, where: str | None = None) -> dict[str, Any]:
    """A TOML file as a dict; a missing file or bad TOML raises :class:`SublabError` naming the file (and
    ``where`` it was referred from, if given)."""
    import tomllib

    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{where + ': ' if where else ''}{path}: file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SublabError(f"{path}: invalid TOML ({err})") from None


def first_difference(saved: Any, current: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """``(field, saved value, current value)`` of the first field of ``current`` whose value differs in
    ``saved``, or None; fields holding dicts are compared one level down (reported as ``name.sub``), so a
    mismatch names the setting rather than the whole group. A ``saved`` that is not a dict differs as a whole
    (field ``""``)."""
    if not isinstance(saved, dict):
        return ("", saved, current)
    for name, value in current.items():
        theirs = saved.get(name)
        if isinstance(value, dict) and isinstance(theirs, dict):
            for field in [*value, *(k for k in theirs if k not in value)]:
                if value.get(field) != theirs.get(field):
                    return (f"{name}.{field}", theirs.get(field), value.get(field))
        elif theirs != value:
            return (name, theirs, value)
    return None


def sha256_text(text: str) -> str:
    """Hex sha256 of a UTF-8 string."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stable_hash(obj: Any, n_chars: int = 12) -> str:
    """Short digest of a JSON-serializable object with sorted keys: cache keys for stages."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n_chars]
