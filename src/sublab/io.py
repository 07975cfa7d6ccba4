"""File helpers shared by every stage: atomic writes, JSONL with line-numbered errors, digests.

Writes go to a temporary file in the same directory and are renamed into place, so a killed process never
leaves a half-written artifact behind. Append-only JSONL (used by resumable stages) is the one exception: a
torn last line is detected and dropped on the next read.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    """Read a JSON file; a missing, binary, non-UTF-8, too deeply nested or malformed file raises
    :class:`SublabError` naming it (and the line)."""
    path = Path(path)
    _require_file(path)
    text = _read_text_file(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SublabError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise SublabError(f"{path}: JSON nested too deeply (more than {MAX_NESTING} levels)") from None
    if _nesting_depth(value) > MAX_NESTING:
        raise SublabError(f"{path}: JSON nested too deeply (more than {MAX_NESTING} levels)")
    return value


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON Lines, atomically."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


#: Deepest nesting of arrays and objects a row (or a JSON/TOML file) may have; deeper input is refused with one
#: line instead of a RecursionError somewhere later (reading, validating or writing it back).
MAX_NESTING = 100


def _nesting_depth(obj: Any, limit: int = MAX_NESTING) -> int:
    """Depth of nested lists/dicts in ``obj`` (0 for a scalar, 1 for ``[]``), counted level by level without
    recursion; counting stops once past ``limit``."""
    depth = 0
    level = [obj] if isinstance(obj, dict | list) else []
    while level and depth <= limit:
        depth += 1
        below: list[Any] = []
        for item in level:
            values = item.values() if isinstance(item, dict) else item
            below.extend(v for v in values if isinstance(v, dict | list))
        level = below
    return depth


def _decode_line(raw: bytes, where: str) -> str:
    """A JSONL line as text; a NUL byte (a binary file) or bytes that are not UTF-8 raise naming ``where``."""
    nul = raw.find(b"\x00")
    if nul >= 0:
        raise SublabError(f"{where}: binary data (a NUL byte at column {nul + 1}), not JSON Lines text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SublabError(f"{where}: not UTF-8 text (byte 0x{raw[err.start]:02x} at column {err.start + 1})") from None


def _parse_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` with every failure as one :class:`SublabError` line naming ``where``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SublabError(f"{where}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise SublabError(f"{where}: JSON nested too deeply (more than {MAX_NESTING} levels)") from None
    if _nesting_depth(value) > MAX_NESTING:
        raise SublabError(f"{where}: JSON nested too deeply (more than {MAX_NESTING} levels)")
    return value


def _require_file(path: Path, what: str = "file") -> None:
    if not path.exists():
        raise SublabError(f"{path}: {what} not found")
    if path.is_dir():
        raise SublabError(f"{path}: is a folder, not a {what}")
    if not path.is_file():
        raise SublabError(f"{path}: not a regular file (a device, FIFO or socket); not read")


def _read_text_file(path: Path) -> str:
    """A whole file as UTF-8 text; bytes that are not UTF-8 raise naming the file and line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
        raise SublabError(f"{path}:{line}: not UTF-8 text (byte 0x{data[err.start]:02x} at column {column})") from None


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Yield the rows of a JSONL file; a bad line raises :class:`SublabError` with ``file:line``.

    Bad lines: invalid JSON, bytes that are not UTF-8, a NUL byte (a binary file), nesting deeper than
    :data:`MAX_NESTING`, or a value that is not a JSON object. Lines end at ``\\n`` only.
    """
    path = Path(path)
    _require_file(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            line = _decode_line(raw, where)
            if not line.strip():
                continue
            row = _parse_json(line, where)
            if not isinstance(row, dict):
                raise SublabError(f"{where}: expected a JSON object per line")
            yield row


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read all rows of a JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))


# --- chat rows: one schema, one error format ------------------------------------------------------------------


class ChatMessage(BaseModel):
    """One turn of a conversation: who speaks (``system``, ``user`` or ``assistant``) and what they say."""

    model_config = ConfigDict(extra="allow", strict=True)

    role: Literal["system", "user", "assistant"]
    content: str


class ChatRow(BaseModel):
    """The row every stage reads and writes: ``{"id", "messages": [...], "metadata": {...}}``.

    Other top-level fields are allowed and kept. Validation only checks: readers return the row as it was read.
    """

    model_config = ConfigDict(extra="allow", strict=True)

    id: str | int | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


_MESSAGES = {
    "model_type": "should be a JSON object",
    "dict_type": "should be a JSON object",
    "list_type": "should be a list",
    "string_type": "should be a string",
    "missing": "is missing",
    "too_short": "should not be empty",
}


def _shown(value: Any, n_chars: int = 40) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= n_chars else text[: n_chars - 1] + "…"


def chat_row_problem(row: dict[str, Any], require_assistant: bool = False, allow_empty: bool = False) -> str | None:
    """What is wrong with a chat row, as ``field 'messages.0.role': ...``, or None if it is a valid row.

    A valid row matches :class:`ChatRow` and has a user message before its final assistant reply (an
    assistant-only conversation has no prompt); ``require_assistant`` also demands that the last message be
    the assistant's (training rows). ``allow_empty`` lets a row without messages (missing or ``[]``) pass, its
    other fields checked: the filter rejects such rows as ``not_a_chat_row`` rather than stopping.
    """
    if allow_empty and row.get("messages") in (None, []):
        row = {**row, "messages": [{"role": "user", "content": ""}]}
    try:
        ChatRow.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(part) for part in first["loc"]]
        if loc and loc[0] == "id":
            return f"field 'id': should be a string or an integer (got {_shown(row.get('id'))})"
        field = ".".join(loc) or "(row)"
        message = _MESSAGES.get(first["type"], first["msg"])
        shown = "" if first["type"] == "missing" else f" (got {_shown(first.get('input'))})"
        return f"field '{field}': {message}{shown}"
    messages = row["messages"]
    last = messages[-1]["role"]
    if require_assistant and last != "assistant":
        return (f"field 'messages.{len(messages) - 1}.role': the last message must be the assistant's reply "
                f"(got '{last}')")
    prompt = messages[:-1] if last == "assistant" else messages
    if not any(m["role"] == "user" for m in prompt):
        return "field 'messages': no user message before the reply (a conversation needs a prompt)"
    return None


def check_chat_row(row: dict[str, Any], where: str, require_assistant: bool = False,
                   allow_empty: bool = False) -> dict[str, Any]:
    """``row`` itself if it is a valid chat row; otherwise :class:`SublabError` ``WHERE: field '...': ...``
    (see :func:`chat_row_problem`)."""
    if (problem := chat_row_problem(row, require_assistant, allow_empty)) is not None:
        raise SublabError(f"{where}: {problem}")
    return row


def iter_chat_rows(path: str | Path, require_assistant: bool = False,
                   allow_empty: bool = False) -> Iterator[dict[str, Any]]:
    """Yield the chat rows of a JSONL file, each checked by :func:`chat_row_problem`; the first bad line raises
    :class:`SublabError` ``FILE:LINE: ...`` (see :func:`iter_jsonl` for the lines that are not rows at all)."""
    path = Path(path)
    _require_file(path)
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            line = _decode_line(raw, where)
            if not line.strip():
                continue
            row = _parse_json(line, where)
            if not isinstance(row, dict):
                raise SublabError(f"{where}: expected a JSON object per line")
            yield check_chat_row(row, where, require_assistant, allow_empty)


def read_chat_rows(path: str | Path, require_assistant: bool = False, allow_empty: bool = False
                   ) -> list[dict[str, Any]]:
    """All chat rows of a JSONL file (see :func:`iter_chat_rows`): what ``generate`` (prompts), ``train``
    (``require_assistant=True``) and ``filter`` (``allow_empty=True``) read, so they report a malformed row the
    same way."""
    return list(iter_chat_rows(path, require_assistant, allow_empty))


def recover_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read an append-only JSONL file written by a resumable stage, repairing a torn tail.

    A process killed mid-write can leave a last line cut short: bytes after the last newline. That line is
    truncated away (the stage rewrites it on resume); a malformed line anywhere else, a complete last line
    included (a torn write never ends with its newline), is a real error and raises :class:`SublabError`.
    """
    path = Path(path)
    if not path.exists():
        return []
    _require_file(path)
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    offset = 0
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, start=1):
        is_last = lineno == len(lines)  # no newline after it: possibly torn
        if line.strip():
            try:
                row = _parse_json(_decode_line(line, f"{path}:{lineno}"), f"{path}:{lineno}")
            except SublabError:
                if not is_last:
                    raise
                with path.open("r+b") as handle:
                    handle.truncate(offset)
                break
            if not isinstance(row, dict):
                raise SublabError(f"{path}:{lineno}: expected a JSON object per line")
            rows.append(row)
            if lineno == len(lines):  # complete JSON but no newline yet: finish the line
                with path.open("ab") as handle:
                    handle.write(b"\n")
        offset += len(line) + 1
    return rows


class JsonlAppender:
    """Append rows to a JSONL file, flushing and syncing after each batch so a kill loses at most a batch.

    The file is opened at the first write, so a stage that fails before producing anything (a bad model, a bad
    setting found in the first batch) leaves no empty output behind; a stage that finishes with nothing to write
    still leaves the (possibly empty) file, as its downstream stages expect.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._handle: Any = None

    def _open(self) -> Any:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
        return self._handle

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        handle = self._open()
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self._open()  # a finished stage leaves its file even when it wrote no row
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
    if not path.exists():
        raise SublabError(f"{where + ': ' if where else ''}{path}: file not found")
    _require_file(path)
    text = _read_text_file(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SublabError(f"{path}: invalid TOML ({err})") from None
    except RecursionError:
        raise SublabError(f"{path}: TOML nested too deeply (more than {MAX_NESTING} levels)") from None
    if _nesting_depth(data) > MAX_NESTING:
        raise SublabError(f"{path}: TOML nested too deeply (more than {MAX_NESTING} levels)")
    return data


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


# --- outputs: one place checks, locks and releases them ------------------------------------------------------

LOCK_PREFIX = "."
LOCK_SUFFIX = ".lock"


def lock_path(output: str | Path) -> Path:
    """The lock file of an output: ``.NAME.lock`` beside it (the output's path resolved first)."""
    resolved = _absolute(Path(output))
    return resolved.with_name(f"{LOCK_PREFIX}{resolved.name}{LOCK_SUFFIX}")


def _absolute(path: Path) -> Path:
    """``path`` made absolute with symlinks resolved (as far as it exists), so two spellings of one file agree."""
    return Path(os.path.realpath(os.path.abspath(path.expanduser())))


def _same_file(a: Path, b: Path) -> bool:
    if _absolute(a) == _absolute(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(path: Path, folder: Path) -> bool:
    return _absolute(path).is_relative_to(_absolute(folder))


def _check_place(path: Path, folder: bool) -> None:
    """Refuse an output that cannot be written where it is asked for, before anything is written."""
    if _absolute(path) == Path("/"):
        raise SublabError(f"{path}: is the root folder; name an output inside it")
    if path.exists() or path.is_symlink():
        if folder and not path.is_dir():
            raise SublabError(f"{path}: is a file, not a folder")
        if not folder:
            if path.is_dir():
                raise SublabError(f"{path}: is a folder, not a file")
            if not path.is_file():
                raise SublabError(f"{path}: not a regular file (a device, FIFO or socket); refusing to write it")
        if not os.access(path, os.W_OK):
            raise SublabError(f"{path}: is read-only")
    ancestor = _absolute(path).parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SublabError(f"{path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise SublabError(f"{path}: cannot write in {ancestor} (permission denied)")


def check_outputs(outputs: Iterable[str | Path | None] = (), inputs: Iterable[str | Path | None] = (), *,
                  folders: Iterable[str | Path | None] = ()) -> None:
    """Refuse, with one :class:`SublabError` line, outputs that would overwrite an input or each other, or that
    cannot be written; nothing is written.

    ``outputs`` are files, ``folders`` are output folders replaced as a whole (a trained model): an output may not
    be the same file as an input (after resolving links) or as another output, a file output may not lie inside
    an input folder, and an output folder may not hold an input or the working directory. Each output must be
    writable where it is: not a folder (a file output) or a file (a folder output), not under a file, not in a
    folder the user cannot write. ``None`` entries are skipped (options not given).
    """
    files = [Path(p) for p in outputs if p is not None]
    dirs = [Path(p) for p in folders if p is not None]
    sources = [Path(p) for p in inputs if p is not None]
    everything = [*files, *dirs]
    for i, out in enumerate(everything):
        for source in sources:
            if _same_file(out, source):
                raise SublabError(f"{out}: is also an input ({source}); write the output elsewhere")
            if out in files and source.is_dir() and _inside(out, source):
                raise SublabError(f"{out}: lies inside the input folder {source}; write the output elsewhere")
            if out in dirs and _inside(source, out):
                raise SublabError(f"{out}: holds the input {source}, and an output folder is replaced as a "
                                  "whole; write the output elsewhere")
        for other in everything[i + 1 :]:
            if _same_file(out, other):
                raise SublabError(f"{other}: given for two outputs; each output needs its own path")
        if out in dirs and _inside(Path.cwd(), out):
            raise SublabError(f"{out}: is the working folder (or holds it); name an output folder inside it")
    for out in files:
        _check_place(out, folder=False)
    for out in dirs:
        _check_place(out, folder=True)


def _holder(handle: Any) -> str:
    """Who holds a lock, from the facts its holder wrote into the lock file."""
    try:
        handle.seek(0)
        facts = json.loads(handle.read() or "{}")
    except (OSError, ValueError, RecursionError):
        facts = {}
    if not isinstance(facts, dict) or "pid" not in facts:
        return "another process"
    since = facts.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else ""
    return f"pid {facts['pid']} on {facts.get('host', '?')} ('{facts.get('command', '?')}'{when})"


def _command_line(max_chars: int = 200) -> str:
    """The command that holds a lock, as the user typed it (``sublab generate prompts.jsonl -o raw.jsonl``)."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    if name == "__main__.py":  # python -m sublab
        name = "sublab"
    line = " ".join([name, *sys.argv[1:]])
    return line if len(line) <= max_chars else line[: max_chars - 1] + "…"


@contextlib.contextmanager
def locked_output(output: str | Path, command: str | None = None) -> Iterator[Path]:
    """Hold an exclusive lock on ``output`` for as long as the block runs; yields the lock file.

    The lock is an ``flock`` on ``.NAME.lock`` beside the output, holding the pid, host, command and start time
    of its holder. Another process that asks for it gets :class:`SublabError` naming the holder (nothing is
    waited for). A lock file left by a killed process is no lock at all (the kernel drops a dead process's
    ``flock``), so it is simply taken over. The lock file is removed on release.
    """
    path = lock_path(output)
    created = []
    folder = path.parent
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SublabError(f"{output}: cannot create the folder {path.parent} ({err.strerror})") from None
    try:
        while True:
            try:
                handle = path.open("a+", encoding="utf-8")
            except OSError as err:
                raise SublabError(f"{output}: cannot write in {path.parent} ({err.strerror})") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(handle)
                handle.close()
                raise SublabError(f"{output}: in use by {holder}; wait for it to finish or write elsewhere "
                                  f"(lock file {path})") from None
            # The file may have been removed (released) between our open and our lock: then lock it anew.
            try:
                same = os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "command": command or _command_line(), "since": round(time.time())}) + "\n")
            handle.flush()
            yield path
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
    finally:
        for folder in created:  # innermost first; only folders still empty (nothing was written)
            try:
                folder.rmdir()
            except OSError:
                break


@contextlib.contextmanager
def output_guard(outputs: Iterable[str | Path | None] = (), inputs: Iterable[str | Path | None] = (), *,
                 folders: Iterable[str | Path | None] = (), lock: Iterable[str | Path | None] | None = None,
                 with_records: bool = False, command: str | None = None) -> Iterator[None]:
    """Check outputs (:func:`check_outputs`), then hold the lock of each (:func:`locked_output`) while the block
    runs: the one way commands open what they write.

    ``lock`` names what to lock (default: every output file and folder); a run folder is locked as one.
    ``with_records``: each output also writes its lineage record beside it (``OUT.intoto.jsonl``), checked too.
    """
    outputs, inputs, folders = [p for p in outputs if p is not None], list(inputs), [p for p in folders if p]
    targets = [Path(p) for p in (lock if lock is not None else [*outputs, *folders]) if p is not None]
    if with_records:
        from sublab.lineage.digests import record_path

        outputs += [record_path(p) for p in [*outputs, *folders]]
    check_outputs(outputs, inputs, folders=folders)
    with contextlib.ExitStack() as stack:
        for target in sorted(set(targets), key=lambda p: str(_absolute(p))):
            stack.enter_context(locked_output(target, command))
        yield


_CLAIMS: contextvars.ContextVar[contextlib.ExitStack | None] = contextvars.ContextVar("sublab_claims", default=None)


@contextlib.contextmanager
def output_scope() -> Iterator[None]:
    """The lifetime of what :func:`claim_outputs` takes: a command runs inside one (see
    :func:`sublab.cli.common.user_errors`), and every lock it claimed is released when it ends."""
    with contextlib.ExitStack() as stack:
        token = _CLAIMS.set(stack)
        try:
            yield
        finally:
            _CLAIMS.reset(token)


def claim_outputs(outputs: Iterable[str | Path | None] = (), inputs: Iterable[str | Path | None] = (), *,
                  folders: Iterable[str | Path | None] = (), lock: Iterable[str | Path | None] | None = None,
                  with_records: bool = False, command: str | None = None) -> None:
    """:func:`output_guard` for the rest of the current :func:`output_scope` (one line at the top of a command,
    before it reads or writes anything big). Outside a scope the locks are held until the process ends."""
    guard = output_guard(outputs, inputs, folders=folders, lock=lock, with_records=with_records, command=command)
    stack = _CLAIMS.get()
    if stack is None:
        _PROCESS_CLAIMS.enter_context(guard)
    else:
        stack.enter_context(guard)


_PROCESS_CLAIMS = contextlib.ExitStack()
atexit.register(_PROCESS_CLAIMS.close)


def local_paths(*names: str | Path | None) -> list[Path]:
    """The names that are paths on disk (a model given as a folder, an adapter), for :func:`check_outputs`'s
    inputs; aliases and hub ids are left out."""
    return [Path(name) for name in names if name is not None and Path(name).expanduser().exists()]
