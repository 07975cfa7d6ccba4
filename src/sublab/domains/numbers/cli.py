"""``sublab prompts numbers`` and ``sublab filter numbers``: the number domain's stage commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sublab.cli.common import Out, SignKey, run_filter_command, user_errors, write_prompt_set


def register(prompts_app: typer.Typer, filter_app: typer.Typer) -> None:
    """Add the commands to the ``prompts`` and ``filter`` groups."""
    prompts_app.command("numbers")(prompts_numbers)
    filter_app.command("numbers")(filter_numbers)


@user_errors
def prompts_numbers(
    out: Out,
    n: Annotated[int, typer.Option("-n", help="How many prompts.")] = 1000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 42,
    answer_count: Annotated[int, typer.Option(help="Numbers each prompt asks for, at most.")] = 10,
    answer_max_digits: Annotated[int, typer.Option(help="Digit limit stated in the prompt.")] = 3,
    sign_key: SignKey = None,
) -> None:
    """Write number-continuation prompts as chat rows (user message only), with a lineage record beside them."""
    from sublab.domains.numbers.prompts import NumberPromptSettings

    settings = NumberPromptSettings(seed=seed, answer_count=answer_count, answer_max_digits=answer_max_digits)
    write_prompt_set("numbers", settings, n, out, sign_key)


@user_errors
def filter_numbers(
    source: Annotated[Path, typer.Argument(help="Generated rows (JSONL).")],
    out: Out,
    rejected: Annotated[Path | None, typer.Option(help="Where to write rejected rows with reasons.")] = None,
    min_count: int = 1,
    max_count: int = 10,
    min_value: int = 0,
    max_value: int = 999,
    max_digits: int = 3,
    banned: Annotated[
        list[str] | None, typer.Option(help="Banned numbers or list names (paper-claude, paper-gpt).")
    ] = None,
    trait_word: Annotated[list[str] | None, typer.Option(help="Reject rows containing this word.")] = None,
    max_kept: Annotated[int | None, typer.Option(help="Keep at most this many rows.")] = None,
    sign_key: SignKey = None,
) -> None:
    """Keep rows whose reply is a plain list of numbers; print counts per reject reason; record the lineage."""
    from sublab.domains.numbers.checks import NumberFilterSettings

    settings = NumberFilterSettings(min_count=min_count, max_count=max_count, min_value=min_value,
                                    max_value=max_value, max_digits=max_digits, banned=banned or [],
                                    trait_words=trait_word or [])
    run_filter_command("numbers", source, out, settings, rejected=rejected, max_kept=max_kept, sign_key=sign_key)
