"""Settings as cache keys and fingerprints that stay stable while the settings classes grow.

Stage cache keys and training fingerprints hash ``model_dump()`` of pydantic settings. Adding a field to a
settings class would change every key and rebuild every cached stage, so a class lists the fields it gained
after keys existed in a class variable
``KEY_ADDED_FIELDS: ClassVar[frozenset[str]]``; :func:`key_dump` leaves such a field out while it holds its default.
A key therefore gains a field only when its value differs from the default.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def key_dump(model: BaseModel, mode: str = "json", exclude_none: bool = False) -> dict[str, Any]:
    """``model.model_dump(mode=mode, exclude_none=...)`` without added fields that hold their default,
    recursively."""
    data = model.model_dump(mode=mode, exclude_none=exclude_none)
    return _strip(model, data)


def _strip(model: Any, data: Any) -> Any:
    if not isinstance(model, BaseModel) or not isinstance(data, dict):
        return data
    added = getattr(type(model), "KEY_ADDED_FIELDS", frozenset())
    out = {}
    for name, value in data.items():
        field = type(model).model_fields.get(name)
        if name in added and field is not None and getattr(model, name) == field.get_default(call_default_factory=True):
            continue
        out[name] = _strip(getattr(model, name, None), value)
    return out
