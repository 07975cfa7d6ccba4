"""The number filter's version in cache keys: numbers/2 changed verdicts only on replies no ASCII number grammar can
write, so filter stages of grammar-constrained data keep their numbers/1 keys (and their cached students)."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sublab.domains.numbers.checks import parse_number_list
from sublab.domains.numbers.domain import DOMAIN, FILTER_VERSION, PREVIOUS_FILTER_VERSION, grammar_verdicts_unchanged
from sublab.domains.numbers.grammar import NumberGrammar, is_valid_reply
from sublab.generate.sampling import SamplingSettings

_OLD_SEPARATOR = re.compile(r"^(\s*[,;]\s*|\s+)$")
_DIGIT_RUN = re.compile(r"[0-9]+")


def numbers_v1(text: str) -> tuple[tuple[int, ...] | None, str | None]:
    """numbers/1's parser, as it was (commit afa88c3): Unicode-aware strip and \\s, no length limits."""
    body = text.strip()
    if not body:
        return None, "empty"
    if body.endswith("."):
        body = body[:-1].rstrip()
    if len(body) >= 2 and (body[0], body[-1]) in {("[", "]"), ("(", ")")}:
        body = body[1:-1].strip()
    runs = list(_DIGIT_RUN.finditer(body))
    if not runs or runs[0].start() != 0 or runs[-1].end() != len(body):
        return None, "bad_format"
    separators = [body[a.end() : b.start()] for a, b in itertools.pairwise(runs)]
    if any(not _OLD_SEPARATOR.match(sep) for sep in separators):
        return None, "bad_format"
    if separators and any(sep != separators[0] for sep in separators):
        return None, "inconsistent_separator"
    return tuple(int(r.group()) for r in runs), None


SEPARATORS = st.sampled_from([", ", ",", " ", ";", "; ", "\n", "\t", " , ", "|", "-", "\r\n", "\u00a0"])


@settings(max_examples=2000, deadline=None)
@given(separator=SEPARATORS, max_digits=st.integers(1, 4), max_count=st.integers(1, 12), data=st.data())
def test_every_reply_of_an_ascii_grammar_gets_the_same_verdict_from_both_versions(separator, max_digits,
                                                                                   max_count, data):
    sampling = SamplingSettings(constrained=True, separator=separator, max_digits=max_digits, max_count=max_count)
    grammar = NumberGrammar(separator=separator, max_digits=max_digits, max_count=max_count)
    count = data.draw(st.integers(1, max_count))
    numbers = [data.draw(st.integers(0, 10**max_digits - 1)) for _ in range(count)]
    reply = separator.join(map(str, numbers))
    assert is_valid_reply(grammar, reply)
    old, new = numbers_v1(reply), parse_number_list(reply)
    if grammar_verdicts_unchanged(sampling):
        assert old == (new.numbers, new.reason)
    else:  # only separators numbers/1 read as whitespace and numbers/2 does not are left out
        assert any(re.fullmatch(r"\s", c) and c not in " \t\n" for c in separator)


def test_filter_keys_name_numbers_1_for_constrained_ascii_data_and_numbers_2_otherwise():
    assert FILTER_VERSION == "numbers/2" and PREVIOUS_FILTER_VERSION == "numbers/1"
    assert DOMAIN.filter_key_version(SamplingSettings(constrained=True)) == "numbers/1"
    assert DOMAIN.filter_key_version(SamplingSettings(constrained=False)) == "numbers/2"
    assert DOMAIN.filter_key_version(SamplingSettings(constrained=True, separator="\u00a0")) == "numbers/2"
    assert DOMAIN.filter_key_version(SamplingSettings(constrained=True, separator="\r\n")) == "numbers/2"
    assert DOMAIN.filter_version == "numbers/2"  # what reports and records name: the code that ran


def test_the_versions_do_differ_on_free_text():
    for reply in ("1,\u00a02, 3", "1\r\n2"):
        new = parse_number_list(reply)
        assert numbers_v1(reply) != (new.numbers, new.reason)
    with pytest.raises(ValueError, match="4300 digits"):  # numbers/1 aborted the whole run on this reply
        numbers_v1("9" * 5000)
    assert parse_number_list("9" * 5000).reason == "too_many_digits"
