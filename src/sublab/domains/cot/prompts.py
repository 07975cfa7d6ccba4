"""CoT prompts: a maths word problem and the instruction to reason in ``<think>`` and answer in ``<answer>``.

Problems come from the seeded generator (:mod:`sublab.domains.cot.problems`) or from a user's GSM8K-format JSONL
file (``gsm8k``: one object per line with ``question`` and ``answer``, the answer's last line ``#### N``). Each
row's ``metadata.answer`` holds the expected number (an int, or a decimal string when it is not whole), which is
what the filter's correctness check compares the reply with. Generated prompts are prefix-stable (prompt ``i``
depends only on the seed and ``i``); a GSM8K file gives its problems in file order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sublab.domains.cot.problems import FAMILIES, draw_problem, families_for
from sublab.errors import SublabError
from sublab.io import iter_jsonl, sha256_text

INSTRUCTIONS = (
    "Solve the problem. First reason step by step inside <think> and </think>, then write only the final number "
    "inside <answer> and </answer>.",
    "Work it out step by step between <think> and </think>. After that, give just the final answer, a number, "
    "between <answer> and </answer>.",
    "Think the problem through inside <think>...</think>, then put the final numeric answer alone inside "
    "<answer>...</answer>.",
    "Reply in this form: <think>your step-by-step reasoning</think><answer>the final number</answer>. Nothing else.",
    "Show your working in a <think> block, then give the answer, a single number, in an <answer> block: "
    "<think>...</think><answer>...</answer>.",
    "Reason step by step inside <think></think> tags. Then write the final answer as a plain number inside "
    "<answer></answer> tags, with nothing after it.",
)
LAYOUTS = ("{question}\n\n{instruction}", "{instruction}\n\nProblem: {question}",
           "Problem: {question}\n\n{instruction}")

# A number as the answer check reads it: optional minus (ASCII or U+2212), digits with optional thousands
# separators, optional decimals.
NUMBER = re.compile(r"[-\u2212]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def parse_number(text: str) -> Decimal | None:
    """The number ``text`` is (surrounding whitespace allowed), or None: ``1,234``, ``-5``, ``12.0``, ``3.25``."""
    stripped = text.strip()
    if not NUMBER.fullmatch(stripped):
        return None
    try:
        return Decimal(stripped.replace(",", "").replace("\u2212", "-"))
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        return None


def canonical_answer(value: Decimal) -> int | str:
    """A JSON value for ``metadata.answer``: an int when whole, else the decimal as a string (exact)."""
    if value == value.to_integral_value():
        return int(value)
    return format(value.normalize(), "f")


class CotPromptSettings(BaseModel):
    """Where the problems come from and how hard generated ones are."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(42, description="Seed of the generator (problems, instruction wording, layout).")
    gsm8k: str | None = Field(None, description="A GSM8K-format JSONL file to take the problems from instead of "
                              "the generator ('question', and 'answer' ending in '#### N').")
    min_steps: int = Field(1, ge=1, le=4, description="Generated problems: fewest arithmetic steps.")
    max_steps: int = Field(4, ge=1, le=4, description="Generated problems: most arithmetic steps.")
    families: list[str] | None = Field(None, description="Generated problems: only these families (default all).")
    scale: int = Field(60, ge=5, le=10_000, description="Generated problems: bound on the base quantities drawn "
                       "(smaller numbers are easier sums).")

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str] | None) -> list[str] | None:
        unknown = [f for f in value or [] if f not in FAMILIES]
        if unknown:
            raise ValueError(f"unknown family '{unknown[0]}' (known: {', '.join(FAMILIES)})")
        return value

    @model_validator(mode="after")
    def _some_family(self) -> CotPromptSettings:
        if self.min_steps > self.max_steps:
            raise ValueError("min_steps is larger than max_steps")
        if not families_for(self.min_steps, self.max_steps, self.families):
            raise ValueError(f"no problem family has {self.min_steps} to {self.max_steps} steps")
        return self


@dataclass(frozen=True)
class CotPrompt:
    """One prompt: its text, the expected answer and where the problem came from."""

    id: str
    text: str
    question: str
    answer: int | str
    metadata: dict[str, Any]


def _wrap(rng: np.random.Generator, question: str) -> str:
    instruction = INSTRUCTIONS[int(rng.integers(len(INSTRUCTIONS)))]
    return LAYOUTS[int(rng.integers(len(LAYOUTS)))].format(question=question, instruction=instruction)


def generated_prompts(settings: CotPromptSettings, n: int) -> list[CotPrompt]:
    """Generated problems ``0 .. n-1`` (prompt ``i`` depends only on the seed and ``i``)."""
    families = families_for(settings.min_steps, settings.max_steps, settings.families)
    out = []
    for index in range(n):
        rng = np.random.default_rng([settings.seed, index])
        problem = draw_problem(rng, families, settings.scale)
        out.append(CotPrompt(
            id=f"cot-{settings.seed}-{index:06d}", text=_wrap(rng, problem.question), question=problem.question,
            answer=problem.answer,
            metadata={"answer": problem.answer, "family": problem.family, "steps": problem.steps,
                      "params": problem.params, "source": "generated"}))
    return out


_FINAL = re.compile(r"####\s*(?P<n>\S+)\s*$")


def gsm8k_answer(answer: Any) -> Decimal | None:
    """The final number of a GSM8K ``answer`` field (its last line ``#### N``), or None."""
    if not isinstance(answer, str):
        return None
    match = _FINAL.search(answer.strip())
    return parse_number(match.group("n")) if match else None


def load_gsm8k(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """The problems of a GSM8K-format JSONL file as ``(line number, row)``; a row without a ``question`` string
    or a final ``#### N`` answer raises :class:`SublabError` naming the file, line and field."""
    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{path}: GSM8K file not found")
    rows = []
    for lineno, row in enumerate(iter_jsonl(path), start=1):
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise SublabError(f"{path}:{lineno}: field 'question': missing or not a non-empty string")
        if gsm8k_answer(row.get("answer")) is None:
            raise SublabError(f"{path}:{lineno}: field 'answer': no final line '#### N' with a number")
        rows.append((lineno, row))
    if not rows:
        raise SublabError(f"{path}: no problems in the file")
    return rows


def gsm8k_prompts(settings: CotPromptSettings, n: int) -> list[CotPrompt]:
    """The first ``n`` problems of ``settings.gsm8k`` (a file with fewer than ``n`` is refused; ids: the rows'
    own ``id`` where they have one, else ``gsm8k-<line>``; two rows with one id are refused)."""
    assert settings.gsm8k is not None
    rows = load_gsm8k(settings.gsm8k)
    if n > len(rows):
        raise SublabError(f"{settings.gsm8k}: has {len(rows)} problems, fewer than the {n} asked for")
    out: list[CotPrompt] = []
    seen: set[str] = set()
    for index, (lineno, row) in enumerate(rows[:n]):
        value = gsm8k_answer(row["answer"])
        assert value is not None
        answer = canonical_answer(value)
        row_id = row.get("id")
        rng = np.random.default_rng([settings.seed, index])
        prompt_id = str(row_id) if isinstance(row_id, str | int) and str(row_id) else f"gsm8k-{lineno:06d}"
        if prompt_id in seen:
            raise SublabError(f"{settings.gsm8k}:{lineno}: field 'id': '{prompt_id}' is used by an earlier row")
        seen.add(prompt_id)
        out.append(CotPrompt(
            id=prompt_id,
            text=_wrap(rng, row["question"].strip()), question=row["question"].strip(), answer=answer,
            metadata={"answer": answer, "source": "gsm8k", "line": lineno}))
    return out


def cot_prompts(settings: CotPromptSettings, n: int) -> list[CotPrompt]:
    """``n`` prompts from the generator or the GSM8K file of ``settings``."""
    return gsm8k_prompts(settings, n) if settings.gsm8k else generated_prompts(settings, n)


def count_gsm8k(path: str | Path) -> int:
    """How many problems a GSM8K file holds (checked as :func:`load_gsm8k` checks them)."""
    return len(load_gsm8k(path))


def template_digest(settings: CotPromptSettings) -> str:
    """sha256 of the prompt space: the instruction wordings and layouts, and the generator's code (its families'
    source) or the GSM8K file's bytes."""
    import hashlib
    import inspect

    from sublab.domains.cot import problems

    parts = [*INSTRUCTIONS, *LAYOUTS]
    if settings.gsm8k:
        path = Path(settings.gsm8k)
        if not path.is_file():
            raise SublabError(f"{path}: GSM8K file not found")
        parts.append(hashlib.sha256(path.read_bytes()).hexdigest())
    else:
        parts.append(sha256_text(inspect.getsource(problems)))
    return sha256_text("\n".join(parts))
