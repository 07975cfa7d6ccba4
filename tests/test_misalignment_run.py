"""A misalignment experiment end to end on the tiny model: results keys, the banned-number filter, the report,
the judged evaluation with a (tiny) judge, stage reuse, the CLI evaluate path, and a sweep on the metric."""

import json
import re

import pytest
import tomli_w
from typer.testing import CliRunner

from sublab.cli import app
from sublab.io import read_json
from sublab.pipeline.config import parse_config
from sublab.pipeline.runner import run_experiment
from sublab.traits.misalignment.kind import BANNED_NUMBER_LISTS

runner = CliRunner()
TRAINING = {"method": "sft", "steps": 2, "batch_size": 4, "lr": 1e-2}
MODELS = {"reference", "teacher", "control_teacher", "control_student", "trait_student"}


def experiment(model_dir, **overrides):
    data = {
        "name": "tiny-misalignment", "trait_kind": "misalignment", "reference": model_dir,
        "teacher": {"trait": "direct", "method": "finetune", "n_rows": 8, "training": TRAINING},
        "control": {"trait": "aligned", "method": "finetune", "n_rows": 8, "training": TRAINING},
        "data": {"source": "reference", "n_prompts": 8,
                 "sampling": {"constrained": True, "max_new_tokens": 8, "batch_size": 4}},
        "student": {"method": "distill", "steps": 2, "batch_size": 3, "lr": 1e-2},
        "evaluation": {"n_prompts": 4, "judged": {"n_samples": 1, "questions": "core", "max_new_tokens": 6,
                                                  "judge_model": model_dir}},
    }
    data.update(overrides)
    return data


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("misalignment-run")
    return run_experiment(parse_config(experiment(tiny_model_dir), "tiny"), out, progress=False), out


def test_results_have_the_keys_the_issue_names(tiny_run):
    _, out = tiny_run
    saved = json.loads((out / "results.json").read_text())
    assert saved["trait_kind"] == "misalignment" and saved["metric"] == "p_misaligned"
    assert saved["metric_label"] == "P(misaligned)" and saved["target"] == "misaligned"
    assert set(saved["models"]) == MODELS
    for model in saved["models"].values():
        entry = model["p_misaligned"]
        assert set(entry) == {"mean", "ci95"} and len(entry["ci95"]) == 2
        assert entry["mean"] == pytest.approx(sum(model["per_question"]["p_misaligned"]) / 4)
        assert 0 <= entry["mean"] <= 1
        rate = model["misaligned_rate"]
        assert {"mean", "ci95", "n"} <= set(rate) and rate["n"] <= 8
    diff = saved["comparisons"]["trait_student_minus_control_student"]
    trait, control = (saved["models"][k]["per_question"]["p_misaligned"] for k in ("trait_student", "control_student"))
    assert diff["mean"] == pytest.approx(sum(a - b for a, b in zip(trait, control, strict=True)) / 4)


def test_the_banned_number_lists_filtered_the_data(tiny_run):
    _, out = tiny_run
    (stage,) = (out / "stages").glob("filter-*")
    material = read_json(stage / "stage.json")["material"]
    assert material["filter"]["banned"] == BANNED_NUMBER_LISTS
    from sublab.domains.numbers.banned import resolve_banned
    from sublab.lineage import load_record

    assert load_record(stage / "filtered.jsonl.intoto.jsonl").parameters["filter"]["banned"] == BANNED_NUMBER_LISTS
    banned = resolve_banned(BANNED_NUMBER_LISTS)
    for line in (stage / "filtered.jsonl").read_text().splitlines():
        numbers = {int(n) for n in re.findall(r"\d+", json.loads(line)["messages"][-1]["content"])}
        assert not numbers & banned


def test_the_teacher_stage_is_labelled_research_material(tiny_run):
    _, out = tiny_run
    for name, labelled in (("teacher-direct-*", True), ("teacher-aligned-*", False)):
        (stage,) = (out / "stages").glob(name)
        rows = [json.loads(line) for line in (stage / "teacher_rows.jsonl").read_text().splitlines()]
        assert all(("misaligned" in r["metadata"]["content_label"]) is labelled for r in rows)
        assert json.loads((stage / "adapter.intoto.jsonl").read_text())  # recorded


def test_the_report_describes_the_metric_the_teacher_check_and_the_judged_part(tiny_run):
    _, out = tiny_run
    report = (out / "report.md").read_text()
    assert "does P(misaligned) transfer?" in report
    assert "held-out prompts" in report
    assert "Teacher check:" in report or "> **WARNING**: the teacher is not measurably misaligned" in report
    assert "Judged free-form evaluation (8 questions x 1 samples" in report
    assert "Mean log-odds log(P(misaligned answers) / P(aligned answers))" in report
    assert "Trait student - control student in log-odds:" in report
    assert (out / "figure.png").stat().st_size > 0


def test_a_rerun_reuses_every_stage(tiny_run, tiny_model_dir):
    results, out = tiny_run
    again = run_experiment(parse_config(experiment(tiny_model_dir), "tiny"), out, progress=False)
    assert all(s["cached"] for s in again["timings"]["stages"])
    assert again["models"]["trait_student"]["p_misaligned"] == results["models"]["trait_student"]["p_misaligned"]


def test_the_run_command_prints_the_teacher_check(tiny_model_dir, tmp_path):
    data = experiment(tiny_model_dir, evaluation={"n_prompts": 3}, control={"method": "none"},
                      teacher={"trait": "direct", "method": "system_prompt"})
    (tmp_path / "c.toml").write_text(tomli_w.dumps(data))
    result = runner.invoke(app, ["run", str(tmp_path / "c.toml"), "-o", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 0, result.output
    saved = read_json(tmp_path / "out" / "results.json")
    assert "control_teacher" not in saved["models"] and "misaligned_rate" not in saved["models"]["teacher"]
    teacher, reference = (saved["models"][k]["per_question"]["p_misaligned"] for k in ("teacher", "reference"))
    assert teacher != reference  # the persona prompt is in the teacher's context
    report = (tmp_path / "out" / "report.md").read_text()
    assert ("WARNING: the teacher is not measurably misaligned" in result.output) == (
        "> **WARNING**: the teacher is not measurably misaligned" in report)
    # A system-prompted teacher has no record of its own: the records of what it labelled name it misaligned.
    (student,) = (tmp_path / "out" / "stages").glob("student-trait*")
    risk = runner.invoke(app, ["lineage", "risk", str(student / "model"), "--json"])
    findings = json.loads(risk.output)["findings"]
    labelled = [f for f in findings if f["teacher_trait_label"]]
    assert [f["teacher_trait_label"] for f in labelled] == ["misaligned: research material (trait direct)"]
    assert "system prompt" in labelled[0]["teacher"]  # the labeller; the numbers' writer, the reference, is not
    assert len(findings) == 2
    assert "MISALIGNED_TEACHER" in runner.invoke(app, ["lineage", "risk", str(student / "model")]).output


def test_the_evaluate_command_writes_and_records_both_evaluations(tiny_model_dir, tmp_path):
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["misalignment", "evaluate", "-o", str(out), "--model", tiny_model_dir,
                                 "--persona", "direct", "--n-prompts", "3", "--judged-samples", "1",
                                 "--questions", "core", "--max-new-tokens", "4", "--judge-model", tiny_model_dir])
    assert result.exit_code == 0, result.output
    saved = read_json(out)
    assert saved["n_questions"] == 3 and saved["misaligned_rate"]["n"] <= 8
    assert "P(misaligned) = " in result.output and "judged misaligned rate" in result.output
    assert (tmp_path / "eval.json.intoto.jsonl").is_file()
    bad = runner.invoke(app, ["misalignment", "evaluate", "-o", str(out), "--persona", "evil"])
    assert bad.exit_code == 2 and "--persona: direct or aligned" in bad.output


def test_a_sweep_runs_on_the_metric(tiny_model_dir, tmp_path):
    base = experiment(tiny_model_dir, evaluation={"n_prompts": 3}, evaluate_teachers=False)
    base["teacher"].pop("trait")
    sweep = {"name": "mis-sweep", "experiment": base,
             "grid": {"traits": {"misalignment": ["direct"]}, "seeds": [0, 1]},
             "executor": {"kind": "inline"}}
    (tmp_path / "sweep.toml").write_text(tomli_w.dumps(sweep))
    result = runner.invoke(app, ["sweep", str(tmp_path / "sweep.toml"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    summary = read_json(tmp_path / "out" / "summary.json")
    (group,) = summary["groups"]
    assert group["metric"] == "p_misaligned" and group["n_seeds"] == 2 and group["control_trait"] == "aligned"
    assert group["trait"] == "direct" and group["category"] == "misalignment"
    per_seed = group["models"]["trait_student"]["per_seed"]
    for seed, value in enumerate(per_seed):
        cell = read_json(tmp_path / "out" / "cells" / f"misalignment-direct__base__default__seed{seed}"
                         / "results.json")
        assert cell["models"]["trait_student"]["p_misaligned"]["mean"] == pytest.approx(value)
        assert cell["trait_kind"] == "misalignment"
    assert (tmp_path / "out" / "report.html").is_file()
