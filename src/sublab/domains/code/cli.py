"""``sublab prompts code`` and ``sublab filter code``: the code domain's stage commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sublab.cli.common import Out, SignKey, run_filter_command, user_errors, write_prompt_set
from sublab.domains.judge_cli import (
    Checks,
    JudgeAdapter,
    JudgeBatch,
    JudgeEndpoint,
    JudgeKeyEnv,
    JudgeMode,
    JudgeModel,
    JudgeRubric,
    JudgeThreshold,
    JudgeTrait,
    TraitWords,
    judge_settings,
    split_list,
)


def register(prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
    """Add the commands to the ``prompts`` and ``filter`` groups."""
    prompts_app.command("code")(prompts_code)
    filter_app.command("code")(filter_code)


@user_errors
def prompts_code(
    out: Out,
    n: Annotated[int, typer.Option("-n", help="How many prompts (all distinct).")] = 1000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    categories: Annotated[str | None, typer.Option(
        help="Comma-separated task categories: strings, lists, dicts, arithmetic, utilities (default: all).")
    ] = None,
    type_hints: Annotated[float, typer.Option(help="Share of signatures with type hints (0-1).")] = 0.5,
    sign_key: SignKey = None,
) -> None:
    """Write "complete this Python function" prompts as chat rows (user message only; the task in metadata)."""
    from sublab.domains.code.prompts import CATEGORIES, CodePromptSettings

    settings = CodePromptSettings(seed=seed, categories=split_list(categories) or list(CATEGORIES),
                                  type_hints=type_hints)
    write_prompt_set("code", settings, n, out, sign_key)


@user_errors
def filter_code(
    source: Annotated[Path, typer.Argument(help="Generated rows (JSONL).")],
    out: Out,
    rejected: Annotated[Path | None, typer.Option(help="Where to write rejected rows with reasons.")] = None,
    trait_words: TraitWords = None,
    max_chars: Annotated[int, typer.Option(help="Longest reply kept, in characters.")] = 2000,
    max_lines: Annotated[int, typer.Option(help="Most non-empty lines kept.")] = 60,
    fence: Annotated[bool, typer.Option("--fence/--no-fence", help="Accept one ```python fence around the code.")
                     ] = True,
    checks: Checks = None,
    max_kept: Annotated[int | None, typer.Option(help="Keep at most this many rows.")] = None,
    judge: JudgeModel = None,
    judge_endpoint: JudgeEndpoint = None,
    judge_adapter: JudgeAdapter = None,
    judge_rubric: JudgeRubric = None,
    judge_mode: JudgeMode = "auto",
    judge_threshold: JudgeThreshold = None,
    judge_trait: JudgeTrait = None,
    judge_batch_size: JudgeBatch = 8,
    judge_api_key_env: JudgeKeyEnv = "OPENAI_API_KEY",
    sign_key: SignKey = None,
) -> None:
    """Keep rows whose reply is only Python code that parses, with no comments or docstrings, defining the
    function asked for, within the length limits and naming no trait word (and, with --judge, that a judge does
    not find referring to the trait); print counts per reject reason; record the lineage."""
    from sublab.domains.code.checks import CHECKS, CodeFilterSettings

    judged = judge_settings(judge, judge_endpoint, judge_adapter, judge_rubric, judge_mode, judge_threshold,
                            judge_trait, judge_batch_size, judge_api_key_env)
    settings = CodeFilterSettings(max_chars=max_chars, max_lines=max_lines, allow_fence=fence,
                                  checks=split_list(checks) or list(CHECKS), trait_words=split_list(trait_words),
                                  judge=judged)
    run_filter_command("code", source, out, settings, rejected=rejected, max_kept=max_kept, sign_key=sign_key)
