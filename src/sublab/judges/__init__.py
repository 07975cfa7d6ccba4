"""LLM judges: a model behind a backend plus a rubric (prompt files shipped as package data).

Other stages call :class:`Judge` (``Judge.from_spec(spec, "aligned")``, then ``judge.score_rows(rows)`` or
``judge.score_pairs([(question, answer), ...])``); ``sublab judge`` runs one alone over a JSONL file
(:func:`sublab.judges.run.judge_file`, resumable). See docs/judge.md.
"""

from sublab.judges.judge import MODES, WEAK_JUDGE_NOTE, Judge, JudgeSettings, Judgment, question_answer
from sublab.judges.rubric import Rubric, load_rubric, shipped_rubrics
from sublab.judges.scoring import ScoreResult

__all__ = [
    "MODES",
    "WEAK_JUDGE_NOTE",
    "Judge",
    "JudgeSettings",
    "Judgment",
    "Rubric",
    "ScoreResult",
    "load_rubric",
    "question_answer",
    "shipped_rubrics",
]
