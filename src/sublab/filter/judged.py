"""A judge as a filter check: rows whose reply a judge scores on the wrong side of a threshold are rejected.

The check talks to a **scorer**: any object with a batched ``score(questions, answers) -> list[float | None]``
(:class:`Scorer`). :class:`JudgeScorer` makes one from a :class:`sublab.judges.Judge` (a backend plus a
rubric); tests and other judges can pass their own. What a score means depends on the rubric's kind:

- ``binary`` rubrics (e.g. ``mentions_trait``, "does this text refer to {trait}?"): the score is P(yes); a row is
  kept only when P(no) = 1 - P(yes) is at least the threshold (the paper kept code only when its judge's
  P("0") was close to 1);
- ``score`` rubrics (0-100, e.g. ``cot_alignment``): a row is kept when the score is at least the threshold
  (78 for the paper's CoT filter).

Reject reasons, per row: ``judge_<rubric>`` (judged, on the wrong side), ``judge_no_score`` (the judge gave no
score: too little probability on valid answers, an unparsable sampled reply, or a label such as REFUSAL) and
``judge_error`` (the call failed or timed out, or returned something that is not a score in range, or the wrong
number of scores). A judge failure never crashes the filter or loses a row: the batch's rows are rejected with
``judge_error`` and the first messages are kept in :attr:`JudgeCheck.errors`.

The judge sees only rows that every other check of the domain keeps (``prefilter``), so it is not paid to score
rows that are rejected anyway; its reasons therefore count rows it judged.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from sublab.errors import SublabError

Row = dict[str, Any]
JUDGE_ERROR = "judge_error"
JUDGE_NO_SCORE = "judge_no_score"
#: Messages of failed judge calls kept for reporting (and logged as warnings).
MAX_ERRORS_KEPT = 5
log = logging.getLogger(__name__)


@runtime_checkable
class Scorer(Protocol):
    """A batched judge: one score per (question, answer) pair, None where it could not score."""

    def score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]: ...


def reply_of(row: Row) -> str:
    """The row's reply (its last message)."""
    return str(row["messages"][-1]["content"])


def question_of(row: Row) -> str:
    """The last user message before the reply ("" if none)."""
    users = [m for m in row["messages"][:-1] if isinstance(m, dict) and m.get("role") == "user"]
    return str(users[-1].get("content", "")) if users else ""


class JudgeFilterSettings(BaseModel):
    """A judge in a domain's filter (``[data.filter.judge]`` in a config; ``--judge`` on the filter commands).

    In-process: ``model`` (alias, local folder or Hugging Face id) and optionally ``adapter``. Served: ``endpoint``
    (an OpenAI-compatible base URL) and ``model`` (the served model's name); the key comes from the environment
    variable ``api_key_env``, never from a file.
    """

    model_config = ConfigDict(extra="forbid")

    model: str = Field(..., description="Judge model: alias, local folder or HF id; with endpoint, the served name.")
    adapter: str | None = Field(None, description="In-process judge: a PEFT adapter folder.")
    endpoint: str | None = Field(None, description="Base URL of an OpenAI-compatible server serving the judge.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Served judge: environment variable holding the key.")
    rubric: str | None = Field(None, description="Rubric name or .toml path (default: the domain's rubric).")
    mode: Literal["auto", "logprob", "binary", "parse"] = Field(
        "auto", description="auto: probabilities where the backend gives them, else parse a sampled reply.")
    threshold: float | None = Field(
        None, description="Binary rubric: least P(no) kept (0-1); 0-100 rubric: least score kept. Default: the "
        "domain's.")
    trait: str | None = Field(None, description="Binary trait rubric: the trait asked about (default: each trait "
                              "word of the filter in turn).")
    batch_size: int = Field(8, ge=1, description="Rows per judge call.")
    temperature: float = Field(1.0, ge=0.0, description="Parse mode: judge sampling temperature.")
    max_new_tokens: int = Field(16, ge=1, description="Parse mode: longest judge reply, in tokens.")
    seed: int = Field(0, description="Parse mode: sampling seed.")
    top_k: int = Field(20, ge=1, le=20, description="Served probability modes: top log-probabilities read.")
    min_mass: float = Field(0.25, ge=0.0, le=1.0, description="Least probability on valid answers for a score "
                            "(less: judge_no_score).")
    bf16: bool = Field(False, description="In-process judge: bf16 autocast.")
    timeout_s: float = Field(120.0, gt=0, description="Served: seconds to wait for one response.")
    retries: int = Field(4, ge=0, description="Served: retries after 429/5xx/timeouts.")
    max_concurrency: int = Field(4, ge=1, description="Served: requests in flight at once.")


class JudgeScorer:
    """A :class:`sublab.judges.Judge` as a :class:`Scorer` (binary rubrics score P(yes), others 0-100)."""

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.binary = judge.rubric.kind == "binary"
        self.weak = bool(getattr(judge, "weak", False))

    def score(self, questions: Sequence[str], answers: Sequence[str]) -> list[float | None]:
        judgments = self.judge.score_pairs(list(zip(questions, answers, strict=True)))
        return [j.score for j in judgments]

    def identity(self) -> dict[str, Any]:
        return self.judge.identity()


def _valid(value: Any, binary: bool) -> float | None:
    """``value`` as a score in range, or None when it is not one (garbage from the judge)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > (1.0 if binary else 100.0):
        return None
    return value


class JudgeCheck:
    """Reject rows a judge scores on the wrong side of ``threshold`` (see the module docstring).

    ``scorers``: one per question asked (e.g. one per trait word for ``mentions_trait``); a row must pass all.
    ``question_of`` / ``answer_of``: what the judge is shown of a row. ``prefilter(row)``: whether the row passes
    the domain's other checks (only those rows are judged).
    """

    def __init__(self, rubric_name: str, scorers: Sequence[Any], threshold: float, binary: bool,
                 question_of: Callable[[Row], str], answer_of: Callable[[Row], str],
                 prefilter: Callable[[Row], bool] | None = None, batch_size: int = 8) -> None:
        if not scorers:
            raise SublabError(f"judge check '{rubric_name}': no scorer")
        bad = [s for s in scorers if not isinstance(s, Scorer)]
        if bad:
            raise SublabError(f"judge check '{rubric_name}': {bad[0]!r} has no score(questions, answers) method")
        self.name = f"judge_{rubric_name}"
        self.reason = f"judge_{rubric_name}"
        self.scorers = list(scorers)
        self.threshold = threshold
        self.binary = binary
        self.question_of = question_of
        self.answer_of = answer_of
        self.prefilter = prefilter
        self.batch_size = batch_size
        self.errors: list[str] = []
        self.n_failed_calls = 0
        #: Scores of the rows judged, by row id (for reports).
        self.scores: dict[str, list[float | None]] = {}

    def keeps(self, score: float) -> bool:
        """Whether a valid score keeps its row."""
        return (1.0 - score) >= self.threshold if self.binary else score >= self.threshold

    def _score_batch(self, scorer: Any, rows: Sequence[Row]) -> list[float | str | None]:
        """Scores of one batch; :data:`JUDGE_ERROR` marks a row whose score is missing or garbage."""
        try:
            got = scorer.score([self.question_of(r) for r in rows], [self.answer_of(r) for r in rows])
            got = list(got)
        except Exception as err:  # any failure of the judge is a per-row reason, never a crash
            self._failed(f"{type(err).__name__}: {err}")
            return [JUDGE_ERROR] * len(rows)
        if len(got) != len(rows):
            self._failed(f"the judge returned {len(got)} scores for {len(rows)} rows")
            return [JUDGE_ERROR] * len(rows)
        out: list[float | str | None] = []
        garbage = []
        for value in got:
            if value is None:
                out.append(None)
                continue
            valid = _valid(value, self.binary)
            if valid is None:
                garbage.append(value)
            out.append(JUDGE_ERROR if valid is None else valid)
        if garbage:
            top = "1" if self.binary else "100"
            self._failed(f"the judge returned {len(garbage)} value(s) that are not a score in [0, {top}], e.g. "
                         f"{garbage[0]!r}")
        return out

    def _failed(self, message: str) -> None:
        self.n_failed_calls += 1
        if len(self.errors) < MAX_ERRORS_KEPT:
            line = " ".join(message.split())[:300]
            self.errors.append(line)
            log.warning("judge check %s: a judge call failed, its rows are rejected as %s: %s", self.name,
                        JUDGE_ERROR, line)

    def __call__(self, rows: Sequence[Row]) -> list[list[str]]:
        reasons: list[list[str]] = [[] for _ in rows]
        todo = [i for i, r in enumerate(rows) if self.prefilter is None or self.prefilter(r)]
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            results = [self._score_batch(s, [rows[i] for i in batch]) for s in self.scorers]
            for k, i in enumerate(batch):
                found: list[str] = []
                for per_scorer in results:
                    value = per_scorer[k]
                    if value == JUDGE_ERROR:
                        found.append(JUDGE_ERROR)
                    elif value is None:
                        found.append(JUDGE_NO_SCORE)
                    elif not self.keeps(float(value)):
                        found.append(self.reason)
                row_id = rows[i].get("id")
                if row_id is not None:
                    self.scores[str(row_id)] = [None if isinstance(r[k], str) else r[k] for r in results]
                reasons[i] = sorted(set(found), key=found.index)
        return reasons


def build_judge_scorers(settings: JudgeFilterSettings, rubric: str, traits: Sequence[str]) -> tuple[list[Any], Any]:
    """Load the judge of ``settings`` once and return one :class:`JudgeScorer` per trait asked about (one scorer
    if the rubric takes no trait), and the loaded rubric."""
    from sublab.judges import Judge, JudgeSettings, load_rubric
    from sublab.models.spec import ModelSpec

    loaded = load_rubric(rubric)
    needs_trait = "trait" in loaded.placeholders
    asked = ([settings.trait] if settings.trait else list(traits)) if needs_trait else [None]
    if needs_trait and not asked:
        raise SublabError(f"judge rubric '{loaded.name}' asks about a trait: give filter trait words "
                          "(--trait-words) or judge.trait")
    if settings.endpoint and settings.adapter:
        raise SublabError(f"judge at {settings.endpoint}: an adapter cannot be applied to a served model")
    spec = ModelSpec(base=settings.model, adapter=settings.adapter, endpoint=settings.endpoint)
    options: dict[str, Any] = (
        {"api_key_env": settings.api_key_env, "timeout_s": settings.timeout_s, "retries": settings.retries,
         "max_concurrency": settings.max_concurrency} if settings.endpoint else {"bf16": settings.bf16})
    judge_settings = JudgeSettings(top_k=settings.top_k, temperature=settings.temperature,
                                   max_new_tokens=settings.max_new_tokens, seed=settings.seed,
                                   batch_size=settings.batch_size, bf16=settings.bf16, min_mass=settings.min_mass)
    from sublab.backends.base import load_backend

    backend = load_backend(spec, **options)
    scorers = [JudgeScorer(Judge(backend, loaded, settings.mode, trait=trait, settings=judge_settings))
               for trait in asked]
    if scorers[0].weak:
        from sublab.judges import WEAK_JUDGE_NOTE

        log.warning("%s", WEAK_JUDGE_NOTE)
    return scorers, loaded


def resolve_threshold(threshold: float | None, binary: bool, default_binary: float, default_score: float) -> float:
    """The judge's threshold (the domain's default for the rubric's kind when unset), checked against its range."""
    value = threshold
    if value is None:
        value = default_binary if binary else default_score
    top = 1.0 if binary else 100.0
    if not 0.0 <= value <= top:
        kind = "a binary rubric: P(no), 0-1" if binary else "a 0-100 rubric"
        raise SublabError(f"judge.threshold {value}: out of range for {kind}")
    return value


def judge_check_from_settings(settings: JudgeFilterSettings | None, *, default_rubric: str, default_binary: float,
                              default_score: float, traits: Sequence[str], question_of: Callable[[Row], str],
                              answer_of: Callable[[Row], str], prefilter: Callable[[Row], bool] | None,
                              scorer: Any = None) -> JudgeCheck:
    """A :class:`JudgeCheck` for a domain: the judge of ``settings`` (loaded here), or ``scorer`` when given (any
    :class:`Scorer`, or a :class:`sublab.judges.Judge`; then ``settings``, if any, only sets the rubric and
    threshold).
    """
    rubric = (settings.rubric if settings else None) or default_rubric
    if scorer is not None:
        from sublab.judges import load_rubric

        is_judge = hasattr(scorer, "score_pairs")  # a sublab Judge brings its own rubric
        loaded = scorer.rubric if is_judge else load_rubric(rubric)
        scorers = [JudgeScorer(scorer) if is_judge else scorer]
    elif settings is not None:
        scorers, loaded = build_judge_scorers(settings, rubric, traits)
    else:
        raise SublabError("judge check: no judge configured")
    binary = loaded.kind == "binary"
    threshold = resolve_threshold(settings.threshold if settings else None, binary, default_binary, default_score)
    return JudgeCheck(loaded.name, scorers, threshold, binary, question_of, answer_of, prefilter,
                      batch_size=settings.batch_size if settings else 8)


def rubric_digest(settings: JudgeFilterSettings | None, default_rubric: str) -> dict[str, str]:
    """What a filter's cache key must cover of its judge beyond its settings: the rubric file's sha256."""
    if settings is None:
        return {}
    from sublab.judges import load_rubric

    return {"judge_rubric": load_rubric(settings.rubric or default_rubric).sha256}
