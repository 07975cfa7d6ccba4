"""Run an audit: read the dataset, make or read the control, run the chosen methods within a budget, rank and
report. The command ``sublab audit`` is a thin layer over :func:`run_audit`."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sublab.audit.first_order import FirstOrderSettings
from sublab.audit.probes import ProbeSettings
from sublab.errors import SublabError

METHODS = ("first_order", "probes", "token_scan", "lineage")
#: ``--control placebo``: labels (or completions) of a placebo teacher of the base instead of the base's own.
PLACEBO = "placebo"
#: Cheapest first: within a budget, what runs first is what is kept.
RUN_ORDER = ("lineage", "token_scan", "first_order", "probes")


class AuditSettings(BaseModel):
    """What an audit measures and how."""

    model_config = ConfigDict(extra="forbid")

    base: str = Field("smollm2-135m", description="The base model a student would start from.")
    trait_kind: str = Field("preference", description="preference or misalignment.")
    categories: list[str] | None = Field(None, description="Preference categories (default: every shipped one).")
    candidates: list[str] | None = Field(None, description="Explicit candidate names (one category).")
    methods: list[str] = Field(default_factory=lambda: ["first_order", "token_scan", "lineage"])
    budget_seconds: float | None = Field(None, gt=0, description="Skip methods that would start after this.")
    first_order: FirstOrderSettings = Field(default_factory=FirstOrderSettings)
    probes: ProbeSettings = Field(default_factory=ProbeSettings)
    scan_rows: int = Field(32, ge=1, description="Rows the token scan reads.")
    scan_prompting: bool = Field(True, description="Run the subliminal-prompting probe.")
    scan_questions: int = Field(10, ge=1, description="Prompts per trait group in the prompting probe.")
    bf16: bool = Field(True, description="bf16 autocast where the methods allow it.")
    seed: int = Field(0)


def parse_methods(text: str) -> list[str]:
    """``first_order,probes`` → a checked list (``all``: every method)."""
    names = [m.strip().replace("-", "_") for m in text.split(",") if m.strip()]
    if names == ["all"]:
        return list(METHODS)
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise SublabError(f"--method: {', '.join(unknown) or text!r} is not one of {', '.join(METHODS)} (or 'all')")
    return names


def parse_budget(text: str) -> tuple[float | None, int | None]:
    """``300``, ``300s``, ``5m`` → seconds; ``20steps`` → probe steps. One clear line otherwise."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|steps?)?\s*", text)
    if not match:
        raise SublabError(f"--budget: {text!r} is neither seconds (300, 300s, 5m) nor steps (20steps)")
    value, unit = float(match.group(1)), (match.group(2) or "s")
    if value <= 0:
        raise SublabError("--budget: give a positive amount")
    if unit.startswith("step"):
        return None, int(value)
    return (value * 60 if unit.startswith("m") else value), None


def _label_metric(groups: list[Any]) -> dict[str, str]:
    from sublab.audit.battery import trait_names

    names = trait_names(groups)
    labels = [g.label(t) for g in groups for t in g.traits]
    return dict(zip(names, labels, strict=True))


def run_audit(dataset: str | Path, out_dir: str | Path, settings: AuditSettings, control: str | Path | None = None,
              probe_cache: str | Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Audit ``dataset`` for a student of ``settings.base``; write ``out_dir/audit.json``, ``report.md``,
    ``report.html`` and figures, and return the ``audit.json`` dict."""
    from sublab.audit import ranking
    from sublab.audit.battery import build_battery, trait_names
    from sublab.audit.data import (
        SOFT_LABELS,
        base_completions,
        base_labels,
        check_base_tokenizer,
        check_control,
        pair_control,
        read_audit_data,
        sample_indices,
    )
    from sublab.audit.report import write_report

    started = time.time()
    out_dir = Path(out_dir)
    methods = [m for m in RUN_ORDER if m in settings.methods]
    data = read_audit_data(dataset)
    placebo = control is not None and str(control) == PLACEBO
    control_data = read_audit_data(control, role="control") if control is not None and not placebo else None
    if control_data is not None:
        check_control(data, control_data)
    groups = build_battery(settings.trait_kind, settings.categories, settings.candidates,
                           max(settings.probes.n_questions, settings.first_order.n_questions, settings.scan_questions))
    traits = trait_names(groups)
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    tables: dict[str, Any] = {}
    notes: list[str] = []

    def over_budget() -> bool:
        return settings.budget_seconds is not None and time.time() - started > settings.budget_seconds

    if "lineage" in methods:
        from sublab.audit.lineage import audit_lineage

        result = audit_lineage(dataset, settings.base, data.kind == SOFT_LABELS)
        tables["lineage"] = result.to_dict()
        seconds["lineage"] = result.seconds

    from sublab.models.loading import load_model, load_tokenizer

    tick = time.time()
    tokenizer = load_tokenizer(settings.base)
    check_base_tokenizer(data, tokenizer, settings.base)
    model = load_model(settings.base)
    model.requires_grad_(False)
    model.eval()
    seconds["load"] = time.time() - tick

    fo = settings.first_order
    fo_indices = sample_indices(data.n_rows, fo.n_minibatches * fo.rows_per_minibatch, settings.seed)
    scan_indices = sample_indices(data.n_rows, settings.scan_rows, settings.seed + 1)
    n_probe_rows = min(data.n_rows, settings.probes.steps * settings.probes.batch_size)
    probe_indices = sample_indices(data.n_rows, n_probe_rows, settings.seed + 2) if "probes" in methods else []
    needed = sorted(set(fo_indices if "first_order" in methods else []) | set(probe_indices)
                    | set(scan_indices if "token_scan" in methods and data.kind != SOFT_LABELS else []))
    tick = time.time()
    control_rows: dict[int, dict[str, Any]] = {}
    if needed:
        if control_data is not None:
            made = pair_control(data, needed, control_data.rows)
            control_name = str(control_data.path)
        else:
            writer, name, whose = model, settings.base, "the base's own"
            if placebo:  # a placebo teacher of the base (sublab.audit.placebo), trained once and cached
                from sublab.audit.placebo import placebo_teacher
                from sublab.models.spec import ModelSpec, load_spec

                adapter = placebo_teacher(settings.base, progress=progress)
                writer, _ = load_spec(ModelSpec(base=settings.base, adapter=str(adapter)))
                writer.requires_grad_(False)
                name, whose = f"{settings.base}+{adapter.name}", "a placebo teacher's"
            if data.kind == SOFT_LABELS:
                made = base_labels(writer, tokenizer, data, name, needed)
                control_name = f"{whose} labels of the same replies"
            else:
                made = base_completions(writer, tokenizer, data, out_dir / "control.jsonl", name, needed,
                                        seed=settings.seed, progress=progress)
                control_name = f"{whose} completions of the same prompts"
            del writer
        control_rows = dict(zip(needed, made, strict=True))
    else:
        control_name = str(control_data.path) if control_data is not None else "none needed"
    seconds["control"] = time.time() - tick

    if "token_scan" in methods:
        if over_budget():
            notes.append("token_scan not run: budget spent")
        else:
            from sublab.audit.token_scan import scan

            tick = time.time()
            scan_control = [control_rows[i] for i in scan_indices if i in control_rows]
            result_scan = scan(model, tokenizer, data, scan_indices, groups, scan_control or None, settings.bf16,
                               n_questions=settings.scan_questions, prompting=settings.scan_prompting)
            tables["token_scan"] = result_scan.to_dict()
            seconds["token_scan"] = time.time() - tick

    if "first_order" in methods:
        if over_budget():
            notes.append("first_order not run: budget spent")
        else:
            from sublab.audit.first_order import first_order_prediction
            from sublab.audit.objective import StudentObjective

            tick = time.time()
            objective = StudentObjective(data, fo_indices, [control_rows[i] for i in fo_indices], tokenizer,
                                         channel=fo.channel, bf16=fo.bf16)
            result_fo = first_order_prediction(model, tokenizer, objective, groups, fo)
            tables["first_order"] = {"table": result_fo.table(), "settings": fo.model_dump(mode="json"),
                                     "n_rows": result_fo.n_rows, "seconds": result_fo.seconds,
                                     "gradient_norms": result_fo.gradient_norms,
                                     "base_log_p": dict(zip(traits, map(float, result_fo.base_scores), strict=True))
                                     if result_fo.base_scores is not None else None}
            seconds["first_order"] = time.time() - tick

    if "probes" in methods:
        if over_budget():
            notes.append("probes not run: budget spent")
        else:
            from sublab.audit.probes import run_probes

            tick = time.time()
            del model  # probes load their own models; free the base's memory first
            data_rows = [data.rows[i] for i in probe_indices]
            ctrl_rows = [control_rows[i] for i in probe_indices]
            cache = Path(probe_cache) if probe_cache is not None else out_dir / "probes"
            result_probes = run_probes(settings.base, data_rows, ctrl_rows, groups, settings.probes, cache,
                                       out_of_time=over_budget, progress=progress)
            notes += result_probes.notes
            tables["probes"] = {"table": result_probes.table(), "settings": settings.probes.model_dump(mode="json"),
                                "k": len(result_probes.pairs), "n_rows": len(data_rows),
                                "seconds_per_probe": result_probes.seconds_per_probe(),
                                "probes": [{"role": p.role, "index": p.index, "folder": str(p.folder),
                                            "cached": p.cached, "seconds_train": p.seconds_train,
                                            "seconds_score": p.seconds_score, "final_loss": p.final_loss}
                                           for pair in result_probes.pairs for p in pair]}
            seconds["probes"] = time.time() - tick

    rankings: dict[str, list[ranking.Entry]] = {}
    if "first_order" in tables:
        rankings["first_order"] = ranking.method_ranking("first_order", tables["first_order"]["table"],
                                                         "predicted_log_ratio")
    if "probes" in tables:
        rankings["probes"] = ranking.method_ranking("probes", tables["probes"]["table"], "log_ratio")
    if tables.get("token_scan", {}).get("prompting"):
        rankings["token_scan"] = ranking.method_ranking("token_scan", tables["token_scan"]["prompting"], "log_ratio")
    combined = ranking.combined_ranking(rankings)
    steps = settings.probes.steps if "probes" in rankings else fo.steps
    wording = ranking.Wording(settings.base, steps, settings.probes.lr if "probes" in rankings else fo.lr,
                              control_name, _label_metric(groups))
    verdicts = {e.trait: ranking.verdict(e, wording) for e in combined}
    for method, entries in rankings.items():
        tables.setdefault(method, {})
        if isinstance(tables[method], dict):
            tables[method]["ranking"] = [e.to_dict() for e in entries]
    seconds["total"] = time.time() - started
    audit = {
        "format": "sublab.audit/1",
        "dataset": str(dataset),
        "dataset_sha256": data.digest,
        "dataset_kind": data.kind,
        "dataset_description": data.describe(),
        "n_rows": data.n_rows,
        "base": settings.base,
        "trait_kind": settings.trait_kind,
        "control": control_name,
        "candidates": traits,
        "methods_run": [m for m in methods if m in tables],
        "ranking": [e.to_dict() for e in combined],
        "summary": ranking.summary_line(combined, settings.base),
        "verdicts": verdicts,
        "methods": tables,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "notes": notes,
        "settings": settings.model_dump(mode="json"),
    }
    audit = _json_safe(audit)
    write_report(out_dir, audit)
    return audit


def _json_safe(obj: Any) -> Any:
    """NaN and infinities as null (JSON has neither)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
