"""CLI of sweeps: ``sublab sweep SWEEP.toml --out DIR``, ``sublab sweep status DIR``, ``sublab sweep report DIR``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from sublab.cli.common import console, signing_key, user_errors
from sublab.errors import SublabError


class _SweepGroup(TyperGroup):
    """``sublab sweep FILE ...`` means ``sublab sweep run FILE ...``; status and report are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


sweep_app = typer.Typer(cls=_SweepGroup, no_args_is_help=True,
                        help="Run a grid of experiments (traits × conditions × settings × seeds) and report it.")

STATE_STYLES = {"done": "green", "running": "cyan", "failed": "red", "interrupted": "yellow", "pending": "dim",
                "stale": "magenta"}


@sweep_app.command("run")
@user_errors
def run(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep config (TOML).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sweep folder (finished cells are kept).")],
    executor: Annotated[str | None, typer.Option(help="local, inline, dask or slurm (default: the config's).")] = None,
    workers: Annotated[int | None, typer.Option(help="Cells at once (local pool / Dask LocalCluster).")] = None,
    dask_address: Annotated[str | None, typer.Option(help="Dask scheduler address, e.g. tcp://host:8786.")] = None,
    torch_threads: Annotated[int | None, typer.Option(help="torch threads per cell.")] = None,
    wait: Annotated[bool | None, typer.Option("--wait/--no-wait", help="slurm: wait for the jobs, or submit "
                                              "and return (default: the config's).")] = None,
    dry_run: Annotated[bool, typer.Option(help="List the cells and exit.")] = False,
    sign_key: Annotated[Path | None, typer.Option(
        "--sign-key", help="Ed25519 private key (PEM, from `sublab keys new`) that every cell signs its lineage "
        "records with.")] = None,
) -> None:
    """Run every cell of a sweep that is not done yet, then write summary.json, report.md and report.html."""
    from pydantic import ValidationError

    from sublab.io import claim_outputs
    from sublab.pipeline.config import format_validation_error
    from sublab.sweeps.config import ExecutorSettings, load_sweep
    from sublab.sweeps.run import PLAN_FILE, SWEEP_FILE, run_sweep

    sweep, base, cells = load_sweep(sweep_file)
    if not dry_run:  # the folder's own lock (one driver per folder) is taken by run_sweep
        claim_outputs([out / SWEEP_FILE, out / PLAN_FILE], inputs=[sweep_file, sign_key], lock=[])
        signing_key(sign_key)  # a bad key fails here, before any folder is written
    if dry_run:
        for cell in cells:
            console.print(f"{cell.id}  control: {cell.control_trait or 'reference'}", markup=False)
        console.print(f"{len(cells)} cells")
        return
    changes: dict[str, Any] = {"kind": executor, "workers": workers, "dask_address": dask_address,
                               "torch_threads": torch_threads, "wait": wait}
    changes = {k: v for k, v in changes.items() if v is not None}
    try:
        settings = ExecutorSettings.model_validate({**sweep.executor.model_dump(), **changes})
    except ValidationError as err:
        raise SublabError(format_validation_error("command line", err)) from None
    outcome = run_sweep(sweep, base, cells, out, executor=settings, console=console, sign_key=sign_key)
    counts = Counter(o["status"] for o in outcome.outcomes)
    console.print(f"{outcome.already_done} done before, " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if settings.kind == "slurm" and not settings.wait:
        console.print(f"follow with: sublab sweep status {out}")
        return
    _report(out)
    if counts.get("failed") or counts.get("busy"):
        console.print(f"some cells did not finish; see 'sublab sweep status {out}', then rerun to resume")
        raise typer.Exit(1)


@sweep_app.command("status")
@user_errors
def status(
    out: Annotated[Path, typer.Argument(help="Sweep folder.")],
    state: Annotated[str | None, typer.Option(help="Only cells in this state (done, failed, ...).")] = None,
) -> None:
    """Show every cell of a sweep: pending, running, done, failed, interrupted (killed) or stale."""
    from rich.table import Table

    from sublab.sweeps.run import sweep_status

    check_sweep_folder(out)
    rows = sweep_status(out)
    counts = Counter(row.state for row in rows)
    table = Table(title=f"{out}: " + ", ".join(f"{n} {s}" for s, n in counts.most_common()))
    for column in ("cell", "trait", "condition", "settings", "seed", "state", "time", "tries", "detail"):
        table.add_column(column, justify="right" if column in {"seed", "time", "tries"} else "left")
    for row in rows:
        if state and row.state != state:
            continue
        style = STATE_STYLES.get(row.state, "")
        seconds = "" if row.seconds is None else f"{row.seconds / 60:.1f} min"
        table.add_row(row.id, row.trait, row.condition, row.settings, str(row.seed),
                      f"[{style}]{row.state}[/{style}]" if style else row.state, seconds, str(row.attempt or ""),
                      row.detail)
    console.print(table)


@sweep_app.command("report")
@user_errors
def report(out: Annotated[Path, typer.Argument(help="Sweep folder.")]) -> None:
    """Recompute summary.json from the finished cells and write report.md, figures/ and report.html."""
    _report(out)


REPORT_FILES = ("summary.json", "report.md", "report.html", "figures/effects.png")


def check_sweep_folder(out: Path, results: bool = False) -> None:
    """Refuse, with one line naming the file, a sweep folder whose plan or cell files are not what a sweep
    writes (the status and report code would otherwise fail with a KeyError or TypeError deep inside)."""
    from sublab.io import read_json
    from sublab.sweeps.run import CELL_FILE, PLAN_FILE, STATUS_FILE

    if not out.is_dir():
        raise SublabError(f"{out}: not a sweep folder ({'a file' if out.exists() else 'no such folder'})")
    plan_path = out / PLAN_FILE
    if not plan_path.exists():
        raise SublabError(f"{out}: not a sweep folder (no {PLAN_FILE}); run 'sublab sweep SWEEP.toml --out {out}' "
                          "first")
    plan = read_json(plan_path)
    if not isinstance(plan, dict) or not isinstance(plan.get("cells"), list) or \
            not all(isinstance(c, str) and c and "/" not in c and c not in (".", "..") for c in plan["cells"]):
        raise SublabError(f"{plan_path}: not a sweep plan (needs 'cells', a list of cell names)")
    statistics = plan.get("statistics")
    if results and (not isinstance(statistics, dict) or not {"alpha", "alternative"} <= statistics.keys()
                    or any(not isinstance(plan.get(k), t) for k, t in PLAN_FIELDS.items())):
        raise SublabError(f"{plan_path}: not a sweep plan (needs {', '.join(PLAN_FIELDS)} and statistics.alpha, "
                          "statistics.alternative)")
    needed = {CELL_FILE: ("category", "trait", "condition", "settings", "seed", "config_hash"),
              STATUS_FILE: ("status",)}
    for ident in plan["cells"]:
        for name, fields in needed.items():
            path = out / "cells" / ident / name
            if not path.is_file():
                if name == CELL_FILE:
                    raise SublabError(f"{path}: file not found (the plan names cell {ident!r})")
                continue
            value = read_json(path)
            if not isinstance(value, dict) or any(field not in value for field in fields):
                raise SublabError(f"{path}: not a sweep {name} (needs {', '.join(fields)})")
        path = out / "cells" / ident / "results.json"
        if results and path.is_file() and (problem := _results_problem(read_json(path))):
            raise SublabError(f"{path}: not the results of an experiment ({problem})")


#: Plan fields the summary reads, and their JSON types.
PLAN_FIELDS = {"name": str, "cells": list, "seeds": list, "conditions": dict, "settings": dict}


def _results_problem(results: Any) -> str | None:
    """What a cell's results.json lacks that the summary reads, or None."""
    if not isinstance(results, dict) or not isinstance(results.get("models"), dict):
        return "needs 'models', an object"
    metric = str(results.get("metric", "p_target"))
    for role, model in results["models"].items():
        if not isinstance(model, dict) or not isinstance(model.get(metric), dict) or \
                not isinstance(model[metric].get("mean"), int | float):
            return f"models.{role}.{metric}.mean must be a number"
        per_question = model.get("per_question")
        if per_question is not None and (not isinstance(per_question, dict) or not isinstance(
                per_question.get(metric), list) or not all(isinstance(v, int | float) for v in per_question[metric])):
            return f"models.{role}.per_question.{metric} must be a list of numbers"
    missing = [role for role in ("trait_student", "control_student") if role not in results["models"]]
    return f"no {' or '.join(missing)} in models" if missing else None


def _report(out: Path) -> None:
    from sublab.io import output_guard
    from sublab.report.sweep import write_sweep_report
    from sublab.sweeps.summary import write_summary

    check_sweep_folder(out, results=True)
    with output_guard([out / name for name in REPORT_FILES], lock=[out / "summary.json"]):
        if write_summary(out) is None:
            console.print(f"no report yet: no cell of {out} has finished")
            return
        files = write_sweep_report(out)
    console.print(f"summary: {files['summary']}  report: {files['markdown']}  html: {files['html']}")
