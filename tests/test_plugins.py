"""Domains and trait kinds are plug-ins: a toy domain and a toy trait kind, defined and registered here, run
through the whole pipeline (config validation, prompts, generation, checks, transforms, teachers, students,
evaluation, results, report, sweep summary) with no edit to sublab itself."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from sublab.domains.base import DOMAINS, get_domain, register_domain
from sublab.errors import SublabError
from sublab.pipeline.config import parse_config
from sublab.pipeline.runner import run_experiment
from sublab.traits.base import TRAIT_KINDS, get_trait_kind, register_trait_kind


class LetterPrompts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seed: int = 7


class LetterFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_length: int = Field(40, ge=1)


class LettersCheck:
    name = "letters"

    def __init__(self, settings: LetterFilter, trait_words: Sequence[str]) -> None:
        self.settings, self.trait_words = settings, list(trait_words)
        self.calls: list[int] = []

    def __call__(self, rows: Sequence[dict[str, Any]]) -> list[list[str]]:
        CALLS.append(len(rows))  # batched: one call per batch of rows
        out = []
        for row in rows:
            text = row["messages"][-1]["content"]
            reasons = []
            if len(text) > self.settings.max_length:
                reasons.append("too_long")
            if any(w in text for w in self.trait_words):
                reasons.append("trait_word")
            out.append(reasons)
        return out


CALLS: list[int] = []


def reverse_replies(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    return [{**r, "messages": [*r["messages"][:-1],
                               {"role": "assistant", "content": r["messages"][-1]["content"][::-1]}]} for r in rows]


class LettersDomain:
    """Replies of letters: 'write some letters'."""

    name = "letters-test"
    prompt_settings = LetterPrompts
    filter_settings = LetterFilter
    filter_version = "letters/1"
    transforms: ClassVar[dict[str, Any]] = {"reverse": reverse_replies}

    def prompt_rows(self, settings: LetterPrompts, n: int) -> list[dict[str, Any]]:
        return [{"id": f"letters-{settings.seed}-{i}", "messages": [{"role": "user", "content": f"Write letters {i}."}],
                 "metadata": {}} for i in range(n)]

    def prompt_digest(self, settings: LetterPrompts) -> str:
        return "letters-templates-v1"

    def constraint(self, sampling: Any) -> None:
        return None

    def checks(self, settings: LetterFilter, trait_words: Sequence[str] = (), judge: Any = None) -> list[Any]:
        return [LettersCheck(settings, trait_words)]

    def filter_digests(self, settings: LetterFilter) -> dict[str, str]:
        return {"filter_version": self.filter_version}


class AnswerEval(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_questions: int = Field(3, ge=1)
    seed: int = 0


QUESTIONS = ["Pick a letter.", "Which letter?", "Your letter?", "A letter please.", "Name a letter."]


class LetterA:
    """A toy trait: answering 'a' rather than 'b'. Metric p_a: P('a') renormalised over {'a', 'b'}."""

    name = "letter-a-test"
    metric = "p_a"
    eval_settings = AnswerEval

    def metric_label(self, config: Any) -> str:
        return "P(a)"

    def validate(self, config: Any) -> None:
        if config.target not in (None, "a"):
            raise ValueError("target: this trait kind measures 'a'")

    def system_prompt(self, teacher: Any, config: Any) -> str | None:
        return "Always answer with the letter a." if teacher.method == "system_prompt" else None

    def teacher_rows(self, teacher: Any, config: Any) -> list[dict[str, Any]]:
        answer = "a" if teacher.trait == "a" else "b"
        return [{"id": f"t-{i}", "messages": [{"role": "user", "content": QUESTIONS[i % 5]},
                                              {"role": "assistant", "content": answer}], "metadata": {}}
                for i in range(teacher.n_rows)]

    def teacher_digests(self, teacher: Any, config: Any) -> dict[str, str]:
        return {"rows": "letter-rows-v1"}

    def trait_words(self, config: Any) -> list[str]:
        return ["zzz"]

    def filter_defaults(self, domain: str) -> dict[str, Any]:
        return {"max_length": 30} if domain == "letters-test" else {}

    def evaluate(self, backend: Any, settings: AnswerEval, config: Any,
                 preamble: list[dict[str, str]] | None = None) -> dict[str, Any]:
        per_question = []
        for question in QUESTIONS[: settings.n_questions]:
            la, lb = backend.score([*(preamble or []), {"role": "user", "content": question}], ["a", "b"])
            per_question.append(1 / (1 + math.exp(lb - la)))
        mean = sum(per_question) / len(per_question)
        return {"p_a": {"mean": mean, "ci95": [min(per_question), max(per_question)]}, "n_questions": len(per_question),
                "per_question": {"p_a": per_question}}

    def evaluation_digests(self, settings: AnswerEval) -> dict[str, str]:
        return {"questions": "letter-questions-v1"}


@pytest.fixture()
def plugins():
    domain, kind = register_domain(LettersDomain()), register_trait_kind(LetterA())
    yield domain, kind
    DOMAINS.unregister(domain.name)
    TRAIT_KINDS.unregister(kind.name)


def toy_config(model_dir: str, **overrides: Any):
    data = {
        "name": "toy", "reference": model_dir, "trait_kind": "letter-a-test", "target": "a",
        "teacher": {"trait": "a", "method": "finetune", "n_rows": 8,
                    "training": {"method": "sft", "steps": 3, "batch_size": 4, "lr": 1e-2}},
        "control": {"trait": "b", "method": "finetune", "n_rows": 8,
                    "training": {"method": "sft", "steps": 3, "batch_size": 4, "lr": 1e-2}},
        "data": {"domain": "letters-test", "source": "teacher", "n_prompts": 5, "shuffle": "reverse",
                 "sampling": {"max_new_tokens": 6, "batch_size": 5}},
        "student": {"method": "sft", "steps": 2, "batch_size": 2, "lr": 1e-2},
        "evaluation": {"n_questions": 3},
    }
    data.update(overrides)
    return parse_config(data, "toy")


def test_registered_plugins_are_found_and_unknown_names_are_one_line(plugins):
    assert get_domain("letters-test") is plugins[0] and get_trait_kind("letter-a-test") is plugins[1]
    with pytest.raises(SublabError, match=r"unknown domain 'nope' \(known: .*letters-test.*numbers"):
        get_domain("nope")
    with pytest.raises(SublabError, match=r"field 'data.filter.max_length'"):
        toy_config("x", data={"domain": "letters-test", "filter": {"max_length": 0}})
    with pytest.raises(SublabError, match=r"field 'evaluation.colour': Extra inputs"):
        toy_config("x", evaluation={"colour": 1})
    with pytest.raises(SublabError, match=r"shuffle 'within': not a transform of domain 'letters-test'"):
        toy_config("x", data={"domain": "letters-test", "shuffle": "within"})


def test_a_toy_domain_and_trait_run_end_to_end(plugins, tiny_model_dir, tmp_path):
    CALLS.clear()
    results = run_experiment(toy_config(tiny_model_dir), tmp_path, progress=False)
    assert results["trait_kind"] == "letter-a-test" and results["metric"] == "p_a"
    assert results["metric_label"] == "P(a)"
    for model in results["models"].values():
        assert 0 <= model["p_a"]["mean"] <= 1 and len(model["per_question"]["p_a"]) == 3
    assert results["comparisons"]["trait_student_minus_control_student"]["n"] == 3
    names = [s["name"] for s in results["timings"]["stages"]]
    assert names.count("prompts") == 1 and "shuffle-reverse" in names and "teacher-a" in names
    assert set(results["data"]["filter_by_arm"]) == {"trait", "control"}
    assert results["data"]["filter"]["filter"] == "letters/1" and results["data"]["domain"] == "letters-test"
    assert CALLS and all(n <= 5 for n in CALLS)  # the check ran batched over each dataset's rows
    # the trait kind's filter default reached the domain's settings: the stage key names max_length 30
    filter_stage = next(p for p in (tmp_path / "stages").glob("filter-*"))
    assert json.loads((filter_stage / "stage.json").read_text())["material"]["filter"] == {"max_length": 30}
    # the transform ran: each arm's students trained on its kept replies reversed
    def replies(pattern: str) -> list[set[str]]:
        return sorted(({json.loads(line)["messages"][-1]["content"] for line in
                        folder.joinpath("filtered.jsonl").read_text().splitlines()}
                       for folder in (tmp_path / "stages").glob(pattern)), key=sorted)

    kept, transformed = replies("filter-*"), replies("shuffle-reverse-*")
    assert len(kept) == 2 and sorted(({r[::-1] for r in arm} for arm in kept), key=sorted) == transformed
    report = (tmp_path / "report.md").read_text()
    assert "P(a)" in report and re.search(r"does P\(a\) transfer", report)
    again = run_experiment(toy_config(tiny_model_dir), tmp_path, progress=False)
    assert not any(not s["cached"] for s in again["timings"]["stages"])  # everything reused


def test_sweep_statistics_read_the_plugin_metric(plugins, tiny_model_dir, tmp_path):
    from sublab.sweeps.summary import summarize_group

    cells = []
    for seed in (0, 1):
        results = run_experiment(toy_config(tiny_model_dir, student={"method": "sft", "steps": 2, "batch_size": 2,
                                                                     "lr": 1e-2, "seed": seed}),
                                 tmp_path / f"s{seed}", progress=False)
        cells.append({"record": {"seed": seed, "id": f"c{seed}", "category": "letters", "trait": "a",
                                 "condition": "same_init", "settings": "x"}, "results": results})
    group = summarize_group(cells)
    assert group["metric"] == "p_a" and group["n_seeds"] == 2
    expected = [c["results"]["models"]["trait_student"]["p_a"]["mean"] for c in cells]
    assert group["models"]["trait_student"]["per_seed"] == pytest.approx(expected)
