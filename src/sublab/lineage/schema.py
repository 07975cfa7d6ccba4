"""JSON Schemas of the records (package data) and a validator for statements.

``in-toto-statement-v1`` checks the statement; ``slsa-provenance-v1`` checks its SLSA predicate. Validation
needs the optional ``jsonschema`` package (in the ``test`` extra).
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from sublab.errors import SublabError

STATEMENT_SCHEMA = "in-toto-statement-v1"
PROVENANCE_SCHEMA = "slsa-provenance-v1"


@cache
def load_schema(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` (``in-toto-statement-v1`` or ``slsa-provenance-v1``)."""
    path = resources.files("sublab.lineage").joinpath("schemas", f"{name}.schema.json")
    if not path.is_file():
        raise SublabError(f"schema {name!r}: not found (known: {STATEMENT_SCHEMA}, {PROVENANCE_SCHEMA})")
    return json.loads(path.read_text(encoding="utf-8"))


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or bool(urlsplit(value).scheme)


def _is_datetime(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value


def schema_errors(statement: dict[str, Any]) -> list[str]:
    """Every schema violation of a statement and its SLSA predicate, as ``path: message`` strings."""
    try:
        import jsonschema
    except ImportError:  # pragma: no cover - depends on the environment
        raise SublabError("schema validation needs jsonschema (pip install 'subliminal-lab[test]')") from None

    checker = jsonschema.FormatChecker()
    checker.checks("uri")(_is_uri)
    checker.checks("date-time")(_is_datetime)
    errors = []
    targets = [(STATEMENT_SCHEMA, statement, "")]
    if statement.get("predicateType") == "https://slsa.dev/provenance/v1":
        targets.append((PROVENANCE_SCHEMA, statement.get("predicate"), "predicate"))
    for name, instance, prefix in targets:
        validator = jsonschema.Draft202012Validator(load_schema(name), format_checker=checker)
        for error in validator.iter_errors(instance):
            where = "/".join(str(p) for p in (prefix, *error.absolute_path) if p != "")
            errors.append(f"{where or '(root)'}: {error.message}")
    return errors
