"""``sublab judge``: score chat rows with a judge (a model plus a rubric), in-process or served."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sublab.cli.common import SignKey, console, recorded, signing_key, user_errors

commands = typer.Typer()


@commands.command("judge")
@user_errors
def judge(
    source: Annotated[Path, typer.Argument(help="Chat rows to judge (JSONL): the last user message is the "
                                                "question, the last assistant message the answer.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output rows, each with its judgment under "
                                                         "metadata.judgments (by rubric name).")],
    rubric: Annotated[str, typer.Option(help="Rubric: aligned, coherent, mentions_trait, cot_alignment, or a "
                                             ".toml file.")],
    model: Annotated[str | None, typer.Option(help="Judge model: alias, local dir or HF id; with --endpoint the "
                                                   "served model's name. Default: the embedded smollm2-135m "
                                                   "(a weak judge).")] = None,
    adapter: Annotated[str | None, typer.Option(help="PEFT adapter of an in-process judge.")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Base URL of an OpenAI-compatible server, e.g. "
                                                      "http://127.0.0.1:8000/v1.")] = None,
    mode: Annotated[str, typer.Option(help="auto, logprob (0-100 rubrics), binary (yes/no rubrics) or parse.")
                    ] = "auto",
    trait: Annotated[str | None, typer.Option(help="The trait word a rubric asks about (mentions_trait).")] = None,
    temperature: Annotated[float, typer.Option(help="Parse mode: judge sampling temperature.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Parse mode: sampling seed.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Parse mode: longest judge reply, in tokens.")] = 16,
    top_k: Annotated[int, typer.Option(help="Served logprob/binary modes: top log-probabilities read (<= 20).")
                     ] = 20,
    batch_size: Annotated[int, typer.Option(help="Rows per batch (each batch is appended and synced).")] = 8,
    bf16: Annotated[bool, typer.Option("--bf16/--no-bf16", help="In-process judge: bf16 autocast.")] = False,
    api_key_env: Annotated[str, typer.Option(help="Served: environment variable holding the API key.")
                           ] = "OPENAI_API_KEY",
    max_concurrency: Annotated[int, typer.Option(help="Served: requests in flight at once.")] = 4,
    timeout: Annotated[float, typer.Option(help="Served: seconds to wait for one response.")] = 120.0,
    retries: Annotated[int, typer.Option(help="Served: retries after 429/5xx/timeouts/connection errors.")] = 4,
    backoff: Annotated[float, typer.Option(help="Served: first retry wait in seconds (doubles each retry).")
                       ] = 1.0,
    quiet: bool = False,
    sign_key: SignKey = None,
) -> None:
    """Judge every row (resumable: rerun the same command after a kill); print counts; record the lineage."""
    from sublab.errors import SublabError
    from sublab.io import claim_outputs, local_paths
    from sublab.judges import WEAK_JUDGE_NOTE, Judge, JudgeSettings, load_rubric
    from sublab.judges.run import judge_file, judged_rows, read_judge_rows
    from sublab.models.loading import DEFAULT_MODEL
    from sublab.models.spec import ModelSpec
    from sublab.pipeline.provenance import StageModel, record_stage

    claim_outputs([out], inputs=[source, sign_key, *local_paths(rubric, model, adapter)], with_records=True)
    key = signing_key(sign_key)
    loaded_rubric = load_rubric(rubric)
    if endpoint and not model:
        raise SublabError("--endpoint needs --model NAME (the name the server serves the model under)")
    spec = ModelSpec(base=model or DEFAULT_MODEL, adapter=adapter, endpoint=endpoint)
    settings = JudgeSettings(top_k=top_k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed,
                             batch_size=batch_size, bf16=bf16)
    rows = read_judge_rows(source)  # bad input fails before a model is loaded
    options = (dict(api_key_env=api_key_env, max_concurrency=max_concurrency, timeout_s=timeout, retries=retries,
                    backoff_s=backoff) if endpoint else {"bf16": bf16})
    judge_ = Judge.from_spec(spec, loaded_rubric, mode, trait=trait, settings=settings, **options)
    judged_rows(out, rows, judge_)  # a mismatching output fails before any judging
    if judge_.weak:
        console.print(WEAK_JUDGE_NOTE, markup=False, highlight=False)
    summary = judge_file(source, out, judge_, progress=not quiet)
    declared = getattr(judge_.backend, "declared_digests", None)
    params = {"rubric": loaded_rubric.to_dict(), "judge": judge_.identity(), "judge_key": judge_.key,
              "mode": judge_.mode, "method": judge_.method, "weak_judge": judge_.weak, "counts": summary.to_dict()}
    judge_ref = StageModel(spec, f"judge {spec.label()}", declared_digests=declared)
    record = record_stage(out, "dataset.judged", params, source_data=source, judge=judge_ref, sign_key=key)
    mean = f", mean score {summary.mean_score:.2f}" if summary.mean_score is not None else ""
    console.print(f"judged {summary.n_rows} rows with '{loaded_rubric.name}' v{loaded_rubric.version} "
                  f"({judge_.mode} mode, {judge_.method}; {summary.n_written} new, {summary.n_already_done} already "
                  f"done) → {out}", markup=False, highlight=False)
    for status, count in sorted(summary.statuses.items()):
        console.print(f"  {status}: {count}", markup=False, highlight=False)
    for label, count in sorted(summary.labels.items()):
        console.print(f"  label {label}: {count}", markup=False, highlight=False)
    for reason, count in sorted(summary.reasons.items()):
        console.print(f"  no score ({reason}): {count}", markup=False, highlight=False)
    if mean:
        console.print(f" {mean.lstrip(', ')}", markup=False, highlight=False)
    if judge_.weak:
        console.print("weak judge: true", markup=False, highlight=False)
    recorded(record)
