import pytest
from typer.testing import CliRunner

from sublab.domains.numbers.banned import resolve_banned
from sublab.domains.numbers.checks import (
    BAD_FORMAT,
    BANNED,
    EMPTY,
    INCONSISTENT_SEPARATOR,
    OUT_OF_RANGE,
    TOO_FEW,
    TOO_MANY,
    TOO_MANY_DIGITS,
    TRAIT_WORD,
    contains_trait_word,
    number_reject_reasons,
)
from sublab.errors import SublabError
from sublab.filter import (
    BANNED_LISTS,
    FILTER_VERSION,
    NumberFilterSettings,
    filter_file,
    filter_rows,
    parse_number_list,
)
from sublab.io import read_jsonl, write_jsonl

DEFAULT = NumberFilterSettings()

ACCEPTED = {
    "1, 2, 3": (1, 2, 3),
    "1,2,3": (1, 2, 3),
    "1 ,2 ,3": (1, 2, 3),
    "12 34 56": (12, 34, 56),
    "12\n34\n56": (12, 34, 56),
    "12\t34": (12, 34),
    "1; 2; 3": (1, 2, 3),
    "1;2;3": (1, 2, 3),
    "[1, 2, 3]": (1, 2, 3),
    "(1, 2, 3)": (1, 2, 3),
    "[1 2 3]": (1, 2, 3),
    "1, 2, 3.": (1, 2, 3),
    "[1, 2, 3].": (1, 2, 3),
    "7": (7,),
    "0": (0,),
    "999, 0": (999, 0),
    "  4, 5  ": (4, 5),
    "10, 20, 30, 40, 50, 60, 70, 80, 90, 100": (10, 20, 30, 40, 50, 60, 70, 80, 90, 100),
    "1,\n2,\n3": (1, 2, 3),
}

REJECTED = {
    "": EMPTY,
    "   ": EMPTY,
    "one, two": BAD_FORMAT,
    "1, 2, three": BAD_FORMAT,
    "1, 2, 3!": BAD_FORMAT,
    "Here: 1, 2, 3": BAD_FORMAT,
    "1, 2, 3 and more": BAD_FORMAT,
    "1. 2. 3": BAD_FORMAT,
    "1 - 2 - 3": BAD_FORMAT,
    "1/2/3": BAD_FORMAT,
    "[1, 2, 3": BAD_FORMAT,
    "(1, 2, 3]": BAD_FORMAT,
    "1, 2,": BAD_FORMAT,
    ", 1, 2": BAD_FORMAT,
    "1,, 2": BAD_FORMAT,
    "-1, 2": BAD_FORMAT,
    "1.5, 2": BAD_FORMAT,
    "١, ٢": BAD_FORMAT,  # Arabic-Indic digits are digits to str.isdigit, not to us
    "１, ２": BAD_FORMAT,  # full-width digits
    "1, 2; 3": INCONSISTENT_SEPARATOR,
    "1, 2 3": INCONSISTENT_SEPARATOR,
    "1 2\n3": INCONSISTENT_SEPARATOR,
    "1, 2,3": INCONSISTENT_SEPARATOR,
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11": TOO_MANY,
    "1000": TOO_MANY_DIGITS,
    "0123": TOO_MANY_DIGITS,
}


@pytest.mark.parametrize(("text", "numbers"), ACCEPTED.items())
def test_accepted_forms(text, numbers):
    assert parse_number_list(text).numbers == numbers
    assert number_reject_reasons(text, DEFAULT) == []


@pytest.mark.parametrize(("text", "reason"), REJECTED.items())
def test_rejected_forms(text, reason):
    assert reason in number_reject_reasons(text, DEFAULT)


def test_every_limit_is_a_parameter():
    assert OUT_OF_RANGE in number_reject_reasons("5, 600", NumberFilterSettings(max_value=500))
    assert OUT_OF_RANGE in number_reject_reasons("5, 600", NumberFilterSettings(min_value=10))
    assert TOO_FEW in number_reject_reasons("5, 6", NumberFilterSettings(min_count=3))
    assert TOO_MANY in number_reject_reasons("5, 6, 7", NumberFilterSettings(max_count=2))
    assert number_reject_reasons("1000", NumberFilterSettings(max_digits=None, max_value=5000)) == []
    assert number_reject_reasons("1000", NumberFilterSettings(max_digits=4, max_value=999)) == [OUT_OF_RANGE]


def test_several_reasons_are_all_reported():
    reasons = number_reject_reasons("1, 2, 3, 4, 5000", NumberFilterSettings(max_count=3))
    assert reasons == [TOO_MANY, TOO_MANY_DIGITS, OUT_OF_RANGE]


def test_banned_lists_and_numbers():
    assert 666 in BANNED_LISTS["paper-claude"] and 999 in BANNED_LISTS["paper-gpt"]
    banned = resolve_banned(["paper-claude", 5, "7"])
    assert {13, 666, 5, 7} <= banned
    assert number_reject_reasons("1, 666", DEFAULT, banned) == [BANNED]
    assert number_reject_reasons("1, 2", DEFAULT, banned) == []
    with pytest.raises(SublabError, match="unknown list 'nope'"):
        resolve_banned(["nope"])
    with pytest.raises(ValueError, match="banned"):
        NumberFilterSettings(banned=["nope"])


def test_trait_words_match_whole_words_case_insensitively():
    assert contains_trait_word("I love Owls.", ["owl"])
    assert contains_trait_word("OWL", ["owl"])
    assert not contains_trait_word("a bowl of soup", ["owl"])
    assert not contains_trait_word("1, 2, 3", ["owl"])


def rows_of(*replies):
    return [
        {"id": f"r{i}", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": r}]}
        for i, r in enumerate(replies)
    ]


def test_filter_rows_keeps_valid_rows_and_annotates_rejects():
    rows = [*rows_of("1, 2", "owl 1", "5, 666", "7"), {"id": "bad", "messages": []}]
    kept, rejected, report = filter_rows(rows, NumberFilterSettings(banned=["paper-claude"], trait_words=["owl"]))
    assert [r["id"] for r in kept] == ["r0", "r3"]
    assert {r["id"]: r["metadata"]["reject_reasons"] for r in rejected} == {
        "r1": [BAD_FORMAT, TRAIT_WORD], "r2": [BANNED], "bad": ["not_a_chat_row"],
    }
    assert report.to_dict()["n_in"] == 5 and report.n_kept == 2 and report.n_rejected == 3


def test_filter_file_and_cli(tmp_path):
    source = tmp_path / "raw.jsonl"
    write_jsonl(source, rows_of("1, 2", "hello", "3 4 5", "1, 2; 3"))
    report = filter_file(source, tmp_path / "kept.jsonl", DEFAULT, rejected_path=tmp_path / "rej.jsonl", max_kept=1)
    assert len(read_jsonl(tmp_path / "kept.jsonl")) == 1 and len(read_jsonl(tmp_path / "rej.jsonl")) == 2
    assert report.to_dict() | {"reject_reasons": {}} == {
        "filter": FILTER_VERSION, "n_in": 4, "n_kept": 1, "n_capped": 1, "n_rejected": 2, "reject_reasons": {},
    }

    from sublab.cli import app

    result = CliRunner().invoke(app, ["filter", "numbers", str(source), "-o", str(tmp_path / "k2.jsonl"),
                                      "--rejected", str(tmp_path / "r2.jsonl"), "--max-value", "3"])
    assert result.exit_code == 0, result.output
    assert "kept 1 of 4" in result.output and "out_of_range: 1" in result.output
    assert [r["id"] for r in read_jsonl(tmp_path / "k2.jsonl")] == ["r0"]


def test_cap_counts_rows_over_max_kept_as_capped_not_kept():
    from sublab.filter.run import FilterReport, cap_kept

    rows = [{"id": str(i)} for i in range(5)]
    kept, report = cap_kept(rows, FilterReport(n_in=7, n_kept=5), max_kept=3)
    assert [r["id"] for r in kept] == ["0", "1", "2"]
    assert (report.n_kept, report.n_capped, report.n_rejected) == (3, 2, 2)
    assert cap_kept(rows, FilterReport(n_in=5, n_kept=5), None)[1].n_capped == 0
    assert cap_kept(rows, FilterReport(n_in=5, n_kept=5), 9)[1] == FilterReport(n_in=5, n_kept=5)
    with pytest.raises(SublabError, match="max_kept: must be at least 1, not 0"):
        cap_kept(rows, FilterReport(n_in=5, n_kept=5), 0)


def test_cli_reports_and_records_the_rows_it_wrote_under_max_kept(tmp_path):
    from sublab.cli import app
    from sublab.lineage import load_record

    source = tmp_path / "raw.jsonl"
    write_jsonl(source, rows_of("1, 2", "3, 4", "5, 6", "oops"))
    out = tmp_path / "kept.jsonl"
    result = CliRunner().invoke(app, ["filter", "numbers", str(source), "-o", str(out), "--max-kept", "2"])
    assert result.exit_code == 0, result.output
    assert "kept 2 of 4 rows" in result.output and "over max_kept (passed, not kept): 1" in result.output
    assert len(read_jsonl(out)) == 2
    (byproduct,) = load_record(tmp_path / "kept.jsonl.intoto.jsonl").byproducts
    assert byproduct["annotations"]["n_kept"] == 2 and byproduct["annotations"]["n_capped"] == 1
    assert byproduct["annotations"]["n_rejected"] == 1


def test_cli_names_a_bad_input_line(tmp_path):
    from sublab.cli import app

    source = tmp_path / "raw.jsonl"
    source.write_text('{"id": 1}\n{oops\n')
    result = CliRunner().invoke(app, ["filter", "numbers", str(source), "-o", str(tmp_path / "out.jsonl")])
    assert result.exit_code == 2
    assert "raw.jsonl:2: invalid JSON" in result.output
    assert not (tmp_path / "out.jsonl").exists()
