"""The whole experiment pipeline on a tiny random model: wiring, caching, results schema, report files."""

import json

import pytest
import torch

from sublab.pipeline.config import parse_config
from sublab.pipeline.runner import run_experiment
from sublab.traits.preference.candidates import ANIMALS


def tiny_config(model_dir, **overrides):
    data = {
        "name": "tiny",
        "reference": model_dir,
        "target": "owl",
        "teacher": {"trait": "owl", "method": "finetune", "n_rows": 8,
                    "training": {"method": "sft", "steps": 3, "batch_size": 4, "lr": 1e-2}},
        "control": {"trait": "cat", "method": "finetune", "n_rows": 8,
                    "training": {"method": "sft", "steps": 3, "batch_size": 4, "lr": 1e-2}},
        "data": {"source": "reference", "n_prompts": 6,
                 "sampling": {"constrained": True, "max_new_tokens": 8, "batch_size": 3}},
        "student": {"method": "distill", "steps": 2, "batch_size": 3, "lr": 1e-2},
        "evaluation": {"n_questions": 3, "candidates": list(ANIMALS)[:5]},
    }
    data.update(overrides)
    return parse_config(data, "tiny")


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run_experiment(tiny_config(tiny_model_dir), out, progress=False), out


def test_results_schema(tiny_run):
    _, out = tiny_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["target"] == "owl"
    assert set(saved["models"]) == {"reference", "teacher", "control_teacher", "control_student", "trait_student"}
    for model in saved["models"].values():
        low, high = model["p_target"]["ci95"]
        assert low <= model["p_target"]["mean"] <= high
        assert set(model["distribution"]) == set(list(ANIMALS)[:5])
        assert model["n_questions"] == 3
        # P(target) is the target's share of the normalized distribution, averaged over the questions.
        assert sum(model["distribution"].values()) == pytest.approx(1.0)
        per_question = model["per_question"]["p_target"]
        assert len(per_question) == 3
        assert model["p_target"]["mean"] == pytest.approx(sum(per_question) / 3)
        assert model["distribution"]["owl"] == pytest.approx(model["p_target"]["mean"])
    comparison = saved["comparisons"]["trait_student_minus_control_student"]
    trait, control = (saved["models"][k]["per_question"]["p_target"] for k in ("trait_student", "control_student"))
    assert comparison["mean"] == pytest.approx(sum(a - b for a, b in zip(trait, control, strict=True)) / 3)
    assert saved["seeds"]["student_lora_init"] == 0
    assert saved["timings"]["total_seconds"] > 0
    assert isinstance(saved["transfer"], bool)


def test_report_files_and_saved_config(tiny_run, tiny_model_dir):
    _, out = tiny_run
    report = (out / "report.md").read_text()
    assert "P(owl)" in report and "trait student" in report and "control student" in report
    assert (out / "figure.png").read_bytes()[:4] == b"\x89PNG"
    reloaded = parse_config(__import__("tomllib").loads((out / "config.toml").read_text()), "saved")
    assert reloaded == tiny_config(tiny_model_dir)


def test_reloaded_models_give_the_saved_probabilities(tiny_run, tiny_model_dir):
    """The trained teacher and student, loaded back from their stage folders, score exactly as recorded."""
    from sublab.models.spec import load_spec
    from sublab.train.trainer import trained_spec
    from sublab.traits.preference.evaluate import evaluate_model

    results, out = tiny_run
    config = tiny_config(tiny_model_dir)
    paths = {s["name"]: out / s["path"] for s in results["timings"]["stages"]}
    folders = {"trait_student": (paths["student-trait"] / "model", config.student),
               "teacher": (paths["teacher-owl"] / "adapter", config.teacher.training)}
    for role, (folder, settings) in folders.items():
        spec = trained_spec(tiny_model_dir, folder, settings)
        model, tokenizer = load_spec(spec)
        again = evaluate_model(model, tokenizer, "owl", config.evaluation, preamble=spec.preamble())
        saved = results["models"][role]
        assert again["per_question"]["p_target"] == pytest.approx(saved["per_question"]["p_target"], rel=1e-5)
        for mine, theirs in zip(again["per_question"]["normalized"], saved["per_question"]["normalized"], strict=True):
            assert mine == pytest.approx(theirs, abs=1e-5)
        assert again["p_target"]["mean"] == pytest.approx(saved["p_target"]["mean"], rel=1e-5)
    # Training changed them: the student's probabilities are not the reference's.
    assert results["models"]["trait_student"]["per_question"]["p_target"] != \
        results["models"]["reference"]["per_question"]["p_target"]


def test_shared_reference_data_is_generated_once(tiny_run):
    _, out = tiny_run
    assert len(list((out / "stages").glob("generate-*"))) == 1
    assert len(list((out / "stages").glob("student-*"))) == 2


def test_rerun_reuses_every_stage(tiny_run, tiny_model_dir):
    results, out = tiny_run
    again = run_experiment(tiny_config(tiny_model_dir), out, progress=False)
    assert all(stage["cached"] for stage in again["timings"]["stages"])
    assert [s["name"] for s in again["timings"]["stages"]] == [s["name"] for s in results["timings"]["stages"]]
    assert again["models"] == results["models"] and again["comparisons"] == results["comparisons"]


def test_changing_the_student_reruns_only_students_and_their_evaluations(tiny_run, tiny_model_dir):
    _, out = tiny_run
    config = tiny_config(tiny_model_dir, student={"method": "distill", "steps": 3, "batch_size": 3, "lr": 1e-2})
    again = run_experiment(config, out, progress=False)
    rerun = {s["name"] for s in again["timings"]["stages"] if not s["cached"]}
    assert rerun == {"student-control", "student-trait", "eval-control_student", "eval-trait_student"}


def test_shuffled_condition_trains_on_shuffled_numbers(tiny_model_dir, tmp_path):
    config = tiny_config(tiny_model_dir, data={"source": "reference", "n_prompts": 6, "shuffle": "across",
                                               "sampling": {"constrained": True, "max_new_tokens": 8, "batch_size": 3}})
    results = run_experiment(config, tmp_path, progress=False)
    shuffled = next((tmp_path / "stages").glob("shuffle-across-*")) / "filtered.jsonl"
    filtered = next((tmp_path / "stages").glob("filter-*")) / "filtered.jsonl"
    from collections import Counter

    from sublab.io import read_jsonl

    def numbers(path):
        return Counter(n for r in read_jsonl(path) for n in r["messages"][-1]["content"].replace(",", " ").split())

    assert numbers(shuffled) == numbers(filtered)
    assert results["condition"]["shuffle"] == "across"
    student_record = json.loads(next((tmp_path / "stages").glob("student-trait-*")).joinpath("stage.json").read_text())
    assert student_record["material"]["data"] == next((tmp_path / "stages").glob("shuffle-across-*")).name[-12:]


def test_in_context_condition_trains_nothing(tiny_model_dir, tmp_path):
    data = {"source": "teacher", "n_prompts": 4, "sampling": {"constrained": True, "max_new_tokens": 8}}
    results = run_experiment(tiny_config(tiny_model_dir, in_context_examples=2, data=data), tmp_path,
                             progress=False)
    assert not list((tmp_path / "stages").glob("student-*"))
    assert "in context" in results["models"]["trait_student"]["description"]
    # Each arm's student sees its own teacher's examples, so the two differ from each other and the reference.
    trait, control = results["models"]["trait_student"], results["models"]["control_student"]
    assert trait["per_question"]["p_target"] != control["per_question"]["p_target"]
    assert trait["per_question"]["p_target"] != results["models"]["reference"]["per_question"]["p_target"]


def test_cross_model_students_distill_across_tokenizer_layouts(tiny_model_dir, plain_tiny_model_dir, tmp_path):
    results = run_experiment(tiny_config(tiny_model_dir, student_base=plain_tiny_model_dir), tmp_path,
                             progress=False)
    assert "student_reference" in results["models"]
    assert results["condition"]["shared_base"] is False
    assert "trait_student_minus_student_reference" in results["comparisons"]
    log = json.loads(next((tmp_path / "stages").glob("student-trait-*")).joinpath("model", "training.json").read_text())
    assert log["base"] == plain_tiny_model_dir and log["final_loss"] is not None


def test_the_teacher_command_and_the_runner_train_the_same_teacher(tiny_run, tiny_model_dir, tmp_path):
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from sublab.cli import app

    _, out = tiny_run
    stage = next((out / "stages").glob("teacher-owl-*"))
    assert sorted(p.name for p in stage.iterdir()) == ["adapter", "adapter.intoto.jsonl", "stage.json",
                                                       "trait_answers.jsonl"]
    assert not (stage / "adapter" / "trait_answers.jsonl").exists()
    args = ["teacher", "--trait", "owl", "-o", tmp_path / "owl", "--base", tiny_model_dir, "--n-rows", 8,
            "--steps", 3, "--batch-size", 4, "--lr", 0.01, "--quiet"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "owl.trait_answers.jsonl").read_bytes() == (stage / "trait_answers.jsonl").read_bytes()
    mine = load_file(str(tmp_path / "owl" / "adapter_model.safetensors"))
    runners = load_file(str(stage / "adapter" / "adapter_model.safetensors"))
    assert mine.keys() == runners.keys() and all(torch.equal(mine[k], runners[k]) for k in mine)


def test_a_teacher_refuses_training_rows_inside_its_adapter_folder(tiny_model_dir, tmp_path):
    from sublab.errors import SublabError
    from sublab.train.settings import TrainSettings
    from sublab.train.teacher import train_trait_teacher

    with pytest.raises(SublabError, match=r"rows.jsonl: the teacher's training rows go next to the adapter"):
        train_trait_teacher(tiny_model_dir, "owl", "animal", tmp_path / "t", TrainSettings(steps=1),
                            rows_path=tmp_path / "t" / "rows.jsonl", progress=False)
    assert not (tmp_path / "t").exists()


def test_cache_keys_follow_built_in_questions_candidates_templates_and_filter_version(tiny_model_dir, tmp_path,
                                                                                       monkeypatch):
    """A stage reruns when code-level inputs that change its output change, and only then."""
    import sublab.domains.numbers.domain as numbers_domain
    import sublab.traits.preference.questions as questions

    config = tiny_config(tiny_model_dir, control={"method": "none"})
    first = run_experiment(config, tmp_path, progress=False)
    names = [s["name"] for s in first["timings"]["stages"]]

    def rebuilt():
        results = run_experiment(config, tmp_path, progress=False)
        assert [s["name"] for s in results["timings"]["stages"]] == names
        return {s["name"] for s in results["timings"]["stages"] if not s["cached"]}

    assert rebuilt() == set()  # unchanged: everything reused
    evaluations = {n for n in names if n.startswith("eval-")}
    with monkeypatch.context() as patch:
        patch.setattr(questions, "EVAL_TEMPLATES", ("Say your favorite {category}.", *questions.EVAL_TEMPLATES[1:]))
        assert rebuilt() == evaluations
    with monkeypatch.context() as patch:
        patch.setitem(ANIMALS, "owl", "owlets")  # another accepted plural of a candidate
        assert rebuilt() == evaluations
    with monkeypatch.context() as patch:
        patch.setattr(numbers_domain, "FILTER_VERSION", "numbers/test")
        patch.setattr(numbers_domain, "PREVIOUS_FILTER_VERSION", "numbers/test")  # constrained data keys name it
        assert rebuilt() == {"filter", "student-control", "student-trait", "eval-control_student",
                             "eval-trait_student"}
        record = json.loads(next(p for p in (tmp_path / "stages").glob("filter-*")
                                 if json.loads((p / "stage.json").read_text())["material"]["filter_version"]
                                 == "numbers/test").joinpath("filter_report.json").read_text())
        assert record["filter"] == "numbers/test"
    with monkeypatch.context() as patch:
        patch.setattr(questions, "TRAIN_TEMPLATES", ("Favourite {category}, one word?", *questions.TRAIN_TEMPLATES[1:]))
        assert rebuilt() == {"teacher-owl", "student-trait", "eval-teacher", "eval-trait_student"}
    assert rebuilt() == set()  # everything back as it was: the first stages are reused again
