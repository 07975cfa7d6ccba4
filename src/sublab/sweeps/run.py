"""Run a sweep: one ordinary run folder per cell, each run at most once at a time and never again once done.

Layout of a sweep folder::

    DIR/sweep.toml               the resolved sweep (base experiment inline): rerun it to resume
    DIR/plan.json                the cells of the current grid, in dispatch order
    DIR/cells/<id>/cell.json     the cell's coordinates, seeds and full experiment config
    DIR/cells/<id>/status.json   running / done / failed, with times, host, pid, signing key id and any error
    DIR/cells/<id>/...           the run folder of :func:`sublab.pipeline.runner.run_experiment`

A worker takes an exclusive ``flock`` on ``cells/<id>/.lock`` for as long as it runs the cell, and checks the
status under that lock: a finished cell (same config hash) is skipped, a cell held by another process is left
alone, and a killed worker's lock dies with it, so its cell shows as interrupted and reruns (resuming its
stages). Dispatch (process pool, Dask, Slurm) lives in :mod:`sublab.sweeps.executors`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sublab.errors import SublabError
from sublab.io import atomic_write_text, read_json, write_json
from sublab.pipeline.config import ExperimentConfig, parse_config
from sublab.sweeps.config import Cell, ExecutorSettings, SweepConfig, resolved_sweep_toml
from sublab.traits.base import metric_of

PLAN_FILE = "plan.json"
SWEEP_FILE = "sweep.toml"
CELL_FILE = "cell.json"
STATUS_FILE = "status.json"
LOCK_FILE = ".lock"

#: A cell function runs one experiment into its folder and returns a small summary for status.json. Its third
#: argument is the path of the Ed25519 private key (PEM) that signs the cell's lineage records, or None. A path,
#: not a loaded key: it travels to worker processes (pickled by the pool, Dask and submitit) and is loaded there.
CellFn = Callable[[ExperimentConfig, Path, str | None], dict[str, Any]]


# --- locks --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def cell_lock(cell_dir: Path, attempts: int = 5, wait_s: float = 0.2) -> Iterator[bool]:
    """Hold the cell's exclusive lock; yields False if another process holds it (after a few short retries,
    so a ``sweep status`` probe never makes a worker skip its cell)."""
    with (cell_dir / LOCK_FILE).open("a") as handle:
        for attempt in range(attempts):
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == attempts - 1:
                    yield False
                    return
                time.sleep(wait_s)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_locked(cell_dir: Path) -> bool:
    """Whether some process is running the cell right now."""
    path = cell_dir / LOCK_FILE
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def sweep_lock(out_dir: Path) -> Iterator[None]:
    """One driver per sweep folder: a second ``sublab sweep`` on the same folder is refused."""
    with (out_dir / ".sweep.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SublabError(f"{out_dir}: another 'sublab sweep' is running on this folder") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- cells ----------------------------------------------------------------------------------------------------------


def cell_state(cell_dir: Path) -> str:
    """pending, running, done, stale (done under another config: reruns), failed or interrupted."""
    if is_locked(cell_dir):
        return "running"
    status_path = cell_dir / STATUS_FILE
    if not status_path.is_file():
        return "pending"
    status = read_json(status_path)
    if status["status"] == "done":
        return "done" if status.get("config_hash") == read_json(cell_dir / CELL_FILE)["config_hash"] else "stale"
    return "interrupted" if status["status"] == "running" else status["status"]


def execute_cell(cell_dir: str | Path, cell_fn: CellFn | None = None,
                 torch_threads: int | None = None, sign_key: str | None = None) -> dict[str, Any]:
    """Run one cell unless it is done or running elsewhere; record the outcome in its status.json.

    Returns ``{"id", "status"}`` with status done, skipped (already done), busy (held by another process) or
    failed (plus ``error``). Exceptions of the cell are recorded, not raised, so one failure does not stop a sweep.
    ``sign_key``: path of a PEM Ed25519 private key that signs the lineage records of the stages the cell
    builds; its key id goes into status.json as ``signed_by``. Top-level and picklable: process pools, Dask and
    submitit call it in their workers.
    """
    cell_dir = Path(cell_dir)
    record = read_json(cell_dir / CELL_FILE)
    outcome: dict[str, Any] = {"id": record["id"]}
    with cell_lock(cell_dir) as acquired:
        if not acquired:
            return {**outcome, "status": "busy"}
        previous = read_json(cell_dir / STATUS_FILE) if (cell_dir / STATUS_FILE).is_file() else {}
        if previous.get("status") == "done" and previous.get("config_hash") == record["config_hash"]:
            return {**outcome, "status": "skipped"}
        if torch_threads:
            import torch

            torch.set_num_threads(torch_threads)
        started = time.time()
        status = {"status": "running", "config_hash": record["config_hash"], "host": socket.gethostname(),
                  "pid": os.getpid(), "started": started, "attempt": int(previous.get("attempt", 0)) + 1,
                  "signed_by": None}
        write_json(cell_dir / STATUS_FILE, status)
        try:
            status["signed_by"] = signing_key_id(sign_key)
            config = parse_config(record["config"], str(cell_dir / CELL_FILE))
            summary = (cell_fn or run_cell_experiment)(config, cell_dir, sign_key)
        except Exception as err:  # recorded in status.json and error.txt; the sweep goes on with other cells
            atomic_write_text(cell_dir / "error.txt", traceback.format_exc())
            message = f"{type(err).__name__}: {err}".splitlines()[0][:300]
            write_json(cell_dir / STATUS_FILE, {**status, "status": "failed", "error": message,
                                                "seconds": round(time.time() - started, 1)})
            return {**outcome, "status": "failed", "error": message}
        seconds = round(time.time() - started, 1)
        write_json(cell_dir / STATUS_FILE, {**status, "status": "done", "finished": time.time(),
                                            "seconds": seconds, "summary": summary})
        return {**outcome, "status": "done", "seconds": seconds}


def run_cell_experiment(config: ExperimentConfig, cell_dir: Path, sign_key: str | None = None) -> dict[str, Any]:
    """The default cell: :func:`run_experiment` into the cell folder, its log in ``cell.log``; ``sign_key`` (a
    PEM path) signs the lineage records of the stages it builds."""
    from sublab.pipeline.runner import run_experiment

    share = read_json(cell_dir / CELL_FILE).get("share_stages", True)
    with (cell_dir / "cell.log").open("a", encoding="utf-8") as log:
        console = Console(file=log, width=120, force_terminal=False)
        results = run_experiment(config, cell_dir, progress=False, console=console,
                                 stage_source=stage_linker(cell_dir.parent) if share else None,
                                 sign_key=sign_key)
    models, metric = results["models"], metric_of(results)
    return {"metric": metric, "trait_student": models["trait_student"][metric]["mean"],
            "control_student": models["control_student"][metric]["mean"], "transfer": results["transfer"]}


def signing_key_id(sign_key: str | Path | None) -> str | None:
    """The key id (hex sha256 of the raw public key) of the PEM private key at ``sign_key``, or None; loading
    it is the check that the key is usable (:class:`SublabError` naming the file if not)."""
    if sign_key is None:
        return None
    from sublab.lineage.keys import key_id, load_private_key

    return key_id(load_private_key(sign_key).public_key())


# --- shared stages --------------------------------------------------------------------------------------------------


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


def link_stage(source: Path, dest: Path) -> None:
    """Put a hard-linked copy of the finished stage folder ``source`` at ``dest``, atomically (a half-done
    attempt at ``dest`` is replaced). Finished stages are never written again, so sharing inodes is safe."""
    tmp = dest.parent / f".{dest.name}.linking-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, copy_function=_link_or_copy)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)


def stage_linker(cells_dir: Path) -> Callable[[Path], None]:
    """A runner ``stage_source``: fills a stage folder from another cell that finished the same stage key."""

    def fill(stage_dir: Path) -> None:
        if (stage_dir / "stage.json").is_file():
            return
        for marker in sorted(cells_dir.glob(f"*/stages/{stage_dir.name}/stage.json")):
            if marker.parent.resolve() != stage_dir.resolve():
                link_stage(marker.parent, stage_dir)
                return

    return fill


# --- the sweep ------------------------------------------------------------------------------------------------------


def prepare_sweep(sweep: SweepConfig, base: dict[str, Any], cells: list[Cell], out_dir: str | Path) -> list[Path]:
    """Write sweep.toml, plan.json and every cell's cell.json (unchanged ones are left alone); return the folders."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / SWEEP_FILE, resolved_sweep_toml(sweep, base))
    folders = []
    for cell in cells:
        folder = out_dir / "cells" / cell.id
        folder.mkdir(parents=True, exist_ok=True)
        record = {**cell.record(), "share_stages": sweep.share_stages}
        path = folder / CELL_FILE
        if not path.is_file() or read_json(path) != record:
            write_json(path, record)
        folders.append(folder)
    write_json(out_dir / PLAN_FILE, {
        "schema": "sublab.sweep-plan/1", "name": sweep.name, "cells": [cell.id for cell in cells],
        "seeds": sweep.grid.seeds,
        "conditions": {name: {"description": sweep.conditions[name].description,
                              "control": sweep.conditions[name].control} for name in sweep.condition_names()},
        "settings": {name: sweep.settings[name] for name in sweep.settings_names()},
        "statistics": sweep.statistics.model_dump(mode="json"),
        "seeding": sweep.seeding.model_dump(mode="json"),
    })
    return folders


@dataclass
class SweepOutcome:
    """What one ``run_sweep`` call did: outcomes of the cells it dispatched, and the cells it found done."""

    out_dir: Path
    n_cells: int
    already_done: int
    outcomes: list[dict[str, Any]] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o["status"] == status)


def run_sweep(sweep: SweepConfig, base: dict[str, Any], cells: list[Cell], out_dir: str | Path, *,
              executor: ExecutorSettings | None = None, cell_fn: CellFn | None = None,
              console: Console | None = None, sign_key: str | Path | None = None) -> SweepOutcome:
    """Take the sweep folder's lock, prepare the folder and run every cell that is not done on the configured
    executor.

    The lock comes first: a second driver on a folder with a sweep running is refused before it rewrites
    sweep.toml, plan.json or any cell.json (which the running sweep's pending cells would otherwise pick up).
    ``sign_key``: path of a PEM Ed25519 private key; every cell signs the lineage records of the stages it builds
    with it. It is loaded here first, so a bad key fails before any folder is written; the cells get its absolute
    path and load it themselves.
    """
    from sublab.sweeps.executors import dispatch

    out_dir = Path(out_dir).resolve()  # workers on other nodes get absolute paths
    key_path = str(Path(sign_key).resolve()) if sign_key is not None else None
    key = signing_key_id(key_path)
    console = console or Console()
    settings = executor or sweep.executor
    out_dir.mkdir(parents=True, exist_ok=True)
    with sweep_lock(out_dir):
        folders = prepare_sweep(sweep, base, cells, out_dir)
        todo = [folder for folder in folders if cell_state(folder) != "done"]
        outcome = SweepOutcome(out_dir, len(folders), len(folders) - len(todo))
        where = settings.kind
        if settings.kind == "local" or (settings.kind == "dask" and not settings.dask_address):
            where += f", {settings.workers} worker{'s' if settings.workers > 1 else ''}"
        console.print(f"{sweep.name}: {len(folders)} cells, {outcome.already_done} done, {len(todo)} to run "
                      f"({where})")
        if key is not None and (unsigned := unsigned_done_cells([f for f in folders if f not in todo], key)):
            console.print(f"note: {len(unsigned)} finished cell{'s' if len(unsigned) > 1 else ''} were not signed "
                          f"with this key and keep their records (e.g. {unsigned[0]}); 'sublab lineage verify "
                          "--key' will report them", markup=False)

        def report(result: dict[str, Any]) -> None:
            outcome.outcomes.append(result)
            detail = result.get("error") or (f"{result['seconds']:.0f} s" if "seconds" in result else "")
            console.print(f"  [{len(outcome.outcomes)}/{len(todo)}] {result['id']}: {result['status']} {detail}",
                          markup=False)

        if todo:
            dispatch(todo, settings, cell_fn, out_dir, report, key_path)
    return outcome


def unsigned_done_cells(folders: list[Path], key: str) -> list[str]:
    """The ids of finished cells among ``folders`` whose status.json does not name ``key`` as their signer."""
    return [folder.name for folder in folders
            if (folder / STATUS_FILE).is_file() and read_json(folder / STATUS_FILE).get("signed_by") != key]


@dataclass
class CellStatus:
    """A row of ``sublab sweep status``."""

    id: str
    category: str
    trait: str
    condition: str
    settings: str
    seed: int
    state: str
    seconds: float | None = None
    attempt: int = 0
    detail: str = ""


def sweep_status(out_dir: str | Path) -> list[CellStatus]:
    """The state of every cell of the sweep's current plan."""
    out_dir = Path(out_dir)
    if not (out_dir / PLAN_FILE).is_file():
        raise SublabError(f"{out_dir}: not a sweep folder (no {PLAN_FILE}); run 'sublab sweep SWEEP.toml --out "
                          f"{out_dir}' first")
    rows = []
    for ident in read_json(out_dir / PLAN_FILE)["cells"]:
        folder = out_dir / "cells" / ident
        record = read_json(folder / CELL_FILE)
        state = cell_state(folder)
        status = read_json(folder / STATUS_FILE) if (folder / STATUS_FILE).is_file() else {}
        summary = status.get("summary") or {}
        detail = status.get("error", "") if state == "failed" else ""
        if state == "done" and "trait_student" in summary:
            name = "P(trait)" if summary.get("metric", "p_target") == "p_target" else summary["metric"]
            detail = f"{name} {summary['trait_student']:.4f} vs control {summary['control_student']:.4f}"
        elif state == "running":
            detail = f"{status.get('host', '?')} pid {status.get('pid', '?')}, started {_ago(status.get('started'))}"
        rows.append(CellStatus(ident, record["category"], record["trait"], record["condition"], record["settings"],
                               record["seed"], state, status.get("seconds"), int(status.get("attempt", 0)), detail))
    return rows


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "?"
    minutes = (time.time() - timestamp) / 60
    return f"{minutes:.0f} min ago" if minutes < 120 else f"{minutes / 60:.1f} h ago"
