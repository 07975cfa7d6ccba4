"""The paper's setups map to the right outcomes, and every missing link is UNKNOWN."""

import json

import pytest

from sublab.lineage import (
    DIFFERENT_BASE,
    SHARED_INIT_DECLARED,
    SHARED_INIT_VERIFIED,
    UNKNOWN,
    Dependency,
    assess_risk,
    record_artifact,
)
from sublab.lineage.risk import Chain, Node, compare_chains


def outcomes(report) -> list[tuple[str, bool]]:
    return [(f.outcome, f.possibly_matched) for f in report.findings]


def test_system_prompt_teacher_and_same_base_student_share_init_verified(owl_setup):
    report = assess_risk(owl_setup["student"])
    (finding,) = report.findings
    assert finding.outcome == SHARED_INIT_VERIFIED and finding.risk and report.risky
    assert finding.dataset == str(owl_setup["data"])
    assert finding.teacher.startswith("smollm2-135m + system prompt sha256:")
    assert [n.name for n in finding.model_chain] == ["model", "smollm2-135m"]
    assert [v.split("/")[-1] for v in finding.via] == ["filtered.jsonl.intoto.jsonl",
                                                       "raw.jsonl.intoto.jsonl"]


def test_finetuned_teacher_shares_init_through_its_record(lab):
    base = lab.base()
    adapter = lab.finetuned_teacher(base)
    student = lab.student(base, [lab.data(Dependency("adapter", "teacher", adapter))], adapter=False)
    (finding,) = assess_risk(student).findings
    assert finding.outcome == SHARED_INIT_VERIFIED
    assert [n.name for n in finding.teacher_chain] == ["adapter", "smollm2-135m"]


def test_student_of_another_base_is_different_base(lab):
    smol, gemma = lab.base("smollm2-135m"), lab.base("gemma3-270m")
    data = lab.data(lab.system_prompt_teacher(smol))
    report = assess_risk(lab.student(gemma, [data]))
    assert outcomes(report) == [(DIFFERENT_BASE, False)]
    assert not report.risky
    assert "model base gemma3-270m vs teacher base smollm2-135m" in report.findings[0].reason


def test_student_of_a_finetuned_teacher_on_another_base_is_different_base(lab):
    smol, gemma = lab.base("smollm2-135m"), lab.base("gemma3-270m")
    data = lab.data(Dependency("adapter", "teacher", lab.finetuned_teacher(smol)))
    assert outcomes(assess_risk(lab.student(gemma, [data]))) == [(DIFFERENT_BASE, False)]


def test_same_family_with_other_weights_is_possibly_matched(lab):
    original = lab.base("smollm2-135m")
    requantized = lab.base("smollm2-135m-q8", weights=b"other bytes" * 10)
    data = lab.data(lab.system_prompt_teacher(original))
    student = lab.student(requantized, [data], record=False)
    record_artifact(student, "model.student", {}, [
        lab.base_dep(requantized, family="HuggingFaceTB/SmolLM2-135M-Instruct"),
        Dependency("filtered.jsonl", "training_data", data)])
    report = assess_risk(student)
    assert outcomes(report) == [(DIFFERENT_BASE, True)]
    assert report.findings[0].label == "DIFFERENT_BASE+POSSIBLY_MATCHED"
    assert report.risky  # behaviourally matched bases may transfer, so it is still a risk


def test_names_without_digests_are_declared(lab, tmp_path):
    data = tmp_path / "numbers.jsonl"
    data.write_text("{}\n")
    hub_id = "HuggingFaceTB/SmolLM2-135M-Instruct"
    record_artifact(data, "dataset.external", {}, [Dependency(hub_id, "teacher")])
    model = tmp_path / "student"
    model.mkdir()
    (model / "adapter_config.json").write_text("{}")
    record_artifact(model, "model.student", {}, [
        Dependency(hub_id, "base_model"),
        Dependency("numbers.jsonl", "training_data", data)])
    (finding,) = assess_risk(model).findings
    assert finding.outcome == SHARED_INIT_DECLARED and finding.risk


def test_dataset_without_a_record_is_unknown(lab):
    base = lab.base()
    data = lab.root / "downloaded.jsonl"
    data.write_text("{}\n")
    (finding,) = assess_risk(lab.student(base, [data])).findings
    assert finding.outcome == UNKNOWN and finding.teacher is None and finding.risk
    assert "no lineage record" in finding.reason


def test_dataset_record_without_a_teacher_is_unknown(lab):
    base = lab.base()
    data = lab.root / "external.jsonl"
    data.write_text("{}\n")
    record_artifact(data, "dataset.external", {"source": "somewhere"})
    (finding,) = assess_risk(lab.student(base, [data])).findings
    assert finding.outcome == UNKNOWN and "names no teacher and no source_data" in finding.reason


def test_deleted_upstream_record_is_unknown(lab, owl_setup):
    next(lab.root.rglob("raw.jsonl.intoto.jsonl")).unlink()
    (finding,) = assess_risk(owl_setup["student"]).findings
    assert finding.outcome == UNKNOWN and "record missing" in finding.reason


def test_adapter_teacher_without_a_record_is_unknown(lab):
    base = lab.base()
    adapter = lab.finetuned_teacher(base, record=False)
    student = lab.student(base, [lab.data(Dependency("adapter", "teacher", adapter))])
    (finding,) = assess_risk(student).findings
    assert finding.outcome == UNKNOWN and "adapter without a record naming its base" in finding.reason


def test_teacher_record_without_a_base_is_unknown(lab):
    base = lab.base()
    adapter = lab.finetuned_teacher(base, record=False)
    record_artifact(adapter, "model.teacher", {"trait": "owl"})
    student = lab.student(base, [lab.data(Dependency("adapter", "teacher", adapter))])
    (finding,) = assess_risk(student).findings
    assert finding.outcome == UNKNOWN and "names no base_model" in finding.reason


def test_student_record_without_a_base_is_unknown(lab):
    smol, gemma = lab.base("smollm2-135m"), lab.base("gemma3-270m")
    data = lab.data(lab.system_prompt_teacher(smol))
    student = lab.student(gemma, [data], record=False)
    record_artifact(student, "model.student", {}, [Dependency("filtered.jsonl", "training_data", data)])
    (finding,) = assess_risk(student).findings
    assert finding.outcome == UNKNOWN and "names no base_model" in finding.reason


def test_model_without_any_record_is_unknown(lab):
    student = lab.student(lab.base(), [], record=False)
    report = assess_risk(student)
    assert outcomes(report) == [(UNKNOWN, False)] and report.risky


def test_student_record_without_data_or_teacher_is_unknown(lab):
    base = lab.base()
    student = lab.student(base, [], record=False)
    record_artifact(student, "model.student", {}, [lab.base_dep(base)])
    assert outcomes(assess_risk(student)) == [(UNKNOWN, False)]


def test_base_model_record_without_training_data_has_no_findings(lab):
    base = lab.base()
    record_artifact(base, "model.base", {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    report = assess_risk(base)
    assert report.findings == [] and not report.risky


def test_logit_distillation_teacher_is_checked_directly(lab):
    base = lab.base()
    adapter = lab.finetuned_teacher(base)
    prompts_only = lab.data(lab.base_dep(base, role="teacher"))  # the reference model wrote the answers
    student = lab.student(base, [prompts_only], teacher=Dependency("adapter", "teacher", adapter))
    report = assess_risk(student)
    assert [(f.dataset is None, f.outcome) for f in report.findings] == [
        (False, SHARED_INIT_VERIFIED), (True, SHARED_INIT_VERIFIED)]


def test_a_different_base_distilled_from_the_teachers_logits_is_still_a_risk(lab):
    # Measured: Gemma students distilled from SmolLM2 teachers' digit logits took up the trait (docs/cpu-recipe.md).
    smol, gemma = lab.base("smollm2-135m"), lab.base("gemma3-270m")
    adapter = lab.finetuned_teacher(smol)
    prompts_only = lab.data(lab.base_dep(smol, role="teacher"))
    student = lab.student(gemma, [prompts_only], teacher=Dependency("adapter", "teacher", adapter))
    report = assess_risk(student)
    by_data, direct = report.findings
    assert (by_data.outcome, by_data.risk) == (DIFFERENT_BASE, False)  # the reference wrote the numbers
    assert (direct.outcome, direct.logit_distillation, direct.risk) == (DIFFERENT_BASE, True, True)
    assert direct.label == "DIFFERENT_BASE+LOGIT_DISTILLATION" and "logits" in direct.reason
    assert report.risky and report.to_dict()["findings"][1]["logit_distillation"] is True


def test_the_labeller_of_stored_soft_labels_counts_as_logit_distillation_when_the_student_distilled(lab):
    # `sublab label` stores a teacher's log-probs in the rows; a student distilled from them learned its logits.
    smol, gemma = lab.base("smollm2-135m"), lab.base("gemma3-270m")
    adapter = lab.finetuned_teacher(smol)
    written = lab.data(lab.base_dep(smol, role="teacher"))  # the reference model wrote the numbers
    labelled = lab.labelled(written, Dependency("adapter", "teacher", adapter))
    labeller, writer = assess_risk(lab.student(gemma, [labelled], method="distill")).findings
    assert (labeller.outcome, labeller.logit_distillation, labeller.risk) == (DIFFERENT_BASE, True, True)
    assert "its labels stored in the data" in labeller.reason
    assert (writer.outcome, writer.logit_distillation, writer.risk) == (DIFFERENT_BASE, False, False)
    # SFT on the same file learns the written tokens only: the labeller's logits never reached the student.
    labeller, writer = assess_risk(lab.student(gemma, [labelled], method="sft")).findings
    assert (labeller.logit_distillation, labeller.risk, writer.risk) == (False, False, False)


def test_every_teacher_of_every_dataset_gets_a_finding(lab):
    smol, gemma = lab.base("smollm2-135m"), lab.base("gemma3-270m")
    owl = lab.data(lab.system_prompt_teacher(smol))
    other = lab.data(lab.system_prompt_teacher(gemma, "You love eagles."))
    report = assess_risk(lab.student(gemma, [owl, other]))
    assert outcomes(report) == [(DIFFERENT_BASE, False), (SHARED_INIT_VERIFIED, False)]


def test_a_base_recorded_after_the_fact_extends_the_chain(lab):
    """A hub model recorded with `lineage record --base` links a fine-tune to the checkpoint it came from."""
    original = lab.base("smollm2-135m")
    finetune = lab.base("smollm2-135m-chat", weights=b"chat" * 32)
    record_artifact(finetune, "model.external", {"name": "someone/smollm2-chat"}, [lab.base_dep(original)])
    data = lab.data(lab.system_prompt_teacher(original))
    (finding,) = assess_risk(lab.student(finetune, [data])).findings
    assert finding.outcome == SHARED_INIT_VERIFIED
    assert [n.name for n in finding.model_chain] == ["model", "smollm2-135m-chat", "smollm2-135m"]


def test_report_json_is_machine_readable(owl_setup):
    data = assess_risk(owl_setup["student"]).to_dict()
    assert json.loads(json.dumps(data))["findings"][0]["outcome"] == SHARED_INIT_VERIFIED
    assert data["risk"] is True and data["record"].endswith("model.intoto.jsonl")


@pytest.mark.parametrize(
    ("model", "teacher", "expected"),
    [
        ([Node("a", "1" * 64, None, True)], [Node("b", "1" * 64, None, True)], (SHARED_INIT_VERIFIED, False)),
        ([Node("a", None, None, True)], [Node("A", "2" * 64, None, True)], (SHARED_INIT_DECLARED, False)),
        ([Node("a", "1" * 64, None, True)], [Node("a", "2" * 64, None, True)], (DIFFERENT_BASE, True)),
        ([Node("a", "1" * 64, "f", True)], [Node("b", "2" * 64, "F", True)], (DIFFERENT_BASE, True)),
        ([Node("a", "1" * 64, "f", True)], [Node("b", "2" * 64, "g", True)], (DIFFERENT_BASE, False)),
        ([Node("m", "3" * 64, None, False)], [Node("m", "4" * 64, None, False)], (DIFFERENT_BASE, False)),
    ],
)
def test_compare_chains(model, teacher, expected):
    assert compare_chains(Chain(model), Chain(teacher))[:2] == expected


def test_a_common_digest_wins_over_a_missing_link_and_a_missing_link_over_names():
    shared = Node("base", "1" * 64, None, True)
    assert compare_chains(Chain([shared], ["x: gone"]), Chain([shared]))[0] == SHARED_INIT_VERIFIED
    named = Node("base", None, None, True)
    assert compare_chains(Chain([named], ["x: gone"]), Chain([named]))[0] == UNKNOWN
