import hashlib
import json
import math
from pathlib import Path

import pytest
import rfc8785

from sublab.errors import SublabError
from sublab.lineage import Dependency, build_statement, load_record, record_artifact
from sublab.lineage.dsse import open_envelope, seal
from sublab.lineage.schema import load_schema, schema_errors
from sublab.lineage.statement import PREDICATE_TYPE, STATEMENT_TYPE, kind_of, to_json_value
from sublab.models.loading import manifest_digest


def _statement(path: Path) -> dict:
    return open_envelope(path.read_bytes()).statement


def _deps_by_role(statement: dict) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        found.setdefault(dep["annotations"]["role"], []).append(dep)
    return found


def test_every_pipeline_record_validates_against_the_in_toto_and_slsa_schemas(lab):
    base = lab.base()
    teacher = lab.finetuned_teacher(base)
    data = lab.data(Dependency("adapter", "teacher", teacher))
    student = lab.student(base, [data])
    evaluation = student.parent / "eval.json"
    evaluation.write_text('{"p_target": {"mean": 0.1}}')
    lab.record(evaluation, "evaluation", {"target": "owl"}, [Dependency("model", "evaluated_model", student)])
    records = sorted(lab.root.rglob("*.intoto.jsonl"))
    assert len(records) == 6  # teacher, prompts, raw, filtered, student, evaluation
    for record in records:
        assert schema_errors(_statement(record)) == [], record


def test_schema_validation_catches_broken_statements():
    broken = {"_type": STATEMENT_TYPE, "subject": [{"name": "x", "digest": {"sha256": "XYZ"}}],
              "predicateType": PREDICATE_TYPE, "predicate": {"buildDefinition": {"buildType": "not a uri"},
                                                            "runDetails": {"builder": {}}}}
    errors = "\n".join(schema_errors(broken))
    assert "subject/0/digest/sha256" in errors
    assert "buildDefinition: 'externalParameters' is a required property" in errors
    assert "buildType: 'not a uri' is not a 'uri'" in errors
    assert "runDetails/builder: 'id' is a required property" in errors
    assert load_schema("in-toto-statement-v1")["properties"]["_type"]["const"] == STATEMENT_TYPE


def test_file_record_fields(lab, owl_setup):
    raw_record = next(lab.root.rglob("raw.jsonl.intoto.jsonl"))
    statement = _statement(raw_record)
    raw = raw_record.with_name("raw.jsonl")
    assert statement["subject"] == [{"name": "raw.jsonl",
                                     "digest": {"sha256": hashlib.sha256(raw.read_bytes()).hexdigest()}}]
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == "urn:sublab:lineage:dataset.generated:v1"
    assert kind_of(definition["buildType"]) == "dataset.generated"
    assert definition["externalParameters"] == {"sampling": {"temperature": 1.0}, "seed": 7}
    roles = _deps_by_role(statement)
    teacher = roles["teacher"][0]
    assert teacher["name"] == "smollm2-135m"
    assert teacher["digest"]["sha256"] == manifest_digest(teacher["annotations"]["files"])
    assert set(teacher["annotations"]["files"]) == {"config.json", "model.safetensors", "tokenizer.json",
                                                    "SOURCE"}
    assert teacher["annotations"]["system_prompt_sha256"] == hashlib.sha256(b"You love owls.").hexdigest()
    assert teacher["annotations"]["family"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    prompts = roles["prompt_set"][0]
    assert prompts["annotations"]["record"].endswith("prompts.jsonl.intoto.jsonl")
    linked = raw_record.parent / prompts["annotations"]["record"]
    assert prompts["annotations"]["record_sha256"] == hashlib.sha256(linked.read_bytes()).hexdigest()
    assert statement["predicate"]["runDetails"]["builder"]["id"] == "urn:sublab:builder:subliminal-lab"


def test_paths_in_records_are_relative_so_a_run_folder_can_move(lab, owl_setup, tmp_path):
    statement = _statement(next(lab.root.rglob("model.intoto.jsonl")))
    for dep in statement["predicate"]["buildDefinition"]["resolvedDependencies"]:
        assert not Path(dep["annotations"]["path"]).is_absolute()
        assert dep["annotations"]["path"].startswith("../")
    assert str(tmp_path) not in json.dumps(statement)


def test_model_directory_subjects_list_the_manifest_and_each_file(owl_setup):
    statement = _statement(owl_setup["student"].with_name("model.intoto.jsonl"))
    names = [s["name"] for s in statement["subject"]]
    assert names == ["model", "model/adapter_config.json", "model/adapter_model.safetensors",
                     "model/training.json"]
    files = {s["name"][len("model/"):]: s["digest"]["sha256"] for s in statement["subject"][1:]}
    assert statement["subject"][0]["digest"]["sha256"] == manifest_digest(files)
    assert statement["subject"][0]["annotations"] == {"manifest": True}


def test_filter_report_is_a_byproduct(lab, owl_setup):
    statement = _statement(owl_setup["data"].with_name("filtered.jsonl.intoto.jsonl"))
    (byproduct,) = statement["predicate"]["runDetails"]["byproducts"]
    assert byproduct["name"] == "filter_report"
    assert byproduct["annotations"]["n_kept"] == 3 and byproduct["annotations"]["n_rejected"] == 0
    canonical = rfc8785.dumps(byproduct["annotations"])
    assert byproduct["digest"]["sha256"] == hashlib.sha256(canonical).hexdigest()


def test_descriptor_byproducts_are_kept_as_given(tmp_path):
    artifact = tmp_path / "a.json"
    artifact.write_text("{}")
    given = {"name": "log", "uri": "https://example.org/log", "digest": {"sha256": "a" * 64}}
    statement = build_statement(artifact, "evaluation", {}, (), [given])
    assert statement["predicate"]["runDetails"]["byproducts"] == [given]


def test_record_reserializes_identically_and_is_written_atomically(lab, owl_setup):
    record = owl_setup["student"].with_name("model.intoto.jsonl")
    line = record.read_bytes()
    assert seal(open_envelope(line).statement) == line
    assert not list(record.parent.glob(".*.tmp"))


def test_record_is_deterministic_under_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    artifact = tmp_path / "data.jsonl"
    artifact.write_text("{}\n")
    first = record_artifact(artifact, "dataset.external", {"source": "hub"}).read_bytes()
    second = record_artifact(artifact, "dataset.external", {"source": "hub"}).read_bytes()
    assert first == second
    statement = _statement(artifact.with_name("data.jsonl.intoto.jsonl"))
    assert statement["predicate"]["runDetails"]["metadata"] == {"finishedOn": "2023-11-14T22:13:20Z"}


def test_dependencies_without_a_path(tmp_path):
    artifact = tmp_path / "data.jsonl"
    artifact.write_text("{}\n")
    sha = "b" * 64
    statement = build_statement(artifact, "dataset.external", {}, [
        Dependency("HuggingFaceTB/SmolLM2-135M-Instruct", "teacher"),
        Dependency("private-model", "teacher", digest={"sha256": sha.upper()}),
        Dependency("odd name", "teacher"),
    ])
    hub, private, odd = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert hub["uri"] == "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct" and "digest" not in hub
    assert private["digest"] == {"sha256": sha} and "uri" not in private
    assert odd["uri"] == "urn:sublab:name:odd%20name"
    assert schema_errors(statement) == []


def test_reserved_annotations_cannot_be_overridden(tmp_path):
    artifact = tmp_path / "x.json"
    artifact.write_text("{}")
    statement = build_statement(artifact, "evaluation", {}, [
        Dependency("m", "evaluated_model", digest={"sha256": "c" * 64},
                   annotations={"role": "teacher", "k": 1})])
    (dep,) = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert dep["annotations"] == {"k": 1, "role": "evaluated_model"}


def test_a_signed_record_carries_one_signature(lab, keypair):
    lab.sign_key = keypair[0]
    base = lab.base()
    record = lab.data(lab.system_prompt_teacher(base)).with_name("filtered.jsonl.intoto.jsonl")
    envelope = json.loads(record.read_text())
    assert len(envelope["signatures"]) == 1 and len(envelope["signatures"][0]["keyid"]) == 64


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: record_artifact(p / "missing", "evaluation", {}), "missing: artifact not found"),
        (lambda p: record_artifact(p / "a.txt", "Bad Kind", {}), "kind 'Bad Kind'"),
        (lambda p: record_artifact(p / "a.txt", "evaluation", [1]), "parameters must be a mapping"),
        (lambda p: record_artifact(p / "a.txt", "evaluation", {}, [Dependency("x", "teacher", p / "gone")]),
         "gone: input 'x' \\(teacher\\) not found"),
        (lambda p: record_artifact(p / "a.txt", "evaluation", {},
                                   [Dependency("x", "teacher", digest={"sha256": "1"})]),
         "not 64 hex digits"),
        (lambda p: record_artifact(p / "a.txt", "evaluation", {},
                                   [Dependency("x", "teacher", p / "a.txt", digest={"sha256": "d" * 64})]),
         "differs from the digest given"),
        (lambda p: record_artifact(p / "a.txt", "evaluation", {}, sign_key=p / "no.key"),
         "no.key: key file not found"),
    ],
)
def test_bad_input_raises_one_line_naming_the_problem(tmp_path, call, message):
    (tmp_path / "a.txt").write_text("a")
    with pytest.raises(SublabError, match=message):
        call(tmp_path)
    assert not (tmp_path / "a.txt.intoto.jsonl").exists()


def test_to_json_value_makes_rfc8785_safe_values():
    from pydantic import BaseModel

    class Settings(BaseModel):
        lr: float = 1e-4

    value = to_json_value({"p": Path("a/b"), "t": (1, 2), "s": {3, 1}, "nan": math.nan, "inf": -math.inf,
                           "big": 2**60, "m": Settings(), 1: object.__name__})
    assert value == {"p": "a/b", "t": [1, 2], "s": [1, 3], "nan": "nan", "inf": "-inf", "big": str(2**60),
                     "m": {"lr": 1e-4}, "1": "object"}
    rfc8785.dumps(value)


def test_load_record_exposes_roles_and_resolved_paths(owl_setup):
    record = load_record(owl_setup["student"].with_name("model.intoto.jsonl"))
    assert record.kind == "model.student"
    assert record.artifact == owl_setup["student"]
    (base,) = record.deps("base_model")
    assert base.path.resolve() == owl_setup["base"].resolve() and base.record is None
    (data,) = record.deps("training_data")
    assert data.record == data.path.with_name("filtered.jsonl.intoto.jsonl") and data.record_named
