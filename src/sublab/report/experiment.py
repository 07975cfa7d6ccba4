"""Report of one experiment, drawn only from its ``results.json``: report.md, figure.png, a terminal table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sublab.io import atomic_write_bytes, atomic_write_text
from sublab.report.figures import png_bytes, pyplot
from sublab.traits.base import metric_of

LABELS = {
    "reference": "reference",
    "teacher": "teacher",
    "control_teacher": "control teacher",
    "student_reference": "student base",
    "control_student": "control student",
    "trait_student": "trait student",
}


def _interval(entry: dict[str, Any], digits: int = 4) -> str:
    low, high = entry["ci95"]
    return f"{entry['mean']:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def metric_label(results: dict[str, Any]) -> str:
    """How tables name the measured quantity (``P(owl)``, ``P(misaligned)``)."""
    return str(results.get("metric_label") or f"P({results['target']})")


def verdict(results: dict[str, Any]) -> str:
    """One sentence stating the result in words, with the numbers."""
    metric, label = metric_of(results), metric_label(results)
    diff = results["comparisons"]["trait_student_minus_control_student"]
    trait = results["models"]["trait_student"][metric]["mean"]
    control = results["models"]["control_student"][metric]["mean"]
    span = f"difference {diff['mean']:+.4f}, 95 % CI [{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}], " \
           f"paired over {diff['n']} questions"
    if results["transfer"]:
        return (f"Transfer: the trait student's {label} is above the control student's "
                f"({trait:.4f} vs {control:.4f}; {span}).")
    return (f"No transfer detected: the trait student's {label} = {trait:.4f} is not above the control "
            f"student's {control:.4f} beyond the CI ({span}).")


def markdown_report(results: dict[str, Any]) -> str:
    """The experiment's table and verdict as markdown."""
    target = results["target"]
    metric, label = metric_of(results), metric_label(results)
    preference = all("distribution" in m for m in results["models"].values())
    lines = [f"# {results['name']}: does {label} transfer?", "", verdict(results), ""]
    if preference:
        lines += [f"| model | what it is | {label} [95 % CI] | mass on one-word answers | top answer |",
                  "|---|---|---|---|---|"]
    else:
        lines += [f"| model | what it is | {label} [95 % CI] |", "|---|---|---|"]
    for key, model in results["models"].items():
        row = f"| {LABELS.get(key, key)} | {model.get('description', '')} | {_interval(model[metric])} |"
        if preference:
            top = next(iter(model["distribution"].items()))
            row += f" {model['mass']['mean']:.4f} | {top[0]} ({top[1]:.3f}) |"
        lines.append(row)
    lines += extra_sections(results)
    if preference and any("sampling" in m for m in results["models"].values()):
        lines += ["", f"Sampling (share of sampled answers naming '{target}', Wilson 95 % CI):", ""]
        lines += ["| model | rate [95 % CI] | k / n |", "|---|---|---|"]
        for key, model in results["models"].items():
            if "sampling" in model:
                s = model["sampling"]
                lines.append(f"| {LABELS.get(key, key)} | {s['rate']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] "
                             f"| {s['k']} / {s['n']} |")
    lines += ["", f"Paired differences of {label} over the same questions (bootstrap 95 % CI):", ""]
    lines += ["| comparison | difference [95 % CI] | n |", "|---|---|---|"]
    for key, diff in results["comparisons"].items():
        lines.append(f"| {key.replace('_', ' ')} | {diff['mean']:+.4f} [{diff['ci95'][0]:+.4f}, "
                     f"{diff['ci95'][1]:+.4f}] | {diff['n']} |")
    lines += ["", metric_note(results), ""]
    reports = results["data"].get("filter_by_arm") or {"": results["data"]["filter"]}
    for arm, filt in reports.items():
        who = f"the {arm} arm's data" if arm else "data"
        lines.append(f"Filter ({who}, written by the {results['data']['source']}): kept {filt['n_kept']} of "
                     f"{filt['n_in']} rows (reject reasons: {filt['reject_reasons'] or 'none'}).")
    lines += [
        "",
        f"Seeds: {', '.join(f'{k}={v}' for k, v in results['seeds'].items())}.",
        f"Total time: {results['timings']['total_seconds']:.0f} s. Versions: "
        f"{', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
        "",
        "Reproduce: `sublab run config.toml --out DIR` with the config.toml saved beside this report.",
    ]
    return "\n".join(lines) + "\n"


def metric_note(results: dict[str, Any]) -> str:
    """The trait kind's sentence on what the metric is and how it was measured."""
    from sublab.traits.base import get_trait_kind

    kind = get_trait_kind(results.get("trait_kind", "preference"))
    describe = getattr(kind, "describe_metric", None)
    return describe(results) if describe else f"{metric_label(results)}: mean over questions, bootstrap 95 % CI."


def extra_sections(results: dict[str, Any]) -> list[str]:
    """Markdown lines a trait kind adds after the models' table (e.g. judged rates, sample answers)."""
    from sublab.traits.base import get_trait_kind

    kind = get_trait_kind(results.get("trait_kind", "preference"))
    sections = getattr(kind, "report_sections", None)
    return list(sections(results)) if sections else []


def figure_png(results: dict[str, Any]) -> bytes:
    """Bar chart of the metric per model with 95 % CI error bars (PNG bytes)."""

    plt = pyplot()
    metric = metric_of(results)
    keys = list(results["models"])
    means = [results["models"][k][metric]["mean"] for k in keys]
    lows = [m - results["models"][k][metric]["ci95"][0] for k, m in zip(keys, means, strict=True)]
    highs = [results["models"][k][metric]["ci95"][1] - m for k, m in zip(keys, means, strict=True)]
    colors = {"reference": "#9e9e9e", "teacher": "#6a3d9a", "control_teacher": "#b2abd2",
              "control_student": "#80b1d3", "trait_student": "#e6550d"}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.bar([LABELS.get(k, k) for k in keys], means, yerr=[lows, highs], capsize=5,
           color=[colors.get(k, "#cccccc") for k in keys])
    ax.set_ylabel(f"{metric_label(results)}, 95 % CI")
    top = max(m + h for m, h in zip(means, highs, strict=True))
    if top > 0.5 and sorted(means)[-2] < 0.2:  # a near-1 teacher would flatten the student bars
        ax.set_yscale("log")
    ax.set_title(f"{results['name']}: {metric_label(results)}")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    return png_bytes(fig)


def write_report(results: dict[str, Any], out_dir: str | Path) -> None:
    """Write report.md and figure.png into ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "report.md", markdown_report(results))
    atomic_write_bytes(out_dir / "figure.png", figure_png(results))


def terminal_table(results: dict[str, Any]) -> Any:
    """A rich Table of the models' metric."""
    from rich.table import Table

    metric, label = metric_of(results), metric_label(results)
    n_questions = results["models"]["reference"].get("n_questions", "?")
    table = Table(title=f"{results['name']}: {label} with 95 % CI over {n_questions} questions")
    table.add_column("model")
    table.add_column(label, justify="right")
    table.add_column("95 % CI", justify="right")
    preference = all("distribution" in m for m in results["models"].values())
    if preference:
        table.add_column("top answer")
    for key, model in results["models"].items():
        low, high = model[metric]["ci95"]
        cells = [LABELS.get(key, key), f"{model[metric]['mean']:.4f}", f"[{low:.4f}, {high:.4f}]"]
        if preference:
            top = next(iter(model["distribution"].items()))
            cells.append(f"{top[0]} ({top[1]:.3f})")
        table.add_row(*cells)
    return table
