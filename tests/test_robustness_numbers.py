"""The number parser against an independent reference of its documented grammar (hypothesis), round trips, and
the limits that keep one hostile reply from stalling or aborting a filter run (defects 8, 9, 10 of issue 10)."""

import importlib.util
import json
import time
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from sublab.domains.numbers.checks import (
    BAD_FORMAT,
    MAX_DIGIT_RUN,
    MAX_REPLY_CHARS,
    TOO_LONG,
    TOO_MANY_DIGITS,
    WHITESPACE,
    NumberFilterSettings,
    number_reject_reasons,
    parse_number_list,
)
from sublab.io import read_jsonl, write_jsonl

_spec = importlib.util.spec_from_file_location(
    "fuzz_filter", Path(__file__).resolve().parents[1] / "benchmarks" / "fuzz_filter.py")
fuzz = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz)

DEFAULT = NumberFilterSettings()
HOSTILE = st.sampled_from(fuzz.ALPHABET)
ascii_ws = st.sampled_from(list(WHITESPACE))
digit_strings = st.text(alphabet="0123456789", min_size=1, max_size=6)


@st.composite
def separators(draw) -> str:
    punct = draw(st.sampled_from(["", ",", ";"]))
    left = draw(st.text(alphabet=WHITESPACE, max_size=2))
    right = draw(st.text(alphabet=WHITESPACE, max_size=2))
    return (left + punct + right) or draw(st.text(alphabet=WHITESPACE, min_size=1, max_size=2))


@st.composite
def replies(draw) -> tuple[str, list[str]]:
    numbers = draw(st.lists(digit_strings, min_size=1, max_size=12))
    text = fuzz.format_number_list(numbers, draw(separators()), draw(st.sampled_from(["", "[]", "()"])),
                                   draw(st.booleans()), draw(st.text(alphabet=WHITESPACE, max_size=3)),
                                   draw(st.text(alphabet=WHITESPACE, max_size=3)))
    return text, numbers


@st.composite
def mutated_replies(draw) -> str:
    text, _ = draw(replies())
    chars = list(text)
    for _ in range(draw(st.integers(1, 3))):
        pos = draw(st.integers(0, len(chars)))
        if draw(st.booleans()) or not chars:
            chars.insert(pos, draw(HOSTILE))
        else:
            chars[min(pos, len(chars) - 1)] = draw(HOSTILE)
    return "".join(chars)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(st.text(alphabet=HOSTILE, max_size=40), mutated_replies(), st.text(max_size=30)))
@example("1,\u00a02")
@example("1\u30002")
@example("1\u20282")
@example("1\x1c2")
@example("1\r\n2")
@example("[1, 2]\x0c")
@example(" . ")
@example("[]")
@example("([1])")
def test_the_parser_agrees_with_the_reference_grammar(text):
    assert fuzz.parser_outcome(text) == fuzz.reference_parse(text)
    number_reject_reasons(text, DEFAULT)  # never raises


@settings(max_examples=800, deadline=None)
@given(replies())
def test_format_then_parse_gives_back_the_numbers(reply):
    text, numbers = reply
    parsed = parse_number_list(text)
    assert parsed.digit_strings == tuple(numbers)
    assert parsed.numbers == tuple(int(n) for n in numbers)


@settings(max_examples=500, deadline=None)
@given(st.one_of(replies().map(lambda r: r[0]), mutated_replies()), separators(),
       st.sampled_from(["", "[]", "()"]), st.booleans())
def test_parse_format_parse_is_stable(text, separator, wrap, period):
    first = parse_number_list(text)
    if first.numbers is None:
        return
    again = parse_number_list(fuzz.format_number_list(list(first.digit_strings), separator, wrap, period))
    assert (again.numbers, again.digit_strings) == (first.numbers, first.digit_strings)


@pytest.mark.parametrize("char", ["\u00a0", "\u3000", "\u2028", "\u2029", "\u001c", "\u001f", "\u0085", "\r",
                                  "\x0b", "\x0c", "\u200b", "\ufeff"])
def test_unicode_whitespace_and_controls_are_not_separators(char):
    """Defect 9: only ASCII space, tab and newline separate numbers or pad a reply."""
    for text in (f"1{char}2", f"1,{char}2", f"{char}1, 2", f"1, 2{char}", f"[1, 2]{char}", f"1, 2{char}."):
        assert number_reject_reasons(text, DEFAULT) == [BAD_FORMAT], repr(text)
    assert number_reject_reasons("1,\t2", DEFAULT) == [] and number_reject_reasons(" 1\n2 ", DEFAULT) == []


def test_a_digit_run_over_the_conversion_limit_is_a_reason_not_a_crash():
    """Defect 8: Python cannot int() more than 4,300 digits; the row is rejected and the run goes on."""
    for n_digits in (MAX_DIGIT_RUN + 1, 4_301, MAX_REPLY_CHARS - 10):
        assert number_reject_reasons("9" * n_digits, NumberFilterSettings(max_digits=None)) == [TOO_MANY_DIGITS]
        assert number_reject_reasons(f"1, {'5' * n_digits}, 2", DEFAULT) == [TOO_MANY_DIGITS]
    longest = "7" * MAX_DIGIT_RUN
    assert parse_number_list(longest).numbers == (int(longest),)
    with pytest.raises(ValueError, match="max_digits"):
        NumberFilterSettings(max_digits=MAX_DIGIT_RUN + 1)


def test_an_over_long_reply_is_rejected_by_length_before_parsing():
    """Defect 10: a 50 MB single-line reply took 28 s and ~4 GB; now it is one length check."""
    huge = "1, " * (50_000_000 // 3)
    started = time.perf_counter()
    assert number_reject_reasons(huge, DEFAULT) == [TOO_LONG]
    assert time.perf_counter() - started < 1.0  # a length check, not a parse (generous for a shared CPU)
    edge = ("1 " * MAX_REPLY_CHARS)[: MAX_REPLY_CHARS - 1] + "1"
    assert len(edge) == MAX_REPLY_CHARS and parse_number_list(edge).reason != TOO_LONG
    assert parse_number_list(edge + " ").reason == TOO_LONG


def test_the_filter_command_rejects_hostile_replies_and_goes_on(tmp_path):
    from sublab.cli import app

    replies_ = ["1, 2, 3", "9" * 4_301, "1,\u00a02", "1, " * 20_000, "4, 5"]
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": r}]}
            for i, r in enumerate(replies_)]
    write_jsonl(tmp_path / "raw.jsonl", rows)
    result = CliRunner().invoke(app, ["filter", "numbers", str(tmp_path / "raw.jsonl"), "-o", str(tmp_path / "k"),
                                      "--rejected", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(tmp_path / "k")] == ["r0", "r4"]
    reasons = {r["id"]: r["metadata"]["reject_reasons"] for r in read_jsonl(tmp_path / "r")}
    assert reasons == {"r1": [TOO_MANY_DIGITS], "r2": [BAD_FORMAT], "r3": [TOO_LONG]}


def test_the_fuzz_script_finds_nothing_on_a_short_seeded_run(tmp_path):
    result = fuzz.run(3_000, seed=11)
    assert result["inputs_tried"] == 3_000 and result["crashes"] == 0 and result["disagreements"] == 0, \
        json.dumps(result["crash_examples"] + result["disagreement_examples"])[:2000]
    assert sum(result["inputs_per_kind"].values()) == 3_000 and result["outcomes"]["accepted"] > 100
