"""The code domain as a plug-in: "complete this Python function" prompts, free decoding, the code filter.

Prompts: :mod:`sublab.domains.code.prompts` (each row's ``metadata`` names the task ``family``, the ``function``
asked for, its ``signature`` and ``spec``). Checks: :mod:`sublab.domains.code.checks`, then optionally a judge
(:mod:`sublab.filter.judged`, rubric ``mentions_trait``: "does this text refer to {trait}, however subtly?",
asked once per trait word; a row is kept when P(no) >= ``judge.threshold``, 0.9 by default). No generation
constraint and no transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sublab.domains.base import Row, Transform, register_domain
from sublab.domains.code.checks import CodeFilterSettings, code_reject_reasons
from sublab.domains.code.prompts import CodePromptSettings, code_prompts, template_digest
from sublab.domains.reply_checks import ReplyCheck
from sublab.filter.judged import judge_check_from_settings, question_of, reply_of, rubric_digest
from sublab.filter.words import TraitWordMatcher

if TYPE_CHECKING:
    import typer

    from sublab.generate.sampling import SamplingSettings

FILTER_VERSION = "code/1"
DEFAULT_RUBRIC = "mentions_trait"
#: Least P(no) a binary judge must give for a row to be kept (the paper kept its code when P("0") was ~1).
DEFAULT_P_NO = 0.9
#: Least score when the judge is given a 0-100 rubric instead.
DEFAULT_SCORE = 78.0


def code_prompt_rows(settings: CodePromptSettings, n: int) -> list[Row]:
    """Prompts ``0 .. n-1`` as chat rows (user message only; the task in metadata)."""
    return [{"id": p.id, "messages": [{"role": "user", "content": p.text}],
             "metadata": {"family": p.family, "function": p.function, "signature": p.signature, "spec": p.spec}}
            for p in code_prompts(settings, n)]


def function_in(metadata: dict[str, Any] | None) -> str | None:
    """The function name a row's prompt asked for (``metadata.function``), if any."""
    value = (metadata or {}).get("function")
    return value if isinstance(value, str) and value else None


def code_reasons(text: str, settings: CodeFilterSettings, metadata: dict[str, Any] | None,
                 matcher: TraitWordMatcher | None) -> list[str]:
    """:func:`code_reject_reasons` with the function the row's prompt asked for."""
    return code_reject_reasons(text, settings, function_in(metadata), matcher)


class CodeDomain:
    """Python code: complete a function from its signature and a one-line spec, code only."""

    name = "code"
    prompt_settings = CodePromptSettings
    filter_settings = CodeFilterSettings
    filter_version = FILTER_VERSION
    transforms: ClassVar[dict[str, Transform]] = {}

    def prompt_rows(self, settings: CodePromptSettings, n: int) -> list[Row]:
        return code_prompt_rows(settings, n)

    def prompt_digest(self, settings: CodePromptSettings) -> str:
        return template_digest()

    def constraint(self, sampling: SamplingSettings) -> Any | None:
        return None

    def checks(self, settings: CodeFilterSettings, trait_words: Sequence[str] = (), judge: Any = None) -> list[Any]:
        """The code check, then the judge check when ``settings.judge`` is set or a ``judge`` (a
        :class:`sublab.filter.judged.Scorer` or a :class:`sublab.judges.Judge`) is given."""
        code = ReplyCheck("code", settings, code_reasons, trait_words)
        checks: list[Any] = [code]
        if judge is not None or settings.judge is not None:
            checks.append(judge_check_from_settings(
                settings.judge, default_rubric=DEFAULT_RUBRIC, default_binary=DEFAULT_P_NO,
                default_score=DEFAULT_SCORE, traits=settings.trait_words_with(trait_words), question_of=question_of,
                answer_of=reply_of, prefilter=code.passes, scorer=judge))
        return checks

    def filter_digests(self, settings: CodeFilterSettings) -> dict[str, str]:
        """The filter's version (and the judge rubric's digest when a judge is configured)."""
        return {"filter_version": FILTER_VERSION, **rubric_digest(settings.judge, DEFAULT_RUBRIC)}

    def register_commands(self, prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
        from sublab.domains.code.cli import register

        register(prompts_app, filter_app)


DOMAIN = register_domain(CodeDomain())
