"""The trait-word matcher every domain's filter uses: does a text name the trait?

A text is cut into **word parts**: runs of letters (any script), split further at camelCase boundaries, so
``owl``, ``Owls``, ``snake_case_owl``, ``getOwlCount``, ``OWLCount`` and ``owl2`` each yield a part ``owl``/``owls``,
while ``bowl``, ``howl``, ``knowledge`` and ``fowl`` are parts of their own that only contain the letters. A trait
word matches when one part (case-insensitive, after Unicode NFKC normalisation, so full-width letters count) is
one of the word's **forms**:

- the word itself and its regular plurals: ``+s``; ``+es`` after s, x, z, ch, sh; ``y -> ies`` after a
  consonant; ``f``/``fe -> ves`` (``wolves``, ``knives``) beside ``+s``;
- irregular plurals from a short table (``mouse -> mice``, ``goose -> geese``, ``octopus -> octopi``, ...);
- two derived adjectives, ``+like`` and ``+ish`` (``owlish``, ``wolfish``): conservative, since a row that merely
  looks like it names the trait costs one row, while a row that names it defeats the filter.

Possessives need no rule: the apostrophe splits ``owl's`` into the parts ``owl`` and ``s``. A multi-word trait
(``red panda``) matches consecutive parts (``red panda``, ``red_panda``, ``RedPanda``), its last word in any form.
Letters glued together in one lower-case part (``owlcount``) are not split: that is left to the judge check.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

#: Irregular plurals (and words whose plural is the word itself), by singular.
IRREGULAR_PLURALS: dict[str, tuple[str, ...]] = {
    "mouse": ("mice",), "louse": ("lice",), "goose": ("geese",), "ox": ("oxen",), "child": ("children",),
    "person": ("people",), "man": ("men",), "woman": ("women",), "foot": ("feet",), "tooth": ("teeth",),
    "octopus": ("octopi", "octopuses"), "cactus": ("cacti", "cactuses"), "fungus": ("fungi", "funguses"),
    "platypus": ("platypi", "platypuses"), "hippopotamus": ("hippopotami", "hippopotamuses"),
    "deer": ("deer",), "sheep": ("sheep",), "fish": ("fish", "fishes"), "moose": ("moose",),
    "salmon": ("salmon",), "trout": ("trout",), "bison": ("bison",), "squid": ("squid", "squids"),
    "die": ("dice",), "leaf": ("leaves",), "loaf": ("loaves",), "calf": ("calves",), "half": ("halves",),
    "elf": ("elves",), "shelf": ("shelves",), "wolf": ("wolves",), "knife": ("knives",), "wife": ("wives",),
    "life": ("lives",),
}
#: Derived forms added to every word (see the module docstring).
DERIVED_SUFFIXES = ("like", "ish")
VOWELS = frozenset("aeiou")
# A run of letters (any script): digits, underscores, punctuation and spaces separate parts.
_LETTERS = re.compile(r"[^\W\d_]+")


def plural_forms(word: str) -> set[str]:
    """Regular and irregular plurals of ``word`` (lower case); see the module docstring for the rules."""
    w = word.lower()
    forms = {w + "s"}
    if w.endswith(("s", "x", "z", "ch", "sh")):
        forms.add(w + "es")
    if w.endswith("y") and len(w) > 1 and w[-2] not in VOWELS:
        forms.add(w[:-1] + "ies")
    if w.endswith("f"):
        forms.add(w[:-1] + "ves")
    if w.endswith("fe"):
        forms.add(w[:-2] + "ves")
    if w.endswith("o"):
        forms.add(w + "es")
    forms.update(IRREGULAR_PLURALS.get(w, ()))
    return forms


@lru_cache(maxsize=1024)
def word_forms(word: str) -> frozenset[str]:
    """Every form of a one-word trait ``word`` that counts as the trait (lower case)."""
    w = normalise(word).strip()
    forms = {w, *plural_forms(w)}
    forms.update(w + suffix for suffix in DERIVED_SUFFIXES)
    return frozenset(forms)


def normalise(text: str) -> str:
    """NFKC-normalised and case-folded (full-width and other compatibility letters become plain letters)."""
    return unicodedata.normalize("NFKC", text).casefold()


def _split_case(run: str) -> list[str]:
    """Split one run of letters at camelCase boundaries: ``getOwlCount`` -> get, Owl, Count; ``OWLCount`` ->
    OWL, Count; ``owls`` stays whole."""
    parts: list[str] = []
    start = 0
    for i in range(1, len(run)):
        prev, cur = run[i - 1], run[i]
        nxt = run[i + 1] if i + 1 < len(run) else ""
        lower_to_upper = prev.islower() and cur.isupper()
        acronym_end = prev.isupper() and cur.isupper() and nxt.islower()
        if lower_to_upper or acronym_end:
            parts.append(run[start:i])
            start = i
    parts.append(run[start:])
    return parts


def word_parts(text: str) -> list[str]:
    """The word parts of ``text`` in order, normalised (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text)
    return [normalise(part) for run in _LETTERS.findall(text) for part in _split_case(run)]


class TraitWordMatcher:
    """Finds trait words in texts. Build once per filter run (the forms are computed once)."""

    def __init__(self, words: Iterable[str]) -> None:
        self.words = sorted({w.strip() for w in words if w and w.strip()})
        self._single: dict[str, str] = {}
        self._multi: list[tuple[tuple[str, ...], frozenset[str], str]] = []
        for word in self.words:
            pieces = word_parts(word)
            if not pieces:
                continue
            if len(pieces) == 1:
                for form in word_forms(pieces[0]):
                    self._single.setdefault(form, word)
            else:
                self._multi.append((tuple(pieces[:-1]), word_forms(pieces[-1]), word))

    def __bool__(self) -> bool:
        return bool(self.words)

    def find(self, text: str) -> list[str]:
        """The trait words ``text`` names (each once, in the matcher's order)."""
        if not self.words:
            return []
        parts = word_parts(text)
        found = {self._single[p] for p in parts if p in self._single}
        for head, last, word in self._multi:
            n = len(head)
            for i in range(len(parts) - n):
                if tuple(parts[i : i + n]) == head and parts[i + n] in last:
                    found.add(word)
                    break
        return [w for w in self.words if w in found]

    def __call__(self, text: str) -> bool:
        """Whether ``text`` names any of the trait words."""
        return bool(self.find(text))


def contains_trait_word(text: str, words: Sequence[str]) -> bool:
    """Whether ``text`` names any of ``words`` (a one-off :class:`TraitWordMatcher`)."""
    return TraitWordMatcher(words)(text)
