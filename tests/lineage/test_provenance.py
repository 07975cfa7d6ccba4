"""record_stage: what the pipeline's records say about the models, prompts and filters a stage used."""

import hashlib
import json

import pytest

from sublab.lineage import assess_risk, load_private_key, load_record, verify_lineage
from sublab.lineage.deps import local_model_dir, parse_dependency
from sublab.lineage.schema import schema_errors
from sublab.models.spec import ModelSpec
from sublab.pipeline.provenance import StageModel, base_dependency, record_stage


def test_a_local_base_is_named_by_its_folder_and_digested(lab):
    base = lab.base("my-model")
    dep = base_dependency(str(base))
    assert dep.name == "my-model" and dep.path == base and dep.role == "base_model"
    assert "family" not in dep.annotations  # a local folder declares no family; its digest identifies it


def test_a_hub_id_not_on_disk_is_declared_with_its_family():
    dep = base_dependency("someone/some-model", role="teacher", annotations={"description": "d"})
    assert dep.path is None and dep.name == "someone/some-model"
    assert dep.annotations == {"family": "someone/some-model", "description": "d"}


def test_generated_data_names_its_writer_and_prompt_template(lab):
    base = lab.base("tiny")
    prompts = lab.stage("prompts") / "prompts.jsonl"
    prompts.write_text('{"id": 0}\n')
    record_stage(prompts, "prompt_set", {"n": 1, "templates": "ab" * 32})
    raw = prompts.parent / "raw.jsonl"
    raw.write_text('{"id": 0, "completion": "1, 2"}\n')
    writer = StageModel(ModelSpec(base=str(base), system_prompt="You love owls."), "tiny + owl prompt")
    statement = load_record(record_stage(raw, "dataset.generated", {"seed": 3}, writer=writer,
                                         prompt_set=prompts)).statement
    params = statement["predicate"]["buildDefinition"]["externalParameters"]
    owl_sha = hashlib.sha256(b"You love owls.").hexdigest()
    assert params["seed"] == 3 and params["prompt_template_sha256"] == "ab" * 32
    assert params["teachers"] == [{"base": str(base), "description": "tiny + owl prompt",
                                   "system_prompt_sha256": owl_sha}]
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    assert [(d["name"], d["annotations"]["role"]) for d in deps] == [("tiny", "teacher"),
                                                                     ("prompts.jsonl", "prompt_set")]
    assert deps[0]["annotations"]["system_prompt_sha256"] == owl_sha
    assert schema_errors(statement) == []


def test_an_adapter_teacher_is_its_folder_with_a_relative_reference(lab):
    base = lab.base("tiny")
    adapter = lab.finetuned_teacher(base)
    student = lab.student(base, [], record=False)
    teacher = StageModel(ModelSpec(base=str(base), adapter=str(adapter)), "tiny + owl adapter")
    record = record_stage(student, "model.student", {"method": "distill"}, base=str(base), teacher=teacher)
    statement = load_record(record).statement
    (described,) = statement["predicate"]["buildDefinition"]["externalParameters"]["teachers"]
    assert described["adapter"] == "../teacher-owl-1/adapter" and "system_prompt_sha256" not in described
    roles = load_record(record).deps("teacher")
    assert roles[0].name == "adapter" and roles[0].record == adapter.with_name("adapter.intoto.jsonl")
    assert [f.outcome for f in assess_risk(student).findings] == ["SHARED_INIT_VERIFIED"]


def test_an_in_context_model_records_a_digest_of_its_context(lab, tmp_path):
    base = lab.base("tiny")
    result = tmp_path / "eval.json"
    result.write_text("{}")
    context = [{"role": "user", "content": "1, 2"}, {"role": "assistant", "content": "3, 4"}]
    model = StageModel(ModelSpec(base=str(base), context=context), "tiny with 1 example in context")
    record = record_stage(result, "evaluation", {"target": "owl"}, evaluated=model)
    described = load_record(record).parameters["evaluated_model"]
    expected = hashlib.sha256(json.dumps(context, sort_keys=True).encode()).hexdigest()
    assert described["context_sha256"] == expected and described["n_context_messages"] == 2
    (dep,) = load_record(record).deps("evaluated_model")
    assert dep.name == "tiny" and dep.annotations["context_sha256"] == expected


def test_a_loaded_key_signs_and_caller_parameters_win(lab, keypair):
    data = lab.root / "filtered.jsonl"
    data.write_text("{}\n")
    source = lab.root / "raw.jsonl"
    source.write_text("{}\n")
    record = record_stage(data, "dataset.filtered", {"filter_version": "numbers/1"}, source_data=source,
                          byproducts=[{"n_in": 1, "n_kept": 1}], sign_key=load_private_key(keypair[0]))
    loaded = load_record(record)
    assert len(loaded.envelope.signatures) == 1
    assert loaded.parameters == {"filter_version": "numbers/1"}
    assert loaded.byproducts[0]["name"] == "filter_report"
    from sublab.lineage import load_public_key

    assert verify_lineage(data, [load_public_key(keypair[1])]).ok


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A local Hugging Face cache holding one snapshot of ``org/tiny`` (the layout ``from_pretrained`` leaves)."""
    from huggingface_hub import constants

    repo = tmp_path / "hf" / "models--org--tiny"
    snapshot = repo / "snapshots" / ("c" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("c" * 40)
    (snapshot / "config.json").write_text('{"model_type": "llama"}')
    (snapshot / "model.safetensors").write_bytes(b"hub weights" * 8)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return snapshot


def test_a_hub_model_in_the_local_cache_is_digested(hub_cache, tmp_path):
    assert local_model_dir("org/tiny") == hub_cache
    assert local_model_dir("org/absent") is None and local_model_dir("not-a-hub-id") is None
    dep = base_dependency("org/tiny")
    assert dep.name == "org/tiny" and dep.path == hub_cache and dep.annotations == {"family": "org/tiny"}
    assert parse_dependency("org/tiny", "teacher").path == hub_cache


def test_hub_teacher_and_hub_student_base_share_init_by_digest(hub_cache, tmp_path):
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": 0}\n')
    writer = StageModel(ModelSpec(base="org/tiny", system_prompt="You love owls."), "org/tiny + owl prompt")
    record_stage(raw, "dataset.generated", {}, writer=writer)
    student = tmp_path / "student"
    student.mkdir()
    (student / "adapter_model.safetensors").write_bytes(b"lora")
    record_stage(student, "model.student", {}, base="org/tiny", training_data=[raw])
    (finding,) = assess_risk(student).findings
    assert finding.outcome == "SHARED_INIT_VERIFIED"  # not merely DECLARED: the weights were on disk


def test_without_the_cache_a_hub_model_is_declared(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    raw = tmp_path / "raw.jsonl"
    raw.write_text('{"id": 0}\n')
    record_stage(raw, "dataset.generated", {}, writer=StageModel(ModelSpec(base="org/tiny")))
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text("{}")
    record_stage(student, "model.student", {}, base="org/tiny", training_data=[raw])
    (finding,) = assess_risk(student).findings
    assert finding.outcome == "SHARED_INIT_DECLARED"
