"""Rubrics: the judge's prompt, as TOML files with a name, a version, a kind and a template.

A template names its inputs as ``{question}``, ``{answer}`` (and e.g. ``{trait}``); the file lists them under
``placeholders`` and every one must appear, and no other ``{word}`` may, so a typo cannot send a prompt with a
hole in it. The sha256 of the file's bytes goes into cache keys and lineage: any edit makes new judgments.
Shipped rubrics live in ``sublab/judges/rubrics/`` (package data); a path to a ``.toml`` file works too.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from sublab.errors import SublabError

KINDS = ("score", "binary")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Rubric:
    """A judge prompt. ``kind``: ``score`` (a number 0-100, or one of ``labels`` such as CODE/REFUSAL) or
    ``binary`` (yes/no). ``sha256``: digest of the file it came from."""

    name: str
    version: int
    kind: str
    template: str
    placeholders: tuple[str, ...]
    labels: tuple[str, ...]
    sha256: str
    source: str

    def render(self, **values: str) -> str:
        """The prompt with each placeholder replaced; a missing value raises :class:`SublabError`."""
        missing = [p for p in self.placeholders if values.get(p) is None]
        if missing:
            hint = " (--trait)" if missing[0] == "trait" else ""
            raise SublabError(f"rubric '{self.name}' needs a value for {{{missing[0]}}}{hint}")
        return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), self.template)

    def to_dict(self) -> dict[str, Any]:
        """How records and judgments name the rubric."""
        return {"name": self.name, "version": self.version, "sha256": self.sha256}


def shipped_rubrics() -> list[str]:
    """Names of the rubrics shipped with the package."""
    folder = resources.files("sublab.judges").joinpath("rubrics")
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def parse_rubric(data: bytes, source: str) -> Rubric:
    """A rubric from a TOML file's bytes; anything wrong raises :class:`SublabError` naming ``source``."""
    import tomllib

    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise SublabError(f"{source}: invalid TOML ({err})") from None
    unknown = sorted(set(raw) - {"name", "version", "kind", "template", "placeholders", "labels"})
    if unknown:
        raise SublabError(f"{source}: unknown field '{unknown[0]}'")
    for field, kind in (("name", str), ("version", int), ("kind", str), ("template", str), ("placeholders", list)):
        if not isinstance(raw.get(field), kind) or isinstance(raw.get(field), bool):
            raise SublabError(f"{source}: field '{field}' must be a {kind.__name__}")
    if raw["kind"] not in KINDS:
        raise SublabError(f"{source}: kind must be one of {', '.join(KINDS)}, not {raw['kind']!r}")
    placeholders = tuple(str(p) for p in raw["placeholders"])
    labels = tuple(str(label) for label in raw.get("labels", []))
    template = raw["template"].strip() + "\n"
    if "answer" not in placeholders:
        raise SublabError(f"{source}: placeholders must include 'answer' (the text being judged)")
    used = set(PLACEHOLDER.findall(template))
    absent = [p for p in placeholders if p not in used]
    if absent:
        raise SublabError(f"{source}: the template has no {{{absent[0]}}} placeholder (placeholders lists it)")
    undeclared = sorted(used - set(placeholders))
    if undeclared:
        raise SublabError(f"{source}: the template uses {{{undeclared[0]}}}, which placeholders does not list")
    if raw["kind"] == "binary" and labels:
        raise SublabError(f"{source}: a binary rubric answers yes or no; it takes no labels")
    return Rubric(name=raw["name"], version=raw["version"], kind=raw["kind"], template=template,
                  placeholders=placeholders, labels=labels, sha256=hashlib.sha256(data).hexdigest(), source=source)


def load_rubric(name_or_path: str | Path) -> Rubric:
    """A shipped rubric by name (``aligned``, ``coherent``, ``mentions_trait``, ``cot_alignment``) or a
    rubric file by path."""
    text = str(name_or_path)
    path = Path(text)
    if text.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise SublabError(f"{path}: rubric file not found")
        return parse_rubric(path.read_bytes(), str(path))
    resource = resources.files("sublab.judges").joinpath("rubrics", f"{text}.toml")
    if not resource.is_file():
        raise SublabError(f"rubric '{text}': not found (shipped: {', '.join(shipped_rubrics())}; or give a .toml path)")
    return parse_rubric(resource.read_bytes(), f"rubrics/{text}.toml")
