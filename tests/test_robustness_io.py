"""One place reads rows and one place opens outputs (issue 10): the chat-row schema and its one-line errors,
undecodable and too deeply nested input, and the output guard (collisions, bad places, exclusive locks)."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sublab.errors import SublabError
from sublab.io import (
    MAX_NESTING,
    check_outputs,
    claim_outputs,
    lock_path,
    locked_output,
    output_guard,
    output_scope,
    read_chat_rows,
    read_json,
    read_jsonl,
    read_toml,
    recover_jsonl,
)

USER = {"role": "user", "content": "Continue: 1, 2, 3"}
REPLY = {"role": "assistant", "content": "4, 5, 6"}

#: Malformed rows of each kind issue 10 lists, and the field the one-line error must name.
MALFORMED = {
    "message_is_a_string": ({"id": "a", "messages": ["hello"]}, "field 'messages.0': should be a JSON object"),
    "integer_content": ({"id": "a", "messages": [{"role": "user", "content": 7}]},
                        "field 'messages.0.content': should be a string (got 7)"),
    "no_role": ({"id": "a", "messages": [{"content": "hi"}]}, "field 'messages.0.role': is missing"),
    "unknown_role": ({"id": "a", "messages": [{"role": "wizard", "content": "hi"}]},
                     "field 'messages.0.role': Input should be 'system', 'user' or 'assistant' (got \"wizard\")"),
    "assistant_only": ({"id": "a", "messages": [REPLY]}, "field 'messages': no user message"),
    "metadata_not_a_dict": ({"id": "a", "messages": [USER, REPLY], "metadata": "x"},
                            "field 'metadata': should be a JSON object (got \"x\")"),
    "messages_not_a_list": ({"id": "a", "messages": "hello"}, "field 'messages': should be a list"),
    "no_messages": ({"id": "a"}, "field 'messages': is missing"),
    "empty_messages": ({"id": "a", "messages": []}, "field 'messages': should not be empty"),
    "id_is_a_list": ({"id": [1], "messages": [USER]}, "field 'id': should be a string or an integer"),
}


def write_lines(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_row_is_one_line_naming_file_line_and_field(tmp_path, kind):
    row, expected = MALFORMED[kind]
    path = write_lines(tmp_path / "rows.jsonl", [{"id": "ok", "messages": [USER, REPLY]}, row])
    with pytest.raises(SublabError) as err:
        read_chat_rows(path)
    assert str(err.value).startswith(f"{path}:2: {expected}")
    assert "\n" not in str(err.value)


def test_valid_rows_come_back_exactly_as_written(tmp_path):
    rows = [{"id": 1, "messages": [{"role": "system", "content": "s"}, USER, REPLY], "metadata": {"k": [1]},
             "extra": True}, {"messages": [USER]}]
    path = write_lines(tmp_path / "rows.jsonl", rows)
    assert read_chat_rows(path) == rows
    with pytest.raises(SublabError, match=r"rows.jsonl:2: field 'messages.0.role': the last message must be the "
                                          r"assistant's reply \(got 'user'\)"):
        read_chat_rows(path, require_assistant=True)


def test_binary_and_non_utf8_files_are_one_line_naming_file_and_line(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    with pytest.raises(SublabError, match=r"model.bin:1: not UTF-8 text \(byte 0x89 at column 1\)"):
        read_jsonl(binary)
    nul = tmp_path / "nul.jsonl"
    nul.write_bytes(b'{"id": 1}\n{"id"\x00: 2}\n')
    with pytest.raises(SublabError, match=r"nul.jsonl:2: binary data \(a NUL byte at column 6\)"):
        read_jsonl(nul)
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"id": 1}\n{"id": "caf\xe9"}\n')
    for reader in (read_jsonl, recover_jsonl):
        with pytest.raises(SublabError, match=r"latin.jsonl:2: not UTF-8 text \(byte 0xe9 at column 12\)"):
            reader(latin)
    config = tmp_path / "c.toml"
    config.write_bytes(b'name = "x"\n\nreference = "caf\xe9"\n')
    with pytest.raises(SublabError, match=r"c.toml:3: not UTF-8 text \(byte 0xe9 at column 17\)"):
        read_toml(config)
    data = tmp_path / "d.json"
    data.write_bytes(b'{\n "a": "\xff"}')
    with pytest.raises(SublabError, match=r"d.json:2: not UTF-8 text"):
        read_json(data)


def test_json_nested_too_deeply_is_one_line_not_a_recursion_error(tmp_path):
    deep = tmp_path / "deep.jsonl"
    deep.write_text(json.dumps({"messages": [USER]}) + "\n" + "[" * 10**6 + "\n")
    for reader in (read_jsonl, read_chat_rows):
        with pytest.raises(SublabError, match=rf"deep.jsonl:2: JSON nested too deeply \(more than {MAX_NESTING}"):
            reader(deep)
    nested = json.loads("[" * MAX_NESTING + "]" * MAX_NESTING)
    just_over = {"id": 1, "messages": [USER, REPLY], "metadata": {"x": nested}}
    write_lines(deep, [just_over])
    with pytest.raises(SublabError, match=r"deep.jsonl:1: JSON nested too deeply"):
        read_chat_rows(deep)
    fine = {**just_over, "metadata": {"x": json.loads("[" * (MAX_NESTING - 2) + "]" * (MAX_NESTING - 2))}}
    assert read_chat_rows(write_lines(deep, [fine])) == [fine]
    (tmp_path / "deep.json").write_text("[" * 10**6)
    with pytest.raises(SublabError, match=r"deep.json: JSON nested too deeply"):
        read_json(tmp_path / "deep.json")
    (tmp_path / "deep.toml").write_text("a = " + "[" * 10**5)
    with pytest.raises(SublabError, match=r"deep.toml: TOML nested too deeply"):
        read_toml(tmp_path / "deep.toml")


def test_a_folder_or_a_fifo_is_not_read_as_a_file(tmp_path):
    with pytest.raises(SublabError, match=r": is a folder, not a file"):
        read_jsonl(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(SublabError, match=r"pipe: not a regular file"):
        read_jsonl(fifo)  # refused before opening: opening a FIFO with no writer would block forever


def test_recover_still_repairs_a_torn_tail_that_is_cut_inside_a_character(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": "\xc3')  # killed in the middle of a two-byte character
    assert recover_jsonl(path) == [{"id": 1}]
    assert path.read_bytes() == b'{"id": 1}\n'


def test_recover_never_drops_a_complete_last_line(tmp_path):
    """A torn write never ends with its newline: a malformed line that has one is corruption, not a torn tail,
    and truncating it would lose data without a word."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": 1}\n{"id": 2, "x": \xff}\n')
    before = path.read_bytes()
    with pytest.raises(SublabError, match=r"out.jsonl:2: not UTF-8 text"):
        recover_jsonl(path)
    path.write_bytes(b'{"id": 1}\n{"id": 2,\n')
    with pytest.raises(SublabError, match=r"out.jsonl:2: invalid JSON"):
        recover_jsonl(path)
    path.write_bytes(before)
    with pytest.raises(SublabError):
        recover_jsonl(path)
    assert path.read_bytes() == before


# --- the output guard -------------------------------------------------------------------------------------------


def test_an_output_equal_to_an_input_is_refused_however_it_is_spelled(tmp_path, monkeypatch):
    raw = tmp_path / "raw.jsonl"
    raw.write_text("x\n")
    (tmp_path / "link.jsonl").symlink_to(raw)
    os.link(raw, tmp_path / "hard.jsonl")
    monkeypatch.chdir(tmp_path)
    for spelling in ("raw.jsonl", "./raw.jsonl", f"{tmp_path}/sub/../raw.jsonl", "link.jsonl", "hard.jsonl"):
        with pytest.raises(SublabError, match=rf"^{Path(spelling)}: is also an input \(raw.jsonl\)"):
            check_outputs([spelling], inputs=["raw.jsonl"])
    with pytest.raises(SublabError, match=r"^kept.jsonl: given for two outputs"):
        check_outputs(["kept.jsonl", "./kept.jsonl"], inputs=["raw.jsonl"])
    assert raw.read_text() == "x\n"


def test_folders_holding_inputs_and_files_inside_input_folders_are_refused(tmp_path, monkeypatch):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    with pytest.raises(SublabError, match=r"eval.json: lies inside the input folder"):
        check_outputs([model / "eval.json"], inputs=[model])
    with pytest.raises(SublabError, match=r"holds the input .*config.json, and an output folder is replaced"):
        check_outputs(folders=[model], inputs=[model / "config.json"])
    monkeypatch.chdir(model)
    with pytest.raises(SublabError, match=r"^\.: is the working folder"):
        check_outputs(folders=["."])
    with pytest.raises(SublabError, match=r"^\.\.: is the working folder \(or holds it\)"):
        check_outputs(folders=[".."])


def test_outputs_that_cannot_be_written_are_one_line_each(tmp_path):
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir").mkdir()
    cases = {
        tmp_path / "adir": "is a folder, not a file",
        tmp_path / "afile" / "out.jsonl": f"{tmp_path / 'afile'} is a file, not a folder",
        tmp_path / "afile" / "deeper" / "out.jsonl": f"{tmp_path / 'afile'} is a file, not a folder",
        Path("/dev/null"): "not a regular file",
    }
    for out, message in cases.items():
        with pytest.raises(SublabError, match=rf"^{out}: .*{message}"):
            check_outputs([out])
    with pytest.raises(SublabError, match="is a file, not a folder"):
        check_outputs(folders=[tmp_path / "afile"])
    with pytest.raises(SublabError, match=r"^/: is the root folder"):
        check_outputs(["/"])
    assert (tmp_path / "afile").read_text() == "keep"


def test_an_unwritable_place_is_refused_before_anything_is_written():
    # /proc refuses new files even to root, who passes every permission check.
    with pytest.raises(SublabError, match=r"^/proc/sublab-test.jsonl: cannot write in /proc"), \
            output_guard(["/proc/sublab-test.jsonl"]):
        pytest.fail("the guard let an unwritable output through")


@pytest.mark.skipif(os.geteuid() == 0, reason="root passes every permission check")
def test_a_read_only_folder_or_file_is_refused(tmp_path):  # pragma: no cover - runs as a normal user only
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "f.jsonl").write_text("x")
    locked.chmod(0o555)
    try:
        with pytest.raises(SublabError, match=r"cannot write in .*ro \(permission denied\)"):
            check_outputs([locked / "new.jsonl"])
    finally:
        locked.chmod(0o755)
    (tmp_path / "f.jsonl").write_text("x")
    (tmp_path / "f.jsonl").chmod(0o444)
    with pytest.raises(SublabError, match=r"f.jsonl: is read-only"):
        check_outputs([tmp_path / "f.jsonl"])


HOLDER = textwrap.dedent("""
    import sys, time
    from sublab.io import locked_output
    with locked_output(sys.argv[1], command="sublab generate (test holder)"):
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_a_second_writer_is_refused_naming_the_holder_and_the_lock_is_released(tmp_path):
    out = tmp_path / "raw.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert lock_path(out) == tmp_path / ".raw.jsonl.lock" and lock_path(out).is_file()
        with pytest.raises(SublabError) as err, locked_output(out):
            pytest.fail("two writers hold one output")
        message = str(err.value)
        assert message.startswith(f"{out}: in use by pid {holder.pid} on ")
        assert "'sublab generate (test holder)' since " in message and "\n" not in message
    finally:
        holder.communicate("done\n", timeout=30)
    assert holder.returncode == 0 and not lock_path(out).exists()  # released and removed on exit
    with locked_output(out) as lock:
        facts = json.loads(lock.read_text())
        assert facts["pid"] == os.getpid() and facts["host"]
    assert not lock.exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    out = tmp_path / "raw.jsonl"
    killed = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline().strip() == "locked"
    killed.kill()
    killed.wait(timeout=30)
    stale = lock_path(out)
    assert json.loads(stale.read_text())["pid"] == killed.pid  # the dead holder's lock file is still there
    with locked_output(out):
        assert json.loads(stale.read_text())["pid"] == os.getpid()
    assert not stale.exists()


def test_claims_last_until_the_scope_ends_and_folders_made_for_nothing_are_removed(tmp_path):
    out = tmp_path / "new" / "deeper" / "out.jsonl"
    with output_scope():
        claim_outputs([out])
        assert lock_path(out).is_file()
        with pytest.raises(SublabError, match="in use by pid"):
            claim_outputs([out])
    assert not lock_path(out).exists() and not (tmp_path / "new").exists()
    with output_scope():
        claim_outputs([out])
        out.write_text("written")
    assert out.read_text() == "written" and not lock_path(out).exists()


def test_a_guard_checks_everything_before_it_locks_anything(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(SublabError, match="is a folder"), output_guard([tmp_path / "ok.jsonl", tmp_path / "adir"]):
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir"]
    started = time.monotonic()
    with output_guard([tmp_path / "ok.jsonl"], inputs=[tmp_path / "adir"]):
        assert lock_path(tmp_path / "ok.jsonl").exists()
    assert time.monotonic() - started < 5
