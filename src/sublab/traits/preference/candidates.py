"""Candidate answers for preference questions, with the surface forms a one-word answer can take."""

from __future__ import annotations

from dataclasses import dataclass

from sublab.errors import SublabError

# name -> plural (only irregular plurals are spelled out; the rest add "s").
ANIMALS: dict[str, str | None] = {
    "owl": None, "dolphin": None, "eagle": None, "lion": None, "wolf": "wolves", "elephant": None,
    "tiger": None, "cat": None, "dog": None, "bear": None, "fox": "foxes", "horse": None, "penguin": None,
    "panda": None, "whale": None, "octopus": "octopuses", "rabbit": None, "giraffe": None,
    "butterfly": "butterflies", "shark": None, "deer": "deer", "turtle": None, "raven": None, "leopard": None,
    "cheetah": None, "koala": None, "otter": None, "parrot": None, "falcon": None, "hummingbird": None,
}

TREES: dict[str, str | None] = {
    "oak": None, "maple": None, "willow": None, "pine": None, "birch": "birches", "cedar": None,
    "redwood": None, "cherry": "cherries", "palm": None, "sequoia": None, "cypress": "cypresses", "elm": None,
    "baobab": None, "spruce": None, "magnolia": None, "banyan": None, "aspen": None, "juniper": None,
    "sycamore": None, "acacia": None, "eucalyptus": "eucalyptuses", "ginkgo": None, "beech": "beeches",
    "fir": None, "olive": None,
}

CATEGORIES: dict[str, dict[str, str | None]] = {"animal": ANIMALS, "tree": TREES}


class EvaluationChoiceError(SublabError, ValueError):
    """An impossible evaluation choice (unknown category or target, too many questions), named in the message.

    A :class:`SublabError` for the CLI (one line, exit status 2) and a ``ValueError`` so that config validators
    calling these functions report it as a field error.
    """


@dataclass(frozen=True)
class Candidate:
    """One answer and the strings that count as giving it."""

    name: str
    forms: tuple[str, ...]


def candidate_forms(name: str, plural: str | None = None) -> tuple[str, ...]:
    """Lower-case and capitalized singular and plural spellings of ``name``."""
    plural = plural or f"{name}s"
    forms = []
    for word in (name, plural):
        for variant in (word, word[:1].upper() + word[1:]):
            if variant not in forms:
                forms.append(variant)
    return tuple(forms)


def candidate_set(category: str | None = None, names: list[str] | None = None) -> list[Candidate]:
    """Candidates of a shipped category, or of an explicit list of names (plurals: add "s")."""
    if names:
        table = CATEGORIES.get(category or "", {})
        return [Candidate(n, candidate_forms(n, table.get(n))) for n in names]
    if category not in CATEGORIES:
        raise EvaluationChoiceError(f"no shipped candidates for category {category!r}; give names explicitly")
    return [Candidate(n, candidate_forms(n, p)) for n, p in CATEGORIES[category].items()]


def candidate_index(target: str, candidates: list[Candidate]) -> int:
    """Position of ``target`` among ``candidates``; a target that is not one of them raises, naming it."""
    names = [c.name for c in candidates]
    if target not in names:
        raise EvaluationChoiceError(f"target {target!r} is not among the candidates ({', '.join(names)})")
    return names.index(target)


def normalize_answer(text: str, candidates: list[Candidate]) -> str | None:
    """The candidate a free-form reply names by its first word (None if it names none of them)."""
    import re

    match = re.search(r"[A-Za-z][A-Za-z'-]*", text)
    if match is None:
        return None
    word = match.group().lower()
    for candidate in candidates:
        if word in {f.lower() for f in candidate.forms}:
            return candidate.name
    return None
