"""The whole experiment pipeline on a tiny random model: wiring, caching, results schema, report files."""

import json

import pytest

from sublab.evaluate.candidates import ANIMALS
from sublab.experiments.config import parse_config
from sublab.experiments.runner import run_experiment


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
    assert saved["seeds"]["student_lora_init"] == 0
    assert saved["timings"]["total_seconds"] > 0
    assert isinstance(saved["transfer"], bool)


def test_report_files_and_saved_config(tiny_run):
    _, out = tiny_run
    report = (out / "report.md").read_text()
    assert "P(owl)" in report and "trait student" in report and "control student" in report
    assert (out / "figure.png").read_bytes()[:4] == b"\x89PNG"
    reloaded = parse_config(__import__("tomllib").loads((out / "config.toml").read_text()), "saved")
    assert reloaded.target == "owl"


def test_shared_reference_data_is_generated_once(tiny_run):
    _, out = tiny_run
    assert len(list((out / "stages").glob("generate-*"))) == 1
    assert len(list((out / "stages").glob("student-*"))) == 2


def test_rerun_reuses_every_stage(tiny_run, tiny_model_dir):
    results, out = tiny_run
    again = run_experiment(tiny_config(tiny_model_dir), out, progress=False)
    assert all(stage["cached"] for stage in again["timings"]["stages"])
    assert again["models"]["trait_student"]["p_target"] == results["models"]["trait_student"]["p_target"]


def test_changing_the_student_reruns_only_students_and_their_evaluations(tiny_run, tiny_model_dir):
    _, out = tiny_run
    config = tiny_config(tiny_model_dir, student={"method": "distill", "steps": 3, "batch_size": 3, "lr": 1e-2})
    again = run_experiment(config, out, progress=False)
    rerun = {s["name"] for s in again["timings"]["stages"] if not s["cached"]}
    assert rerun == {"student-control", "student-trait", "eval-control_student", "eval-trait_student"}
