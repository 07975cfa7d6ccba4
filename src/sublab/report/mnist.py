"""Figures and markdown for the auxiliary-logit experiment and the theorem check, drawn from their JSON only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sublab.io import atomic_write_bytes, atomic_write_text
from sublab.report.figures import png_bytes, pyplot

KEYS = ("reference", "teacher", "student_aux", "student_all", "cross_aux", "cross_all")
TICKS = ("Reference", "Teacher", "Student\n(aux. only)", "Student\n(all logits)", "Cross-model\n(aux. only)",
         "Cross-model\n(all logits)")
COLORS = ("#9e9e9e", "#6a3d9a", "#e6550d", "#fdae6b", "#3182bd", "#9ecae1")


RELATION_COLORS = {"same_init": "#e6550d", "different_init": "#3182bd", "same_base_other_adapter": "#756bb1"}


def mnist_figure(results: dict[str, Any]) -> bytes:
    """Bar chart of mean test accuracy per arm with 95 % CIs, chance as a dotted line (the paper's layout)."""
    plt = pyplot()
    means = [results[k]["mean"] for k in KEYS]
    errors = [[m - results[k]["ci95"][0] for k, m in zip(KEYS, means, strict=True)],
              [results[k]["ci95"][1] - m for k, m in zip(KEYS, means, strict=True)]]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.bar(TICKS, means, yerr=errors, capsize=5, color=COLORS)
    ax.axhline(0.1, ls=":", c="black", lw=1)
    ax.text(-0.45, 0.11, "chance", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel(f"test accuracy (mean, 95 % CI, n = {results['reference']['n']})")
    settings = results["settings"]
    ax.set_title(f"{settings['dataset']}: m = {settings['n_aux']} auxiliary logits, students distilled on "
                 f"{settings['distill_inputs']}", fontsize=10)
    ax.yaxis.grid(True, alpha=0.3)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def mnist_markdown(results: dict[str, Any]) -> str:
    """The accuracy table, the sentence and the settings as markdown."""
    s = results["settings"]
    stage_times = ", ".join(f"{k} {v:.1f} s" for k, v in results["timings"].items() if k != "total")
    lines = [f"# Auxiliary-logit experiment on {s['dataset']}", "", results["summary"], "",
             "| model | test accuracy | 95 % CI | n |", "|---|---|---|---|"]
    for key, tick in zip(KEYS, TICKS, strict=True):
        entry = results[key]
        lines.append(f"| {tick.replace(chr(10), ' ')} | {entry['mean']:.3f} | "
                     f"[{entry['ci95'][0]:.3f}, {entry['ci95'][1]:.3f}] | {entry['n']} |")
    lines += ["", f"MLP {'–'.join(str(v) for v in s['layer_sizes'])}, Adam lr {s['lr']}, batch {s['batch_size']}, "
              f"{s['teacher_epochs']} teacher epochs on {s['n_train']} images, {s['distill_epochs']} distillation "
              f"epochs on {s['distill_inputs']}, bf16 {s['bf16']}, seed {s['seed']}; test set {s['n_test']} images. "
              "CIs are Student-t over the independently initialized models.",
              f"Time: {results['timings']['total']:.1f} s ({stage_times}).", ""]
    return "\n".join(lines)


def write_mnist_report(results: dict[str, Any], out_dir: str | Path) -> None:
    """figure.png and report.md of one run."""
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / "figure.png", mnist_figure(results))
    atomic_write_text(out_dir / "report.md", mnist_markdown(results))


def sweep_figure(sweep: dict[str, Any]) -> bytes:
    """Accuracy of same-init and cross-model aux-only students (and the teacher) across the sweep's cells."""
    plt = pyplot()
    cells = sweep["cells"]
    labels = [", ".join(f"{k}={v}" for k, v in cell["vary"].items()) for cell in cells]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(cells) + 2), 4), dpi=120)
    x = list(range(len(cells)))
    for key, color, name in (("student_aux", "#e6550d", "student (aux. only)"),
                             ("cross_aux", "#3182bd", "cross-model (aux. only)"),
                             ("teacher", "#6a3d9a", "teacher")):
        means = [c["results"][key]["mean"] for c in cells]
        lows = [m - c["results"][key]["ci95"][0] for m, c in zip(means, cells, strict=True)]
        highs = [c["results"][key]["ci95"][1] - m for m, c in zip(means, cells, strict=True)]
        ax.errorbar(x, means, yerr=[lows, highs], fmt="o-", capsize=4, color=color, label=name)
    ax.axhline(0.1, ls=":", c="black", lw=1)
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test accuracy (95 % CI)")
    ax.legend(fontsize=8)
    ax.yaxis.grid(True, alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def sweep_markdown(sweep: dict[str, Any]) -> str:
    """One row per cell."""
    lines = ["# Auxiliary-logit sweep", "", "| cell | teacher | student aux | cross aux | student all | n | s |",
             "|---|---|---|---|---|---|---|"]
    for cell in sweep["cells"]:
        r = cell["results"]

        def fmt(key: str, r: dict[str, Any] = r) -> str:
            return f"{r[key]['mean']:.3f} [{r[key]['ci95'][0]:.3f}, {r[key]['ci95'][1]:.3f}]"

        name = ", ".join(f"{k}={v}" for k, v in cell["vary"].items())
        lines.append(f"| {name} | {fmt('teacher')} | {fmt('student_aux')} | {fmt('cross_aux')} | "
                     f"{fmt('student_all')} | {r['student_aux']['n']} | {r['timings']['total']:.0f} |")
    return "\n".join(lines) + "\n"


def theory_figure(results: dict[str, Any]) -> bytes:
    """Histograms of the cosine between the student's first step and the teacher's update, per setting."""
    plt = pyplot()
    groups = [g for g in results["groups"] if g["cosines"]]
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3.4), dpi=120, squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        color = RELATION_COLORS.get(group.get("relation", ""), "#3182bd")
        ax.hist(group["cosines"], bins=30, range=(-1, 1), color=color)
        ax.axvline(0, c="black", lw=1)
        ax.set_title(f"{group['name']}\npositive: {group['fraction_positive']:.2f} of {len(group['cosines'])}",
                     fontsize=9)
        ax.set_xlabel("cos(student step, teacher update)", fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)
