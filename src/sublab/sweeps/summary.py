"""Aggregate a sweep's finished cells into ``summary.json``: per trait × condition × settings, across seeds.

The unit of replication is the seed (a whole rerun of teachers, data and students); trait and control students
of a cell share that seed, so they are compared pairwise. Per group: every model's mean P(target) with a 95 % t
interval over seeds and the per-seed values; the trait − control difference, ratio and paired Cohen's d; an exact
paired permutation test over seeds and a mixed model over seeds × questions, the configured one of them
Holm-corrected across the traits of each condition × settings (``test``). Computed from the cells' files only.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from sublab.errors import SublabError
from sublab.evaluate.stats import (
    holm,
    min_permutation_p,
    mixed_model_difference,
    paired_effect_sizes,
    paired_permutation_test,
    permutation_seeds_needed,
    seed_summary,
)
from sublab.io import read_json, write_json
from sublab.sweeps.run import CELL_FILE, PLAN_FILE, cell_state
from sublab.traits.base import metric_of

SUMMARY_FILE = "summary.json"
ROLES = ("reference", "student_reference", "teacher", "control_teacher", "control_student", "trait_student")


def summarize_group(cells: list[dict[str, Any]], alternative: str = "greater") -> dict[str, Any]:
    """Statistics of one trait × condition × settings over its finished cells (``{"record", "results"}``)."""
    cells = sorted(cells, key=lambda c: c["record"]["seed"])
    first = cells[0]["record"]
    results = [c["results"] for c in cells]
    roles = [r for r in ROLES if all(r in res["models"] for res in results)]
    metric = metric_of(results[0])
    per_seed = {r: np.array([res["models"][r][metric]["mean"] for res in results]) for r in roles}
    baseline = "student_reference" if "student_reference" in roles else "reference"
    trait, control = per_seed["trait_student"], per_seed["control_student"]
    group: dict[str, Any] = {
        "metric": metric, "metric_label": results[0].get("metric_label"),
        "category": first["category"], "trait": first["trait"], "condition": first["condition"],
        "settings": first["settings"], "control_trait": first.get("control_trait"),
        "seeds": [c["record"]["seed"] for c in cells], "n_seeds": len(cells), "baseline": baseline,
        "cells": [c["record"]["id"] for c in cells],
        "models": {r: seed_summary(per_seed[r]) for r in roles},
        "effects": paired_effect_sizes(trait, control),
        "trait_minus_baseline": seed_summary(trait - per_seed[baseline]),
        "control_minus_baseline": seed_summary(control - per_seed[baseline]),
        "permutation": {"p": paired_permutation_test(trait, control, alternative), "alternative": alternative,
                        "min_p": min_permutation_p(len(cells), alternative)},
    }
    sampled = [r for r in roles if all("sampling" in res["models"][r] for res in results)]
    if sampled:
        group["sampling"] = {r: seed_summary([res["models"][r]["sampling"]["rate"] for res in results])
                             for r in sampled}
    questions = {len(res["models"][r]["per_question"][metric]) for res in results
                 for r in ("trait_student", "control_student")}
    if len(questions) == 1:
        by_question = {r: np.array([res["models"][r]["per_question"][metric] for res in results])
                       for r in ("trait_student", "control_student")}
        group["mixed_model"] = mixed_model_difference(by_question["trait_student"], by_question["control_student"],
                                                      alternative)
        group["n_questions"] = questions.pop()
    return group


def summarize(plan: dict[str, Any], cells: list[dict[str, Any]], states: dict[str, str]) -> dict[str, Any]:
    """The sweep summary: groups with their statistics, Holm-corrected within each condition × settings."""
    alpha = plan["statistics"]["alpha"]
    alternative = plan["statistics"]["alternative"]
    grouped: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for cell in cells:
        r = cell["record"]
        grouped.setdefault((r["condition"], r["settings"], r["category"], r["trait"]), []).append(cell)
    order = {ident: i for i, ident in enumerate(plan["cells"])}
    groups = [summarize_group(members, alternative)
              for _, members in sorted(grouped.items(), key=lambda kv: min(order[c["record"]["id"]] for c in kv[1]))]
    families: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for group in groups:
        families.setdefault((group["condition"], group["settings"]), []).append(group)
    method = plan["statistics"].get("test", "permutation")
    for members in families.values():
        pvalues = [(g.get(method) or {}).get("p", float("nan")) for g in members]
        adjusted, reject = holm(pvalues, alpha)
        for group, p, p_holm, rejected in zip(members, pvalues, adjusted, reject, strict=True):
            group["test"] = {"method": method, "p": p, "p_holm": p_holm, "reject": bool(rejected),
                             "family_size": len(members)}
    n_seeds = len(plan["seeds"])
    largest_family = max((len(m) for m in families.values()), default=1)
    return {
        "schema": "sublab.sweep-summary/1",
        "name": plan["name"],
        "alpha": alpha,
        "alternative": alternative,
        "test": method,
        "seeds": plan["seeds"],
        "conditions": plan["conditions"],
        "settings": plan["settings"],
        "seeding": plan.get("seeding", {}),
        "n_cells": len(plan["cells"]),
        "states": dict(Counter(states.values())),
        "not_done": sorted(ident for ident, state in states.items() if state != "done"),
        "power_note": {
            "min_p": min_permutation_p(n_seeds, alternative),
            "seeds_needed": permutation_seeds_needed(largest_family, alpha, alternative),
            "family_size": largest_family,
        },
        "groups": groups,
    }


def collect_cells(out_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, str]]:
    """The plan, the finished cells (record + results) and every planned cell's state."""
    out_dir = Path(out_dir)
    if not (out_dir / PLAN_FILE).is_file():
        raise SublabError(f"{out_dir}: not a sweep folder (no {PLAN_FILE})")
    plan = read_json(out_dir / PLAN_FILE)
    cells, states = [], {}
    for ident in plan["cells"]:
        folder = out_dir / "cells" / ident
        states[ident] = cell_state(folder)
        if states[ident] == "done":
            cells.append({"record": read_json(folder / CELL_FILE), "results": read_json(folder / "results.json")})
    return plan, cells, states


def write_summary(out_dir: str | Path) -> dict[str, Any] | None:
    """Aggregate the finished cells and write ``summary.json``; return it as written (NaN as None), or None
    (and write nothing) if no cell has finished."""
    plan, cells, states = collect_cells(out_dir)
    if not cells:
        return None
    summary = _finite(summarize(plan, cells, states))
    write_json(Path(out_dir) / SUMMARY_FILE, summary)
    return summary


def _finite(obj: Any) -> Any:
    """NaN and infinities as null (strict JSON that browsers and jq read)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj
