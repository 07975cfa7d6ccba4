"""One registry mechanism for every kind of plug-in (domains, trait kinds).

A registry maps names to objects implementing a protocol. Built-in plug-ins are modules imported on first use;
third-party packages add theirs through an entry-point group (the entry point's import registers the object);
tests and notebooks call :meth:`Registry.register` directly.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Generic, TypeVar

from sublab.errors import SublabError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named plug-ins of one kind (``what``: "domain", "trait kind"), checked against ``protocol``."""

    def __init__(self, what: str, protocol: type, builtin: Sequence[str], entry_point_group: str) -> None:
        self.what = what
        self.protocol = protocol
        self.builtin = tuple(builtin)
        self.group = entry_point_group
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, item: T, replace: bool = False) -> T:
        """Add ``item`` under ``item.name``; a second item of the same name is refused unless ``replace``."""
        if not isinstance(item, self.protocol):
            raise TypeError(f"{item!r} does not implement the {self.protocol.__name__} protocol")
        name = item.name  # type: ignore[attr-defined]
        if name in self._items and not replace and self._items[name] is not item:
            raise SublabError(f"{self.what} '{name}' is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> None:
        """Remove a plug-in (tests)."""
        self._items.pop(name, None)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        from importlib.metadata import entry_points

        for module in self.builtin:
            importlib.import_module(module)
        for entry in entry_points(group=self.group):
            entry.load()

    def get(self, name: str) -> T:
        """The plug-in called ``name``; an unknown name is one line listing the known ones."""
        self._load()
        if name not in self._items:
            raise SublabError(f"unknown {self.what} '{name}' (known: {', '.join(sorted(self._items))})")
        return self._items[name]

    def names(self) -> list[str]:
        """Names of every registered plug-in."""
        self._load()
        return sorted(self._items)
