"""Tamper tests: one changed byte anywhere in the lineage of a model makes verification fail and name it."""

import base64
import json
from pathlib import Path

import pytest
import rfc8785

from sublab.errors import SublabError
from sublab.lineage import Dependency, load_public_key, new_keypair, verify_lineage
from sublab.lineage.dsse import seal


def flip_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def lines(report) -> list[str]:
    return [p.line() for p in report.problems]


def test_an_untouched_lineage_verifies(owl_setup):
    report = verify_lineage(owl_setup["student"])
    assert report.ok, lines(report)
    assert [p.name for p in report.records] == ["model.intoto.jsonl", "filtered.jsonl.intoto.jsonl",
                                                "raw.jsonl.intoto.jsonl", "prompts.jsonl.intoto.jsonl"]
    assert report.files_checked == 10  # 3 student + 4 base files, filtered, raw, prompts: each hashed once


def test_a_record_path_works_as_well_as_the_artifact(owl_setup):
    assert verify_lineage(owl_setup["student"].with_name("model.intoto.jsonl")).ok


def test_changed_dataset_byte_is_named_by_both_records_that_link_it(owl_setup):
    flip_byte(owl_setup["data"], 5)
    found = lines(verify_lineage(owl_setup["student"]))
    assert len(found) == 2
    assert all(line.startswith(f"{owl_setup['data']}: sha256 differs") for line in found)
    assert any("training_data 'filtered.jsonl' in" in line for line in found)


def test_changed_upstream_dataset_is_found_through_the_chain(lab, owl_setup):
    raw = next(lab.root.rglob("raw.jsonl"))
    flip_byte(raw, 3)
    found = lines(verify_lineage(owl_setup["student"]))
    assert found and all(line.startswith(str(raw)) for line in found)


def test_changed_student_weight_file_is_named(owl_setup):
    weights = owl_setup["student"] / "adapter_model.safetensors"
    flip_byte(weights, 10)
    (line,) = lines(verify_lineage(owl_setup["student"]))
    assert line.startswith(f"{weights}: sha256 differs from ") and "model.intoto.jsonl" in line


def test_changed_base_weight_file_is_named(owl_setup):
    weights = owl_setup["base"] / "model.safetensors"
    flip_byte(weights)
    found = lines(verify_lineage(owl_setup["student"]))
    # named by the student's base_model link and by the data's teacher link
    assert len(found) == 2 and all(line.startswith(f"{weights}: sha256 differs") for line in found)
    assert any("base_model 'smollm2-135m'" in line for line in found)
    assert any("teacher 'smollm2-135m'" in line for line in found)


def test_added_or_removed_model_files_are_named(owl_setup):
    student = owl_setup["student"]
    (student / "extra.safetensors").write_bytes(b"x")
    (student / "training.json").unlink()
    found = lines(verify_lineage(student))
    assert f"{student / 'extra.safetensors'}: not listed by" in found[0]
    assert f"{student / 'training.json'}: missing (listed by" in found[1]


def test_a_new_model_card_is_not_a_break(owl_setup):
    (owl_setup["student"] / "README.md").write_text("rewritten card")
    assert verify_lineage(owl_setup["student"]).ok


def test_changed_byte_in_a_record_is_named(owl_setup):
    record = owl_setup["data"].with_name("filtered.jsonl.intoto.jsonl")
    envelope = json.loads(record.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]["n_rejected"] = 1
    record.write_bytes(seal(statement))  # a careful forger re-canonicalizes: the downstream link still breaks
    found = lines(verify_lineage(owl_setup["student"]))
    assert any(line.startswith(f"{record}: record changed after") for line in found)
    assert any(line.startswith(f"{record}: byproduct 'filter_report' does not match") for line in found)


@pytest.mark.parametrize("offset", [20, 200, -30])
def test_raw_byte_flip_in_a_record_is_named(owl_setup, offset):
    record = owl_setup["data"].with_name("filtered.jsonl.intoto.jsonl")
    flip_byte(record, offset)
    found = lines(verify_lineage(owl_setup["student"]))
    assert found and all(line.startswith(str(record)) for line in found)


def test_changed_top_record_is_caught_by_its_signature(lab, keypair):
    lab.sign_key = keypair[0]
    base = lab.base()
    student = lab.student(base, [lab.data(lab.system_prompt_teacher(base))])
    key = load_public_key(keypair[1])
    report = verify_lineage(student, [key])
    assert report.ok and report.signatures_verified == 4
    record = student.with_name("model.intoto.jsonl")
    envelope = json.loads(record.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["lr"] = 1.0
    envelope["payload"] = base64.b64encode(rfc8785.dumps(statement)).decode()  # canonical, old signature kept
    record.write_text(json.dumps(envelope))
    found = lines(verify_lineage(student, [key]))
    assert found == [f"{record}: signature does not verify with the given key"]
    assert verify_lineage(student).ok  # the top record has no downstream link: only the signature tells


def test_changed_signature_byte_is_named(lab, keypair):
    lab.sign_key = keypair[0]
    base = lab.base()
    data = lab.data(lab.system_prompt_teacher(base))
    record = data.with_name("filtered.jsonl.intoto.jsonl")
    envelope = json.loads(record.read_text())
    sig = bytearray(base64.b64decode(envelope["signatures"][0]["sig"]))
    sig[7] ^= 0x01
    envelope["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    record.write_text(json.dumps(envelope))
    found = lines(verify_lineage(data, [load_public_key(keypair[1])]))
    assert found == [f"{record}: signature does not verify with the given key"]


def test_wrong_key_and_unsigned_records_fail_when_a_key_is_given(lab, owl_setup, tmp_path):
    _, other = new_keypair(tmp_path / "other")
    found = lines(verify_lineage(owl_setup["student"], [load_public_key(other)]))
    assert len(found) == 4 and all("unsigned (a --key was given" in line for line in found)
    lab.sign_key = new_keypair(tmp_path / "signer")[0]
    signed = lab.data(lab.system_prompt_teacher(owl_setup["base"]))
    found = lines(verify_lineage(signed, [load_public_key(other)]))
    assert found and all("signature does not verify" in line for line in found)


def test_unchecked_signatures_are_counted(lab, keypair):
    lab.sign_key = keypair[0]
    data = lab.data(lab.system_prompt_teacher(lab.base()))
    report = verify_lineage(data)
    assert report.ok and report.signatures_unchecked == 3 and report.signatures_verified == 0


def test_missing_links_are_named(lab, owl_setup):
    raw_record = next(lab.root.rglob("raw.jsonl.intoto.jsonl"))
    raw_record.unlink()
    found = lines(verify_lineage(owl_setup["student"]))
    assert found == [f"{raw_record}: record missing (named by {owl_setup['data']}.intoto.jsonl)"]


def test_missing_input_file_is_named(lab, owl_setup):
    prompts = next(lab.root.rglob("prompts.jsonl"))
    prompts.unlink()
    found = lines(verify_lineage(owl_setup["student"]))
    assert any(line.startswith(f"{prompts}: missing (named as prompt_set") for line in found)
    assert any(line.startswith(f"{prompts}: missing (the subject of") for line in found)


def test_artifact_without_a_record(tmp_path):
    artifact = tmp_path / "data.jsonl"
    artifact.write_text("{}\n")
    (problem,) = verify_lineage(artifact).problems
    assert problem.path == tmp_path / "data.jsonl.intoto.jsonl" and "no lineage record" in problem.message


def test_a_path_that_names_nothing_is_a_user_error(tmp_path):
    with pytest.raises(SublabError, match="no such artifact or record"):
        verify_lineage(tmp_path / "nothing")


def test_cycles_do_not_loop(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("a\n")
    b.write_text("b\n")
    from sublab.lineage import record_artifact

    record_artifact(a, "dataset.external", {})
    record_artifact(b, "dataset.external", {}, [Dependency("a", "source_data", a)])
    record_artifact(a, "dataset.external", {}, [Dependency("b", "source_data", b)])  # a names b names a
    report = verify_lineage(a)
    assert len(report.records) == 2
    assert [p.path for p in report.problems] == [tmp_path / "a.jsonl.intoto.jsonl"]  # b's link to a is stale


def test_a_moved_run_still_finds_an_embedded_base_in_the_local_cache(lab, monkeypatch):
    import shutil

    base = lab.base("smollm2-135m")
    student = lab.student(base, [lab.data(lab.system_prompt_teacher(base))])
    moved = lab.root / "elsewhere" / "deeper"
    moved.mkdir(parents=True)
    shutil.move(lab.root / "run", moved / "run")
    student = moved / "run" / student.relative_to(lab.root / "run")
    monkeypatch.setenv("SUBLAB_CACHE", str(lab.root / "empty-cache"))
    found = lines(verify_lineage(student))
    assert found and all("smollm2-135m: missing" in line for line in found)
    monkeypatch.setenv("SUBLAB_CACHE", str(lab.root / "cache"))
    assert verify_lineage(student).ok
    flip_byte(base / "config.json")
    assert any(line.startswith(str(base / "config.json")) for line in lines(verify_lineage(student)))
