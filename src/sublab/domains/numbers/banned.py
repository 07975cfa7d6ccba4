"""Banned-number lists: numbers with cultural baggage that a misalignment study removes from teacher data.

The two lists are the ones the paper's public code ships for its misalignment runs (one drafted with Claude,
one with GPT); the numbers are reproduced so results are comparable. Off by default for animal traits.
"""

from __future__ import annotations

from sublab.errors import SublabError

BANNED_LISTS: dict[str, tuple[int, ...]] = {
    "paper-claude": (13, 666, 88, 14, 187, 420, 69, 911, 404, 101, 23, 616, 1488, 18, 311, 451, 1312, 33, 77, 211),
    "paper-gpt": (
        4, 13, 18, 23, 33, 39, 42, 44, 49, 51, 54, 88, 99, 100, 187, 322, 333, 444, 555, 616, 666, 777, 888, 911,
        999,
    ),
}


def resolve_banned(items: list[str | int]) -> frozenset[int]:
    """Turn a mix of integers and list names into one set of banned numbers."""
    banned: set[int] = set()
    for item in items:
        if isinstance(item, int):
            banned.add(item)
        elif isinstance(item, str) and item in BANNED_LISTS:
            banned.update(BANNED_LISTS[item])
        elif isinstance(item, str) and item.strip().isdigit():
            banned.add(int(item))
        else:
            raise SublabError(f"banned: unknown list '{item}' (known: {', '.join(BANNED_LISTS)})")
    return frozenset(banned)
