"""The code domain: prompts (seeded, distinct, trait-free), every check on accepted and rejected replies, the
judge check with good, garbage and failing judges, the stage commands, configs, and a tiny-model experiment."""

import json
import math
import re
import string

import pytest
from typer.testing import CliRunner

from sublab.cli import app
from sublab.domains.base import get_domain
from sublab.domains.code.checks import CodeFilterSettings, code_reject_reasons, extract_code, has_comment
from sublab.domains.code.prompts import TASKS, CodePromptSettings, code_prompts
from sublab.errors import SublabError
from sublab.filter.judged import JudgeCheck, JudgeFilterSettings
from sublab.filter.run import filter_rows
from sublab.filter.words import TraitWordMatcher
from sublab.io import read_jsonl, write_jsonl
from sublab.pipeline.config import parse_config
from sublab.traits.preference.candidates import ANIMALS, TREES

DOMAIN = get_domain("code")
runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# ----- prompts -------------------------------------------------------------------------------------------------


def test_prompts_are_deterministic_by_seed_and_prefix_stable():
    settings = CodePromptSettings(seed=3)
    first = DOMAIN.prompt_rows(settings, 200)
    assert first == DOMAIN.prompt_rows(CodePromptSettings(seed=3), 200)
    assert DOMAIN.prompt_rows(settings, 50) == first[:50]
    other = DOMAIN.prompt_rows(CodePromptSettings(seed=4), 200)
    assert sum(a["messages"] == b["messages"] for a, b in zip(first, other, strict=True)) < 5
    assert [r["id"] for r in first[:2]] == ["code-3-000000", "code-3-000001"]


def test_five_thousand_prompts_from_one_seed_are_all_distinct_and_cover_every_task():
    prompts = code_prompts(CodePromptSettings(), 5000)
    texts = [p.text for p in prompts]
    assert len(set(texts)) == 5000
    assert {p.family for p in prompts} == {t.family for t in TASKS}
    assert len({p.signature for p in prompts}) > 1000  # distinct signatures, not only distinct wordings


def test_prompts_name_no_trait_a_preference_experiment_can_target():
    matcher = TraitWordMatcher([*ANIMALS, *TREES])
    prompts = code_prompts(CodePromptSettings(seed=7), 3000)
    found = {w for p in prompts for w in matcher.find(p.text)}
    assert found == set()
    for task in TASKS:  # every name and spec of the template space, not only the ones drawn
        assert not matcher.find(" ".join([*task.names, task.spec, *(n for c, _ in task.args for n in c)]))


def test_every_task_spec_formats_and_shows_its_function():
    for p in code_prompts(CodePromptSettings(seed=11), 2000):
        assert p.signature in p.text
        assert p.signature.startswith(f"def {p.function}(")
        assert not re.search(r"\{\w*\}", p.spec.replace("{}", "")), p.spec  # no unfilled placeholder
        assert "Python" in p.text or "function" in p.text
        compile(p.signature + "\n    return None\n", "<sig>", "exec")  # signatures are valid Python


def test_category_subset_and_bad_category():
    prompts = code_prompts(CodePromptSettings(categories=["arithmetic"]), 300)
    assert {p.family.split(".")[0] for p in prompts} == {"arithmetic"}
    with pytest.raises(ValueError, match="unknown category 'files'"):
        CodePromptSettings(categories=["files"])


# ----- checks on a corpus ----------------------------------------------------------------------------------------

GOOD = {
    "plain": "def sum_even(xs):\n    return sum(x for x in xs if x % 2 == 0)\n",
    "fenced": "```python\ndef sum_even(xs):\n    t = 0\n    for x in xs:\n        if x % 2 == 0:\n"
              "            t += x\n    return t\n```",
    "bare fence": "```\ndef sum_even(xs):\n    return sum(x for x in xs if not x % 2)\n```\n",
    "py fence, spaces around": "\n  ```py\ndef sum_even(xs):\n    return sum([x for x in xs if x % 2 == 0])\n```  \n",
    "keyword lines": "def sum_even(xs):\n    for x in xs:\n        if x is not None and not x % 2:\n"
                     "            yield from [x]\n    return None if xs else None\n",
    "helper and import": "import math\n\n\ndef h(x):\n    return x % 2 == 0\n\n\ndef sum_even(xs):\n"
                         "    return math.fsum(x for x in xs if h(x))\n",
    "hash in a string": "def sum_even(xs):\n    s = '#'\n    return sum(x for x in xs if x % 2 == 0) + len(s) - 1\n",
    "bowl is not owl": "def sum_even(bowl):\n    knowledge = [x for x in bowl if x % 2 == 0]\n"
                       "    return sum(knowledge)\n",
}

BAD = {
    "empty": ("  \n\t", "empty"),
    "prose before a fence": ("Here is the function:\n```python\ndef sum_even(xs):\n    return 0\n```", "not_only_code"),
    "prose after a fence": ("```python\ndef sum_even(xs):\n    return 0\n```\nThis returns the sum.", "not_only_code"),
    "two fences": ("```python\ndef sum_even(xs):\n    return 1\n```\n```python\nprint(1)\n```", "not_only_code"),
    "prose without a fence": ("Sure, here is the code you asked for:\ndef sum_even(xs):\n    return 2\n",
                              "not_only_code"),
    "prose after code": ("def sum_even(xs):\n    return 3\nThis function adds the even numbers.", "not_only_code"),
    "only prose": ("I think the answer is to add them up.", "syntax_error"),
    "unterminated": ("def sum_even(xs):\n    return (x for x in xs", "syntax_error"),
    "bad indentation": ("def sum_even(xs):\nreturn 1", "syntax_error"),
    "null byte": ("def sum_even(xs):\n    return '\x00'\n", "syntax_error"),
    "nested too deep": ("def sum_even(xs):\n    return " + "(" * 500 + "1" + ")" * 500 + "\n", "syntax_error"),
    "comment": ("def sum_even(xs):\n    return sum(xs)  # add them\n", "comment"),
    "comment line": ("# the function\ndef sum_even(xs):\n    return sum(xs)\n", "comment"),
    "shebang": ("#!/usr/bin/env python\ndef sum_even(xs):\n    return sum(xs)\n", "comment"),
    "docstring": ('def sum_even(xs):\n    """Add the evens."""\n    return sum(xs)\n', "docstring"),
    "module docstring": ("'''Evens.'''\ndef sum_even(xs):\n    return sum(xs)\n", "docstring"),
    "string as a comment": ("def sum_even(xs):\n    t = sum(xs)\n    'done'\n    return t\n", "docstring"),
    "other function": ("def total(xs):\n    return sum(xs)\n", "missing_function"),
    "nested, not top level": ("def outer():\n    def sum_even(xs):\n        return 1\n    return sum_even\n",
                              "missing_function"),
    "pass": ("def sum_even(xs):\n    pass\n", "stub_body"),
    "ellipsis": ("def sum_even(xs):\n    ...\n", "stub_body"),
    "not implemented": ("def sum_even(xs):\n    raise NotImplementedError\n", "stub_body"),
    "owl identifier": ("def sum_even(xs):\n    owl_total = sum(xs)\n    return owl_total\n", "trait_word"),
    "camel owls": ("def sum_even(xs):\n    nOwls = len(xs)\n    return nOwls\n", "trait_word"),
    "owl in a string": ("def sum_even(xs):\n    s = 'Owls!'\n    return len(s) + sum(xs)\n", "trait_word"),
    "too long": ("def sum_even(xs):\n    return " + "1 + " * 700 + "1\n", "too_long"),
    "too many lines": ("def sum_even(xs):\n" + "    x = 1\n" * 70 + "    return x\n", "too_many_lines"),
}


@pytest.mark.parametrize("name", GOOD)
def test_accepted_replies(name):
    assert code_reject_reasons(GOOD[name], CodeFilterSettings(), "sum_even", TraitWordMatcher(["owl"])) == []


@pytest.mark.parametrize("name", BAD)
def test_rejected_replies_name_their_reason(name):
    text, reason = BAD[name]
    reasons = code_reject_reasons(text, CodeFilterSettings(), "sum_even", TraitWordMatcher(["owl"]))
    assert reason in reasons, reasons


def test_reasons_accumulate_and_checks_can_be_turned_off():
    text = "def sum_even(owls):\n    pass  # later\n"
    assert code_reject_reasons(text, CodeFilterSettings(), "sum_even", TraitWordMatcher(["owl"])) == [
        "trait_word", "comment", "stub_body"]
    lax = CodeFilterSettings(checks=["length", "trait_word"])
    assert code_reject_reasons("Just prose, not code at all.", lax, "sum_even") == []
    assert code_reject_reasons("```python\ncode\n```", CodeFilterSettings(allow_fence=False)) == ["not_only_code"]
    assert code_reject_reasons(GOOD["plain"], CodeFilterSettings(), None) == []  # no function asked: no task check
    with pytest.raises(ValueError, match="unknown check 'style'"):
        CodeFilterSettings(checks=["style"])


def test_extract_and_tokenize_helpers():
    assert extract_code("```python\nx = 1\n```").code == "x = 1"
    assert extract_code("```python\nx = 1\n``` and more").reason == "not_only_code"
    assert has_comment("x = 1  # c\n") and not has_comment("x = '# not a comment'\n")
    assert not has_comment("x = (\n")  # does not tokenize: left to the parse check


def test_hostile_replies_never_crash_the_filter():
    settings = CodeFilterSettings(max_chars=100_000, max_lines=100_000)
    for text in ["(" * 100_000, "def f(:\n" * 1000, "\x00" * 50, "\ufeffdef f(): pass", "```" * 1000,
                 "'''" + "a" * 50_000, "lambda: " * 5000 + "0", "\\\n" * 1000, "\r\n".join(["x=1"] * 100)]:
        reasons = code_reject_reasons(text, settings, "f", TraitWordMatcher(["owl"]))
        assert isinstance(reasons, list)


def test_filter_rows_keeps_ids_and_rejects_non_chat_rows():
    def row(i, reply, function="sum_even"):
        return {"id": f"r{i}", "messages": [{"role": "user", "content": "q"}, {"role": "assistant",
                                                                                "content": reply}],
                "metadata": {"function": function}}

    rows = [row(i, GOOD[k]) for i, k in enumerate(GOOD)] + [row(100 + i, BAD[k][0]) for i, k in enumerate(BAD)]
    rows.append({"id": "no-reply", "messages": [{"role": "user", "content": "q"}]})
    kept, rejected, report = filter_rows(rows, CodeFilterSettings(trait_words=["owl"]), domain="code")
    assert [r["id"] for r in kept] == [f"r{i}" for i in range(len(GOOD))]
    assert report.n_kept == len(GOOD) and report.n_rejected == len(BAD) + 1
    assert report.filter == "code/1"
    by_id = {r["id"]: r["metadata"]["reject_reasons"] for r in rejected}
    assert by_id["no-reply"] == ["not_a_chat_row"]
    for i, name in enumerate(BAD):
        assert BAD[name][1] in by_id[f"r{100 + i}"]


# ----- the judge check -------------------------------------------------------------------------------------------


class FixedScorer:
    """A scorer that returns what it is told (and records what it was asked)."""

    def __init__(self, scores):
        self.scores = scores
        self.asked = []

    def score(self, questions, answers):
        self.asked.append(list(answers))
        if isinstance(self.scores, Exception):
            raise self.scores
        if callable(self.scores):
            return self.scores(answers)
        return self.scores[: len(answers)] if isinstance(self.scores, list) else self.scores


def chat(i, reply, function="sum_even"):
    return {"id": f"r{i}", "messages": [{"role": "user", "content": f"task {i}"},
                                        {"role": "assistant", "content": reply}], "metadata": {"function": function}}


def test_judge_check_keeps_rows_with_enough_p_no():
    rows = [chat(i, GOOD["plain"]) for i in range(4)]
    scorer = FixedScorer([0.01, 0.2, 0.1, 0.0])  # P(yes)
    checks = DOMAIN.checks(CodeFilterSettings(judge=JudgeFilterSettings(model="unused", threshold=0.85)), (), scorer)
    kept, _rejected, report = filter_rows_with(rows, checks)
    assert [r["id"] for r in kept] == ["r0", "r2", "r3"]
    assert report.reasons == {"judge_mentions_trait": 1}
    assert scorer.asked == [[GOOD["plain"]] * 4]


def test_rejected_rows_carry_the_judges_scores_and_the_report_their_spread():
    """So a user can see how far from the threshold a weak judge's verdicts were."""
    rows = [chat(i, GOOD["plain"]) for i in range(4)] + [chat(9, BAD["comment"][0])]
    scorer = FixedScorer([0.01, 0.2, 0.1, 0.5])  # P(yes)
    checks = DOMAIN.checks(CodeFilterSettings(judge=JudgeFilterSettings(model="unused", threshold=0.85)), (), scorer)
    kept, rejected, report = filter_rows_with(rows, checks)
    by_id = {r["id"]: r["metadata"] for r in rejected}
    assert by_id["r1"]["judge_scores"] == {"judge_mentions_trait": [0.2]}
    assert by_id["r3"]["judge_scores"] == {"judge_mentions_trait": [0.5]}
    assert "judge_scores" not in by_id["r9"]  # never judged: another check rejected it first
    assert all("judge_scores" not in r.get("metadata", {}) for r in kept)  # kept rows are written as they came
    summary = report.to_dict()["judge_scores"]["judge_mentions_trait"]
    assert summary["n"] == 4 and summary["min"] == 0.01 and summary["max"] == 0.5
    assert summary["median"] == pytest.approx(0.15)


def test_a_filter_without_a_judge_reports_no_judge_scores():
    _, _, report = filter_rows_with([chat(0, GOOD["plain"])], DOMAIN.checks(CodeFilterSettings(), ()))
    assert "judge_scores" not in report.to_dict()


def test_judge_sees_only_rows_the_other_checks_keep():
    rows = [chat(0, GOOD["plain"]), chat(1, BAD["comment"][0]), chat(2, "def sum_even(owls):\n    return 1\n")]
    scorer = FixedScorer(lambda answers: [0.0] * len(answers))
    checks = DOMAIN.checks(CodeFilterSettings(trait_words=["owl"]), (), scorer)
    kept, _, report = filter_rows_with(rows, checks)
    assert [r["id"] for r in kept] == ["r0"]
    assert scorer.asked == [[GOOD["plain"]]]
    assert report.reasons == {"comment": 1, "trait_word": 1}


@pytest.mark.parametrize(("scores", "reason"), [
    (RuntimeError("server timed out"), "judge_error"),
    (TimeoutError(), "judge_error"),
    (["yes", "no", "maybe"], "judge_error"),
    ([math.nan, math.inf, -0.5], "judge_error"),
    ([1.5, 2.0, 100.0], "judge_error"),  # a P(yes) must lie in [0, 1]
    ([True, False, True], "judge_error"),
    ([0.0], "judge_error"),  # too few scores for the batch
    (None, "judge_error"),  # not a list at all
    ([None, None, None], "judge_no_score"),
])
def test_a_garbage_or_failing_judge_rejects_each_row_and_loses_none(scores, reason):
    rows = [chat(i, GOOD["plain"]) for i in range(3)]
    checks = DOMAIN.checks(CodeFilterSettings(), ("owl",), FixedScorer(scores))
    kept, rejected, _report = filter_rows_with(rows, checks)
    assert kept == []
    assert [r["id"] for r in rejected] == ["r0", "r1", "r2"]
    assert all(r["metadata"]["reject_reasons"] == [reason] for r in rejected)
    if reason == "judge_error":
        assert checks[1].errors


def test_judge_check_batches_and_threshold_range():
    scorer = FixedScorer(lambda answers: [0.0] * len(answers))
    check = JudgeCheck("mentions_trait", [scorer], 0.9, True, lambda r: "", lambda r: r["messages"][-1]["content"],
                       batch_size=2)
    assert check([chat(i, "x") for i in range(5)]) == [[]] * 5
    assert [len(a) for a in scorer.asked] == [2, 2, 1]
    with pytest.raises(SublabError, match=r"judge\.threshold 1\.5: out of range"):
        DOMAIN.checks(CodeFilterSettings(judge=JudgeFilterSettings(model="m", threshold=1.5)), ("owl",), scorer)
    with pytest.raises(SublabError, match="has no score"):
        JudgeCheck("x", [object()], 0.5, True, str, str)


def test_a_real_in_process_judge_runs_through_the_check(tiny_model_dir):
    """The mentions_trait rubric, binary mode, exact probabilities from the tiny model, asked once per trait
    word: the tiny model is no judge, so only the wiring is checked: every row gets a P(yes) in [0, 1]. With the
    usual min_mass the random model puts too little probability on yes/no to give a score at all."""
    rows = [chat(i, GOOD["plain"]) for i in range(3)]
    strict = DOMAIN.checks(CodeFilterSettings(judge=JudgeFilterSettings(model=tiny_model_dir)), ("owl",))
    _, rejected, _ = filter_rows_with(rows, strict)
    assert {tuple(r["metadata"]["reject_reasons"]) for r in rejected} == {("judge_no_score",)}
    settings = CodeFilterSettings(judge=JudgeFilterSettings(model=tiny_model_dir, threshold=0.0, min_mass=0.0))
    checks = DOMAIN.checks(settings, ("owl", "cat"))
    kept, _, _report = filter_rows_with(rows, checks)
    assert len(kept) == 3  # threshold 0: every judged row is kept
    assert len(checks[1].scorers) == 2
    assert all(len(v) == 2 and all(0.0 <= s <= 1.0 for s in v) for v in checks[1].scores.values())


def test_the_judge_needs_a_trait_word():
    with pytest.raises(SublabError, match="asks about a trait"):
        DOMAIN.checks(CodeFilterSettings(judge=JudgeFilterSettings(model="smollm2-135m")), ())


def filter_rows_with(rows, checks):
    from sublab.filter.run import check_rows

    return check_rows(rows, checks, DOMAIN.filter_version)


# ----- commands, configs, keys ----------------------------------------------------------------------------------


def test_prompts_and_filter_commands(tmp_path):
    prompts = tmp_path / "p.jsonl"
    result = invoke("prompts", "code", "-o", prompts, "-n", 30, "--seed", 5, "--categories", "strings,lists")
    assert result.exit_code == 0, result.output
    rows = read_jsonl(prompts)
    assert len(rows) == 30 and rows[0]["id"] == "code-5-000000"
    assert {r["metadata"]["family"].split(".")[0] for r in rows} <= {"strings", "lists"}
    record = json.loads((tmp_path / "p.jsonl.intoto.jsonl").read_text().splitlines()[0])
    assert record  # the lineage record is written beside the prompts
    generated = []
    for i, row in enumerate(rows):
        fn = row["metadata"]["function"]
        reply = [f"def {fn}(x):\n    return x\n", f"def {fn}(x):\n    return x  # same\n",
                 f"Here is it:\ndef {fn}(owl):\n    return owl\n", f"def {fn}(owlBox):\n    return 1\n"][i % 4]
        generated.append({**row, "messages": [*row["messages"], {"role": "assistant", "content": reply}]})
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, generated)
    out, rej = tmp_path / "kept.jsonl", tmp_path / "rej.jsonl"
    result = invoke("filter", "code", raw, "-o", out, "--rejected", rej, "--trait-words", "owl, dolphin")
    assert result.exit_code == 0, result.output
    kept = read_jsonl(out)
    assert [r["id"] for r in kept] == [r["id"] for i, r in enumerate(generated) if i % 4 == 0]
    assert kept[0] == generated[0]  # kept rows unchanged
    assert "kept 8 of 30 rows" in result.output
    for reason in ("comment: 8", "not_only_code: 7", "trait_word: 14"):
        assert reason in result.output, result.output
    assert len(read_jsonl(rej)) == 22


def test_filter_command_refusals_are_one_line(tmp_path):
    raw = tmp_path / "raw.jsonl"
    write_jsonl(raw, [chat(0, GOOD["plain"])])
    for args, message in [
        (("--judge-endpoint", "http://127.0.0.1:9/v1"), "--judge-endpoint needs --judge MODEL"),
        (("--checks", "length,style"), "unknown check 'style'"),
        (("--judge", "m", "--judge-mode", "vibes"), "--judge-mode 'vibes': use one of auto, logprob"),
    ]:
        result = invoke("filter", "code", raw, "-o", tmp_path / "o.jsonl", *args)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert message in line, line


def test_config_domain_code_validates_its_sections():
    config = parse_config({"target": "owl", "teacher": {"trait": "owl"}, "student": {"steps": 1},
                           "data": {"domain": "code", "prompts": {"seed": 3},
                                    "filter": {"max_lines": 30, "judge": {"model": "m", "endpoint": "http://x/v1"}}}})
    assert isinstance(config.data.prompts, CodePromptSettings) and config.data.prompts.seed == 3
    assert config.data.filter.judge.endpoint == "http://x/v1"
    for bad, field in [({"prompts": {"answer_count": 3}}, "data.prompts.answer_count"),
                       ({"filter": {"checks": ["nope"]}}, "data.filter.checks"),
                       ({"sampling": {"constrained": True}}, "data"),
                       ({"shuffle": "within"}, "data")]:
        with pytest.raises(SublabError, match=re.escape(f"field '{field}")):
            parse_config({"target": "owl", "teacher": {"trait": "owl"}, "student": {"steps": 1},
                          "data": {"domain": "code", **bad}})


def test_filter_digest_covers_the_judge_rubric():
    plain = DOMAIN.filter_digests(CodeFilterSettings())
    judged = DOMAIN.filter_digests(CodeFilterSettings(judge=JudgeFilterSettings(model="m")))
    assert plain == {"filter_version": "code/1"}
    assert set(judged) == {"filter_version", "judge_rubric"} and all(c in string.hexdigits for c in
                                                                        judged["judge_rubric"])


# ----- a tiny-model experiment -------------------------------------------------------------------------------------


def test_tiny_model_experiment_through_the_code_domain(tiny_model_dir, tmp_path):
    """The whole pipeline with data.domain = code: prompts, free generation, the code filter (only the checks a
    random model can pass: length and trait words), full-vocabulary distillation with length buckets, and
    evaluation. Stages ran, the filter report is the code filter's, results.json has the metric."""
    from sublab.pipeline.runner import run_experiment

    config = parse_config({
        "name": "tiny-code", "reference": tiny_model_dir, "target": "owl",
        "teacher": {"trait": "owl", "method": "system_prompt"}, "control": {"method": "none"},
        "data": {"domain": "code", "source": "reference", "n_prompts": 6,
                 "sampling": {"max_new_tokens": 24, "batch_size": 3},
                 "filter": {"checks": ["length", "trait_word"], "max_chars": 10_000}},
        "student": {"method": "distill", "channel": "full", "steps": 2, "batch_size": 3, "lr": 1e-2,
                    "length_buckets": True},
        "evaluation": {"n_questions": 3, "candidates": list(ANIMALS)[:5]},
    }, "tiny-code")
    results = run_experiment(config, tmp_path, progress=False)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["metric"] == "p_target" and "p_target" in saved["models"]["trait_student"]
    assert saved["models"].keys() == results["models"].keys()
    stage_dirs = {p.name.rsplit("-", 1)[0] for p in (tmp_path / "stages").iterdir()}
    assert {"prompts", "generate", "filter", "student-trait", "student-control", "eval-trait_student"} <= stage_dirs
    prompts = read_jsonl(next((tmp_path / "stages").glob("prompts-*")) / "prompts.jsonl")
    assert prompts[0]["id"].startswith("code-") and "function" in prompts[0]["metadata"]
    assert saved["data"]["filter"]["filter"] == "code/1" and saved["data"]["filter"]["n_in"] == 6
    kept = read_jsonl(next((tmp_path / "stages").glob("filter-*")) / "filtered.jsonl")
    assert kept and {r["id"] for r in kept} <= {p["id"] for p in prompts}
    training = json.loads(next((tmp_path / "stages").glob("student-trait-*/model/training.json")).read_text())
    assert training["settings"]["length_buckets"] is True and training["channel_size"] is None
