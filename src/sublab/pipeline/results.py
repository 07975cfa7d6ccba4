"""``results.json`` of an experiment (schema ``sublab.experiment-results/1``): models, comparisons, data, seeds.

Every model's entry is its evaluation (``eval.json``) under the trait kind's metric (``p_target`` for
preferences); comparisons are paired differences of that metric over the same questions. ``metric`` names it,
``trait_kind`` the kind (results written before trait kinds existed have neither: they are preference results).
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from sublab import __version__
from sublab.evaluate.stats import paired_difference_ci


def compare(a: dict[str, Any], b: dict[str, Any], seed: int, metric: str = "p_target") -> dict[str, Any]:
    """Paired difference of ``metric`` between two evaluated models, over the same questions."""
    mean, low, high = paired_difference_ci(a["per_question"][metric], b["per_question"][metric], seed=seed)
    return {"mean": mean, "ci95": [low, high], "n": len(a["per_question"][metric]), "paired_over": "questions",
            "excludes_zero": bool(low > 0 or high < 0)}


def versions() -> dict[str, str]:
    """Versions of sublab, Python and the libraries whose numerics a result depends on."""
    import peft
    import torch
    import transformers

    return {"sublab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__}


def assemble_results(config: Any, metric: str, metric_label: str, models: dict[str, dict[str, Any]],
                     filter_reports: dict[str, dict[str, Any]], stages: list[Any], out_dir: Path,
                     total_seconds: float) -> dict[str, Any]:
    """The results dict of a finished run (see the module docstring)."""
    seed = config.evaluation.seed
    comparisons = {
        "trait_student_minus_control_student": compare(models["trait_student"], models["control_student"], seed,
                                                       metric),
    }
    baseline = "student_reference" if "student_reference" in models else "reference"
    comparisons[f"trait_student_minus_{baseline}"] = compare(models["trait_student"], models[baseline], seed, metric)
    comparisons[f"control_student_minus_{baseline}"] = compare(models["control_student"], models[baseline], seed,
                                                               metric)
    main = comparisons["trait_student_minus_control_student"]
    # The trait arm's report first: with reference-written data both arms share one dataset ("both").
    trait_report = filter_reports.get("trait") or filter_reports.get("both") or {}
    data: dict[str, Any] = {"filter": trait_report, "source": config.data.source, "shuffle": config.data.shuffle}
    if "control" in filter_reports:
        data["filter_by_arm"] = {"trait": filter_reports["trait"], "control": filter_reports["control"]}
    if config.data.domain != "numbers":
        data["domain"] = config.data.domain
    return {
        "schema": "sublab.experiment-results/1",
        "name": config.name,
        "trait_kind": config.trait_kind,
        "metric": metric,
        "metric_label": metric_label,
        "target": config.target,
        "category": config.category,
        "models": models,
        "comparisons": comparisons,
        "transfer": main["excludes_zero"] and main["mean"] > 0,
        "data": data,
        "condition": {"student_base": config.student_base or config.reference,
                      "shared_base": (config.student_base or config.reference) == config.reference,
                      "in_context_examples": config.in_context_examples, "shuffle": config.data.shuffle},
        "seeds": config.seeds(),
        "settings": config.model_dump(mode="json"),
        "timings": {
            "total_seconds": total_seconds,
            "stages": [
                {"name": s.name, "seconds": s.seconds, "cached": s.cached, "path": str(s.path.relative_to(out_dir))}
                for s in stages
            ],
        },
        "versions": versions(),
    }
