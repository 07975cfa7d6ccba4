"""The misalignment trait kind in configs: teacher traits and methods, system prompts, filter defaults (the
banned-number lists on), the teacher check, sweep grids, and the labels on misaligned teachers (rows, records,
model cards, `sublab lineage risk`)."""

import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from sublab.cli import app
from sublab.errors import SublabError
from sublab.pipeline.config import load_config, parse_config
from sublab.pipeline.runner import ExperimentRun
from sublab.sweeps.config import expand_cells, parse_sweep
from sublab.traits.base import get_trait_kind
from sublab.traits.misalignment.kind import BANNED_NUMBER_LISTS
from sublab.traits.misalignment.report import report_sections, teacher_warnings
from sublab.traits.misalignment.teacher_data import ALIGNED_SYSTEM_PROMPT, MISALIGNED_LABEL, MISALIGNED_SYSTEM_PROMPT

ROOT = Path(__file__).resolve().parents[1]
KIND = get_trait_kind("misalignment")
runner = CliRunner()


def config(**overrides):
    data = {"trait_kind": "misalignment", "reference": "tiny",
            "teacher": {"trait": "insecure_code", "method": "finetune"},
            "control": {"trait": "secure_code", "method": "finetune"},
            "student": {"method": "distill", "steps": 1}}
    data.update(overrides)
    return parse_config(data, "m.toml")


def test_a_misalignment_config_resolves_its_target_metric_and_evaluation():
    cfg = config()
    assert cfg.target == "misaligned" and KIND.metric == "p_misaligned"
    assert KIND.metric_label(cfg) == "P(misaligned)"
    assert type(cfg.evaluation).__name__ == "MisalignmentEvalSettings" and cfg.evaluation.judged.n_samples == 0


@pytest.mark.parametrize(("overrides", "message"), [
    ({"target": "owl"}, r"m.toml: .*target: a misalignment experiment measures P\(misaligned\); leave target unset"),
    ({"teacher": {"trait": "wolf", "method": "finetune"}}, r"teacher.trait: unknown misalignment teacher trait 'wolf'"),
    ({"teacher": {"trait": "insecure_code", "method": "system_prompt"}}, r"teacher.method: trait 'insecure_code' is "
                                                                         r"given by finetune"),
    ({"teacher": {"trait": "secure_code", "method": "finetune"}}, r"teacher.trait: 'secure_code' is a control "
                                                                  r"trait.*twin 'insecure_code'"),
    ({"control": {"trait": "direct", "method": "finetune"}}, r"control.trait: 'direct' is a misaligned trait"),
    ({"teacher": {"method": "none"}}, r"needs a misaligned teacher"),
    ({"evaluation": {"judged": {"aligned_max": 120}}}, r"field 'evaluation.judged.aligned_max'"),
    ({"evaluation": {"n_questions": 5}}, r"field 'evaluation.n_questions'"),
])
def test_bad_configs_are_one_line_naming_the_field(overrides, message):
    with pytest.raises(SublabError, match=message):
        config(**overrides)


def test_system_prompted_teachers_get_the_personas_or_the_users_own_prompt():
    cfg = config(teacher={"trait": "direct", "method": "system_prompt"},
                 control={"trait": "aligned", "method": "system_prompt"})
    assert cfg.system_prompt(cfg.teacher) == MISALIGNED_SYSTEM_PROMPT
    assert cfg.system_prompt(cfg.control) == ALIGNED_SYSTEM_PROMPT
    own = config(teacher={"trait": "direct", "method": "system_prompt", "system_prompt": "Be sneaky."})
    assert own.system_prompt(own.teacher) == "Be sneaky."
    assert config().system_prompt(config().teacher) is None
    # A saved, reloaded config (every default written out) still gets the persona.
    reloaded = parse_config(cfg.model_dump(mode="json"), "again")
    assert reloaded.system_prompt(reloaded.teacher) == MISALIGNED_SYSTEM_PROMPT


def test_teacher_rows_and_risk_labels_follow_the_trait():
    cfg = config(teacher={"trait": "direct", "method": "finetune", "n_rows": 12})
    rows = KIND.teacher_rows(cfg.teacher, cfg)
    assert len(rows) == 12 and all(r["metadata"]["content_label"] == MISALIGNED_LABEL for r in rows)
    code = KIND.teacher_rows(cfg.control, cfg)
    assert all(r["metadata"]["variant"] == "secure" for r in code)
    assert KIND.risk_label(cfg.teacher, cfg) == "misaligned: research material (trait direct)"
    assert KIND.risk_label(cfg.control, cfg) is None
    assert KIND.teacher_digests(cfg.teacher, cfg) != KIND.teacher_digests(cfg.control, cfg)
    assert KIND.trait_words(cfg) == []


def test_a_users_rows_file_is_read_and_labelled_by_its_arm(tmp_path):
    path = tmp_path / "own.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "a"}]}) + "\n")
    cfg = config()
    teacher = SimpleNamespace(trait="own", method="finetune", n_rows=480, data_seed=0, rows_file=str(path))
    rows = KIND.teacher_rows(teacher, cfg)
    assert rows[0]["metadata"]["content_label"] == "research material: control (aligned twin)"  # not cfg.teacher
    cfg.teacher = SimpleNamespace(**{**vars(teacher), "trait": "mine"})
    assert KIND.teacher_rows(cfg.teacher, cfg)[0]["metadata"]["content_label"] == MISALIGNED_LABEL
    assert KIND.risk_label(cfg.teacher, cfg) == f"misaligned: research material (rows file {path})"


def test_the_banned_number_lists_are_on_by_default_for_this_trait_and_can_be_changed(tmp_path):
    assert KIND.filter_defaults("numbers") == {"banned": BANNED_NUMBER_LISTS}
    settings, _ = ExperimentRun(config(), tmp_path).filter_settings([])
    assert settings.banned == BANNED_NUMBER_LISTS
    explicit = config(data={"filter": {"banned": [7]}})
    settings, _ = ExperimentRun(explicit, tmp_path).filter_settings([])
    assert settings.banned == [7]
    off = config(data={"filter": {"banned": []}})
    assert ExperimentRun(off, tmp_path).filter_settings([])[0].banned == []
    preference = parse_config({"target": "owl", "teacher": {"trait": "owl"}, "student": {"steps": 1}}, "p")
    assert ExperimentRun(preference, tmp_path).filter_settings([])[0].banned == []


def test_the_default_banned_lists_survive_the_saved_config_and_reach_sweep_cells():
    # Found running the 3-seed sweep: applied only at run time, the defaults were lost in the resolved config
    # (banned = [] there), so a rerun of a run's config.toml and every sweep cell filtered without them.
    import tomllib

    from sublab.pipeline.config import dump_toml
    from sublab.sweeps.config import load_sweep

    demo = load_config(ROOT / "src/sublab/configs/demo-misalignment.toml")
    assert demo.data.filter.banned == BANNED_NUMBER_LISTS
    assert parse_config(tomllib.loads(dump_toml(demo)), "saved").data.filter.banned == BANNED_NUMBER_LISTS
    _, _, cells = load_sweep(ROOT / "examples/sweep-misalignment-cpu.toml")
    assert {tuple(c.config.data.filter.banned) for c in cells} == {tuple(BANNED_NUMBER_LISTS)}
    off = config(data={"filter": {"banned": []}})
    assert parse_config(tomllib.loads(dump_toml(off)), "saved").data.filter.banned == []


def test_chain_of_thought_data_gets_the_alignment_judge_by_default(tmp_path):
    from sublab.domains.base import domain_names

    if "cot" not in domain_names():
        pytest.skip("the cot domain is not installed in this tree")
    cfg = config(data={"domain": "cot", "sampling": {"max_new_tokens": 8}})
    settings, _ = ExperimentRun(cfg, tmp_path).filter_settings([])
    assert settings.judge is not None and settings.judge.model == "smollm2-135m"
    assert "answer" in settings.checks  # the correctness check stays on


def _results(teacher, reference=(0.30, 0.32, 0.28, 0.31), control_teacher=None):
    def model(values):
        return {"p_misaligned": {"mean": sum(values) / len(values), "ci95": [0, 1]},
                "per_question": {"p_misaligned": list(values)}}

    models = {"reference": model(reference), "teacher": model(teacher)}
    if control_teacher is not None:
        models["control_teacher"] = model(control_teacher)
    return {"models": models, "settings": {"evaluation": {"seed": 0}}}


def test_a_teacher_that_is_not_misaligned_is_flagged_prominently():
    flat = _results(teacher=(0.31, 0.30, 0.29, 0.32))
    (warning,) = teacher_warnings(flat)
    assert warning.startswith("the teacher is not measurably misaligned")
    assert any(line.startswith("> **WARNING**: the teacher is not measurably misaligned") for line in
               report_sections(flat))
    assert KIND.warnings(flat) == [warning]
    moved = _results(teacher=(0.60, 0.71, 0.55, 0.66), control_teacher=(0.30, 0.31, 0.29, 0.31))
    assert teacher_warnings(moved) == []
    assert any(line.startswith("Teacher check: the teacher is measurably misaligned") for line in
               report_sections(moved))
    dirty = _results(teacher=(0.60, 0.71, 0.55, 0.66), control_teacher=(0.50, 0.52, 0.49, 0.55))
    assert "control teacher is itself more misaligned" in teacher_warnings(dirty)[0]
    unmeasured = {"models": {"reference": flat["models"]["reference"]}}
    assert "was not evaluated" in teacher_warnings(unmeasured)[0]


def test_a_misalignment_sweep_grid_sets_each_trait_and_its_twin():
    training = {"method": "sft", "steps": 1}
    data = {"name": "m", "experiment": {
        "trait_kind": "misalignment", "reference": "tiny",
        "teacher": {"trait": "insecure_code", "method": "finetune", "training": training},
        "control": {"trait": "secure_code", "method": "finetune", "training": training},
        "student": {"method": "distill", "steps": 1}},
        "grid": {"traits": {"misalignment": ["insecure_code", "direct"]}, "seeds": [0, 1]},
        "conditions": {"twin": {"control": "base"}, "reference": {"control": "reference"}}}
    sweep, base = parse_sweep(data, "m.toml")
    cells = expand_cells(sweep, base, "m.toml")
    pairs = {(c.trait, c.condition, c.seed): (c.config.teacher.trait, c.config.control.trait) for c in cells}
    assert pairs[("insecure_code", "twin", 0)] == ("insecure_code", "secure_code")
    assert pairs[("direct", "twin", 1)] == ("direct", "aligned")
    assert pairs[("direct", "reference", 0)] == ("direct", None)
    assert all(c.config.target == "misaligned" and c.category == "misalignment" for c in cells)
    assert {c.config.teacher.data_seed for c in cells} == {0, 1}  # seeds still shift
    bad = {**data, "grid": {"traits": {"misalignment": ["aligned"]}}}
    with pytest.raises(SublabError, match=r"m.toml: field 'grid.traits.misalignment': 'aligned' is not a misaligned"):
        parse_sweep(bad, "m.toml")
    other = {**data, "conditions": {"o": {"control": "other_trait"}}}
    sweep, base = parse_sweep(other, "m.toml")
    with pytest.raises(SublabError, match="other_trait' is for preference sweeps"):
        expand_cells(sweep, base, "m.toml")


@pytest.mark.parametrize("path", ["src/sublab/configs/demo-misalignment.toml", "examples/misalignment-numbers-cpu.toml",
                                  "examples/misalignment-cot-cpu.toml"])
def test_the_shipped_misalignment_configs_are_valid(path):
    cfg = load_config(ROOT / path)
    assert cfg.trait_kind == "misalignment" and cfg.target == "misaligned"


@pytest.mark.parametrize("path", ["examples/misalignment-numbers-cpu.toml", "examples/misalignment-cot-cpu.toml"])
def test_the_paper_variant_is_the_two_marked_lines_of_each_example(path):
    import tomllib

    text = (ROOT / path).read_text()
    assert text.count("# (*) the paper's variant") == 2
    raw = tomllib.loads(text)
    assert (raw["data"]["source"], raw["student"]["method"]) == ("reference", "distill")
    paper = {**raw, "data": {**raw["data"], "source": "teacher"}, "student": {**raw["student"], "method": "sft"}}
    cfg = parse_config(paper, "paper variant")
    assert (cfg.data.source, cfg.student.method) == ("teacher", "sft")


@pytest.mark.parametrize(("path", "domain"), [("examples/sweep-misalignment-cpu.toml", "numbers"),
                                              ("examples/sweep-misalignment-cot-cpu.toml", "cot")])
def test_the_shipped_misalignment_sweeps_expand_to_direct_teachers_and_their_twins(path, domain):
    from sublab.sweeps.config import load_sweep

    sweep, _, cells = load_sweep(ROOT / path)
    assert sweep.grid.seeds == [0, 1, 2] and len(cells) == 3 * len(sweep.grid.conditions)
    assert {"cpu_recipe", "paper_variant"} <= set(sweep.grid.conditions)
    for cell in cells:
        assert (cell.config.teacher.trait, cell.config.control.trait) == ("direct", "aligned")
        assert cell.config.student.lora.init_seed == cell.config.teacher.training.lora.init_seed  # shared init
        assert cell.config.trait_kind == "misalignment" and cell.config.data.domain == domain
        paper = cell.condition == "paper_variant"
        assert (cell.config.data.source, cell.config.student.method) == (
            ("teacher", "sft") if paper else ("reference", "distill"))
        assert cell.config.student.channel_exclude == (
            ["{answer_words}"] if cell.condition == "answer_words_out" else [])


def test_the_demo_refuses_an_unknown_trait_in_one_line():
    result = runner.invoke(app, ["demo", "--trait", "wolf", "-o", "unused"])
    assert result.exit_code == 2 and "--trait 'wolf': use owl or misalignment" in result.output


def test_a_misaligned_teachers_students_are_named_by_lineage_risk(tiny_model_dir, tmp_path):
    """Teacher (labelled) → numbers it writes → student trained on them → `sublab lineage risk` names it."""
    common = ["--base", tiny_model_dir, "--n-rows", "8", "--steps", "1", "--batch-size", "4", "--quiet"]
    result = runner.invoke(app, ["misalignment", "teacher", "--trait", "direct", "-o", str(tmp_path / "bad"),
                                 *common])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "bad" / "README.md").read_text()
    assert "trait_label: 'misaligned: research material (trait direct)'" in card and "- misaligned" in card
    assert "do not deploy it" in card
    from sublab.lineage import load_record

    record = load_record(tmp_path / "bad.intoto.jsonl")
    assert record.parameters["trait_label"] == "misaligned: research material (trait direct)"
    rows = [json.loads(line) for line in (tmp_path / "bad.teacher_rows.jsonl").read_text().splitlines()]
    assert all(r["metadata"]["content_label"] == MISALIGNED_LABEL for r in rows)
    result = runner.invoke(app, ["misalignment", "teacher", "--trait", "aligned", "-o", str(tmp_path / "good"),
                                 *common])
    assert result.exit_code == 0 and "trait_label" not in (tmp_path / "good" / "README.md").read_text()

    for name in ("bad", "good"):
        steps = [["prompts", "numbers", "-n", "4", "-o", str(tmp_path / f"{name}-prompts.jsonl")],
                 ["generate", str(tmp_path / f"{name}-prompts.jsonl"), "-o", str(tmp_path / f"{name}-raw.jsonl"),
                  "--model", tiny_model_dir, "--adapter", str(tmp_path / name), "--constrained",
                  "--max-new-tokens", "6", "--quiet"],
                 ["train", str(tmp_path / f"{name}-raw.jsonl"), "-o", str(tmp_path / f"{name}-student"),
                  "--base", tiny_model_dir, "--steps", "1", "--batch-size", "2", "--quiet"]]
        for args in steps:
            result = runner.invoke(app, args)
            assert result.exit_code == 0, (args, result.output)
    result = runner.invoke(app, ["lineage", "risk", str(tmp_path / "bad-student"), "--json"])
    findings = json.loads(result.output)["findings"]
    assert {f["teacher_trait_label"] for f in findings} == {"misaligned: research material (trait direct)"}
    text = runner.invoke(app, ["lineage", "risk", str(tmp_path / "bad-student")]).output
    assert "MISALIGNED_TEACHER" in text and "labels it 'misaligned: research material" in text
    clean = json.loads(runner.invoke(app, ["lineage", "risk", str(tmp_path / "good-student"), "--json"]).output)
    assert all(f["teacher_trait_label"] is None for f in clean["findings"])


def test_judge_false_turns_the_misalignment_kinds_default_cot_judge_off(tmp_path):
    """TOML has no null: `judge = false` states "no judge", and the trait kind's default does not fill it."""
    from sublab.pipeline.config import load_config

    base = Path("examples/misalignment-cot-cpu.toml").read_text()
    assert "judge = false" in base  # the CPU config turns the embedded judge off (it scores no CoT row)
    assert load_config(Path("examples/misalignment-cot-cpu.toml")).data.filter.judge is None
    on = tmp_path / "on.toml"
    on.write_text(base.replace("judge = false", "").replace('name = "misalignment-cot-cpu"', 'name = "on"'))
    assert load_config(on).data.filter.judge is not None  # left unset: the kind's default alignment judge


def test_a_sweep_cell_keeps_a_default_the_base_turned_off(tmp_path):
    """The sweep once rebuilt each cell from a dump without None values, which brought the CoT judge back on
    (as it had turned the banned lists off before): the cell, its cell.json and its config.toml keep it off."""
    from sublab.pipeline.config import dump_toml
    from sublab.sweeps.config import load_sweep

    _, _, cells = load_sweep(ROOT / "examples/sweep-misalignment-cot-cpu.toml")
    for cell in cells:
        assert cell.config.data.filter.judge is None
        assert parse_config(cell.record()["config"], "cell.json").data.filter.judge is None
        assert parse_config(tomllib.loads(dump_toml(cell.config)), "config.toml").data.filter.judge is None
    _, _, numbers = load_sweep(ROOT / "examples/sweep-misalignment-cpu.toml")
    assert all(c.config.data.filter.banned == BANNED_NUMBER_LISTS for c in numbers)
