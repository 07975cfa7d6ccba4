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
        "base's own labels of the same replies).")] = None,
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
