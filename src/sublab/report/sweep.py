"""The sweep report, drawn only from ``summary.json``: report.md with figures/*.png, and one self-contained
report.html (figures embedded as base64 PNG, so it opens anywhere).

Like the paper's figures: per condition, bars per trait for the baseline model, the control student and the
trait student (mean over seeds, 95 % t interval, per-seed dots), then a table of every condition.
"""

from __future__ import annotations

import base64
import html
import textwrap
from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.io import atomic_write_bytes, atomic_write_text, read_json
from sublab.report.figures import png_bytes, pyplot

BARS = (("baseline", "reference", "#9e9e9e"), ("control_student", "control student", "#80b1d3"),
        ("trait_student", "trait student", "#e6550d"))
#: Legend label of the baseline bar by the group's baseline model: the students' base in a cross-model condition.
BASELINE_LABELS = {"reference": "reference", "student_reference": "student base"}
#: Verdict marks on the bar chart's trait labels.
MARKS = {"transfer": "*", "reverse": "†"}
TITLE_WIDTH = 60
#: Point colours of the effects figure by verdict (others grey).
VERDICT_COLORS = {"transfer": "#e6550d", "reverse": "#3182bd"}


def _num(value: float | None, digits: int = 4, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(entry: dict[str, Any] | None, digits: int = 4, signed: bool = False) -> str:
    if not entry:
        return "–"
    low, high = entry["ci95"]
    span = f" [{_num(low, digits, signed)}, {_num(high, digits, signed)}]" if low is not None else ""
    return f"{_num(entry['mean'], digits, signed)}{span}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.2g}" if value < 0.001 else f"{value:.3f}"


def families(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The (condition, settings) pairs of the summary, in plan order."""
    seen: list[tuple[str, str]] = []
    for group in summary["groups"]:
        key = (group["condition"], group["settings"])
        if key not in seen:
            seen.append(key)
    return seen


def family_label(summary: dict[str, Any], condition: str, settings: str) -> str:
    """The condition's name, with the settings' name when the sweep has more than one settings table."""
    return condition if len(summary["settings"]) <= 1 else f"{condition} / {settings}"


TEST_NAMES = {"permutation": "exact permutation test over seeds", "mixed_model": "mixed model over seeds × "
              "questions"}


def verdict(group: dict[str, Any]) -> str:
    """transfer / reverse / not significant / no test (one seed), from the configured test after Holm.

    A rejection is "transfer" only when the trait student's mean is above the control student's; with
    ``alternative = "two-sided"`` a trait student significantly *below* its control is "reverse", which is not
    transfer.
    """
    test = group["test"]
    if test.get("p_holm") is None:
        return "no test"
    if not test["reject"]:
        return "not significant"
    difference = group["effects"]["difference"]["mean"]
    return "transfer" if difference is not None and difference > 0 else "reverse"


def condition_sentences(summary: dict[str, Any]) -> list[str]:
    """One sentence per condition × settings: how many traits transferred, and the typical effect."""
    sentences = []
    for condition, settings in families(summary):
        members = [g for g in summary["groups"] if (g["condition"], g["settings"]) == (condition, settings)]
        n_transfer = sum(1 for g in members if verdict(g) == "transfer")
        n_reverse = sum(1 for g in members if verdict(g) == "reverse")
        reverse = (f"; significantly below it (reverse) for {n_reverse} of {len(members)} traits"
                   if n_reverse else "")
        ratios = sorted(g["effects"]["ratio"]["mean"] for g in members if g["effects"]["ratio"]["mean"] is not None)
        diffs = sorted(g["effects"]["difference"]["mean"] for g in members)
        median_ratio = f", median ratio {ratios[len(ratios) // 2]:.2f}×" if ratios else ""
        description = summary["conditions"].get(condition, {}).get("description", "")
        sentences.append(
            f"**{family_label(summary, condition, settings)}**{f' ({description})' if description else ''}: "
            f"the trait student beat the control student for {n_transfer} of {len(members)} traits "
            f"({TEST_NAMES[summary['test']]}, Holm, α = {summary['alpha']}){reverse}; median difference "
            f"{diffs[len(diffs) // 2]:+.4f}"
            f"{median_ratio}."
        )
    return sentences


def power_sentence(summary: dict[str, Any]) -> str | None:
    """A warning when the sweep has too few seeds for any Holm-corrected rejection."""
    note = summary["power_note"]
    if summary["test"] != "permutation" or len(summary["seeds"]) >= note["seeds_needed"]:
        return None
    return (f"With {len(summary['seeds'])} seeds the exact permutation test cannot go below p = {note['min_p']:.3g}; "
            f"a rejection after Holm over {note['family_size']} traits at α = {summary['alpha']} needs at least "
            f"{note['seeds_needed']} seeds. Read the differences and their intervals, not the verdicts (or set "
            "statistics.test = 'mixed_model').")


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the table of every trait × condition × settings."""
    header = ["category", "trait", "condition", "seeds", "baseline P", "control student P", "trait student P",
              "difference [95 % CI]", "ratio [95 % CI]", "d_z", "p permutation", "mixed model [95 % CI], p",
              "p (Holm)", "verdict"]
    rows = []
    for g in summary["groups"]:
        mixed = g.get("mixed_model")
        mixed_text = (f"{_num(mixed['estimate'], 4, True)} [{_num(mixed['ci95'][0], 4, True)}, "
                      f"{_num(mixed['ci95'][1], 4, True)}], {_p(mixed['p'])}") if mixed else "–"
        models = g["models"]
        rows.append([
            g["category"], g["trait"] + (f" (vs {g['control_trait']})" if g.get("control_trait") else ""),
            family_label(summary, g["condition"], g["settings"]), str(g["n_seeds"]),
            _interval(models[g["baseline"]]), _interval(models["control_student"]), _interval(models["trait_student"]),
            _interval(g["effects"]["difference"], signed=True), _interval(g["effects"]["ratio"], 2),
            _num(g["effects"]["cohens_dz"], 2), _p(g["permutation"]["p"]), mixed_text, _p(g["test"]["p_holm"]),
            verdict(g),
        ])
    return header, rows


def metric_name(summary: dict[str, Any]) -> str:
    """The metric the summary's groups are about (``p_target`` for summaries written before trait kinds)."""
    return next((g.get("metric") for g in summary["groups"] if g.get("metric")), "p_target")


def metric_axis_label(summary: dict[str, Any]) -> str:
    """``P(trait)`` for preferences (each trait has its own label), else the label the cells' results give their
    metric (``P(misaligned)``)."""
    metric = metric_name(summary)
    if metric == "p_target":
        return "P(trait)"
    return next((g["metric_label"] for g in summary["groups"] if g.get("metric_label")), metric)


def methods_text(summary: dict[str, Any]) -> list[str]:
    """The methods paragraphs of the report."""
    seeding = ", ".join(k for k, v in summary.get("seeding", {}).items() if v) or "none"
    metric = metric_name(summary)
    what = ("P(trait) is the model's probability of naming the trait, renormalized over the category's candidate "
            "answers, by exact scoring, averaged over the evaluation questions." if metric == "p_target" else
            f"{metric_axis_label(summary)} is the trait kind's metric ({metric}), as each cell's results.json "
            "reports it, averaged over the evaluation questions.")
    return [
        f"{what} Each cell is one full run (teachers, data, students); seed index k shifts these seeds by k: "
        f"{seeding} (a student keeps its teacher's LoRA initialization).",
        "Means over seeds carry Student-t 95 % intervals (seeds are the replicates; questions are repeated "
        "measures). Trait and control student of a seed are paired: difference and its t interval, geometric-mean "
        "ratio with a t interval on the log scale, paired Cohen's d (d_z).",
        f"Tests ({summary['alternative']}): an exact paired permutation test over seeds (scipy), and a mixed "
        "model of the per-question differences with question effects and a random seed intercept (statsmodels "
        "MixedLM; t test on n_seeds − 1 degrees of freedom). Verdicts and p (Holm) come from the "
        f"{TEST_NAMES[summary['test']]}, Holm-corrected across the traits of each condition (statsmodels). A "
        "rejection is a transfer only when the trait student's mean is above the control student's; a two-sided "
        "test's rejection with the trait student below is reported as reverse.",
    ]


def seeds_label(seeds: list[int]) -> str:
    """``3 seeds (0-2)``, ``1 seed (0)``, ``4 seeds (0, 2, 5, 9)``."""
    if not seeds:
        return "no seeds"
    ordered = sorted(seeds)
    consecutive = ordered == list(range(ordered[0], ordered[0] + len(ordered)))
    listed = f"{ordered[0]}-{ordered[-1]}" if consecutive and len(ordered) > 2 else ", ".join(map(str, ordered))
    return f"{len(ordered)} seed{'s' if len(ordered) != 1 else ''} ({listed})"


def report_title(summary: dict[str, Any]) -> str:
    """The sweep as configured: its name, then the seeds its summary covers (the name alone said "seed0" for a
    three-seed report)."""
    return f"{summary['name']}: subliminal transfer across traits and conditions, {seeds_label(summary['seeds'])}"


def markdown_report(summary: dict[str, Any], figure_files: dict[str, str]) -> str:
    """The sweep report as markdown; ``figure_files`` maps figure names to relative paths."""
    lines = [f"# {report_title(summary)}", ""]
    lines += [f"- {s}" for s in condition_sentences(summary)]
    if note := power_sentence(summary):
        lines += ["", f"> {note}"]
    done = summary["states"].get("done", 0)
    if summary["not_done"]:
        lines += ["", f"{done} of {summary['n_cells']} cells finished; not in these numbers: "
                  f"{', '.join(summary['not_done'][:8])}{' …' if len(summary['not_done']) > 8 else ''}."]
    for name, path in figure_files.items():
        lines += ["", f"![{name}]({path})"]
    header, rows = table_rows(summary)
    lines += ["", "## Every condition", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", "## Methods", ""] + [f"{p}\n" for p in methods_text(summary)]
    lines += ["Regenerate: `sublab sweep report DIR` (reads the cells' results.json files only)."]
    return "\n".join(lines) + "\n"


def html_report(summary: dict[str, Any], figures: dict[str, bytes]) -> str:
    """The sweep report as one self-contained HTML page."""
    esc = html.escape

    def md_bold(text: str) -> str:
        parts = esc(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    body = [f"<h1>{esc(report_title(summary))}</h1>", "<ul>"]
    body += [f"<li>{md_bold(s)}</li>" for s in condition_sentences(summary)] + ["</ul>"]
    if note := power_sentence(summary):
        body.append(f'<p class="note">{esc(note)}</p>')
    if summary["not_done"]:
        body.append(f"<p>{summary['states'].get('done', 0)} of {summary['n_cells']} cells finished; not in these "
                    f"numbers: {esc(', '.join(summary['not_done']))}.</p>")
    for name, png in figures.items():
        data = base64.b64encode(png).decode("ascii")
        body.append(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{data}"></figure>')
    header, rows = table_rows(summary)
    body += ["<h2>Every condition</h2>", "<table><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
             + "</tr></thead><tbody>"]
    body += ["<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>" for row in rows]
    body += ["</tbody></table>", "<h2>Methods</h2>"] + [f"<p>{esc(p)}</p>" for p in methods_text(summary)]
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:3px 6px}"
             "td{text-align:right}td:nth-child(-n+3){text-align:left}img{max-width:100%}"
             ".note{background:#fff4e0;padding:.5em 1em;border-left:4px solid #e6a23c}")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(summary["name"])}</title>'
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def baseline_label(groups: list[dict[str, Any]]) -> str:
    """Legend label of the baseline bar: "student base" when the baseline is the students' base model (a
    cross-model condition), "reference" when it is the reference model."""
    baselines = {g["baseline"] for g in groups}
    if len(baselines) == 1:
        return BASELINE_LABELS.get(baselines.pop(), "reference")
    return "reference / student base"


def bars_title(summary: dict[str, Any], condition: str, settings: str, width: int = TITLE_WIDTH) -> str:
    """The bar chart's title: condition (and settings) with its description, wrapped to ``width`` characters."""
    description = summary["conditions"].get(condition, {}).get("description", "")
    title = family_label(summary, condition, settings) + (f": {description}" if description else "")
    return textwrap.fill(title, width)


def verdict_footnote(summary: dict[str, Any], verdicts: list[str]) -> str:
    """The bar chart's footnote explaining the marks on the trait labels that occur."""
    test = f"{TEST_NAMES[summary['test']]}, Holm α = {summary['alpha']}"
    notes = [f"{MARKS['transfer']} transfer ({test})"]
    if "reverse" in verdicts:
        notes.append(f"{MARKS['reverse']} reverse: trait student significantly below its control")
    return "; ".join(notes)


def bars_axes(summary: dict[str, Any], condition: str, settings: str) -> Any:
    """The bar chart of one condition × settings as a matplotlib figure (see :func:`bars_figure`)."""
    plt = pyplot()
    import numpy as np

    groups = [g for g in summary["groups"] if (g["condition"], g["settings"]) == (condition, settings)]
    x = np.arange(len(groups))
    width = 0.27
    title = bars_title(summary, condition, settings)
    n_title_lines = title.count("\n") + 1
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(groups) + 2.5), 4.0 + 0.2 * n_title_lines), dpi=110)
    for i, (role, label, color) in enumerate(BARS):
        entries = [g["models"][g["baseline"] if role == "baseline" else role] for g in groups]
        means = np.array([e["mean"] for e in entries])
        lows = np.array([e["ci95"][0] if e["ci95"][0] is not None else e["mean"] for e in entries])
        highs = np.array([e["ci95"][1] if e["ci95"][1] is not None else e["mean"] for e in entries])
        offset = (i - 1) * width
        if role == "baseline":
            label = baseline_label(groups)
        ax.bar(x + offset, means, width, yerr=[means - lows, highs - means], capsize=3, color=color, label=label)
        for j, entry in enumerate(entries):
            seeds = entry["per_seed"]
            ax.scatter(np.full(len(seeds), x[j] + offset), seeds, s=8, color="black", zorder=3)
    several = len({g["category"] for g in groups}) > 1
    verdicts = [verdict(g) for g in groups]
    labels = [g["trait"] + (f" ({g['category']})" if several else "") + MARKS.get(v, "")
              for g, v in zip(groups, verdicts, strict=True)]
    ax.set_xticks(x, labels)
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylabel(f"{metric_axis_label(summary)}, mean over seeds, 95 % CI")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.set_ylim(bottom=0)
    fig.text(0.01, 0.01, verdict_footnote(summary, verdicts), fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    return fig


def bars_figure(summary: dict[str, Any], condition: str, settings: str) -> bytes:
    """Per trait: baseline, control student and trait student (mean over seeds, 95 % CI, per-seed dots), as PNG."""
    return png_bytes(bars_axes(summary, condition, settings))


def effects_figure(summary: dict[str, Any]) -> bytes:
    """Trait − control difference per trait (95 % CI over seeds), one column per condition × settings, as PNG."""
    return png_bytes(effects_axes(summary))


def effects_axes(summary: dict[str, Any]) -> Any:
    """The effects figure as a live matplotlib figure (see :func:`effects_figure`)."""
    plt = pyplot()
    import numpy as np

    keys = families(summary)
    width = max(6.0, 1.3 * len(keys) + 2)
    # Wrapped to the figure's width: at 6 inches the one-line title ran past both edges.
    title = textwrap.fill("Trait − control per trait (95 % CI over seeds; orange: transfer, blue: reverse, after "
                          f"Holm), {seeds_label(summary['seeds'])}", int(width * 11))
    fig, ax = plt.subplots(figsize=(width, 4.2 + 0.2 * title.count("\n")), dpi=110)
    for i, (condition, settings) in enumerate(keys):
        members = [g for g in summary["groups"] if (g["condition"], g["settings"]) == (condition, settings)]
        spread = np.linspace(-0.25, 0.25, len(members)) if len(members) > 1 else np.zeros(1)
        for dx, g in zip(spread, members, strict=True):
            diff = g["effects"]["difference"]
            low, high = diff["ci95"]
            color = VERDICT_COLORS.get(verdict(g), "#555555")
            if low is not None:
                ax.errorbar(i + dx, diff["mean"], yerr=[[diff["mean"] - low], [high - diff["mean"]]], fmt="o",
                            color=color, markersize=4, capsize=2)
            else:
                ax.plot(i + dx, diff["mean"], "o", color=color, markersize=4)
            ax.annotate(g["trait"], (i + dx, diff["mean"]), xytext=(3, 0), textcoords="offset points", fontsize=6,
                        color="#333")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(keys)), [family_label(summary, c, s) for c, s in keys])
    ax.tick_params(axis="x", labelrotation=20)
    ax.set_ylabel(f"{metric_axis_label(summary)}: trait student − control student")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def report_figures(summary: dict[str, Any]) -> dict[str, bytes]:
    """Every figure of the report by file stem: one bar chart per condition × settings, then the effects."""
    figures = {f"bars-{c}-{s}": bars_figure(summary, c, s) for c, s in families(summary)}
    figures["effects"] = effects_figure(summary)
    return figures


def write_sweep_report(out_dir: str | Path) -> dict[str, Path]:
    """Write report.md, figures/*.png and report.html from ``out_dir/summary.json``."""
    out_dir = Path(out_dir)
    path = out_dir / "summary.json"
    if not path.is_file():
        raise SublabError(f"{path}: file not found; run 'sublab sweep report {out_dir}'")
    summary = read_json(path)
    figures = report_figures(summary)
    files = {}
    for name, png in figures.items():
        atomic_write_bytes(out_dir / "figures" / f"{name}.png", png)
        files[name] = f"figures/{name}.png"
    atomic_write_text(out_dir / "report.md", markdown_report(summary, files))
    atomic_write_text(out_dir / "report.html", html_report(summary, figures))
    return {"markdown": out_dir / "report.md", "html": out_dir / "report.html", "summary": path}
