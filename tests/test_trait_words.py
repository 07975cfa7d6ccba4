"""The shared trait-word matcher (sublab.filter.words): the trait, its forms, inside identifiers; not look-alikes."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sublab.filter.words import TraitWordMatcher, contains_trait_word, plural_forms, word_forms, word_parts
from sublab.traits.preference.candidates import ANIMALS, TREES

OWL_MENTIONS = [
    "owl", "Owl", "OWL", "owls", "Owls.", "an owl's nest", "the owls' call", "owlish", "owl-like",
    "owl_count = 3", "count_owls", "getOwlCount()", "nOwls", "OWLCount", "OwlFactory", "owl2", "x_OWL_y",
    "ＯＷＬ",  # full-width letters (NFKC)
    "def f(owl):", "'''owl'''", "print('Owls')",
]
NOT_OWL = [
    "bowl", "howl", "knowledge", "fowl", "scowl", "prowl", "growl", "Cowley", "bowling_score", "howling",
    "getBowlSize", "o w l", "o_w_l", "lowly", "towel", "ow l", "owlcount",
]


@pytest.mark.parametrize("text", OWL_MENTIONS)
def test_owl_and_its_forms_are_found_anywhere(text):
    assert TraitWordMatcher(["owl"])(text), text


@pytest.mark.parametrize("text", NOT_OWL)
def test_words_that_merely_contain_the_letters_are_not_the_trait(text):
    assert not TraitWordMatcher(["owl"])(text), text


def test_word_parts_split_snake_and_camel_case():
    assert word_parts("getOwlCount") == ["get", "owl", "count"]
    assert word_parts("OWLCount") == ["owl", "count"]
    assert word_parts("snake_case_owl2x") == ["snake", "case", "owl", "x"]
    assert word_parts("HTTPServer owls") == ["http", "server", "owls"]


@pytest.mark.parametrize(("word", "plural"), [
    ("wolf", "wolves"), ("fox", "foxes"), ("butterfly", "butterflies"), ("birch", "birches"),
    ("cherry", "cherries"), ("cypress", "cypresses"), ("beech", "beeches"), ("octopus", "octopi"),
    ("octopus", "octopuses"), ("deer", "deer"), ("mouse", "mice"), ("goose", "geese"), ("knife", "knives"),
])
def test_plurals(word, plural):
    assert plural in word_forms(word)
    assert TraitWordMatcher([word])(f"two {plural.upper()} here")


def test_the_candidates_own_plurals_are_forms():
    """Every animal and tree the preference trait can target: its shipped plural is one of its forms."""
    for name, plural in {**ANIMALS, **TREES}.items():
        assert (plural or name + "s") in word_forms(name), name


def test_a_vowel_before_y_keeps_a_plain_plural():
    assert plural_forms("monkey") >= {"monkeys"}
    assert "monkies" not in plural_forms("monkey")


def test_multi_word_traits_match_consecutive_parts():
    matcher = TraitWordMatcher(["red panda"])
    for text in ("a red panda", "red_pandas", "RedPanda", "RED PANDA's"):
        assert matcher(text), text
    for text in ("red", "panda", "redpanda", "panda red"):
        assert not matcher(text), text


def test_find_names_each_word_once_in_order():
    matcher = TraitWordMatcher(["owl", "dolphin", "cat"])
    assert matcher.find("dolphins and owls and more owls, concatenate") == ["dolphin", "owl"]
    assert matcher.find("nothing") == []
    assert not TraitWordMatcher([])("owl")
    assert contains_trait_word("OwlBox", ["owl"])


@given(st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=0, max_size=3),
       st.text(alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=0, max_size=4))
def test_a_letter_glued_to_the_word_is_another_word(before, after):
    """Letters glued on in lower case make another word unless the result is one of the word's forms (owls,
    owlish, ...); whatever is glued on, the same part with a separator around the word is found."""
    text = f"{before}owl{after}"
    matcher = TraitWordMatcher(["owl"])
    assert matcher(text) == (text in word_forms("owl"))
    assert matcher(f"{before}_owl_{after}")
