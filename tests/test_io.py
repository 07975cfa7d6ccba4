import json
import os
import stat

import pytest

from sublab.errors import SublabError
from sublab.io import (
    JsonlAppender,
    atomic_write_text,
    first_difference,
    iter_jsonl,
    read_json,
    recover_jsonl,
    stable_hash,
    write_jsonl,
)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_atomic_write_mode_is_set_before_the_rename(tmp_path, monkeypatch):
    import sublab.io

    modes_at_rename = []
    real_replace = os.replace

    def spy(src, dst):
        modes_at_rename.append(stat.S_IMODE(os.stat(src).st_mode))
        real_replace(src, dst)

    monkeypatch.setattr(sublab.io.os, "replace", spy)
    target = tmp_path / "secret.txt"
    atomic_write_text(target, "shh", mode=0o600)
    assert modes_at_rename == [0o600]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and target.read_text() == "shh"


def test_atomic_write_default_mode_follows_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / "plain.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == 0o640


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(SublabError, match=r"rows.jsonl:2: invalid JSON"):
        list(iter_jsonl(path))


def test_non_object_line_is_rejected(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(SublabError, match=r"rows.jsonl:1: expected a JSON object"):
        list(iter_jsonl(path))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(SublabError, match=r"nope.json: file not found"):
        read_json(tmp_path / "nope.json")


def test_recover_drops_torn_tail_and_keeps_complete_rows(tmp_path):
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"id": 1}, {"id": 2}])
    with path.open("a") as handle:
        handle.write('{"id": 3, "te')  # a kill in the middle of a write
    assert recover_jsonl(path) == [{"id": 1}, {"id": 2}]
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'
    with JsonlAppender(path) as sink:
        sink.write([{"id": 3}])
    assert [r["id"] for r in iter_jsonl(path)] == [1, 2, 3]


def test_recover_completes_a_final_row_missing_its_newline(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}')
    assert recover_jsonl(path) == [{"id": 1}, {"id": 2}]
    assert path.read_text().endswith("}\n")


def test_recover_raises_on_corruption_before_the_tail(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"id": 1}\nnot json\n{"id": 3}\n')
    with pytest.raises(SublabError, match=r"out.jsonl:2"):
        recover_jsonl(path)


def test_recover_missing_file_is_empty(tmp_path):
    assert recover_jsonl(tmp_path / "none.jsonl") == []


def test_stable_hash_ignores_key_order():
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": [1, 2], "a": 1})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert len(stable_hash({"a": 1}, n_chars=8)) == 8
    assert json.loads(json.dumps({"k": stable_hash({})}))["k"]


def test_first_difference_names_the_first_differing_field_one_level_down():
    current = {"model": "m", "sampling": {"temperature": 1.0, "top_p": 1.0}, "seed": 0}
    assert first_difference(dict(current), current) is None
    assert first_difference({**current, "model": "x"}, current) == ("model", "x", "m")
    saved = {**current, "sampling": {"temperature": 0.5, "top_p": 1.0}, "seed": 3}
    assert first_difference(saved, current) == ("sampling.temperature", 0.5, 1.0)
    assert first_difference({**current, "sampling": {"temperature": 1.0, "top_p": 1.0, "extra": 1}}, current) == (
        "sampling.extra", 1, None)
    assert first_difference({**current, "sampling": None}, current) == ("sampling", None, current["sampling"])
    assert first_difference(["not", "a", "dict"], current) == ("", ["not", "a", "dict"], current)


def test_appender_creates_nothing_when_the_stage_fails_before_its_first_write(tmp_path):
    path = tmp_path / "sub" / "out.jsonl"
    with pytest.raises(RuntimeError), JsonlAppender(path):
        raise RuntimeError("the model failed in the first batch")
    assert not path.exists()
    assert not path.parent.exists()


def test_appender_leaves_an_empty_file_when_the_stage_finishes_with_nothing_to_write(tmp_path):
    path = tmp_path / "out.jsonl"
    with JsonlAppender(path):
        pass
    assert path.exists() and path.read_text() == ""


def test_appender_keeps_rows_written_before_a_later_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError), JsonlAppender(path) as sink:
        sink.write([{"id": 1}])
        raise RuntimeError("killed in the second batch")
    assert [r["id"] for r in iter_jsonl(path)] == [1]
