"""Hostile lineage records (defect 5 of issue 10): verification never hangs on a device or FIFO, reads only
inside the lineage's folders by default, and follows nothing of a record whose signature fails."""

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sublab.cli import app
from sublab.lineage import Dependency, load_public_key, new_keypair, record_artifact, verify_lineage
from sublab.lineage.dsse import seal
from sublab.lineage.keys import load_private_key

runner = CliRunner()


def forge(record: Path, path_of: dict[str, str], key: Path | None = None) -> None:
    """Rewrite the dependency paths of a record (by dependency name), re-sealed so it parses (signed with ``key``)."""
    envelope = json.loads(record.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        if dep["name"] in path_of:
            dep["annotations"]["path"] = path_of[dep["name"]]
    record.write_bytes(seal(statement, load_private_key(key) if key else None))


@pytest.fixture
def dataset(tmp_path):
    """A filtered dataset whose record names its source data (both in one folder, as the stage commands write)."""
    source = tmp_path / "work" / "raw.jsonl"
    source.parent.mkdir()
    source.write_text('{"id": 1}\n')
    data = tmp_path / "work" / "filtered.jsonl"
    data.write_text('{"id": 1}\n')
    record = record_artifact(data, "dataset.filtered", {}, [Dependency("raw.jsonl", "source_data", source)])
    return data, record


VERIFY = textwrap.dedent("""
    import json, sys
    from sublab.lineage import verify_lineage
    report = verify_lineage(sys.argv[1])
    print(json.dumps({"problems": [p.line() for p in report.problems], "outside": report.outside_inputs,
                      "files_checked": report.files_checked}))
""")


def verify_in_a_subprocess(path: Path) -> dict:
    """Verify in a child process with a deadline: the old code hung forever on /dev/zero and FIFOs."""
    done = subprocess.run([sys.executable, "-c", VERIFY, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_a_record_naming_dev_zero_is_a_problem_not_a_hang(dataset):
    data, record = dataset
    forge(record, {"raw.jsonl": "/dev/zero"})
    # /dev/zero is outside the lineage's folders, so by default it is not even looked at ...
    found = verify_in_a_subprocess(data)
    assert found["problems"] == [] and found["outside"] == [f"source_data 'raw.jsonl' in {record}: /dev/zero"]
    # ... and allowed in, it is refused as a device instead of being read forever.
    report = verify_lineage(data, allow_outside=["/dev"])
    assert [p.line() for p in report.problems] == ["/dev/zero: not a regular file (a device, FIFO or socket); not read"]


def test_a_fifo_inside_the_lineage_is_a_problem_not_a_hang(dataset):
    data, record = dataset
    fifo = data.parent / "pipe.jsonl"
    os.mkfifo(fifo)
    forge(record, {"raw.jsonl": "pipe.jsonl"})
    found = verify_in_a_subprocess(data)
    assert found["problems"] == [f"{fifo}: not a regular file (a device, FIFO or socket); not read"]


def test_paths_outside_the_lineage_are_not_read_unless_allowed(dataset, tmp_path):
    data, record = dataset
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    forge(record, {"raw.jsonl": "../secret.txt"})
    report = verify_lineage(data)
    assert report.ok and report.files_checked == 1  # only the dataset itself was read
    assert report.outside_inputs == [f"source_data 'raw.jsonl' in {record}: {secret}"]
    result = runner.invoke(app, ["lineage", "verify", str(data)])
    assert result.exit_code == 0, result.output
    assert "1 inputs outside the lineage's folders not read" in result.stderr and "--allow-outside" in result.stderr
    result = runner.invoke(app, ["lineage", "verify", str(data), "--allow-outside", str(tmp_path), "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["outside_inputs"] == []
    assert [p["path"] for p in report["problems"]] == [str(secret)]  # read now: its digest is not the recorded one
    result = runner.invoke(app, ["lineage", "verify", str(data), "--allow-outside", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "--allow-outside names no such file or folder" in result.stderr


def test_a_record_whose_signature_fails_is_not_followed(dataset, tmp_path):
    data, record = dataset
    private, public = new_keypair(tmp_path / "keys" / "lab")
    other, _ = new_keypair(tmp_path / "keys" / "intruder")
    forge(record, {}, key=private)
    assert verify_lineage(data, [load_public_key(public)]).ok
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    forge(record, {"raw.jsonl": f"../{fifo.name}"}, key=other)  # signed by someone else, naming a FIFO
    report = verify_lineage(data, [load_public_key(public)], allow_outside=[tmp_path])
    assert [p.line() for p in report.problems] == [f"{record}: signature does not verify with the given key"]
    assert report.files_checked == 0 and report.outside_inputs == []  # nothing it names was looked at


def test_a_link_out_of_a_model_folder_is_not_read(tmp_path):
    outside = tmp_path / "private" / "id_key"
    outside.parent.mkdir()
    outside.write_text("secret")
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_text("weights")
    student = tmp_path / "work" / "student"
    student.mkdir(parents=True)
    (student / "adapter_config.json").write_text("{}")
    record_artifact(student, "model.student", {}, [Dependency("m", "base_model", model)])
    (model / "model.safetensors").unlink()
    (model / "model.safetensors").symlink_to(outside)
    problems = [p.line() for p in verify_lineage(student).problems]
    assert problems == [f"{model / 'model.safetensors'}: links outside {model}; not read"]


def test_recording_a_folder_that_holds_a_fifo_is_one_line_not_a_hang(tmp_path):
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "rows.jsonl").write_text("{}\n")
    os.mkfifo(folder / "pipe")
    done = subprocess.run([sys.executable, "-m", "sublab", "lineage", "record", str(folder)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {folder / 'pipe'}: not a regular file (a device, FIFO or socket); not read"
    assert not (tmp_path / "dataset.intoto.jsonl").exists()
    done = subprocess.run([sys.executable, "-m", "sublab", "lineage", "record", "/dev/zero"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.strip().startswith("error: /dev/zero: not a regular file")


def test_a_record_nested_too_deeply_is_a_problem_not_a_recursion_error(dataset):
    data, record = dataset
    record.write_text('{"payload": ' + "[" * 100_000 + "]" * 100_000 + "}\n")
    (problem,) = verify_lineage(data).problems
    assert problem.path == record and "nested too deeply" in problem.message
    result = runner.invoke(app, ["lineage", "show", str(data)])
    assert result.exit_code == 1 and "nested too deeply" in result.stdout and result.exception.code == 1
