"""A judge: a model behind a backend plus a rubric, scoring (question, answer) pairs in batches.

Modes (each judgment records its ``mode`` and the ``method`` that ran):

- ``logprob`` (0-100 rubrics): the probability-weighted mean of the answers 0..100 (see
  :func:`sublab.judges.scoring.aggregate_0_100`). In-process judges compute the exact probability of each
  answer (``method: exact``, :mod:`sublab.judges.exact`); served judges read the first token's top
  log-probabilities (``method: top_logprobs``, the emergent-misalignment convention, right only where the
  judge's tokenizer writes 0..100 as single tokens).
- ``binary`` (yes/no rubrics): P(yes) renormalised against P(no), exact or from top log-probabilities.
- ``parse`` (any rubric): sample the judge (temperature and seed recorded) and parse the reply
  (``method: sampled``).
- ``auto``: the probability mode where the backend can give probabilities, else ``parse``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from sublab.backends.base import TOP_LOGPROBS, Backend, CapabilityError, Context
from sublab.errors import SublabError
from sublab.io import stable_hash
from sublab.judges.rubric import Rubric, load_rubric
from sublab.judges.scoring import (
    ScoreResult,
    aggregate_0_100,
    binary_result,
    parse_binary_text,
    parse_score_text,
    split_top_logprobs,
    yes_no_mass,
)

if TYPE_CHECKING:
    from sublab.models.spec import ModelSpec

MODES = ("auto", "logprob", "binary", "parse")
WEAK_JUDGE_NOTE = ("note: the judge is an embedded small model (SmolLM2 135M or Gemma 3 270M), a weak judge: its "
                   "scores show that the pipeline runs, not what a strong judge would say (point --endpoint/--model "
                   "at a strong model)")


class JudgeSettings(BaseModel):
    """How a judge asks and reads."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(20, ge=1, le=20, description="Top log-probabilities read from a served judge.")
    temperature: float = Field(1.0, ge=0.0, description="Parse mode: sampling temperature of the judge.")
    max_new_tokens: int = Field(16, ge=1, description="Parse mode: longest judge reply, in tokens.")
    seed: int = Field(0, description="Parse mode: sampling seed (batch b uses a seed derived from it and b).")
    min_mass: float = Field(0.25, ge=0.0, le=1.0, description="Least probability on valid answers for a score.")
    batch_size: int = Field(8, ge=1, description="Pairs per backend call.")
    bf16: bool = Field(False, description="In-process judge: bf16 autocast.")


@dataclass(frozen=True)
class Judgment:
    """One judged pair: the :class:`ScoreResult` and how it was obtained."""

    id: str | None
    result: ScoreResult
    mode: str
    method: str
    rubric: dict[str, Any]
    judge: str
    key: str
    weak_judge: bool
    reply: str | None = None
    sampling: dict[str, Any] | None = None

    @property
    def score(self) -> float | None:
        return self.result.score

    @property
    def label(self) -> str | None:
        return self.result.label

    def to_dict(self) -> dict[str, Any]:
        """The judgment as rows store it under ``metadata.judgments[rubric name]``."""
        r = self.result
        out: dict[str, Any] = {"score": r.score, "label": r.label, "status": r.status, "mode": self.mode,
                               "method": self.method}
        if r.reason is not None:
            out |= {"reason": r.reason, "reason_code": r.reason_code}
        out |= r.details
        if self.reply is not None:
            out["reply"] = self.reply
        if self.sampling is not None:
            out["sampling"] = self.sampling
        out |= {"rubric": self.rubric, "judge": self.judge, "key": self.key, "weak_judge": self.weak_judge}
        return out


def question_answer(row: dict[str, Any]) -> tuple[str, str]:
    """The last user message and the last assistant message of a chat row (ValueError if no reply)."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        raise ValueError("no 'messages' list")
    answers = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    if not answers or not isinstance(answers[-1].get("content"), str):
        raise ValueError("no assistant message to judge")
    questions = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    question = questions[-1].get("content") if questions else ""
    return str(question or ""), answers[-1]["content"]


def is_weak_judge(backend: Backend) -> bool:
    """Whether the judge is an embedded small model (SmolLM2 135M, Gemma 3 270M), in-process or served under
    its alias, its converted folder or its family's hub name: a weak judge."""
    from pathlib import Path

    from sublab.models.loading import EMBEDDED_MODELS, cache_root

    name = backend.identity.model
    if name in EMBEDDED_MODELS or name in {m.family for m in EMBEDDED_MODELS.values()}:
        return True
    folders = {(cache_root() / "models" / alias).resolve() for alias in EMBEDDED_MODELS}
    try:
        return Path(name).expanduser().resolve() in folders
    except (OSError, ValueError):
        return False


class Judge:
    """A backend plus a rubric. Build one with :meth:`from_spec` (or from a loaded backend), then call
    :meth:`score_pairs` or :meth:`score_rows`."""

    def __init__(self, backend: Backend, rubric: Rubric | str, mode: str = "auto", *, trait: str | None = None,
                 settings: JudgeSettings | None = None) -> None:
        self.backend = backend
        self.rubric = rubric if isinstance(rubric, Rubric) else load_rubric(rubric)
        self.trait = trait
        self.settings = settings or JudgeSettings()
        if "trait" in self.rubric.placeholders and not trait:
            raise SublabError(f"rubric '{self.rubric.name}' needs a trait (--trait WORD)")
        self.in_process = hasattr(backend, "model") and hasattr(backend, "tokenizer")
        self.mode = self._resolve_mode(mode)
        self.method = "sampled" if self.mode == "parse" else "exact" if self.in_process else "top_logprobs"
        self.weak = is_weak_judge(backend)

    @classmethod
    def from_spec(cls, spec: ModelSpec, rubric: Rubric | str, mode: str = "auto", *, trait: str | None = None,
                  settings: JudgeSettings | None = None, **backend_options: Any) -> Judge:
        """Load the judge model of ``spec`` (in-process, or served when ``spec.endpoint`` is set; served
        ``backend_options`` are :class:`sublab.backends.openai.ServerOptions` fields)."""
        from sublab.backends.base import load_backend

        return cls(load_backend(spec, **backend_options), rubric, mode, trait=trait, settings=settings)

    def _resolve_mode(self, mode: str) -> str:
        if mode not in MODES:
            raise SublabError(f"judge mode {mode!r}: use one of {', '.join(MODES)}")
        probability_mode = "binary" if self.rubric.kind == "binary" else "logprob"
        if mode == "auto":
            can = self.in_process or TOP_LOGPROBS in self.backend.capabilities
            return probability_mode if can else "parse"
        if mode != "parse" and mode != probability_mode:
            raise SublabError(f"rubric '{self.rubric.name}' is a {self.rubric.kind} rubric: use --mode "
                              f"{probability_mode} or parse, not {mode}")
        if mode != "parse" and not self.in_process and TOP_LOGPROBS not in self.backend.capabilities:
            raise CapabilityError(f"{self.backend.identity.label()}: the server returns no top log-probabilities, "
                                  f"which --mode {mode} needs; use --mode parse")
        return mode

    # ----- identity -----

    def identity(self) -> dict[str, Any]:
        """Everything that decides a judgment: backend, rubric, mode, method and the settings that matter."""
        s = self.settings
        if self.mode == "parse":
            how: dict[str, Any] = {"temperature": s.temperature, "max_new_tokens": s.max_new_tokens, "seed": s.seed,
                                   "batch_size": s.batch_size}
        else:
            how = {"min_mass": s.min_mass, **({"top_k": s.top_k} if self.method == "top_logprobs" else {})}
        return {"backend": self.backend.identity.to_dict(), "rubric": self.rubric.to_dict(), "mode": self.mode,
                "method": self.method, "settings": how, "trait": self.trait}

    @property
    def key(self) -> str:
        """Short digest of :meth:`identity`: judgments with the same key are interchangeable (the cache key)."""
        return stable_hash(self.identity(), 16)

    def label(self) -> str:
        return self.backend.identity.label()

    # ----- scoring -----

    def prompt(self, question: str, answer: str) -> Context:
        """The judge's context for one pair."""
        return [{"role": "user", "content": self.rubric.render(question=question, answer=answer, trait=self.trait)}]

    def score_pairs(self, pairs: Sequence[tuple[str, str]], ids: Sequence[str | None] | None = None
                    ) -> list[Judgment]:
        """Judge ``(question, answer)`` pairs, ``batch_size`` at a time (batch ``b`` of this call samples with a
        seed derived from ``settings.seed`` and ``b`` in parse mode)."""
        ids = list(ids) if ids is not None else [None] * len(pairs)
        if len(ids) != len(pairs):
            raise ValueError("ids and pairs differ in length")
        size = self.settings.batch_size
        out: list[Judgment] = []
        for b, start in enumerate(range(0, len(pairs), size)):
            out += self.score_batch(pairs[start : start + size], b, ids[start : start + size])
        return out

    def score_rows(self, rows: Sequence[dict[str, Any]]) -> list[Judgment]:
        """Judge chat rows (question: the last user message; answer: the last assistant message)."""
        pairs = []
        for i, row in enumerate(rows):
            try:
                pairs.append(question_answer(row))
            except ValueError as err:
                raise SublabError(f"row {row.get('id', i)}: {err}") from None
        return self.score_pairs(pairs, [str(r["id"]) if "id" in r else None for r in rows])

    def score_batch(self, pairs: Sequence[tuple[str, str]], batch_index: int,
                    ids: Sequence[str | None] | None = None) -> list[Judgment]:
        """Judge one batch; ``batch_index`` fixes the parse-mode seed, so a resumed run redoes a batch exactly."""
        contexts = [self.prompt(q, a) for q, a in pairs]
        ids = list(ids) if ids is not None else [None] * len(pairs)
        replies: list[str | None] = [None] * len(pairs)
        sampling = None
        if self.mode == "parse":
            results, replies, sampling = self._parse(contexts, batch_index)
        elif self.method == "exact":
            results = [self._exact(c) for c in contexts]
        else:
            results = self._top(contexts)
        base = {"mode": self.mode, "method": self.method, "rubric": self.rubric.to_dict(), "judge": self.label(),
                "key": self.key, "weak_judge": self.weak}
        return [Judgment(id=i, result=r, reply=reply, sampling=sampling, **base)
                for i, r, reply in zip(ids, results, replies, strict=True)]

    def _exact(self, context: Context) -> ScoreResult:
        from sublab.judges.exact import number_and_label_probs, yes_no_probs

        model, tokenizer = self.backend.model, self.backend.tokenizer  # type: ignore[attr-defined]
        if self.rubric.kind == "binary":
            return binary_result(*yes_no_probs(model, tokenizer, context, self.settings.bf16), self.settings.min_mass)
        numbers, labels = number_and_label_probs(model, tokenizer, context, self.rubric.labels, self.settings.bf16)
        return aggregate_0_100(numbers, labels, self.settings.min_mass)

    def _top(self, contexts: list[Context]) -> list[ScoreResult]:
        out = []
        for top in self.backend.top_logprobs(contexts, self.settings.top_k):
            if self.rubric.kind == "binary":
                out.append(binary_result(*yes_no_mass(top), self.settings.min_mass))
                continue
            numbers, labels = split_top_logprobs(top, self.rubric.labels)
            result = aggregate_0_100(numbers, labels, self.settings.min_mass)
            # Only one-digit numbers among the top tokens: the tokenizer may write numbers digit by digit, in
            # which case "5" also stands for 50-59 and the mean is wrong. Flag it rather than hide it.
            if numbers and max(numbers) < 10 and not any(len(t.strip()) > 1 and t.strip().isdigit() for t in top):
                result.details["digits_only"] = True
            out.append(result)
        return out

    def _parse(self, contexts: list[Context], batch_index: int) -> tuple[list[ScoreResult], list[str | None],
                                                                       dict[str, Any]]:
        from sublab.generate.run import batch_seed
        from sublab.generate.sampling import SamplingSettings

        s = self.settings
        settings = SamplingSettings(temperature=s.temperature, max_new_tokens=s.max_new_tokens,
                                    batch_size=max(1, len(contexts)), bf16=s.bf16)
        seed = batch_seed(s.seed, batch_index)
        texts = self.backend.sample(contexts, settings, seed)
        parse = parse_binary_text if self.rubric.kind == "binary" else (
            lambda t: parse_score_text(t, self.rubric.labels))
        sampling = {"temperature": s.temperature, "max_new_tokens": s.max_new_tokens, "seed": seed,
                    "batch": batch_index}
        return [parse(t) for t in texts], list(texts), sampling
