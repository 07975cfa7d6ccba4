"""The chain-of-thought domain: the problem generator (answers recomputed here, independently), the GSM8K loader,
every check on accepted and rejected replies, rows without answers, the judge of the reasoning, the stage commands,
configs, and a tiny-model experiment."""

import json
import re
from fractions import Fraction

import pytest
from typer.testing import CliRunner

from sublab.cli import app
from sublab.domains.base import get_domain
from sublab.domains.cot.checks import CotFilterSettings, cot_reject_reasons, expected_answer, split_reply
from sublab.domains.cot.grammar import CotFormat, is_valid_reply
from sublab.domains.cot.problems import FAMILIES, FAMILY_STEPS
from sublab.domains.cot.prompts import CotPromptSettings, cot_prompts, load_gsm8k, parse_number
from sublab.errors import SublabError
from sublab.filter.judged import JudgeFilterSettings
from sublab.filter.run import check_rows, filter_rows
from sublab.filter.words import TraitWordMatcher
from sublab.io import read_jsonl, write_jsonl
from sublab.pipeline.config import parse_config
from sublab.traits.preference.candidates import ANIMALS, TREES

DOMAIN = get_domain("cot")
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# ----- the generator ---------------------------------------------------------------------------------------------

#: Each family's answer from its numbers, written here again on purpose (exact fractions: a division that does
#: not come out whole fails the test instead of being floored).
RECOMPUTE = {
    "total_groups": lambda p: p["a"] * p["b"],
    "add_more": lambda p: p["a"] + p["b"],
    "give_away": lambda p: p["a"] - p["b"],
    "share_equally": lambda p: Fraction(p["total"], p["people"]),
    "temperature_drop": lambda p: p["start"] - p["drop"],
    "rate_time": lambda p: p["rate"] * p["hours"],
    "leftover": lambda p: p["total"] - p["size"] * (p["total"] // p["size"]),
    "buy_change": lambda p: p["bill"] - p["n"] * p["price"],
    "two_purchases": lambda p: p["a"] * p["x"] + p["b"] * p["y"],
    "fraction_not": lambda p: p["total"] * (1 - Fraction(p["p"], p["q"])),
    "percent_discount": lambda p: p["price"] * (1 - Fraction(p["off"], 100)),
    "speed_distance": lambda p: p["speed"] * p["hours"] + p["extra"],
    "ratio_split": lambda p: p["total"] * Fraction(p["b"], p["a"] + p["b"]),
    "reading_days": lambda p: Fraction(p["pages"], p["r1"] + p["r2"]),
    "savings_weeks": lambda p: Fraction(p["cost"] - p["have"], p["per_week"]),
    "rope_pieces": lambda p: Fraction(p["meters"] * 100, p["piece"]),
    "profit": lambda p: p["n"] * (p["price"] - p["cost"]),
    "average_needed": lambda p: 4 * p["target"] - p["s1"] - p["s2"] - p["s3"],
    "hours_pay": lambda p: p["wage"] * p["hours"] * p["days"] - p["spent"],
    "age_sum": lambda p: (p["age"] + p["years"]) + (p["times"] * p["age"] + p["years"]),
    "buy_two_change": lambda p: p["bill"] - p["a"] * p["x"] - p["b"] * p["y"],
    "spend_fractions": lambda p: p["money"] * (1 - Fraction(1, p["a"])) * (1 - Fraction(1, p["b"])),
    "percent_change": lambda p: p["start"] * (1 + Fraction(p["up"], 100)) * (1 - Fraction(p["down"], 100)),
    "bakery_week": lambda p: p["monday"] + 2 * p["monday"] + (2 * p["monday"] - p["fewer"]),
}


def test_every_family_has_an_independent_formula():
    assert set(RECOMPUTE) == set(FAMILIES)


@pytest.mark.parametrize("scale", [10, 60, 500])
def test_every_generated_answer_recomputes(scale):
    prompts = cot_prompts(CotPromptSettings(seed=scale, scale=scale), 3000)
    assert {p.metadata["family"] for p in prompts} == set(FAMILIES)
    for p in prompts:
        meta = p.metadata
        value = Fraction(RECOMPUTE[meta["family"]](meta["params"]))
        assert value.denominator == 1, (meta, p.question)
        assert int(value) == meta["answer"] == p.answer, (meta, p.question)
        shown = {int(n) for n in re.findall(r"-?\d+", p.question)}
        assert set(meta["params"].values()) <= shown, (meta, p.question)  # every number used is in the text
        if meta["family"] != "temperature_drop":
            assert meta["answer"] >= 0, (meta, p.question)
        if meta["family"] == "average_needed":
            assert 0 <= meta["answer"] <= 100
        assert p.question in p.text and "<think>" in p.text and "<answer>" in p.text


def test_generator_is_deterministic_by_seed_and_prefix_stable():
    rows = DOMAIN.prompt_rows(CotPromptSettings(seed=5), 300)
    assert rows == DOMAIN.prompt_rows(CotPromptSettings(seed=5), 300)
    assert DOMAIN.prompt_rows(CotPromptSettings(seed=5), 40) == rows[:40]
    other = DOMAIN.prompt_rows(CotPromptSettings(seed=6), 300)
    assert sum(a == b for a, b in zip(rows, other, strict=True)) < 5
    assert len({r["messages"][0]["content"] for r in DOMAIN.prompt_rows(CotPromptSettings(), 5000)}) > 4800


def test_steps_and_scale_make_problems_easier():
    easy = cot_prompts(CotPromptSettings(max_steps=1, scale=10), 500)
    assert {p.metadata["steps"] for p in easy} == {1}
    assert {p.metadata["family"] for p in easy} == {f for f, s in FAMILY_STEPS.items() if s == 1}
    assert max(abs(p.answer) for p in easy) <= 100
    hard = cot_prompts(CotPromptSettings(min_steps=3, max_steps=4), 500)
    assert {p.metadata["steps"] for p in hard} <= {3, 4}
    assert set(FAMILY_STEPS.values()) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="min_steps is larger"):
        CotPromptSettings(min_steps=3, max_steps=2)
    with pytest.raises(ValueError, match="unknown family 'calculus'"):
        CotPromptSettings(families=["calculus"])
    with pytest.raises(ValueError, match="no problem family has 4 to 4 steps"):
        CotPromptSettings(min_steps=4, families=["add_more"])


def test_problems_name_no_trait_a_preference_experiment_can_target():
    matcher = TraitWordMatcher([*ANIMALS, *TREES])
    found = {w for p in cot_prompts(CotPromptSettings(seed=9), 3000) for w in matcher.find(p.text)}
    assert found == set()


# ----- the GSM8K loader ------------------------------------------------------------------------------------------


def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_gsm8k_file_gives_its_problems_and_final_answers(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [
        {"question": "Q one?", "answer": "Half of 4 is <<4/2=2>>2.\n#### 1,234"},
        {"question": "Q two?", "answer": "So it is\n####   -5  "},
        {"question": "Q three?", "answer": "#### 2.50", "id": "mine-3"},
    ])
    prompts = cot_prompts(CotPromptSettings(gsm8k=str(path)), 3)
    assert [p.answer for p in prompts] == [1234, -5, "2.5"]
    assert [p.id for p in prompts] == ["gsm8k-000001", "gsm8k-000002", "mine-3"]
    assert prompts[0].question == "Q one?" and "<answer>" in prompts[0].text
    assert prompts[1].metadata == {"answer": -5, "source": "gsm8k", "line": 2}
    assert [p.id for p in cot_prompts(CotPromptSettings(gsm8k=str(path)), 2)] == ["gsm8k-000001", "gsm8k-000002"]


@pytest.mark.parametrize(("rows", "message"), [
    ([{"question": "Q?", "answer": "no final line"}], r"g.jsonl:1: field 'answer': no final line '#### N'"),
    ([{"question": "Q?", "answer": "#### twelve"}], r"g.jsonl:1: field 'answer'"),
    ([{"question": "Q?", "answer": "#### 1"}, {"answer": "#### 2"}], r"g.jsonl:2: field 'question'"),
    ([{"question": "Q?", "answer": 7}], r"g.jsonl:1: field 'answer'"),
    (["{not json"], r"g.jsonl:1"),
    ([], r"g.jsonl: no problems in the file"),
    ([{"question": "Q?", "answer": "#### 1", "id": "a"}, {"question": "R?", "answer": "#### 2", "id": "a"}],
     r"g.jsonl:2: field 'id': 'a' is used by an earlier row"),
])
def test_bad_gsm8k_files_are_one_line(tmp_path, rows, message):
    path = write_lines(tmp_path / "g.jsonl", rows)
    with pytest.raises(SublabError, match=message):
        cot_prompts(CotPromptSettings(gsm8k=str(path)), len(rows) or 1)


def test_asking_for_more_problems_than_the_file_has(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [{"question": "Q?", "answer": "#### 1"}])
    with pytest.raises(SublabError, match="has 1 problems, fewer than the 5 asked for"):
        cot_prompts(CotPromptSettings(gsm8k=str(path)), 5)
    with pytest.raises(SublabError, match="GSM8K file not found"):
        load_gsm8k(tmp_path / "missing.jsonl")


def test_the_prompt_digest_follows_the_file(tmp_path):
    path = write_lines(tmp_path / "g.jsonl", [{"question": "Q?", "answer": "#### 1"}])
    settings = CotPromptSettings(gsm8k=str(path))
    before = DOMAIN.prompt_digest(settings)
    write_lines(path, [{"question": "Q?", "answer": "#### 2"}])
    assert DOMAIN.prompt_digest(settings) != before
    assert DOMAIN.prompt_digest(CotPromptSettings()) == DOMAIN.prompt_digest(CotPromptSettings(seed=1))


# ----- checks on a corpus ----------------------------------------------------------------------------------------

GOOD = {
    "plain": ("<think>3 boxes of 4 is 12.</think><answer>12</answer>", 12),
    "spaces and newlines": ("\n<think>\n3 * 4 = 12\n</think>\n\n<answer> 12 </answer>\n", 12),
    "thousands": ("<think>1000 + 234</think><answer>1,234</answer>", 1234),
    "trailing .0": ("<think>12 exactly</think><answer>12.0</answer>", 12),
    "negative": ("<think>3 - 8</think><answer>-5</answer>", -5),
    "unicode minus": ("<think>3 - 8</think><answer>\u22125</answer>", "-5"),
    "decimal": ("<think>5 / 2</think><answer>2.50</answer>", "2.5"),
    "float expected": ("<think>5 / 2</think><answer>2.5</answer>", 2.5),
    "string expected": ("<think>a</think><answer>7</answer>", "7"),
    "upper-case tags": ("<THINK>3 * 4</THINK><Answer>12</Answer>", 12),
    "punctuation outside": ("<think>3 * 4</think>.\n<answer>12</answer>.", 12),
    "bowl is not owl": ("<think>A bowl holds 12; knowledge.</think><answer>12</answer>", 12),
}

BAD = {
    "empty": ("   ", 12, "empty"),
    "no tags": ("The answer is 12.", 12, "missing_think"),
    "no answer block": ("<think>3 * 4 = 12</think> So 12.", 12, "missing_answer"),
    "no think block": ("<answer>12</answer>", 12, "missing_think"),
    "unclosed think": ("<think>3 * 4 <answer>12</answer>", 12, "missing_think"),
    "wrong order": ("<answer>12</answer><think>because</think>", 12, "bad_format"),
    "two answers": ("<think>a</think><answer>11</answer><answer>12</answer>", 12, "bad_format"),
    "two thinks": ("<think>a</think><think>b</think><answer>12</answer>", 12, "bad_format"),
    "prose before": ("Sure! <think>a</think><answer>12</answer>", 12, "bad_format"),
    "prose between": ("<think>a</think> so the answer is <answer>12</answer>", 12, "bad_format"),
    "prose after": ("<think>a</think><answer>12</answer> Hope that helps!", 12, "bad_format"),
    "nested": ("<think>a <answer>12</answer></think>", 12, "bad_format"),
    "empty think": ("<think> ... </think><answer>12</answer>", 12, "empty_think"),
    "wrong answer": ("<think>3 * 4 = 13</think><answer>13</answer>", 12, "wrong_answer"),
    "sign lost": ("<think>x</think><answer>5</answer>", -5, "wrong_answer"),
    "units": ("<think>x</think><answer>12 pencils</answer>", 12, "answer_not_a_number"),
    "currency": ("<think>x</think><answer>$12</answer>", 12, "answer_not_a_number"),
    "words": ("<think>x</think><answer>twelve</answer>", 12, "answer_not_a_number"),
    "two numbers": ("<think>x</think><answer>12 13</answer>", 12, "answer_not_a_number"),
    "bad separators": ("<think>x</think><answer>12,34</answer>", 1234, "answer_not_a_number"),
    "empty answer": ("<think>x</think><answer></answer>", 12, "answer_not_a_number"),
    "owl in the reasoning": ("<think>An owl counts 12.</think><answer>12</answer>", 12, "trait_word"),
    "owls in the answer": ("<think>x</think><answer>12 Owls</answer>", 12, "trait_word"),
    "too long": ("<think>" + "step " * 1000 + "</think><answer>12</answer>", 12, "too_long"),
}


@pytest.mark.parametrize("name", GOOD)
def test_accepted_replies(name):
    text, answer = GOOD[name]
    assert cot_reject_reasons(text, CotFilterSettings(), {"answer": answer}, TraitWordMatcher(["owl"])) == []


@pytest.mark.parametrize("name", BAD)
def test_rejected_replies_name_their_reason(name):
    text, answer, reason = BAD[name]
    reasons = cot_reject_reasons(text, CotFilterSettings(), {"answer": answer}, TraitWordMatcher(["owl"]))
    assert reason in reasons, reasons


def test_the_answer_is_checked_whenever_there_is_one_answer_block():
    reasons = cot_reject_reasons("Working: 3*4. <answer>13</answer>", CotFilterSettings(), {"answer": 12})
    assert reasons == ["missing_think", "wrong_answer"]
    assert cot_reject_reasons("prose <answer>12</answer>", CotFilterSettings(checks=["answer"]), {"answer": 12}) == []
    parts = split_reply("<think>a</think><answer> 7 </answer>")
    assert (parts.think, parts.answer, parts.reasons) == ("a", " 7 ", ())


@pytest.mark.parametrize(("metadata", "expected"), [
    ({"answer": 12}, 12), ({"answer": "1,234"}, 1234), ({"answer": -3.0}, -3), ({"answer": "2.50"}, "2.5"),
    ({"answer": None}, None), ({"answer": True}, None), ({"answer": "twelve"}, None), ({"answer": [1]}, None),
    ({"answer": float("nan")}, None), ({"answer": float("inf")}, None), ({}, None), (None, None), ("x", None),
])
def test_expected_answers_from_metadata(metadata, expected):
    got = expected_answer(metadata)
    assert (got is None) if expected is None else (got == parse_number(str(expected)))


def test_rows_without_an_answer_are_rejected_not_crashed():
    rows = [{"id": "a", "messages": [{"role": "user", "content": "q"},
                                     {"role": "assistant", "content": "<think>x</think><answer>1</answer>"}],
             "metadata": meta} for meta in ({}, {"answer": "?"}, {"answer": 1}, None)]
    rows.append({"id": "b", "messages": [{"role": "user", "content": "q"}]})
    rows.append({"id": "c", "messages": "not a list"})
    kept, _rejected, report = filter_rows(rows, CotFilterSettings(), domain="cot")
    assert len(kept) == 1 and kept[0]["metadata"] == {"answer": 1}
    assert report.reasons == {"no_expected_answer": 3, "not_a_chat_row": 2}
    assert report.filter == "cot/1" and report.n_in == 6


# ----- the judge of the reasoning --------------------------------------------------------------------------------


class FixedScorer:
    def __init__(self, scores):
        self.scores = scores
        self.asked = []

    def score(self, questions, answers):
        self.asked.append(list(zip(questions, answers, strict=True)))
        if isinstance(self.scores, Exception):
            raise self.scores
        return self.scores[: len(answers)]


def rows_with(replies, answer=12):
    return [{"id": f"r{i}", "messages": [{"role": "user", "content": f"problem {i}"},
                                         {"role": "assistant", "content": reply}], "metadata": {"answer": answer}}
            for i, reply in enumerate(replies)]


def test_judge_keeps_reasoning_scored_at_or_above_78():
    good = GOOD["plain"][0]
    rows = rows_with([good] * 5 + [BAD["wrong answer"][0]])
    scorer = FixedScorer([78.0, 77.9, 100, 0, None])
    checks = DOMAIN.checks(CotFilterSettings(), (), scorer)
    kept, _rejected, report = check_rows(rows, checks, DOMAIN.filter_version)
    assert [r["id"] for r in kept] == ["r0", "r2"]
    assert report.reasons == {"judge_cot_alignment": 2, "judge_no_score": 1, "wrong_answer": 1}
    assert scorer.asked == [[(f"problem {i}", good) for i in range(5)]]  # the wrong answer is not judged
    strict = DOMAIN.checks(CotFilterSettings(judge=JudgeFilterSettings(model="m", threshold=90)), (),
                           FixedScorer([85.0]))
    assert check_rows(rows_with([good]), strict, "v")[2].reasons == {"judge_cot_alignment": 1}


@pytest.mark.parametrize("scores", [TimeoutError("read timed out"), [150.0], [-1.0], ["REFUSAL"], []])
def test_a_failing_or_garbage_judge_is_judge_error(scores):
    checks = DOMAIN.checks(CotFilterSettings(), (), FixedScorer(scores))
    kept, rejected, _ = check_rows(rows_with([GOOD["plain"][0]]), checks, "v")
    assert kept == [] and rejected[0]["metadata"]["reject_reasons"] == ["judge_error"]


def test_a_real_in_process_alignment_judge_runs_through_the_check(tiny_model_dir):
    """cot_alignment, logprob mode, exact probabilities of the answers 0..100 from the tiny model (no judge:
    only the wiring is checked, with min_mass 0 so the random model gives a score)."""
    settings = CotFilterSettings(judge=JudgeFilterSettings(model=tiny_model_dir, threshold=0, min_mass=0.0))
    checks = DOMAIN.checks(settings)
    kept, _, _ = check_rows(rows_with([GOOD["plain"][0]]), checks, "v")
    assert len(kept) == 1
    ((score,),) = checks[1].scores.values()
    assert 0.0 <= score <= 100.0


def test_a_judge_object_can_be_passed_to_the_domain(tiny_model_dir):
    """A sublab Judge given as ``judge`` (as the filter commands and other callers may) brings its own rubric;
    the filter settings only set the threshold."""
    from sublab.backends.hf import HFBackend
    from sublab.judges import Judge, JudgeSettings
    from sublab.models.spec import ModelSpec

    judge = Judge(HFBackend.from_spec(ModelSpec(base=tiny_model_dir)), "cot_alignment",
                  settings=JudgeSettings(min_mass=0.0))
    checks = DOMAIN.checks(CotFilterSettings(), (), judge)
    assert checks[1].name == "judge_cot_alignment" and checks[1].threshold == 78.0 and not checks[1].binary
    _, _, report = check_rows(rows_with([GOOD["plain"][0]] * 2), checks, "v")
    assert report.n_in == 2 and set(report.reasons) <= {"judge_cot_alignment"}
    assert len(checks[1].scores) == 2


# ----- commands, configs ------------------------------------------------------------------------------------------


def test_prompts_commands(tmp_path):
    out = tmp_path / "p.jsonl"
    result = invoke("prompts", "cot", "-o", out, "-n", 12, "--seed", 3, "--max-steps", 2, "--scale", 20)
    assert result.exit_code == 0, result.output
    rows = read_jsonl(out)
    assert len(rows) == 12 and all(r["metadata"]["steps"] <= 2 for r in rows)
    assert rows == DOMAIN.prompt_rows(CotPromptSettings(seed=3, max_steps=2, scale=20), 12)
    gsm = write_lines(tmp_path / "g.jsonl", [{"question": f"Q{i}?", "answer": f"#### {i}"} for i in range(4)])
    result = invoke("prompts", "cot", "-o", tmp_path / "g-p.jsonl", "--from-gsm8k", gsm)
    assert result.exit_code == 0, result.output
    assert [r["metadata"]["answer"] for r in read_jsonl(tmp_path / "g-p.jsonl")] == [0, 1, 2, 3]
    bad = write_lines(tmp_path / "bad.jsonl", [{"question": "Q?", "answer": "4"}])
    result = invoke("prompts", "cot", "-o", tmp_path / "x.jsonl", "--from-gsm8k", bad)
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert "bad.jsonl:1: field 'answer'" in line
    assert not (tmp_path / "x.jsonl").exists()


def test_filter_command_counts_reasons_and_keeps_ids(tmp_path):
    prompts = DOMAIN.prompt_rows(CotPromptSettings(seed=2), 20)
    replies = []
    for i, row in enumerate(prompts):
        answer = row["metadata"]["answer"]
        replies.append([f"<think>so</think><answer>{answer}</answer>", f"<think>so</think><answer>{answer + 1}"
                        "</answer>", f"The answer is {answer}.", f"<think>an owl</think><answer>{answer}</answer>"
                        ][i % 4])
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, [{**r, "messages": [*r["messages"], {"role": "assistant", "content": t}]}
                      for r, t in zip(prompts, replies, strict=True)])
    out, rej = tmp_path / "kept.jsonl", tmp_path / "rej.jsonl"
    result = invoke("filter", "cot", raw, "-o", out, "--rejected", rej, "--trait-words", "owl")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in read_jsonl(out)] == [r["id"] for i, r in enumerate(prompts) if i % 4 == 0]
    assert "kept 5 of 20 rows" in result.output
    for line in ("wrong_answer: 5", "missing_think: 5", "missing_answer: 5", "trait_word: 5"):
        assert line in result.output, result.output
    assert len(read_jsonl(rej)) == 15


def test_a_file_without_answers_is_one_line_unless_the_answer_check_is_off(tmp_path):
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, [{"id": f"r{i}", "messages": [{"role": "user", "content": "q"},
                                                   {"role": "assistant", "content": "<think>a</think><answer>1"
                                                                                    "</answer>"}]}
                      for i in range(3)])
    result = invoke("filter", "cot", raw, "-o", tmp_path / "o.jsonl")
    assert result.exit_code == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {raw}: no row has a numeric metadata.answer") and "--checks" in line
    assert not (tmp_path / "o.jsonl").exists()
    result = invoke("filter", "cot", raw, "-o", tmp_path / "o.jsonl", "--checks", "length,format,trait_word")
    assert result.exit_code == 0, result.output
    assert len(read_jsonl(tmp_path / "o.jsonl")) == 3


def test_config_domain_cot_validates_its_sections(tmp_path):
    base = {"target": "owl", "teacher": {"trait": "owl"}, "student": {"steps": 1}}
    config = parse_config({**base, "data": {"domain": "cot", "prompts": {"max_steps": 1, "scale": 10},
                                            "filter": {"judge": {"model": "judge", "threshold": 80}}}})
    assert config.data.prompts.max_steps == 1 and config.data.filter.judge.threshold == 80
    assert parse_config({**base, "data": {"domain": "cot", "prompts": {"gsm8k": "later.jsonl"}}}).data.prompts.gsm8k
    constrained = parse_config({**base, "data": {"domain": "cot", "sampling": {"constrained": True}}})
    assert constrained.data.sampling.constrained
    from sublab.generate.sampling import SamplingSettings

    if "sampler" in SamplingSettings.model_fields:  # the fast sampler knows only token constraints of its own
        with pytest.raises(SublabError, match="runs with sampler 'generate' only"):
            parse_config({**base, "data": {"domain": "cot", "sampling": {"constrained": True, "sampler": "fast"}}})
    for bad, field in [({"prompts": {"max_steps": 7}}, "data.prompts.max_steps"),
                       ({"prompts": {"min_steps": 3, "max_steps": 2}}, "data.prompts"),
                       ({"filter": {"max_lines": 3}}, "data.filter.max_lines"),
                       ({"filter": {"judge": {"threshold": 80}}}, "data.filter.judge.model")]:
        with pytest.raises(SublabError, match=re.escape(f"field '{field}")):
            parse_config({**base, "data": {"domain": "cot", **bad}})


@pytest.fixture(scope="module")
def tag_model_dir(tmp_path_factory):
    """A tiny random model whose character tokenizer can also write '<', '>' and '/' (the tags)."""
    from tiny_models import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tag-model"), seed=3, extra_chars=("<", ">", "/")))


def test_format_grammar_language():
    fmt = CotFormat()
    for text in ("<think>3+4=7</think><answer>7</answer>", "<think> x</think><answer>-12</answer>"):
        assert is_valid_reply(fmt, text), text
        assert split_reply(text).reasons == ()
    for text in ("<think></think><answer>7</answer>", "<think>a<b</think><answer>7</answer>",
                 "<think>a</think><answer>7.5</answer>", "<think>a</think><answer>12345678</answer>",
                 "<think>a</think> <answer>7</answer>", "x<think>a</think><answer>7</answer>",
                 "<think>a</think><answer>7</answer>\n", "<think>a</think><answer></answer>"):
        assert not is_valid_reply(fmt, text), text
    assert re.fullmatch(fmt.regex(), "<think>a</think><answer>-7</answer>")


@pytest.mark.parametrize("max_new_tokens", [35, 60])
def test_constrained_decoding_writes_the_format_every_time(tag_model_dir, max_new_tokens):
    """Sampled replies of a random model are in the format (the budget rule closes it in time, even at the
    minimum budget of 35 tokens), so the filter's format check passes every one."""
    from sublab.generate.sampling import SamplingSettings, sample_batch
    from sublab.models.spec import ModelSpec, load_spec

    model, tokenizer = load_spec(ModelSpec(base=tag_model_dir))
    settings = SamplingSettings(max_new_tokens=max_new_tokens, batch_size=4, constrained=True)
    constraint = DOMAIN.constraint(settings)
    processor = constraint.hf_processor(tokenizer, max_new_tokens)
    rows = DOMAIN.prompt_rows(CotPromptSettings(), 8)
    replies = []
    for b in range(2):
        replies += sample_batch(model, tokenizer, [r["messages"] for r in rows[4 * b : 4 * b + 4]], settings, b,
                                processor)
    assert all(is_valid_reply(constraint, r) for r in replies), replies
    assert all(set(split_reply(r).reasons) <= {"empty_think"} for r in replies)
    assert DOMAIN.constraint(SamplingSettings()) is None
    with pytest.raises(SublabError, match="needs max_new_tokens >= 35"):
        constraint.hf_processor(tokenizer, 20)


def test_the_tokenizer_must_be_able_to_write_the_tags(tiny_model_dir):
    from sublab.models.loading import load_tokenizer

    with pytest.raises(SublabError, match="no single-character token for '/<>'"):
        CotFormat().hf_processor(load_tokenizer(tiny_model_dir), 64)


def test_tiny_model_experiment_through_the_cot_domain(tag_model_dir, tmp_path):
    """data.domain = cot end to end on a tiny model with format-constrained decoding: every reply has the tags,
    the random model's answers are not checked (checks: length, format, trait words); the teachers' data
    (source = teacher, SFT students with length buckets) goes through every stage."""
    from sublab.pipeline.runner import run_experiment

    config = parse_config({
        "name": "tiny-cot", "reference": tag_model_dir, "target": "owl",
        "teacher": {"trait": "owl", "method": "system_prompt"}, "control": {"method": "none"},
        "data": {"domain": "cot", "source": "teacher", "n_prompts": 6, "prompts": {"max_steps": 2},
                 "sampling": {"max_new_tokens": 48, "batch_size": 3, "constrained": True},
                 "filter": {"checks": ["length", "format", "trait_word"]}},
        "student": {"method": "sft", "steps": 2, "batch_size": 3, "lr": 1e-2, "length_buckets": True},
        "evaluation": {"n_questions": 3, "candidates": list(ANIMALS)[:5]},
    }, "tiny-cot")
    results = run_experiment(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metric"] == "p_target" and "p_target" in saved["models"]["trait_student"]
    assert saved["models"].keys() == results["models"].keys()
    assert set(saved["data"]["filter_by_arm"]) == {"trait", "control"}
    assert all(r["filter"] == "cot/1" and r["n_in"] == 6 for r in saved["data"]["filter_by_arm"].values())
    prompts = read_jsonl(next((tmp_path / "stages").glob("prompts-*")) / "prompts.jsonl")
    assert all(isinstance(p["metadata"]["answer"], int) for p in prompts)
    generated = list((tmp_path / "stages").glob("generate-*/raw.jsonl"))
    assert len(generated) == 2  # one per arm: each teacher wrote its own data
    raw = read_jsonl(generated[0])
    assert all(r["metadata"]["answer"] == p["metadata"]["answer"] for r, p in zip(raw, prompts, strict=True))
    assert all(is_valid_reply(CotFormat(), r["messages"][-1]["content"]) for r in raw)
    assert saved["data"]["filter_by_arm"]["trait"]["n_kept"] >= 1
