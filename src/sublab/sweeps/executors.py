"""Dispatch sweep cells to an executor: this process, a local process pool, Dask distributed, or Slurm (submitit).

Nothing here schedules: each back end gets the list of cell folders and runs
:func:`sublab.sweeps.run.execute_cell` on each; the cell's lock and status file make a duplicate or
repeated dispatch harmless. Everything sent to a worker is a plain value (folder and signing-key paths as
strings), so it pickles for every back end.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sublab.errors import SublabError
from sublab.io import write_json
from sublab.sweeps.config import ExecutorSettings
from sublab.sweeps.run import CellFn, execute_cell

Report = Callable[[dict[str, Any]], None]


def dispatch(folders: list[Path], settings: ExecutorSettings, cell_fn: CellFn | None, out_dir: Path,
             report: Report, sign_key: str | None = None) -> None:
    """Run ``execute_cell`` on every folder with the executor ``settings`` names; ``report`` each outcome.
    ``sign_key``: absolute path of the PEM private key every cell signs its lineage records with, or None."""
    runners = {"inline": run_inline, "local": run_local, "dask": run_dask, "slurm": run_slurm}
    runners[settings.kind](folders, settings, cell_fn, out_dir, report, sign_key)


def _failed(folder: Path, err: BaseException) -> dict[str, Any]:
    return {"id": folder.name, "status": "failed", "error": f"{type(err).__name__}: {err}".splitlines()[0][:300]}


def run_inline(folders: list[Path], settings: ExecutorSettings, cell_fn: CellFn | None, out_dir: Path,
               report: Report, sign_key: str | None = None) -> None:
    """One cell after another in this process (debugging; tracebacks land in each cell's error.txt)."""
    for folder in folders:
        report(execute_cell(folder, cell_fn, settings.torch_threads, sign_key))


def run_local(folders: list[Path], settings: ExecutorSettings, cell_fn: CellFn | None, out_dir: Path,
              report: Report, sign_key: str | None = None) -> None:
    """A process pool of ``settings.workers`` processes, a fresh process per cell (memory is given back)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")  # never fork a process that may hold torch threads
    with ProcessPoolExecutor(max_workers=min(settings.workers, len(folders)), mp_context=context,
                             max_tasks_per_child=1, initializer=die_with_parent,
                             initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(execute_cell, str(f), cell_fn, settings.torch_threads, sign_key): f for f in folders}
        for future in as_completed(futures):
            try:
                report(future.result())
            except BrokenProcessPool:
                pool.shutdown(cancel_futures=True)
                raise SublabError(f"{out_dir}: a worker process died (out of memory?) while running "
                                  f"{futures[future].name}; rerun the same command to resume") from None


def die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: on Linux, have the kernel send this process SIGTERM when the driver dies.

    Without it, a driver stopped by SIGTERM or SIGKILL (``kill``, a job scheduler) left its worker training the
    cell on: it kept the cell's lock and the CPU, and a rerun found the cell busy (seen on this machine).
    """
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    if name:
        ctypes.CDLL(name).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent_pid:  # the driver died before the request took effect
        os._exit(1)


def run_dask(folders: list[Path], settings: ExecutorSettings, cell_fn: CellFn | None, out_dir: Path,
             report: Report, sign_key: str | None = None) -> None:
    """Dask distributed: the scheduler at ``settings.dask_address``, or a LocalCluster of ``workers`` processes."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise SublabError("the dask executor needs dask[distributed]: pip install 'subliminal-lab[cluster]'") from None

    cluster = None
    if settings.dask_address:
        client = Client(settings.dask_address)
    else:
        cluster = LocalCluster(n_workers=settings.workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        futures = {client.submit(execute_cell, str(f), cell_fn, settings.torch_threads, sign_key,
                                pure=False): f
                   for f in folders}
        for future in as_completed(list(futures)):
            try:
                report(future.result())
            except Exception as err:  # a worker lost for good (KilledWorker) or the cluster went away
                report(_failed(futures[future], err))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_slurm(folders: list[Path], settings: ExecutorSettings, cell_fn: CellFn | None, out_dir: Path,
              report: Report, sign_key: str | None = None) -> None:
    """One Slurm array job through submitit (``slurm.cluster`` local/debug run the same path on this machine)."""
    try:
        import submitit
    except ImportError:
        raise SublabError("the slurm executor needs submitit: pip install 'subliminal-lab[cluster]'") from None

    slurm = settings.slurm
    executor = submitit.AutoExecutor(folder=out_dir / "slurm" / "%j", cluster=slurm.cluster)
    parameters: dict[str, Any] = {
        "name": f"sublab-{out_dir.name}", "timeout_min": slurm.timeout_min, "cpus_per_task": slurm.cpus_per_task,
        "mem_gb": slurm.mem_gb, "gpus_per_node": slurm.gpus_per_node,
        "slurm_array_parallelism": slurm.array_parallelism,
    }
    if slurm.partition:
        parameters["slurm_partition"] = slurm.partition
    try:
        executor.update_parameters(**{**parameters, **slurm.parameters})
    except (NameError, TypeError, ValueError) as err:  # submitit names an unknown parameter with NameError
        raise SublabError(f"executor.slurm.parameters: {err}".splitlines()[0]) from None
    n = len(folders)
    jobs = executor.map_array(execute_cell, [str(f) for f in folders], [cell_fn] * n, [settings.torch_threads] * n,
                              [sign_key] * n)
    array_id = str(jobs[0].job_id).split("_")[0]
    write_json(out_dir / "slurm" / f"jobs-{array_id}.json",
               {folder.name: str(job.job_id) for folder, job in zip(folders, jobs, strict=True)})
    if not settings.wait:
        report({"id": f"{n} cells", "status": f"submitted as job {array_id}"})
        return
    for folder, job in zip(folders, jobs, strict=True):
        try:
            report(job.result())
        except Exception as err:  # timeout, preemption, node failure: the cell shows as interrupted
            report(_failed(folder, err))
