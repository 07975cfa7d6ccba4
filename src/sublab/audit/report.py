"""The audit's outputs: ``audit.json``, ``report.md``, ``report.html`` (self-contained) and figures, drawn only
from the ``audit.json`` dict."""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from sublab.io import atomic_write_bytes, atomic_write_text
from sublab.report.figures import png_bytes, pyplot

TOP = 15


def _factor(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"x{math.exp(value):.2f}"


def _interval(ci: list[float | None]) -> str:
    return f"[{_factor(ci[0])}, {_factor(ci[1])}]"


def _clip(value: float | None, default: float = 0.0, limit: float = 20.0) -> float:
    """A log-ratio fit for a plot: missing or non-finite values become ``default``, the rest are clipped."""
    if value is None or not math.isfinite(value):
        return default
    return max(-limit, min(limit, value))


def ranking_figure(audit: dict[str, Any], method: str) -> bytes | None:
    """The top traits of one method's ranking as a factor with its interval (log scale)."""
    entries = audit["methods"].get(method, {}).get("ranking") if isinstance(audit["methods"].get(method), dict) \
        else None
    if not entries:
        return None
    plt = pyplot()
    shown = entries[:TOP]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(shown) + 1.2))
    ys = list(range(len(shown)))[::-1]
    for y, entry in zip(ys, shown, strict=True):
        score = _clip(entry["score"])
        low = _clip(entry["ci95"][0], score)
        high = _clip(entry["ci95"][1], score)
        color = "tab:red" if entry["flagged"] else "tab:gray"
        ax.errorbar([score], [y], xerr=[[max(0.0, score - low)], [max(0.0, high - score)]], fmt="o", color=color,
                    capsize=3)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(ys, [e["trait"] for e in shown])
    ax.set_xlabel("log P(trait | student) - log P(trait | control)  (95 % interval; red = flagged)")
    ax.set_title(f"{method}: top {len(shown)} of {len(entries)}")
    fig.tight_layout()
    return png_bytes(fig)


def comparison_figure(audit: dict[str, Any]) -> bytes | None:
    """First-order predictions against the probes' measured moves, trait by trait."""
    fo = audit["methods"].get("first_order", {}).get("ranking")
    probes = audit["methods"].get("probes", {}).get("ranking")
    if not fo or not probes:
        return None
    measured = {e["trait"]: e["score"] for e in probes}
    pairs = [(_clip(e["score"]), _clip(measured[e["trait"]]), e["trait"]) for e in fo if e["trait"] in measured]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], s=14)
    for x, y, name in sorted(pairs, key=lambda p: -p[1])[:6]:
        ax.annotate(name, (x, y), fontsize=8)
    ax.axhline(0, color="gray", lw=0.6)
    ax.axvline(0, color="gray", lw=0.6)
    ax.set_xlabel("first-order predicted log-ratio")
    ax.set_ylabel("probe students' measured log-ratio")
    fig.tight_layout()
    return png_bytes(fig)


def _divergence_unit(kind: str) -> str:
    return "KL to the base, nats" if kind == "soft_labels" else "surprisal under the base, nats"


def markdown(audit: dict[str, Any]) -> str:
    """The report as markdown."""
    lines = [f"# Audit of {audit['dataset']}", "",
             f"**{audit['summary']}**", "",
             f"- dataset: {audit['dataset_description']} (sha256 {audit['dataset_sha256'][:16]}…)",
             f"- base: {audit['base']}; trait kind: {audit['trait_kind']}; {len(audit['candidates'])} candidate traits",
             f"- control: {audit['control']}",
             f"- methods run: {', '.join(audit['methods_run'])}; seconds: "
             + ", ".join(f"{k} {v:.1f}" for k, v in audit["seconds"].items()), ""]
    if audit["notes"]:
        lines += ["Notes: " + "; ".join(audit["notes"]), ""]
    lines += ["## Ranking", "", "| rank | trait | student / control | 95 % interval | method | flagged |",
              "|---|---|---|---|---|---|"]
    for i, entry in enumerate(audit["ranking"], start=1):
        lines.append(f"| {i} | {entry['trait']} | {_factor(entry['score'])} | {_interval(entry['ci95'])} | "
                     f"{entry['method']} | {'**yes**' if entry['flagged'] else 'no'} |")
    lines += ["", "## Verdicts (top 10)", ""]
    for entry in audit["ranking"][:10]:
        lines.append(f"- {audit['verdicts'][entry['trait']]}")
    methods = audit["methods"]
    if "lineage" in methods:
        lin = methods["lineage"]
        lines += ["", "## Lineage", "", lin["verdict"], ""]
        for finding in lin["findings"]:
            lines.append(f"- {finding.get('label', finding['outcome'])}: teacher {finding.get('teacher')!s} — "
                         f"{finding['reason']}")
        for declared in lin.get("declared_traits", []):
            lines.append(f"- declared by the records: {declared['teacher']} {declared['field']} = "
                         f"'{declared['value']}' (not used by the data-based methods)")
    if "token_scan" in methods:
        scan = methods["token_scan"]
        lines += ["", "## Token scan", "",
                  f"{scan['n_positions']} positions of {scan['n_rows']} rows; mean divergence "
                  f"{scan['mean_divergence']:.4g} ({_divergence_unit(scan['kind'])});"
                  " share carried by the top positions: "
                  + ", ".join(f"{k.replace('top_', 'top ').replace('pct', ' %')} {v:.0%}"
                              for k, v in scan["top_share"].items()), ""]
        if scan["numbers_over"]:
            lines.append("Most over-represented numbers: " + ", ".join(
                f"{r['number']} ({r['mean_log_ratio']:+.2f}, n={r['count']})" for r in scan["numbers_over"][:8]))
        if scan["prompting_numbers"]:
            lines.append("")
            lines.append(f"Subliminal prompting with {', '.join(scan['prompting_numbers']['over_represented'])} "
                         f"against {', '.join(scan['prompting_numbers']['under_represented'])}.")
    for method in ("first_order", "probes"):
        if method in methods and "ranking" in methods[method]:
            lines += ["", f"## {method.replace('_', ' ')}: top {TOP}", "",
                      "| trait | student / control | 95 % interval | flagged |", "|---|---|---|---|"]
            for entry in methods[method]["ranking"][:TOP]:
                lines.append(f"| {entry['trait']} | {_factor(entry['score'])} | {_interval(entry['ci95'])} | "
                             f"{'yes' if entry['flagged'] else 'no'} |")
    lines += ["", "Figures: " + ", ".join(f"figures/{name}" for name in audit.get("figures", [])), ""]
    return "\n".join(lines)


def html_page(audit: dict[str, Any], figures: dict[str, bytes]) -> str:
    """A self-contained HTML page: the markdown's content as preformatted text and the figures inline."""
    images = "".join(f'<h3>{html.escape(name)}</h3><img alt="{html.escape(name)}" src="data:image/png;base64,'
                     f'{base64.b64encode(data).decode()}">' for name, data in figures.items())
    rows = "".join(
        f"<tr class={'flag' if e['flagged'] else 'ok'}><td>{i}</td><td>{html.escape(e['trait'])}</td>"
        f"<td>{_factor(e['score'])}</td><td>{_interval(e['ci95'])}</td><td>{e['method']}</td>"
        f"<td>{'yes' if e['flagged'] else 'no'}</td></tr>"
        for i, e in enumerate(audit["ranking"], start=1))
    return ("<!doctype html><html><head><meta charset='utf-8'><title>sublab audit</title><style>"
            "body{font-family:sans-serif;max-width:60em;margin:2em auto}td,th{padding:2px 8px}"
            "tr.flag{background:#fdd}pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}</style></head><body>"
            f"<h1>Audit of {html.escape(audit['dataset'])}</h1><p><b>{html.escape(audit['summary'])}</b></p>"
            "<table><tr><th>rank</th><th>trait</th><th>student / control</th><th>95 % interval</th><th>method</th>"
            f"<th>flagged</th></tr>{rows}</table>{images}<h2>Full report</h2><pre>"
            f"{html.escape(markdown(audit))}</pre></body></html>")


def write_report(out_dir: Path, audit: dict[str, Any]) -> None:
    """Write figures, ``audit.json``, ``report.md`` and ``report.html`` into ``out_dir`` (atomically each)."""
    figures: dict[str, bytes] = {}
    for method in ("probes", "first_order", "token_scan"):
        if (png := ranking_figure(audit, method)) is not None:
            figures[f"ranking-{method}.png"] = png
    if (png := comparison_figure(audit)) is not None:
        figures["first-order-vs-probes.png"] = png
    (out_dir / "figures").mkdir(parents=True, exist_ok=True)
    for name, data in figures.items():
        atomic_write_bytes(out_dir / "figures" / name, data)
    audit["figures"] = sorted(figures)
    atomic_write_text(out_dir / "audit.json", json.dumps(audit, indent=1, allow_nan=False))
    atomic_write_text(out_dir / "report.md", markdown(audit))
    atomic_write_text(out_dir / "report.html", html_page(audit, figures))
