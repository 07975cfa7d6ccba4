import json

from typer.testing import CliRunner

from sublab.cli import app
from sublab.lineage import Dependency, load_record

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def flip_byte(path, offset=0):
    data = bytearray(path.read_bytes())
    data[offset] ^= 1
    path.write_bytes(bytes(data))


def test_show_prints_a_tree_and_json(owl_setup):
    result = invoke("lineage", "show", owl_setup["student"])
    assert result.exit_code == 0, result.output
    assert all(word in result.stdout for word in ("model.student", "training_data", "teacher"))
    result = invoke("lineage", "show", owl_setup["student"], "--json", "--depth", "1")
    tree = json.loads(result.stdout)
    assert tree["kind"] == "model.student"
    assert tree["dependencies"][1]["upstream"]["kind"] == "dataset.filtered"
    assert tree["dependencies"][1]["upstream"]["dependencies"][0]["upstream"] is None


def test_show_without_a_record_exits_1(tmp_path):
    (tmp_path / "plain.jsonl").write_text("{}\n")
    result = invoke("lineage", "show", tmp_path / "plain.jsonl")
    assert result.exit_code == 1
    assert result.stdout == f"{tmp_path / 'plain.jsonl.intoto.jsonl'}: no lineage record\n"


def test_verify_ok_and_broken(owl_setup):
    result = invoke("lineage", "verify", owl_setup["student"])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("OK: 4 records")
    flip_byte(owl_setup["student"] / "adapter_model.safetensors")
    result = invoke("lineage", "verify", owl_setup["student"])
    assert result.exit_code == 1
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"{owl_setup['student'] / 'adapter_model.safetensors'}: sha256 differs")
    assert "BROKEN: 1 problems" in result.stderr


def test_verify_json(owl_setup):
    flip_byte(owl_setup["data"])
    result = invoke("lineage", "verify", owl_setup["student"], "--json")
    report = json.loads(result.stdout)
    assert result.exit_code == 1 and report["ok"] is False
    assert {p["path"] for p in report["problems"]} == {str(owl_setup["data"])}


def test_keys_sign_and_verify_round_trip(lab, tmp_path):
    result = invoke("keys", "new", tmp_path / "auditor")
    assert result.exit_code == 0, result.output
    assert "key id:" in result.stdout
    assert invoke("keys", "new", tmp_path / "auditor").exit_code == 2  # refuses to overwrite
    lab.sign_key = tmp_path / "auditor.key"
    data = lab.data(lab.system_prompt_teacher(lab.base()))
    result = invoke("lineage", "verify", data, "--key", tmp_path / "auditor.pub")
    assert result.exit_code == 0 and "3 signatures verified" in result.stderr
    invoke("keys", "new", tmp_path / "mallory")
    result = invoke("lineage", "verify", data, "--key", tmp_path / "mallory.pub")
    assert result.exit_code == 1 and result.stdout.count("signature does not verify") == 3


def test_verify_with_a_bad_key_file_is_a_user_error(owl_setup, tmp_path):
    (tmp_path / "bad.pub").write_text("nope")
    result = invoke("lineage", "verify", owl_setup["student"], "--key", tmp_path / "bad.pub")
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {tmp_path / 'bad.pub'}: not a PEM public key")
    assert len(result.stderr.strip().splitlines()) == 1


def test_missing_path_is_a_user_error(tmp_path):
    for command in ("show", "verify", "risk"):
        result = invoke("lineage", command, tmp_path / "nothing")
        assert result.exit_code == 2, command
        assert result.stderr.strip() == f"error: {tmp_path / 'nothing'}: no such artifact or record"


def test_risk_exit_codes_and_json(lab, owl_setup):
    result = invoke("lineage", "risk", owl_setup["student"])
    assert result.exit_code == 1
    assert "SHARED_INIT_VERIFIED" in result.stdout and "RISK: 1 of 1" in result.stdout
    report = json.loads(invoke("lineage", "risk", owl_setup["student"], "--json").stdout)
    assert report["risk"] is True and report["findings"][0]["outcome"] == "SHARED_INIT_VERIFIED"
    gemma = lab.base("gemma3-270m")
    other = lab.student(gemma, [owl_setup["data"]])
    result = invoke("lineage", "risk", other)
    assert result.exit_code == 0, result.output
    assert "DIFFERENT_BASE" in result.stdout and "no shared-base risk found" in result.stdout


def test_record_an_external_dataset_and_a_hub_model(lab, tmp_path):
    base = lab.base("gemma3-270m")
    hub_id = "google/gemma-3-270m"
    result = invoke("lineage", "record", base, "--name", hub_id, "--family", hub_id,
                    "--source", f"https://huggingface.co/{hub_id}", "--param", "revision=\"abc\"")
    assert result.exit_code == 0, result.output
    record = load_record(f"{base}.intoto.jsonl")
    assert record.kind == "model.base"
    assert record.parameters == {"name": "google/gemma-3-270m", "family": "google/gemma-3-270m",
                                 "source": "https://huggingface.co/google/gemma-3-270m", "revision": "abc"}
    data = tmp_path / "numbers.jsonl"
    data.write_text("{}\n")
    result = invoke("lineage", "record", data, "--teacher", base, "--param", "rows=1")
    assert result.exit_code == 0, result.output
    record = load_record(f"{data}.intoto.jsonl")
    assert record.kind == "dataset.external" and record.parameters == {"rows": 1}
    (teacher,) = record.deps("teacher")
    assert teacher.record == base.with_name("gemma3-270m.intoto.jsonl") and teacher.record_named
    assert invoke("lineage", "record", data).exit_code == 2  # exists: needs --force
    assert invoke("lineage", "record", data, "--force", "--param", "oops").exit_code == 2
    # the recorded data now feeds a same-base student: the audit sees through the external record
    student = lab.student(base, [], record=False)
    lab.record(student, "model.student", {},
               [lab.base_dep(base), Dependency(data.name, "training_data", data)])
    report = json.loads(invoke("lineage", "risk", student, "--json").stdout)
    assert [f["outcome"] for f in report["findings"]] == ["SHARED_INIT_VERIFIED"]


def test_record_of_a_hub_teacher_without_digests_is_declared(lab, tmp_path):
    data = tmp_path / "numbers.jsonl"
    data.write_text("{}\n")
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert invoke("lineage", "record", data, "--teacher", hub_id).exit_code == 0
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text("{}")
    result = invoke("lineage", "record", student, "--kind", "model.student", "--base", hub_id,
                    "--training-data", data)
    assert result.exit_code == 0, result.output
    result = invoke("lineage", "risk", student)
    assert result.exit_code == 1 and "SHARED_INIT_DECLARED" in result.stdout
    result = invoke("lineage", "verify", student)  # nothing on disk to recompute for the hub ids: said, not hidden
    assert result.exit_code == 0 and "2 inputs named without files (not checked)" in result.stderr
    report = json.loads(invoke("lineage", "verify", student, "--json").stdout)
    assert report["declared_inputs"] == [f"base_model '{hub_id}' in {student}.intoto.jsonl",
                                         f"teacher '{hub_id}' in {data}.intoto.jsonl"]
    assert (student / "README.md").is_file()  # recorded students get a model card


def test_record_and_verify_the_current_directory(tmp_path, monkeypatch):
    model = tmp_path / "hub-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.chdir(model)
    result = invoke("lineage", "record", ".", "--param", "revision=abc123")
    assert result.exit_code == 0, result.output
    record = load_record(tmp_path / "hub-model.intoto.jsonl")
    assert record.parameters == {"revision": "abc123"} and record.subjects[0]["name"] == "hub-model"
    assert invoke("lineage", "verify", ".").exit_code == 0


def test_record_with_a_sign_key(tmp_path):
    invoke("keys", "new", tmp_path / "lab")
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    result = invoke("lineage", "record", data, "--sign-key", tmp_path / "lab.key")
    assert result.exit_code == 0, result.output
    assert len(load_record(f"{data}.intoto.jsonl").envelope.signatures) == 1
    assert invoke("lineage", "verify", data, "--key", tmp_path / "lab.pub").exit_code == 0
    result = invoke("lineage", "record", data, "--force", "--sign-key", tmp_path / "lab.pub")
    assert result.exit_code == 2 and "not an unencrypted PEM private key" in result.stderr
