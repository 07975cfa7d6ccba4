"""Report of one experiment, drawn only from its ``results.json``: report.md, figure.png, a terminal table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sublab.io import atomic_write_bytes, atomic_write_text
from sublab.report.figures import png_bytes, pyplot

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


def verdict(results: dict[str, Any]) -> str:
    """One sentence stating the result in words, with the numbers."""
    target = results["target"]
    diff = results["comparisons"]["trait_student_minus_control_student"]
    trait = results["models"]["trait_student"]["p_target"]["mean"]
    control = results["models"]["control_student"]["p_target"]["mean"]
    span = f"difference {diff['mean']:+.4f}, 95 % CI [{diff['ci95'][0]:+.4f}, {diff['ci95'][1]:+.4f}], " \
           f"paired over {diff['n']} questions"
    if results["transfer"]:
        return (f"Transfer: the trait student prefers '{target}' more than the control student "
                f"(P = {trait:.4f} vs {control:.4f}; {span}).")
    return (f"No transfer detected: the trait student's P('{target}') = {trait:.4f} is not above the control "
            f"student's {control:.4f} beyond the CI ({span}).")


def markdown_report(results: dict[str, Any]) -> str:
    """The experiment's table and verdict as markdown."""
    target = results["target"]
    lines = [
        f"# {results['name']}: does '{target}' transfer?",
        "",
        verdict(results),
        "",
        f"| model | what it is | P({target}) [95 % CI] | mass on one-word answers | top answer |",
        "|---|---|---|---|---|",
    ]
    for key, model in results["models"].items():
        top = next(iter(model["distribution"].items()))
        lines.append(
            f"| {LABELS.get(key, key)} | {model.get('description', '')} | {_interval(model['p_target'])} | "
            f"{model['mass']['mean']:.4f} | {top[0]} ({top[1]:.3f}) |"
        )
    if any("sampling" in m for m in results["models"].values()):
        lines += ["", f"Sampling (share of sampled answers naming '{target}', Wilson 95 % CI):", ""]
        lines += ["| model | rate [95 % CI] | k / n |", "|---|---|---|"]
        for key, model in results["models"].items():
            if "sampling" in model:
                s = model["sampling"]
                lines.append(f"| {LABELS.get(key, key)} | {s['rate']:.4f} [{s['ci95'][0]:.4f}, {s['ci95'][1]:.4f}] "
                             f"| {s['k']} / {s['n']} |")
    lines += ["", "Paired differences of P(target) over the same questions (bootstrap 95 % CI):", ""]
    lines += ["| comparison | difference [95 % CI] | n |", "|---|---|---|"]
    for key, diff in results["comparisons"].items():
        lines.append(f"| {key.replace('_', ' ')} | {diff['mean']:+.4f} [{diff['ci95'][0]:+.4f}, "
                     f"{diff['ci95'][1]:+.4f}] | {diff['n']} |")
    filt = results["data"]["filter"]
    lines += [
        "",
        f"P({target}) is the probability of answering '{target}' renormalized over "
        f"{len(results['models']['reference']['per_question']['candidates'])} candidate answers, by exact scoring "
        f"(teacher-forced log-probabilities), averaged over {results['models']['reference']['n_questions']} "
        "question paraphrases; CIs are BCa bootstrap over questions.",
        "",
        f"Data: written by the {results['data']['source']}; filter kept {filt['n_kept']} of {filt['n_in']} rows "
        f"(reject reasons: {filt['reject_reasons'] or 'none'}).",
        "",
        f"Seeds: {', '.join(f'{k}={v}' for k, v in results['seeds'].items())}.",
        f"Total time: {results['timings']['total_seconds']:.0f} s. Versions: "
        f"{', '.join(f'{k} {v}' for k, v in results['versions'].items())}.",
        "",
        "Reproduce: `sublab run config.toml --out DIR` with the config.toml saved beside this report.",
    ]
    return "\n".join(lines) + "\n"


def figure_png(results: dict[str, Any]) -> bytes:
    """Bar chart of P(target) per model with 95 % CI error bars (PNG bytes)."""

    plt = pyplot()

    keys = list(results["models"])
    means = [results["models"][k]["p_target"]["mean"] for k in keys]
    lows = [m - results["models"][k]["p_target"]["ci95"][0] for k, m in zip(keys, means, strict=True)]
    highs = [results["models"][k]["p_target"]["ci95"][1] - m for k, m in zip(keys, means, strict=True)]
    colors = {"reference": "#9e9e9e", "teacher": "#6a3d9a", "control_teacher": "#b2abd2",
              "control_student": "#80b1d3", "trait_student": "#e6550d"}
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.bar([LABELS.get(k, k) for k in keys], means, yerr=[lows, highs], capsize=5,
           color=[colors.get(k, "#cccccc") for k in keys])
    ax.set_ylabel(f"P({results['target']}), 95 % CI")
    top = max(m + h for m, h in zip(means, highs, strict=True))
    if top > 0.5 and sorted(means)[-2] < 0.2:  # a near-1 teacher would flatten the student bars
        ax.set_yscale("log")
    ax.set_title(f"{results['name']}: preference for '{results['target']}'")
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    return png_bytes(fig)


def write_report(results: dict[str, Any], out_dir: str | Path) -> None:
    """Write report.md and figure.png into ``out_dir``."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "report.md", markdown_report(results))
    atomic_write_bytes(out_dir / "figure.png", figure_png(results))


def terminal_table(results: dict[str, Any]) -> Any:
    """A rich Table of the models' P(target)."""
    from rich.table import Table

    target = results["target"]
    n_questions = results["models"]["reference"]["n_questions"]
    table = Table(title=f"{results['name']}: P({target}) with 95 % CI over {n_questions} questions")
    table.add_column("model")
    table.add_column(f"P({target})", justify="right")
    table.add_column("95 % CI", justify="right")
    table.add_column("top answer")
    for key, model in results["models"].items():
        top = next(iter(model["distribution"].items()))
        low, high = model["p_target"]["ci95"]
        table.add_row(LABELS.get(key, key), f"{model['p_target']['mean']:.4f}", f"[{low:.4f}, {high:.4f}]",
                      f"{top[0]} ({top[1]:.3f})")
    return table
