"""Command-line options the code and CoT filter commands share: trait words, checks and the judge."""

from __future__ import annotations

from typing import Annotated

import typer

from sublab.errors import SublabError
from sublab.filter.judged import JudgeFilterSettings

TraitWords = Annotated[str | None, typer.Option(
    "--trait-words", help="Comma-separated trait words; a row naming one (any form, also inside identifiers) "
    "is rejected.")]
Checks = Annotated[str | None, typer.Option(
    "--checks", help="Comma-separated checks to run (default: all of the domain's).")]
JudgeModel = Annotated[str | None, typer.Option(
    "--judge", help="Turn on the judge check with this judge model (alias, local folder or HF id; with "
    "--judge-endpoint the served model's name).")]
JudgeEndpoint = Annotated[str | None, typer.Option(
    "--judge-endpoint", help="Base URL of an OpenAI-compatible server serving the judge (key from "
    "--judge-api-key-env).")]
JudgeAdapter = Annotated[str | None, typer.Option("--judge-adapter", help="In-process judge: PEFT adapter folder.")]
JudgeRubric = Annotated[str | None, typer.Option("--judge-rubric", help="Rubric name or .toml file (default: the "
                                                                        "domain's).")]
JudgeMode = Annotated[str, typer.Option("--judge-mode", help="auto, logprob, binary or parse.")]
JudgeThreshold = Annotated[float | None, typer.Option(
    "--judge-threshold", help="Binary rubric: least P(no) kept (0-1); 0-100 rubric: least score kept.")]
JudgeTrait = Annotated[str | None, typer.Option(
    "--judge-trait", help="Trait the judge is asked about (default: each trait word).")]
JudgeBatch = Annotated[int, typer.Option("--judge-batch-size", help="Rows per judge call.")]
JudgeKeyEnv = Annotated[str, typer.Option("--judge-api-key-env", help="Served judge: environment variable "
                                                                      "holding the key.")]


def split_list(value: str | None) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; None -> []."""
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def judge_settings(model: str | None, endpoint: str | None, adapter: str | None, rubric: str | None, mode: str,
                   threshold: float | None, trait: str | None, batch_size: int, api_key_env: str,
                   bf16: bool = False) -> JudgeFilterSettings | None:
    """The judge of the filter options, or None when ``--judge`` is not given (judge options alone are refused)."""
    if model is None:
        given = [name for name, value in (("--judge-endpoint", endpoint), ("--judge-adapter", adapter),
                                          ("--judge-rubric", rubric), ("--judge-threshold", threshold),
                                          ("--judge-trait", trait)) if value is not None]
        if given:
            raise SublabError(f"{given[0]} needs --judge MODEL (with --judge-endpoint: the served model's name)")
        return None
    modes = ("auto", "logprob", "binary", "parse")
    if mode not in modes:
        raise SublabError(f"--judge-mode {mode!r}: use one of {', '.join(modes)}")
    return JudgeFilterSettings(model=model, endpoint=endpoint, adapter=adapter, rubric=rubric, mode=mode,
                               threshold=threshold, trait=trait, batch_size=batch_size, api_key_env=api_key_env,
                               bf16=bf16)
