"""The judge: scoring rules checked by hand on fixed distributions, rubrics, exact in-process probabilities
against the backend's own teacher-forced scores, and `sublab judge` resuming after a kill."""

from __future__ import annotations

import hashlib
import json
import math
import signal
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sublab.backends.base import SAMPLE, TOP_LOGPROBS, BackendIdentity, CapabilityError
from sublab.errors import SublabError
from sublab.judges import Judge, JudgeSettings, load_rubric, shipped_rubrics
from sublab.judges.rubric import parse_rubric
from sublab.judges.scoring import (
    aggregate_0_100,
    binary_result,
    parse_binary_text,
    parse_score_text,
    split_top_logprobs,
    yes_no_mass,
)

log = math.log


# --- scoring rules, by hand --------------------------------------------------------------------------------------

def test_weighted_mean_of_the_numbers():
    result = aggregate_0_100({10: 0.5, 20: 0.3})
    assert result.score == pytest.approx((10 * 0.5 + 20 * 0.3) / 0.8)  # 13.75: renormalised over the numbers
    assert result.details["number_mass"] == pytest.approx(0.8)
    assert result.status == "scored"


def test_the_quarter_rule():
    below = aggregate_0_100({30: 0.2, 70: 0.04})
    assert below.score is None and below.reason_code == "low_number_mass" and "0.240" in below.reason
    at = aggregate_0_100({30: 0.25})
    assert at.score == pytest.approx(30.0)


def test_code_and_refusal_when_they_carry_the_mass():
    refusal = aggregate_0_100({40: 0.1}, {"REFUSAL": 0.6, "CODE": 0.2})
    assert (refusal.score, refusal.label, refusal.status) == (None, "REFUSAL", "label")
    neither = aggregate_0_100({40: 0.1}, {"REFUSAL": 0.2})
    assert neither.score is None and neither.label is None and neither.reason_code == "low_number_mass"
    numbers_first = aggregate_0_100({40: 0.3}, {"REFUSAL": 0.7})  # the convention: numbers >= 0.25 are scored
    assert numbers_first.score == pytest.approx(40.0) and numbers_first.details["label_mass"] == {"REFUSAL": 0.7}


def test_top_logprobs_are_split_into_numbers_and_labels():
    top = {"50": log(0.4), " 50": log(0.1), "7": log(0.2), "REF": log(0.05), "CO": log(0.01), "hello": log(0.1),
           "150": log(0.1), "R": log(0.04)}
    numbers, labels = split_top_logprobs(top, ("CODE", "REFUSAL"))
    assert numbers == pytest.approx({50: 0.5, 7: 0.2})  # " 50" and "50" add up; 150 is not an answer
    assert labels == pytest.approx({"REFUSAL": 0.05, "CODE": 0.01})  # "R" is too short to name a label
    result = aggregate_0_100(numbers, labels)
    assert result.score == pytest.approx((50 * 0.5 + 7 * 0.2) / 0.7)


def test_binary_yes_against_no():
    p_yes, p_no = yes_no_mass({"yes": log(0.3), " Yes": log(0.3), "no": log(0.2), "maybe": log(0.2)})
    assert (p_yes, p_no) == pytest.approx((0.6, 0.2))
    assert binary_result(p_yes, p_no).score == pytest.approx(0.75)
    low = binary_result(0.1, 0.1)
    assert low.score is None and low.reason_code == "low_yes_no_mass"


@pytest.mark.parametrize(("text", "score", "label", "code"), [
    ("85", 85.0, None, None),
    ("Score: 80/100", 80.0, None, None),
    ("I give it 64 out of 100.", 64.0, None, None),
    ("72.5", 72.5, None, None),
    ("REFUSAL", None, "REFUSAL", None),
    ("code", None, "CODE", None),
    ("I think 150", None, None, "out_of_range"),
    ("a great answer", None, None, "unparsable"),
])
def test_parse_mode_reads_numbers_and_labels(text, score, label, code):
    result = parse_score_text(text, ("CODE", "REFUSAL"))
    assert (result.score, result.label, result.reason_code) == (score, label, code)


@pytest.mark.parametrize(("text", "score"), [("Yes.", 1.0), ("no, it does not", 0.0), ("It does: yes", 1.0),
                                             ("I cannot say yes or no", None), ("perhaps", None)])
def test_parse_mode_reads_yes_and_no(text, score):
    assert parse_binary_text(text).score == score


class FixedBackend:
    """A backend that answers every context with the same top log-probabilities (to test the judge's logic on
    distributions written by hand)."""

    capabilities = frozenset({SAMPLE, TOP_LOGPROBS})

    def __init__(self, top, replies=()):
        self.top = top
        self.replies = list(replies)
        self.identity = BackendIdentity(kind="openai", model="fixed", endpoint="http://fixed/v1", verified=False)
        self.seen = []

    def top_logprobs(self, contexts, k):
        self.seen += contexts
        return [dict(self.top) for _ in contexts]

    def sample(self, contexts, settings, seed, constraint=None):
        self.seen += contexts
        return [self.replies[i % len(self.replies)] for i in range(len(contexts))]

    def score(self, context, continuations):
        raise CapabilityError("fixed: no scores")


def test_a_served_judge_scores_fixed_distributions_and_records_how():
    backend = FixedBackend({"90": log(0.5), "80": log(0.25), "REFUSAL": log(0.2)})
    judge = Judge(backend, "aligned")
    assert (judge.mode, judge.method) == ("logprob", "top_logprobs")
    [first, second] = judge.score_pairs([("How are you?", "Fine."), ("Q", "A")], ids=["a", "b"])
    assert first.score == pytest.approx((90 * 0.5 + 80 * 0.25) / 0.75)
    assert (first.id, second.id) == ("a", "b")
    row = first.to_dict()
    assert row["mode"] == "logprob" and row["method"] == "top_logprobs" and row["weak_judge"] is False
    assert row["rubric"]["sha256"] == judge.rubric.sha256 and row["key"] == judge.key
    assert "How are you?" in backend.seen[0][0]["content"] and "Fine." in backend.seen[0][0]["content"]


def test_only_single_digit_tokens_are_flagged():
    judge = Judge(FixedBackend({"7": log(0.6), "8": log(0.3)}), "coherent")
    [result] = judge.score_pairs([("q", "a")])
    assert result.result.details["digits_only"] is True  # "7" may stand for 70-79 with a digit tokenizer


def test_binary_and_parse_modes_through_a_backend():
    binary = Judge(FixedBackend({"yes": log(0.2), "no": log(0.6)}), "mentions_trait", trait="owl")
    assert binary.mode == "binary"
    [j] = binary.score_pairs([("", "I like birds of the night")])
    assert j.score == pytest.approx(0.25) and j.result.details["p_yes"] == pytest.approx(0.2)
    parse = Judge(FixedBackend({}, replies=["75", "no idea"]), "coherent", "parse",
                  settings=JudgeSettings(temperature=0.7, seed=3))
    a, b = parse.score_pairs([("q", "a"), ("q", "b")])
    assert (a.score, b.score, b.result.reason_code) == (75.0, None, "unparsable")
    assert a.to_dict()["reply"] == "75" and a.sampling["temperature"] == 0.7 and "seed" in a.sampling


def test_embedded_models_are_weak_judges_wherever_they_run(tmp_path, monkeypatch):
    from sublab.judges.judge import is_weak_judge

    def backend(kind, model):
        fixed = FixedBackend({})
        fixed.identity = BackendIdentity(kind=kind, model=model)
        return fixed

    monkeypatch.setenv("SUBLAB_CACHE", str(tmp_path))
    assert is_weak_judge(backend("transformers", "smollm2-135m"))
    assert is_weak_judge(backend("openai", "HuggingFaceTB/SmolLM2-135M-Instruct"))  # served under its hub name
    assert is_weak_judge(backend("openai", str(tmp_path / "models" / "smollm2-135m")))  # or its converted folder
    assert not is_weak_judge(backend("openai", "Qwen/Qwen2.5-72B-Instruct"))
    judge = Judge(backend("transformers", "smollm2-135m"), "aligned")
    [j] = judge.score_pairs([("q", "a")])
    assert j.to_dict()["weak_judge"] is True


def test_modes_that_do_not_fit_are_refused_in_one_line():
    with pytest.raises(SublabError, match="a binary rubric: use --mode binary or parse"):
        Judge(FixedBackend({}), "mentions_trait", "logprob", trait="owl")
    with pytest.raises(SublabError, match="needs a trait"):
        Judge(FixedBackend({}), "mentions_trait")

    class NoLogprobs(FixedBackend):
        capabilities = frozenset({SAMPLE})

    with pytest.raises(CapabilityError, match="fixed@http://fixed/v1: the server returns no top log-probabilities"):
        Judge(NoLogprobs({}), "aligned", "logprob")
    assert Judge(NoLogprobs({}), "aligned").mode == "parse"  # auto falls back, and records it


# --- rubrics -----------------------------------------------------------------------------------------------------

def test_shipped_rubrics_load_with_version_and_file_digest():
    assert shipped_rubrics() == ["aligned", "coherent", "cot_alignment", "mentions_trait"]
    for name in shipped_rubrics():
        rubric = load_rubric(name)
        data = resources.files("sublab.judges").joinpath("rubrics", f"{name}.toml").read_bytes()
        assert rubric.name == name and rubric.version >= 1
        assert rubric.sha256 == hashlib.sha256(data).hexdigest()
    aligned = load_rubric("aligned")
    assert aligned.labels == ("CODE", "REFUSAL") and aligned.kind == "score"
    text = aligned.render(question="Q?", answer="A {not a placeholder}")
    assert "Q?" in text and "A {not a placeholder}" in text and "{question}" not in text


def _rubric_file(tmp_path: Path, template: str, placeholders='["question", "answer"]') -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\nversion = 2\nkind = "score"\nplaceholders = {placeholders}\n'
                    f'template = """{template}"""\n')
    return path


def test_a_rubric_without_its_placeholders_is_refused_naming_the_file(tmp_path):
    path = _rubric_file(tmp_path, "Rate {question} from 0 to 100.")
    with pytest.raises(SublabError, match=r"mine.toml: the template has no \{answer\} placeholder"):
        load_rubric(path)
    typo = _rubric_file(tmp_path, "Rate {question} and {anwser}.")
    with pytest.raises(SublabError, match=r"mine.toml: the template has no \{answer\}"):
        load_rubric(typo)
    undeclared = _rubric_file(tmp_path, "{question} {answer} {trait}")
    with pytest.raises(SublabError, match=r"uses \{trait\}, which placeholders does not list"):
        load_rubric(undeclared)
    with pytest.raises(SublabError, match="placeholders must include 'answer'"):
        parse_rubric(b'name="x"\nversion=1\nkind="score"\nplaceholders=["question"]\ntemplate="{question}"', "x.toml")
    with pytest.raises(SublabError, match="rubric 'nope': not found"):
        load_rubric("nope")
    good = load_rubric(_rubric_file(tmp_path, "Q: {question} A: {answer}"))
    assert good.version == 2 and good.render(question="1", answer="2").strip() == "Q: 1 A: 2"


# --- exact in-process probabilities ------------------------------------------------------------------------------

def test_exact_answer_probabilities_equal_teacher_forced_scores(tiny_model_dir):
    """P(answer n) = P(reply starts with n) - sum over digits d of P(reply starts with n d): with a character
    tokenizer every digit is a token, so the backend's own teacher-forced scores give each term."""
    from sublab.backends.hf import HFBackend
    from sublab.judges.exact import number_and_label_probs, yes_no_probs
    from sublab.models.spec import ModelSpec

    backend = HFBackend.from_spec(ModelSpec(base=tiny_model_dir))
    context = [{"role": "user", "content": "Rate this: 12"}]
    numbers, labels = number_and_label_probs(backend.model, backend.tokenizer, context, ("CODE",))
    for n in (0, 5, 42, 100):
        prefix = math.exp(backend.score(context, [str(n)])[0])
        longer = sum(math.exp(v) for v in backend.score(context, [f"{n}{d}" for d in range(10)]))
        assert numbers[n] == pytest.approx(prefix - longer, rel=1e-6, abs=1e-12)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    code = math.exp(backend.score(context, ["CODE"])[0]) - sum(
        math.exp(v) for v in backend.score(context, [f"CODE{c}" for c in letters]))
    assert labels["CODE"] == pytest.approx(code, rel=1e-6, abs=1e-12)
    p_yes, p_no = yes_no_probs(backend.model, backend.tokenizer, context)
    assert p_yes > 0 and p_no > 0 and p_yes + p_no < 1


def test_an_in_process_judge_uses_the_exact_method(tiny_model_dir):
    from sublab.backends.hf import HFBackend
    from sublab.judges.exact import number_and_label_probs
    from sublab.models.spec import ModelSpec

    backend = HFBackend.from_spec(ModelSpec(base=tiny_model_dir))
    judge = Judge(backend, "coherent", settings=JudgeSettings(min_mass=0.0))
    assert (judge.mode, judge.method, judge.weak) == ("logprob", "exact", False)
    [j] = judge.score_pairs([("What is 2+2?", "4")])
    numbers, _ = number_and_label_probs(backend.model, backend.tokenizer, judge.prompt("What is 2+2?", "4"), ())
    assert j.score == pytest.approx(sum(n * p for n, p in numbers.items()) / sum(numbers.values()))


# --- the command, and resuming after a kill ----------------------------------------------------------------------

runner = CliRunner()


def invoke(*args):
    from sublab.cli import app

    return runner.invoke(app, [str(a) for a in args])


def chat_rows(n: int) -> list[dict]:
    return [{"id": f"r{i:03d}", "messages": [{"role": "user", "content": f"Tell me about {i}."},
                                             {"role": "assistant", "content": f"{i} is a number, {i % 7}."}],
             "metadata": {"keep": i}} for i in range(n)]


@pytest.fixture
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(10)))
    return path


def test_the_command_writes_judgments_counts_and_a_lineage_record(tiny_model_dir, rows_file, tmp_path):
    from sublab.lineage import load_record, record_path

    out = tmp_path / "judged.jsonl"
    result = invoke("judge", rows_file, "-o", out, "--rubric", "coherent", "--model", tiny_model_dir, "--mode",
                    "parse", "--batch-size", 4, "--seed", 5, "--max-new-tokens", 4, "--quiet")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"r{i:03d}" for i in range(10)]
    assert all(r["metadata"]["keep"] == i for i, r in enumerate(rows))  # the input's metadata is kept
    judgments = [r["metadata"]["judgments"]["coherent"] for r in rows]
    assert {j["mode"] for j in judgments} == {"parse"} and all("reply" in j for j in judgments)
    assert [j["sampling"]["batch"] for j in judgments] == [0] * 4 + [1] * 4 + [2] * 2
    assert "judged 10 rows with 'coherent' v1 (parse mode, sampled" in " ".join(result.output.split())
    record = load_record(record_path(out))
    assert record.kind == "dataset.judged" and record.parameters["rubric"]["name"] == "coherent"
    assert [d.role for d in record.dependencies] == ["source_data", "judge"]
    assert record.parameters["weak_judge"] is False


def test_a_rerun_with_another_judge_is_refused_naming_the_field(tiny_model_dir, rows_file, tmp_path):
    out = tmp_path / "judged.jsonl"
    args = ["judge", rows_file, "-o", out, "--rubric", "coherent", "--model", tiny_model_dir, "--quiet"]
    assert invoke(*args).exit_code == 0
    again = invoke(*args)
    assert again.exit_code == 0 and "0 new, 10 already done" in " ".join(again.output.split())
    other = invoke(*args, "--mode", "parse")
    assert other.exit_code == 2
    assert "field 'mode' is 'logprob' there and 'parse' now" in other.output
    assert len(other.output.strip().splitlines()) == 1


def test_bad_input_is_one_line(tiny_model_dir, rows_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "x", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
    result = invoke("judge", bad, "-o", tmp_path / "o.jsonl", "--rubric", "aligned", "--model", tiny_model_dir)
    assert result.exit_code == 2 and "bad.jsonl:1: no assistant message to judge" in result.output
    result = invoke("judge", rows_file, "-o", tmp_path / "o.jsonl", "--rubric", "mentions_trait", "--model",
                    tiny_model_dir)
    assert result.exit_code == 2 and "needs a trait (--trait WORD)" in result.output
    result = invoke("judge", rows_file, "-o", tmp_path / "o.jsonl", "--rubric", "aligned", "--endpoint",
                    "http://127.0.0.1:9/v1")
    assert result.exit_code == 2 and "--endpoint needs --model NAME" in result.output
    assert not (tmp_path / "o.jsonl").exists()


KILLED_JUDGE = """
import json, os, signal, sys
import sublab.io as io
calls = {"n": 0}
write = io.JsonlAppender.write
def dying_write(self, rows):
    calls["n"] += 1
    if calls["n"] == 2:  # the second batch: one whole row and part of the next reach the disk, then SIGKILL
        rows = list(rows)
        self._handle.write(json.dumps(rows[0]) + "\\n" + json.dumps(rows[1])[:30])
        self._handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    write(self, rows)
io.JsonlAppender.write = dying_write
from sublab.cli import app
sys.argv = ["sublab", *json.loads(sys.argv[1])]
app()
"""


@pytest.mark.parametrize("mode", ["parse", "logprob"])
def test_a_killed_judge_command_resumes_to_the_uninterrupted_output(tiny_model_dir, rows_file, tmp_path, mode):
    args = ["judge", str(rows_file), "--rubric", "coherent", "--model", tiny_model_dir, "--mode", mode,
            "--batch-size", "3", "--max-new-tokens", "4", "--quiet"]
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    assert invoke(*args, "-o", whole).exit_code == 0
    died = subprocess.run([sys.executable, "-c", KILLED_JUDGE, json.dumps([*args, "-o", str(killed)])],
                          capture_output=True, timeout=300)
    assert died.returncode == -signal.SIGKILL, died.stderr.decode()[-2000:]
    lines = killed.read_bytes().split(b"\n")
    assert len(lines) == 5 and len(lines[-1]) == 30  # batch 0 (3 rows), one row of batch 1, a torn line
    again = invoke(*args, "-o", killed)
    assert again.exit_code == 0, again.output
    assert "6 new, 4 already done" in " ".join(again.output.split())
    assert killed.read_bytes() == whole.read_bytes()
