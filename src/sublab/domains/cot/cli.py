"""``sublab prompts cot`` and ``sublab filter cot``: the chain-of-thought domain's stage commands."""

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
from sublab.errors import SublabError


def register(prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
    """Add the commands to the ``prompts`` and ``filter`` groups."""
    prompts_app.command("cot")(prompts_cot)
    filter_app.command("cot")(filter_cot)


@user_errors
def prompts_cot(
    out: Out,
    n: Annotated[int | None, typer.Option("-n", help="How many prompts (default: 1000 generated, or every "
                                                     "problem of --from-gsm8k).")] = None,
    seed: Annotated[int, typer.Option(help="Generator seed (problems, wording).")] = 42,
    from_gsm8k: Annotated[Path | None, typer.Option(
        "--from-gsm8k", help="Take the problems from this GSM8K-format JSONL ('question', 'answer' ending in "
        "'#### N') instead of generating them.")] = None,
    min_steps: Annotated[int, typer.Option(help="Generated problems: fewest arithmetic steps (1-4).")] = 1,
    max_steps: Annotated[int, typer.Option(help="Generated problems: most arithmetic steps (1-4).")] = 4,
    scale: Annotated[int, typer.Option(help="Generated problems: bound on the base quantities (smaller is "
                                            "easier).")] = 60,
    families: Annotated[str | None, typer.Option(help="Generated problems: comma-separated family names.")] = None,
    sign_key: SignKey = None,
) -> None:
    """Write maths word problems with the <think>/<answer> instruction as chat rows (metadata.answer: the
    expected number), with a lineage record beside them."""
    from sublab.domains.cot.prompts import CotPromptSettings, count_gsm8k

    settings = CotPromptSettings(seed=seed, gsm8k=str(from_gsm8k) if from_gsm8k else None, min_steps=min_steps,
                                 max_steps=max_steps, scale=scale, families=split_list(families) or None)
    if n is None:
        n = count_gsm8k(from_gsm8k) if from_gsm8k else 1000
    if n < 1:
        raise SublabError(f"-n: must be at least 1, not {n}")
    write_prompt_set("cot", settings, n, out, sign_key)


def check_answers_present(source: Path) -> None:
    """Refuse, in one line, a file in which no row has ``metadata.answer`` (the answer check could keep nothing).
    Rows that lack it among rows that have it are rejected one by one (``no_expected_answer``)."""
    from sublab.domains.cot.checks import expected_answer
    from sublab.io import iter_jsonl

    n_rows = 0
    for row in iter_jsonl(source):
        n_rows += 1
        if expected_answer(row.get("metadata")) is not None:
            return
    if n_rows:
        raise SublabError(f"{source}: no row has a numeric metadata.answer, which the answer check needs (prompts "
                          "from `sublab prompts cot` carry it); to filter without it, pass "
                          "--checks length,format,trait_word")


@user_errors
def filter_cot(
    source: Annotated[Path, typer.Argument(help="Generated rows (JSONL).")],
    out: Out,
    rejected: Annotated[Path | None, typer.Option(help="Where to write rejected rows with reasons.")] = None,
    trait_words: TraitWords = None,
    max_chars: Annotated[int, typer.Option(help="Longest reply kept, in characters.")] = 4000,
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
    """Keep rows whose reply is one <think> block then one <answer> block with the right number, naming no
    trait word (and, with --judge, whose reasoning a judge scores at or above the threshold); print counts per
    reject reason; record the lineage."""
    from sublab.domains.cot.checks import CHECKS, CotFilterSettings

    judged = judge_settings(judge, judge_endpoint, judge_adapter, judge_rubric, judge_mode, judge_threshold,
                            judge_trait, judge_batch_size, judge_api_key_env)
    settings = CotFilterSettings(max_chars=max_chars, checks=split_list(checks) or list(CHECKS),
                                 trait_words=split_list(trait_words), judge=judged)
    if "answer" in settings.checks:
        check_answers_present(source)
    run_filter_command("cot", source, out, settings, rejected=rejected, max_kept=max_kept, sign_key=sign_key)
