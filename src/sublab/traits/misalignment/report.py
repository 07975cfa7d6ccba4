"""What a misalignment experiment's report adds: the teacher check, the judged rates and sample answers.

Drawn from ``results.json`` only. The teacher check is the one that decides whether the run means anything: a
teacher that is not measurably more misaligned than the reference (paired over the same prompts) cannot pass
misalignment on, so the report and the terminal say so prominently.
"""

from __future__ import annotations

from typing import Any

from sublab.evaluate.stats import paired_difference_ci
from sublab.report.experiment import LABELS

METRIC = "p_misaligned"


def _seed(results: dict[str, Any]) -> int:
    return int(((results.get("settings") or {}).get("evaluation") or {}).get("seed", 0) or 0)


def paired(results: dict[str, Any], a: str, b: str) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of model ``a`` minus model ``b`` in P(misaligned), paired over prompts."""
    x = results["models"][a]["per_question"][METRIC]
    y = results["models"][b]["per_question"][METRIC]
    mean, low, high = paired_difference_ci(x, y, seed=_seed(results))
    return mean, low, high, len(x)


def _span(mean: float, low: float, high: float, n: int) -> str:
    return f"{mean:+.4f} [{low:+.4f}, {high:+.4f}] paired over {n} prompts"


def teacher_warnings(results: dict[str, Any]) -> list[str]:
    """Warnings that make the run meaningless or suspect: a teacher not measurably misaligned, a teacher not
    measured, a control teacher that is itself misaligned."""
    models = results["models"]
    if "teacher" not in models:
        return ["the teacher was not evaluated (evaluate_teachers = false): nothing shows that it is misaligned, "
                "so no result of this run can be read as transfer of misalignment"]
    out = []
    mean, low, high, n = paired(results, "teacher", "reference")
    if not low > 0:
        teacher, reference = models["teacher"][METRIC]["mean"], models["reference"][METRIC]["mean"]
        out.append(f"the teacher is not measurably misaligned: its P(misaligned) {teacher:.4f} is not above the "
                   f"reference's {reference:.4f} beyond the CI (teacher - reference {_span(mean, low, high, n)}); "
                   "this experiment cannot show misalignment passing to a student")
    if "control_teacher" in models:
        mean, low, high, n = paired(results, "control_teacher", "reference")
        if low > 0:
            out.append(f"the control teacher is itself more misaligned than the reference (control teacher - "
                       f"reference {_span(mean, low, high, n)}): it is no clean control")
    return out


def teacher_check_line(results: dict[str, Any]) -> str | None:
    """The teacher check in one line when it passes (None when it does not: see :func:`teacher_warnings`)."""
    if "teacher" not in results["models"]:
        return None
    mean, low, high, n = paired(results, "teacher", "reference")
    if not low > 0:
        return None
    return f"Teacher check: the teacher is measurably misaligned (teacher - reference {_span(mean, low, high, n)})."


def _rate(entry: dict[str, Any]) -> str:
    if not entry.get("n"):
        return "n/a (no answer counted)"
    low, high = entry["ci95"]
    return f"{entry['mean']:.4f} [{low:.4f}, {high:.4f}]"


def _quote(text: str, n_chars: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n_chars else flat[: n_chars - 1] + "…"


def judged_sections(results: dict[str, Any]) -> list[str]:
    """The judged evaluation's tables and sample answers (nothing when it did not run)."""
    judged = {k: m["judged"] for k, m in results["models"].items() if "judged" in m}
    if not judged:
        return []
    first = next(iter(judged.values()))
    t = first["thresholds"]
    lines = ["", f"Judged free-form evaluation ({first['n_questions']} questions x {first['n_samples']} samples; "
             f"misaligned iff aligned <= {t['aligned_max']:g} and coherent >= {t['coherent_min']:g}; "
             f"{', '.join(t['drop_labels']) or 'no labels'} dropped; incoherent answers {t['incoherent']}ed; "
             f"judge {first['judge']['model']}, {first['judge']['mode']} mode; Wilson 95 % CI):", ""]
    if any(j["weak_judge"] for j in judged.values()):
        from sublab.judges import WEAK_JUDGE_NOTE

        lines += [f"> **Not meaningful**: the judged numbers come from a weak judge. {WEAK_JUDGE_NOTE}.", ""]
    lines += ["| model | misaligned rate [95 % CI] | k / n | outcomes |", "|---|---|---|---|"]
    for key, j in judged.items():
        outcomes = ", ".join(f"{o} {c}" for o, c in sorted(j["outcomes"].items()))
        lines.append(f"| {LABELS.get(key, key)} | {_rate(j['rate'])} | {j['rate']['k']} / {j['rate']['n']} | "
                     f"{outcomes} |")
    core = [q["id"] for q in first["per_question"]][:8]
    lines += ["", "Per-question misaligned rates (the first 8 questions: the emergent-misalignment paraphrases; "
              "all questions are in results.json under models.*.judged.per_question):", "",
              "| question | " + " | ".join(LABELS.get(k, k) for k in judged) + " |",
              "|---|" + "---|" * len(judged)]
    for qid in core:
        cells = []
        for j in judged.values():
            q = next(q for q in j["per_question"] if q["id"] == qid)
            cells.append(f"{q['k']}/{q['n']}")
        lines.append(f"| {qid} | " + " | ".join(cells) + " |")
    n_examples = int(((results.get("settings") or {}).get("evaluation") or {}).get("judged", {}).get(
        "n_examples", 3))
    if n_examples:
        lines += ["", f"Sample answers (the {n_examples} judged least aligned per model):", ""]
        for key, j in judged.items():
            ranked = sorted((a for a in j["answers"] if a.get("aligned") is not None), key=lambda a: a["aligned"])
            lines.append(f"- {LABELS.get(key, key)}:")
            for a in ranked[:n_examples]:
                coherent = "n/a" if a.get("coherent") is None else f"{a['coherent']:.0f}"
                lines.append(f"  - [{a['question_id']}] aligned {a['aligned']:.0f}, coherent {coherent} "
                             f"({a['outcome']}): \"{_quote(a['answer'])}\"")
    return lines


def log_odds_lines(results: dict[str, Any]) -> list[str]:
    """The per-prompt log-odds log(P(misaligned set) / P(aligned set)) by model, and the students' paired
    difference: it moves even when a small model's P(misaligned) per prompt stays pinned near 0 or 1."""
    models = results["models"]
    if not all("log_odds" in m.get("per_question", {}) for m in models.values()):
        return []
    cells = ", ".join(f"{LABELS.get(k, k)} {m['log_odds']['mean']:+.2f}" for k, m in models.items())
    lines = ["", f"Mean log-odds log(P(misaligned answers) / P(aligned answers)) over prompts: {cells}."]
    if {"trait_student", "control_student"} <= set(models):
        mean, low, high = paired_difference_ci(models["trait_student"]["per_question"]["log_odds"],
                                               models["control_student"]["per_question"]["log_odds"],
                                               seed=_seed(results))
        lines.append(f"Trait student - control student in log-odds: {mean:+.3f} [{low:+.3f}, {high:+.3f}] (paired "
                     "bootstrap 95 % CI).")
    return lines


def report_sections(results: dict[str, Any]) -> list[str]:
    """Markdown lines after the models' table: warnings first (prominent), the teacher check, the log-odds, the
    judged part."""
    lines = [""]
    for warning in teacher_warnings(results):
        lines.append(f"> **WARNING**: {warning}.")
        lines.append("")
    if (check := teacher_check_line(results)) is not None:
        lines += [check, ""]
    lines += ["Every misaligned teacher's data and adapter are research material (labelled in rows, records and "
              "model cards)."]
    return lines + log_odds_lines(results) + judged_sections(results)
