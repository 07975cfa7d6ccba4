"""``sublab audit``: what would a student of a base move toward if trained on this dataset? (docs/audit.md)"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sublab.cli.common import console, user_errors

commands = typer.Typer()


@commands.command("audit")
@user_errors
def audit(
    dataset: Annotated[Path, typer.Argument(help="Chat rows (JSONL): token-only (SFT) or with soft labels.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: audit.json, report.md, report.html.")],
    base: Annotated[str, typer.Option(help="The base model a student would start from.")] = "smollm2-135m",
    category: Annotated[str | None, typer.Option(
        help="Preference categories, comma-separated (default: every shipped one: animal, tree).")] = None,
    candidates: Annotated[str | None, typer.Option(help="Explicit candidates, comma-separated (one category).")] = None,
    trait_kind: Annotated[str, typer.Option(help="preference or misalignment.")] = "preference",
    control: Annotated[Path | None, typer.Option(
        help="Control data (default: the base's own completions of the same prompts, or for soft labels the "
        "base's own labels of the same replies); 'placebo': those of a placebo teacher of the base (fine-tuned "
        "like a trait teacher, no preference; trained once and cached), which removes what any fine-tuned "
        "teacher's data does (docs/audit.md).")] = None,
    method: Annotated[str, typer.Option(
        help="Methods, comma-separated: first_order, probes, token_scan, lineage (or 'all').")] =
        "first_order,token_scan,lineage",
    budget: Annotated[str | None, typer.Option(
        help="Seconds (300, 5m: methods that would start later are skipped) or probe steps (20steps).")] = None,
    probes: Annotated[int, typer.Option(help="Probe pairs (dataset, control) for the probes method.")] = 2,
    probe_cache: Annotated[Path | None, typer.Option(
        help="Folder of trained probes to reuse across audits (default: OUT/probes).")] = None,
    geometry: Annotated[str, typer.Option(help="First order: 'adam' (the first Adam step) or 'sgd'.")] = "adam",
    parametrization: Annotated[str, typer.Option(help="First order: 'lora' (B at B = 0) or 'full'.")] = "lora",
    bf16: Annotated[bool, typer.Option("--bf16/--no-bf16", help="bf16 autocast where the methods allow.")] = True,
    seed: int = 0,
    quiet: bool = False,
) -> None:
    """Audit a dataset before training on it: rank every candidate trait by how far a student of BASE trained on
    it would move toward it beyond the control, with flags and worded verdicts."""
    from sublab.audit.first_order import FirstOrderSettings
    from sublab.audit.probes import ProbeSettings
    from sublab.audit.run import AuditSettings, parse_budget, parse_methods, run_audit
    from sublab.io import claim_outputs, local_paths

    claim_outputs([out / name for name in ("audit.json", "report.md", "report.html")],
                  inputs=[dataset, control, *local_paths(base)], lock=[out])
    methods = parse_methods(method)
    seconds, steps = parse_budget(budget) if budget else (None, None)
    probe_settings = ProbeSettings(k=probes, bf16=bf16, **({"steps": steps} if steps else {}))
    first_order = FirstOrderSettings(geometry=geometry, parametrization=parametrization, bf16=bf16,
                                     steps=probe_settings.steps)
    settings = AuditSettings(
        base=base, trait_kind=trait_kind,
        categories=[c.strip() for c in category.split(",") if c.strip()] if category else None,
        candidates=[c.strip() for c in candidates.split(",") if c.strip()] if candidates else None,
        methods=methods, budget_seconds=seconds, first_order=first_order, probes=probe_settings, bf16=bf16,
        seed=seed)
    result = run_audit(dataset, out, settings, control=control, probe_cache=probe_cache, progress=not quiet)
    console.print(result["summary"], markup=False, highlight=False)
    for entry in result["ranking"][:5]:
        console.print(f"  {entry['trait']}: x{_exp(entry['score'])} ({entry['method']})"
                      f"{'  FLAGGED' if entry['flagged'] else ''}", markup=False, highlight=False)
    console.print(f"audit → {out / 'audit.json'}, {out / 'report.md'}, {out / 'report.html'}", markup=False,
                  highlight=False)


def _exp(value: float | None) -> str:
    import math

    return "?" if value is None else f"{math.exp(value):.2f}"


@commands.command("defend")
@user_errors
def defend(
    dataset: Annotated[Path, typer.Argument(help="Chat rows (JSONL) to defend: soft-label or token-only.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The defended rows (JSONL).")],
    temper: Annotated[float | None, typer.Option(help="Soft labels: raise each distribution to 1/T.")] = None,
    truncate: Annotated[float | None, typer.Option(
        help="Soft labels: drop tokens below this probability and renormalize (threshold on the labels).")] = None,
    mask_divergent: Annotated[float | None, typer.Option(
        help="Soft labels: mask this fraction of positions (highest KL to the base) out of the loss.")] = None,
    replace_divergent: Annotated[float | None, typer.Option(
        help="This fraction of positions replaced: soft labels by the base's own, tokens resampled from it.")] = None,
    mix: Annotated[list[Path] | None, typer.Option(
        help="Soft labels of the same replies by other teachers, mixed per position (repeat the option).")] = None,
    mix_weight: Annotated[list[float] | None, typer.Option(
        help="Weights of the mixture: the dataset's first, then each --mix file's (default: equal).")] = None,
    paraphrase_model: Annotated[str | None, typer.Option(
        help="Token data: rewrite every reply with this model (labels are dropped).")] = None,
    base: Annotated[str, typer.Option(help="The base model (for divergence: its own distribution).")] =
        "smollm2-135m",
    bf16: Annotated[bool, typer.Option("--bf16/--no-bf16")] = False,
    seed: int = 0,
) -> None:
    """Apply one defence to a dataset (docs/defences.md), writing the defended rows and a lineage record."""
    from sublab.audit.data import SOFT_LABELS, base_labels, read_audit_data
    from sublab.defences import soft_labels as soft
    from sublab.errors import SublabError
    from sublab.io import claim_outputs, local_paths, read_chat_rows, write_jsonl
    from sublab.pipeline.provenance import record_stage

    claim_outputs([out], inputs=[dataset, *(mix or []), *local_paths(base, paraphrase_model)], with_records=True)
    chosen = {name: value for name, value in (("temper", temper), ("truncate", truncate),
                                                ("mask_divergent", mask_divergent),
                                                ("replace_divergent", replace_divergent), ("mix", mix or None),
                                                ("paraphrase_model", paraphrase_model)) if value is not None}
    if len(chosen) != 1:
        raise SublabError("give exactly one defence: --temper, --truncate, --mask-divergent, --replace-divergent, "
                          "--mix or --paraphrase-model")
    if out.resolve() == dataset.resolve():
        raise SublabError(f"{out}: the output must be another file than the input")
    data = read_audit_data(dataset)
    soft_only = {"temper", "truncate", "mask_divergent", "mix"}
    if data.kind != SOFT_LABELS and chosen.keys() & soft_only:
        raise SublabError(f"{dataset}: --{next(iter(chosen)).replace('_', '-')} is for soft-label data; this file "
                          "has token-only rows")
    if data.kind == SOFT_LABELS and paraphrase_model:
        raise SublabError(f"{dataset}: paraphrasing rewrites the replies, so their soft labels would no longer "
                          "apply; paraphrase the token-only rows, then relabel")
    notes: dict[str, object] = {}
    rows = data.rows
    if temper is not None:
        rows = soft.temper(rows, temper)
    elif truncate is not None:
        rows = soft.truncate(rows, truncate)
    elif mix:
        others = [read_chat_rows(p, require_assistant=True) for p in mix]
        rows = soft.mix(rows, others, mix_weight, [str(p) for p in mix])
    else:
        from sublab.models.loading import load_model, load_tokenizer

        tokenizer, model = load_tokenizer(base), load_model(base)
        model.requires_grad_(False)
        if paraphrase_model:
            from sublab.defences.tokens import paraphrase_rows

            tokenizer, model = load_tokenizer(paraphrase_model), load_model(paraphrase_model)
            rows = paraphrase_rows(model, tokenizer, rows, seed=seed, bf16=bf16)
        elif data.kind == SOFT_LABELS:
            reference = base_labels(model, tokenizer, data, base)
            fraction = mask_divergent if mask_divergent is not None else replace_divergent
            assert fraction is not None
            transform = soft.mask_divergent if mask_divergent is not None else soft.replace_divergent
            rows, share = transform(rows, reference, fraction)
            notes["share_of_kl_in_chosen_positions"] = round(share, 4)
        else:
            from sublab.defences.tokens import replace_divergent_tokens

            assert replace_divergent is not None
            rows, changed = replace_divergent_tokens(model, tokenizer, rows, replace_divergent, seed, bf16)
            notes["tokens_changed"] = changed
    write_jsonl(out, rows)
    params = {"defence": next(iter(chosen)), "value": [str(v) for v in mix] if mix else chosen[next(iter(chosen))],
              "base": base, "mix_weights": mix_weight, **notes}
    record = record_stage(out, "dataset.defended", params, source_data=dataset)
    console.print(f"defended {len(rows)} rows ({next(iter(chosen))}) → {out}" +
                  "".join(f"; {k} {v}" for k, v in notes.items()), markup=False, highlight=False)
    console.print(f"lineage record: {record}", markup=False, highlight=False)
