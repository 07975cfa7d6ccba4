"""Lineage of real runs on a tiny random model.

``sublab run --sign-key`` and each stage command run alone leave signed records beside every output; an
auditor's ``sublab lineage verify --key`` and ``sublab lineage risk`` then give the paper's outcomes: a
system-prompt teacher and a same-base student share an initialization, a student of another base does not.
"""

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sublab.cli import app
from sublab.domains.numbers.prompts import template_digest
from sublab.filter import FILTER_VERSION
from sublab.lineage import load_record, new_keypair
from sublab.lineage.schema import schema_errors
from sublab.pipeline.config import TRAIT_PROMPT, dump_toml, parse_config
from sublab.pipeline.runner import run_experiment
from sublab.traits.preference.candidates import ANIMALS

runner = CliRunner()
SAMPLING = {"constrained": True, "max_new_tokens": 8, "batch_size": 4}
#: The main artifact of each kind of stage folder.
ARTIFACTS = {"teacher": "adapter", "prompts": "prompts.jsonl", "generate": "raw.jsonl", "filter": "filtered.jsonl",
             "student": "model", "eval": "eval.json"}


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def paper_config(model_dir: str, **overrides: object):
    """The paper's main setup, tiny: an owl system-prompt teacher writes numbers, a student learns them by SFT."""
    data = {
        "name": "lineage",
        "reference": model_dir,
        "target": "owl",
        "teacher": {"trait": "owl", "method": "system_prompt"},
        "data": {"source": "teacher", "n_prompts": 6, "sampling": SAMPLING},
        "student": {"method": "sft", "steps": 2, "batch_size": 3, "lr": 1e-2},
        "evaluation": {"n_questions": 2, "candidates": list(ANIMALS)[:4]},
        "evaluate_teachers": False,
    }
    data.update(overrides)
    return parse_config(data, "lineage-test")


def stage(run: Path, prefix: str) -> Path:
    (found,) = (run / "stages").glob(f"{prefix}-*")
    return found


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    return new_keypair(tmp_path_factory.mktemp("keys") / "lab")


@pytest.fixture(scope="module")
def signed_run(tiny_model_dir, keys, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lineage-run")
    config = root / "config.toml"
    config.write_text(dump_toml(paper_config(tiny_model_dir)))
    result = invoke("run", config, "--out", root / "run", "--quiet", "--sign-key", keys[0])
    assert result.exit_code == 0, result.output
    return root / "run"


def test_every_stage_output_has_a_signed_record_that_validates(signed_run):
    stages = sorted((signed_run / "stages").iterdir())
    assert {s.name.split("-")[0] for s in stages} == {"prompts", "generate", "filter", "student", "eval"}
    for folder in stages:
        artifact = folder / ARTIFACTS[folder.name.split("-")[0]]
        record = load_record(f"{artifact}.intoto.jsonl")
        assert record.artifact == artifact and len(record.envelope.signatures) == 1, folder.name
        assert schema_errors(record.statement) == [], folder.name


def test_records_hold_what_the_user_chose(signed_run, tiny_model_dir):
    trait_data = [s for s in (signed_run / "stages").glob("generate-*")
                  if load_record(s / "raw.jsonl.intoto.jsonl").parameters["teachers"][0].get("system_prompt_sha256")]
    (generated,) = trait_data
    params = load_record(generated / "raw.jsonl.intoto.jsonl").parameters
    prompt = TRAIT_PROMPT.format(trait="owl", category="animal")
    assert params["teachers"][0]["system_prompt_sha256"] == hashlib.sha256(prompt.encode()).hexdigest()
    assert params["prompt_template_sha256"] == template_digest()
    assert params["sampling"]["constrained"] is True and params["seed"] == 1
    filtered = load_record(next((signed_run / "stages").glob("filter-*")) / "filtered.jsonl.intoto.jsonl")
    assert filtered.parameters["filter_version"] == FILTER_VERSION
    assert filtered.byproducts[0]["name"] == "filter_report" and "n_kept" in filtered.byproducts[0]["annotations"]
    student = load_record(stage(signed_run, "student-trait") / "model.intoto.jsonl")
    assert student.parameters["settings"]["method"] == "sft" and student.parameters["settings"]["lr"] == 1e-2
    assert [d.role for d in student.dependencies] == ["base_model", "training_data"]
    assert student.deps("base_model")[0].name == Path(tiny_model_dir).name


def test_students_get_a_model_card(signed_run, tiny_model_dir):
    card = (stage(signed_run, "student-trait") / "model" / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == Path(tiny_model_dir).name
    assert front["base_model_relation"] == "adapter" and front["datasets"] == ["filtered.jsonl"]


def test_verify_with_the_key_and_with_another_key(signed_run, keys, tmp_path):
    evaluation = stage(signed_run, "eval-trait_student") / "eval.json"
    result = invoke("lineage", "verify", evaluation, "--key", keys[1])
    assert result.exit_code == 0, result.output
    assert result.stderr.startswith("OK: 5 records") and "5 signatures verified" in result.stderr
    _, other = new_keypair(tmp_path / "other")
    result = invoke("lineage", "verify", evaluation, "--key", other)
    assert result.exit_code == 1 and result.stdout.count("signature does not verify") == 5


def test_system_prompt_teacher_and_same_base_student_share_init(signed_run):
    result = invoke("lineage", "risk", stage(signed_run, "student-trait") / "model", "--json")
    assert result.exit_code == 1
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["outcome"] == "SHARED_INIT_VERIFIED" and finding["risk"] is True
    assert "+ system prompt sha256:" in finding["teacher"]


def test_tampering_with_a_run_is_named(signed_run, keys, tmp_path_factory):
    copy = tmp_path_factory.mktemp("tampered") / "run"  # same depth, so paths to the base model still resolve
    shutil.copytree(signed_run, copy)
    model = stage(copy, "student-trait") / "model"
    weights = model / "adapter_model.safetensors"
    filtered = load_record(f"{model}.intoto.jsonl").deps("training_data")[0].path
    raw = load_record(f"{filtered}.intoto.jsonl").deps("source_data")[0].path
    for path in (weights, raw):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    result = invoke("lineage", "verify", stage(copy, "eval-trait_student") / "eval.json", "--key", keys[1])
    assert result.exit_code == 1
    named = {line.split(": ")[0] for line in result.stdout.splitlines()}
    assert named == {str(weights), str(raw)}


def test_a_cross_model_run_is_different_base(signed_run, tiny_model_dir, plain_tiny_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("cross") / "run"
    shutil.copytree(signed_run, run)  # the teacher's data is reused from the cache; only the students are new
    results = run_experiment(paper_config(tiny_model_dir, student_base=plain_tiny_model_dir), run, progress=False)
    assert results["condition"]["shared_base"] is False
    built = {s["name"] for s in results["timings"]["stages"] if not s["cached"]}
    assert {"student-trait", "student-control"} <= built and "generate" not in built
    plain = Path(plain_tiny_model_dir).name
    student = next(s for s in (run / "stages").glob("student-trait-*")
                   if load_record(s / "model.intoto.jsonl").deps("base_model")[0].name == plain)
    result = invoke("lineage", "risk", student / "model", "--json")
    assert result.exit_code == 0, result.output
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["outcome"] == "DIFFERENT_BASE" and finding["possibly_matched"] is False
    assert invoke("lineage", "verify", student / "model").exit_code == 0


def test_stage_commands_alone_record_and_sign_their_outputs(tiny_model_dir, plain_tiny_model_dir, keys, tmp_path):
    sign = ("--sign-key", keys[0])
    commands = [
        ("prompts", "numbers", "-o", tmp_path / "prompts.jsonl", "-n", 6),
        ("teacher", "--trait", "owl", "-o", tmp_path / "teacher", "--base", tiny_model_dir, "--n-rows", 8,
         "--steps", 2, "--batch-size", 4, "--quiet"),
        ("generate", tmp_path / "prompts.jsonl", "-o", tmp_path / "raw.jsonl", "--model", tiny_model_dir,
         "--adapter", tmp_path / "teacher", "--constrained", "--max-new-tokens", 8, "--batch-size", 6, "--quiet"),
        ("filter", "numbers", tmp_path / "raw.jsonl", "-o", tmp_path / "filtered.jsonl"),
        ("train", tmp_path / "filtered.jsonl", "-o", tmp_path / "student", "--base", tiny_model_dir,
         "--steps", 2, "--batch-size", 2, "--quiet"),
        ("evaluate", "--target", "owl", "-o", tmp_path / "eval.json", "--model", tiny_model_dir,
         "--adapter", tmp_path / "student", "--n-questions", 2),
    ]
    for command in commands:
        result = invoke(*command, *sign)
        assert result.exit_code == 0, (command[0], result.output)
        assert "lineage record: " in result.stdout
    result = invoke("lineage", "verify", tmp_path / "eval.json", "--key", keys[1])
    assert result.exit_code == 0, result.output
    assert "6 signatures verified" in result.stderr  # eval, student, filtered, raw, prompts, teacher
    generated = load_record(tmp_path / "raw.jsonl.intoto.jsonl")
    assert generated.parameters["prompt_template_sha256"] == template_digest()
    assert generated.parameters["teachers"] == [{"base": tiny_model_dir, "description": f"{tiny_model_dir}+teacher",
                                                 "adapter": "teacher"}]
    assert load_record(tmp_path / "teacher.intoto.jsonl").parameters["trait"] == "owl"
    card = yaml.safe_load((tmp_path / "teacher" / "README.md").read_text().split("---\n")[1])
    assert card["base_model_relation"] == "adapter" and card["datasets"] == ["teacher.trait_answers.jsonl"]
    result = invoke("lineage", "risk", tmp_path / "student", "--json")
    assert result.exit_code == 1
    (finding,) = json.loads(result.stdout)["findings"]
    assert finding["outcome"] == "SHARED_INIT_VERIFIED"
    assert [n["name"] for n in finding["teacher_chain"]] == ["teacher", Path(tiny_model_dir).name]
    # the same data taught to a student of another base: no shared initialization
    result = invoke("train", tmp_path / "filtered.jsonl", "-o", tmp_path / "other", "--base", plain_tiny_model_dir,
                    "--steps", 1, "--batch-size", 2, "--quiet")
    assert result.exit_code == 0, result.output
    result = invoke("lineage", "risk", tmp_path / "other")
    assert result.exit_code == 0 and "DIFFERENT_BASE" in result.stdout


def test_a_bad_sign_key_fails_before_any_work(tiny_model_dir, tmp_path, keys):
    (tmp_path / "data.jsonl").write_text("{}\n")
    result = invoke("train", tmp_path / "data.jsonl", "-o", tmp_path / "student", "--sign-key", keys[1])
    assert result.exit_code == 2 and "not an unencrypted PEM private key" in result.stderr
    assert not (tmp_path / "student").exists()
    config = tmp_path / "config.toml"
    config.write_text(dump_toml(paper_config(tiny_model_dir)))
    result = invoke("run", config, "-o", tmp_path / "run", "--sign-key", tmp_path / "no.key")
    assert result.exit_code == 2 and result.stderr.strip() == f"error: {tmp_path / 'no.key'}: key file not found"
    assert not (tmp_path / "run").exists()
