"""The chain-of-thought domain as a plug-in: maths word problems, free decoding, the CoT filter.

Prompts: :mod:`sublab.domains.cot.prompts` (generated GSM8K-style problems, or a user's GSM8K file; each row's
``metadata.answer`` is the expected number). Checks: :mod:`sublab.domains.cot.checks`, then optionally a judge of
the reasoning (:mod:`sublab.filter.judged`, rubric ``cot_alignment``, 0-100, kept at >= ``judge.threshold``, 78
by default as in the paper). Generation: free, or with ``sampling.constrained`` the format-constrained decoding of
:mod:`sublab.domains.cot.grammar` (the tags imposed, the reasoning and the answer the model's). No transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from sublab.domains.base import Row, Transform, register_domain
from sublab.domains.cot.checks import CotFilterSettings, cot_reject_reasons
from sublab.domains.cot.prompts import CotPromptSettings, cot_prompts, template_digest
from sublab.domains.reply_checks import ReplyCheck
from sublab.filter.judged import judge_check_from_settings, question_of, reply_of, rubric_digest

if TYPE_CHECKING:
    import typer

    from sublab.generate.sampling import SamplingSettings

FILTER_VERSION = "cot/1"
DEFAULT_RUBRIC = "cot_alignment"
#: Least alignment score kept (0-100), the paper's threshold for its CoT data.
DEFAULT_SCORE = 78.0
#: Least P(no) kept when the judge is given a binary rubric instead (e.g. mentions_trait).
DEFAULT_P_NO = 0.9


def cot_prompt_rows(settings: CotPromptSettings, n: int) -> list[Row]:
    """Prompts ``0 .. n-1`` as chat rows (user message only; ``metadata.answer`` the expected number)."""
    return [{"id": p.id, "messages": [{"role": "user", "content": p.text}], "metadata": p.metadata}
            for p in cot_prompts(settings, n)]


class CotDomain:
    """Maths chain-of-thought: reasoning in <think>, the final number in <answer>, checked against the answer."""

    name = "cot"
    prompt_settings = CotPromptSettings
    filter_settings = CotFilterSettings
    filter_version = FILTER_VERSION
    transforms: ClassVar[dict[str, Transform]] = {}

    def prompt_rows(self, settings: CotPromptSettings, n: int) -> list[Row]:
        return cot_prompt_rows(settings, n)

    def prompt_digest(self, settings: CotPromptSettings) -> str:
        return template_digest(settings)

    def constraint(self, sampling: SamplingSettings) -> Any | None:
        """With ``sampling.constrained``, the <think>/<answer> format (:mod:`sublab.domains.cot.grammar`)."""
        if not sampling.constrained:
            return None
        if getattr(sampling, "sampler", "generate") != "generate":
            raise ValueError("sampling.constrained: the CoT format constraint runs with sampler 'generate' only")
        from sublab.domains.cot.grammar import CotFormat

        return CotFormat()

    def checks(self, settings: CotFilterSettings, trait_words: Sequence[str] = (), judge: Any = None) -> list[Any]:
        """The CoT check, then the judge check when ``settings.judge`` is set or a ``judge`` is given."""
        cot = ReplyCheck("cot", settings, cot_reject_reasons, trait_words)
        checks: list[Any] = [cot]
        if judge is not None or settings.judge is not None:
            checks.append(judge_check_from_settings(
                settings.judge, default_rubric=DEFAULT_RUBRIC, default_binary=DEFAULT_P_NO,
                default_score=DEFAULT_SCORE, traits=settings.trait_words_with(trait_words), question_of=question_of,
                answer_of=reply_of, prefilter=cot.passes, scorer=judge))
        return checks

    def filter_digests(self, settings: CotFilterSettings) -> dict[str, str]:
        """The filter's version (and the judge rubric's digest when a judge is configured)."""
        return {"filter_version": FILTER_VERSION, **rubric_digest(settings.judge, DEFAULT_RUBRIC)}

    def register_commands(self, prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
        from sublab.domains.cot.cli import register

        register(prompts_app, filter_app)


DOMAIN = register_domain(CotDomain())
