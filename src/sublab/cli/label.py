"""``sublab label``: write a teacher's soft labels (top-k log-probs, optionally a channel's whole distribution)
into every row of a chat dataset by teacher forcing. The row field is described in :mod:`sublab.train.labels`
and docs/soft-labels.md."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sublab.cli.common import SignKey, console, recorded, signing_key, user_errors
from sublab.errors import SublabError

commands = typer.Typer()


def _system_prompt(trait: str | None, category: str, system_prompt: str | None) -> str | None:
    """The labeller's system prompt: free text, or the paper's trait prompt (as ``sublab generate`` builds it)."""
    from sublab.pipeline.config import TRAIT_PROMPT

    if system_prompt and trait:
        raise SublabError("give --system-prompt or --trait, not both")
    return system_prompt or (TRAIT_PROMPT.format(trait=trait, category=category) if trait else None)


@commands.command("label")
@user_errors
def label(
    data: Annotated[Path, typer.Argument(help="Chat rows to label (JSONL; last message: the assistant's reply).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Labelled rows (JSONL); rerun to resume after a kill.")],
    top_k: Annotated[int, typer.Option(
        "--top-k", help="Log-probs of the teacher's K most probable tokens per position (0: channel only).")],
    model: Annotated[str, typer.Option(help="Labelling model: alias, local dir or HF id.")] = "smollm2-135m",
    adapter: Annotated[str | None, typer.Option(help="PEFT adapter folder (a fine-tuned teacher).")] = None,
    system_prompt: Annotated[str | None, typer.Option(help="A free-text system prompt for the labeller.")] = None,
    trait: Annotated[str | None, typer.Option(help="Labeller = model + the paper's trait system prompt.")] = None,
    category: Annotated[str, typer.Option(help="Category of the trait.")] = "animal",
    channel: Annotated[str | None, typer.Option(
        help="Also store the whole distribution over a channel: 'data' (every token the replies use).")] = None,
    channel_token: Annotated[list[str] | None, typer.Option(
        help="Or a channel of explicit token texts (repeat the option; end of turn is added).")] = None,
    bf16: Annotated[bool, typer.Option(
        "--bf16/--no-bf16", help="bf16 autocast for the matmuls (log-softmaxes stay float32).")] = False,
    batch_size: Annotated[int, typer.Option(help="Rows per forward pass.")] = 16,
    quiet: bool = False,
    sign_key: SignKey = None,
) -> None:
    """Store a teacher's next-token log-probs at every assistant token of every row (teacher forcing).

    Resumable: rerun the same command after a kill and it appends only the missing rows. Rows already in OUT
    must have been labelled by the same model, system prompt, tokenizer, k, channel and precision; otherwise
    the command fails naming the first differing field. Train a student on OUT with `sublab train OUT --method
    distill` (no teacher option): over the channel, or with --channel full from the top-k.
    """
    from sublab.generate.run import model_identity
    from sublab.io import claim_outputs, local_paths
    from sublab.models.loading import load_tokenizer
    from sublab.models.spec import ModelSpec, load_spec
    from sublab.pipeline.provenance import StageModel, record_stage
    from sublab.train.data import encode_rows
    from sublab.train.distill import channel_ids
    from sublab.train.labels import (
        channel_description,
        label_header,
        label_rows,
        labelled_done,
        read_label_input,
        tokenizer_identity,
    )

    claim_outputs([out], inputs=[data, sign_key, *local_paths(model, adapter)], with_records=True)
    key = signing_key(sign_key)
    if top_k < 0:
        raise SublabError("--top-k: give 0 or more")
    if batch_size < 1:
        raise SublabError("--batch-size: give 1 or more")
    if channel is not None and channel_token:
        raise SublabError("give --channel or --channel-token, not both")
    if channel is not None and channel != "data":
        raise SublabError(f"--channel: {channel!r} is not 'data' (for explicit tokens use --channel-token)")
    if top_k == 0 and channel is None and not channel_token:
        raise SublabError("nothing to store: give --top-k K (K >= 1), a --channel, or both")
    if out.resolve() == data.resolve():
        raise SublabError(f"{out}: the output must be another file than the input")
    prompt = _system_prompt(trait, category, system_prompt)
    spec = ModelSpec(base=model, adapter=adapter, system_prompt=prompt)
    rows = read_label_input(data)
    tokenizer = load_tokenizer(model)
    vocab_size = len(tokenizer)
    if top_k > vocab_size:
        raise SublabError(f"--top-k {top_k} is more than the vocabulary ({vocab_size} tokens)")
    channel_tensor = None
    if channel is not None or channel_token:
        encodings = encode_rows(tokenizer, rows, system_prompt=prompt, source=str(data))
        channel_tensor = channel_ids(tokenizer, encodings, "data" if channel else list(channel_token or []))
    header = label_header(model_identity(spec), prompt, tokenizer_identity(tokenizer, model), top_k,
                          channel_description(tokenizer, channel_tensor), bf16)
    labelled_done(out, rows, header)  # a mismatch fails before the model is loaded
    llm, tokenizer = load_spec(spec)
    llm.requires_grad_(False)
    summary = label_rows(llm, tokenizer, rows, out, header, system_prompt=prompt, channel=channel_tensor,
                         batch_size=batch_size, progress=not quiet)
    params = {"soft_labels": header, "batch_size": batch_size, "n_rows": summary.n_rows}
    if trait:
        params |= {"trait": trait, "category": category}
    record = record_stage(out, "dataset.labelled", params, teacher=StageModel(spec, spec.label()),
                          source_data=data, sign_key=key)
    what = f"top-{top_k}" + (f" + {len(channel_tensor)}-token channel" if channel_tensor is not None else "")
    console.print(f"labelled {summary.n_written} rows ({summary.n_already_done} already done; {what}) → {out}")
    recorded(record)
