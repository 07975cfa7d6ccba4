"""Running sweeps: every cell once, resumable after a kill, on the local pool, Dask (LocalCluster) and submitit.

Most tests use a scripted cell function that writes synthetic results (known effects) and leaves marker files, so
executions can be counted; one test runs the real experiment on the tiny model through the CLI.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from sublab.errors import SublabError
from sublab.io import read_json
from sublab.lineage.keys import key_id, load_public_key, new_keypair
from sublab.sweeps.config import ExecutorSettings, expand_cells, parse_sweep
from sublab.sweeps.run import (
    cell_lock,
    cell_state,
    execute_cell,
    prepare_sweep,
    run_sweep,
    sweep_lock,
    sweep_status,
)

TESTS = Path(__file__).resolve().parent
N_QUESTIONS = 4


def make_sweep(seeds=(0, 1), traits=("owl", "eagle"), test="permutation", steps=2, alternative="greater"):
    data = {
        "name": "fake",
        "experiment": {
            "reference": "tiny", "target": "owl",
            "teacher": {"trait": "owl", "method": "finetune", "training": {"steps": 1}},
            "data": {"source": "reference", "n_prompts": 4},
            "student": {"method": "distill", "steps": steps},
            "evaluation": {"n_questions": N_QUESTIONS, "candidates": ["owl", "eagle", "cat", "dog"]},
        },
        "grid": {"traits": {"animal": list(traits)}, "seeds": list(seeds)},
        "conditions": {"same_init": {"control": "other_trait"},
                       "cross": {"control": "other_trait", "overrides": {"student_base": "other"}}},
        "statistics": {"test": test, "alternative": alternative},
    }
    sweep, base = parse_sweep(data, "fake.toml")
    return sweep, base, expand_cells(sweep, base, "fake.toml")


def _append(path: Path, text: str) -> None:
    with path.open("a") as handle:
        handle.write(text + "\n")


def counting_cell(config, cell_dir, sign_key=None):
    """A scripted cell: counts its starts and completions, writes synthetic results with a known effect.

    P(trait) ~ 0.01 for control students, + 0.03 for trait students of same-init cells, none across models;
    a seed effect shared by both arms of a cell; cross-model cells also score the students' base model
    (``student_reference``), as the runner does. The signing-key path it was given goes into ``sign_key``. If the
    sweep folder holds ``kill-after`` (k), the first cell to start after k completions kills its whole process
    group (the sweep driver and its workers) with SIGKILL.
    """
    cell_dir = Path(cell_dir)
    _append(cell_dir / "starts", str(os.getpid()))
    if sign_key is not None:
        (cell_dir / "sign_key").write_text(sign_key)
    sweep_dir = cell_dir.parent.parent
    kill = sweep_dir / "kill-after"
    if kill.exists() and len(list(sweep_dir.glob("cells/*/completions"))) >= int(kill.read_text()):
        kill.unlink()
        os.killpg(os.getpgrp(), signal.SIGKILL)
    record = read_json(cell_dir / "cell.json")
    rng = np.random.default_rng([record["seed"], zlib.crc32(config.target.encode())])
    effect = 0.03 if config.student_base is None else 0.0
    shared = rng.normal(0, 0.002)

    def model(mean):
        per_question = np.clip(mean + rng.normal(0, 0.003, N_QUESTIONS), 1e-4, 1).tolist()
        return {"p_target": {"mean": float(np.mean(per_question)), "ci95": [0, 1]},
                "per_question": {"p_target": per_question}}

    results = {"target": config.target, "models": {
        "reference": model(0.01), "control_student": model(0.01 + shared),
        "trait_student": model(0.01 + shared + effect)}}
    if config.student_base is not None:
        results["models"]["student_reference"] = model(0.02)
    (cell_dir / "results.json").write_text(json.dumps(results))
    _append(cell_dir / "completions", "1")
    return {"trait_student": results["models"]["trait_student"]["p_target"]["mean"],
            "control_student": results["models"]["control_student"]["p_target"]["mean"]}


def failing_for_eagle(config, cell_dir, sign_key=None):
    if config.target == "eagle":
        raise RuntimeError("out of patience\nsecond line")
    return counting_cell(config, cell_dir, sign_key)


def counts(out: Path, name: str) -> dict[str, int]:
    return {p.parent.name: len(p.read_text().splitlines()) for p in out.glob(f"cells/*/{name}")}


INLINE = ExecutorSettings(kind="inline")


def test_every_cell_runs_once_and_a_rerun_skips_them(tmp_path):
    sweep, base, cells = make_sweep()
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=counting_cell)
    assert outcome.count("done") == len(cells) == 8 and outcome.already_done == 0
    assert {row.state for row in sweep_status(tmp_path)} == {"done"}
    again = run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=counting_cell)
    assert again.already_done == 8 and again.outcomes == []
    assert set(counts(tmp_path, "starts").values()) == {1}
    record = read_json(tmp_path / "cells" / cells[0].id / "cell.json")
    assert record["config"]["target"] == cells[0].trait and record["seeds"]["student_lora_init"] == 0
    status = read_json(tmp_path / "cells" / cells[0].id / "status.json")
    assert status["status"] == "done" and status["attempt"] == 1 and "trait_student" in status["summary"]
    assert (tmp_path / "sweep.toml").is_file() and read_json(tmp_path / "plan.json")["cells"] == [c.id for c in cells]


def test_a_sweep_killed_halfway_resumes_and_runs_no_cell_twice(tmp_path):
    """The driver and its worker are SIGKILLed at the start of the third cell; a rerun finishes the rest."""
    (tmp_path / "kill-after").write_text("2")
    sweep, base, cells = make_sweep(traits=("owl",))
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_sweep import counting_cell, make_sweep
        from sublab.sweeps.run import run_sweep
        from sublab.sweeps.config import ExecutorSettings
        sweep, base, cells = make_sweep(traits=("owl",))
        run_sweep(sweep, base, cells, {str(tmp_path)!r}, executor=ExecutorSettings(kind="local", workers=1),
                  cell_fn=counting_cell)
    """)
    driver = subprocess.run([sys.executable, "-c", script], start_new_session=True, capture_output=True,
                            timeout=300)
    assert driver.returncode == -signal.SIGKILL, driver.stderr.decode()[-2000:]
    states = [row.state for row in sweep_status(tmp_path)]
    assert states == ["done", "done", "interrupted", "pending"]
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=counting_cell)
    assert outcome.already_done == 2 and outcome.count("done") == 2
    assert counts(tmp_path, "completions") == {c.id: 1 for c in cells}  # no cell finished twice
    starts = counts(tmp_path, "starts")
    assert starts == {c.id: 2 if c.id == cells[2].id else 1 for c in cells}  # only the killed one restarted
    assert read_json(tmp_path / "cells" / cells[2].id / "status.json")["attempt"] == 2


def sleeping_cell(config, cell_dir, sign_key=None):
    """A scripted cell that records its process id and then works (sleeps) far longer than any test waits."""
    import time

    (Path(cell_dir) / "pid").write_text(str(os.getpid()))
    time.sleep(120)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's")
def test_killing_the_driver_stops_its_local_workers(tmp_path):
    """A driver stopped by SIGTERM (kill, a job scheduler) takes its pool worker with it: no cell trains on."""
    import time

    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from test_sweep import make_sweep, sleeping_cell
        from sublab.sweeps.run import run_sweep
        from sublab.sweeps.config import ExecutorSettings
        sweep, base, cells = make_sweep(traits=("owl",), seeds=(0,))
        run_sweep(sweep, base, cells, {str(tmp_path)!r}, executor=ExecutorSettings(kind="local", workers=1),
                  cell_fn=sleeping_cell)
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("cells/*/pid")) and time.monotonic() < deadline:
            time.sleep(0.2)
        (pid_file,) = tmp_path.glob("cells/*/pid")
        worker = int(pid_file.read_text())
        os.kill(driver.pid, signal.SIGTERM)  # the driver only, not its process group
        driver.wait(timeout=30)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            os.kill(worker, signal.SIGKILL)
            pytest.fail("the worker outlived its driver")
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert [row.state for row in sweep_status(tmp_path)] == ["interrupted", "pending"]


def test_a_failed_cell_is_recorded_and_rerun(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,))
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=failing_for_eagle)
    assert outcome.count("failed") == 2 and outcome.count("done") == 2
    failed = [row for row in sweep_status(tmp_path) if row.state == "failed"]
    assert {row.trait for row in failed} == {"eagle"}
    assert failed[0].detail == "RuntimeError: out of patience"
    assert "Traceback" in (tmp_path / "cells" / failed[0].id / "error.txt").read_text()
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=counting_cell)
    assert sorted(o["id"] for o in outcome.outcomes) == sorted(row.id for row in failed)
    assert {row.state for row in sweep_status(tmp_path)} == {"done"}


def test_a_changed_config_makes_cells_stale_and_reruns_them(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,))
    run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=counting_cell)
    sweep, base, changed = make_sweep(seeds=(0,), steps=3)
    prepare_sweep(sweep, base, changed, tmp_path)
    assert {row.state for row in sweep_status(tmp_path)} == {"stale"}
    outcome = run_sweep(sweep, base, changed, tmp_path, executor=INLINE, cell_fn=counting_cell)
    assert outcome.count("done") == 4 and set(counts(tmp_path, "completions").values()) == {2}


def test_a_running_cell_is_left_alone(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,))
    folders = prepare_sweep(sweep, base, cells, tmp_path)
    with cell_lock(folders[0]) as acquired:
        assert acquired
        assert cell_state(folders[0]) == "running"
        assert execute_cell(folders[0], counting_cell)["status"] == "busy"
    assert not (folders[0] / "starts").exists()
    assert cell_state(folders[0]) == "pending"


def test_a_second_driver_on_the_same_folder_is_refused(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,))
    with sweep_lock(tmp_path), pytest.raises(SublabError, match="another 'sublab sweep' is running"):
        run_sweep(sweep, base, cells, tmp_path, executor=INLINE, cell_fn=counting_cell)


def _sweep_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes()
            for p in [out / "sweep.toml", out / "plan.json", *sorted(out.glob("cells/*/cell.json"))]}


def test_a_refused_driver_rewrites_nothing_of_the_running_sweep(tmp_path):
    """Another process holds the sweep lock; a second run with a changed config (other student steps, one more
    seed) is refused before it writes sweep.toml, plan.json or any cell.json."""
    sweep, base, cells = make_sweep(seeds=(0,))
    prepare_sweep(sweep, base, cells, tmp_path)
    before = _sweep_files(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, sys
            handle = open({str(tmp_path / ".sweep.lock")!r}, "a")
            fcntl.flock(handle, fcntl.LOCK_EX)
            print("locked", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        changed_sweep, changed_base, changed = make_sweep(seeds=(0, 1), steps=3)
        with pytest.raises(SublabError, match="another 'sublab sweep' is running"):
            run_sweep(changed_sweep, changed_base, changed, tmp_path, executor=INLINE, cell_fn=counting_cell)
    finally:
        holder.communicate("", timeout=30)
    assert _sweep_files(tmp_path) == before
    assert len(list(tmp_path.glob("cells/*"))) == len(cells)  # no folder for the new seed's cells either
    assert not list(tmp_path.glob("cells/*/starts"))


def test_cells_get_the_signing_key_path_and_record_its_id(tmp_path, monkeypatch):
    private, public = new_keypair(tmp_path / "lab")
    monkeypatch.chdir(tmp_path)
    sweep, base, cells = make_sweep(seeds=(0,), traits=("owl",))
    outcome = run_sweep(sweep, base, cells, tmp_path / "out", executor=INLINE, cell_fn=counting_cell,
                        sign_key=Path("lab.key"))  # relative: workers get it resolved
    assert outcome.count("done") == 2
    ident = key_id(load_public_key(public))
    for cell in cells:
        folder = tmp_path / "out" / "cells" / cell.id
        assert (folder / "sign_key").read_text() == str(private.resolve())
        assert read_json(folder / "status.json")["signed_by"] == ident
    unsigned = run_sweep(sweep, base, cells, tmp_path / "plain", executor=INLINE, cell_fn=counting_cell)
    assert unsigned.count("done") == 2 and not list((tmp_path / "plain").glob("cells/*/sign_key"))
    assert {read_json(p)["signed_by"] for p in (tmp_path / "plain").glob("cells/*/status.json")} == {None}


def test_a_bad_signing_key_fails_before_anything_is_written(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,))
    (tmp_path / "not-a-key.pem").write_text("hello\n")
    for key, message in ((tmp_path / "missing.key", "key file not found"),
                         (tmp_path / "not-a-key.pem", "not an unencrypted PEM private key")):
        with pytest.raises(SublabError, match=message):
            run_sweep(sweep, base, cells, tmp_path / "out", executor=INLINE, cell_fn=counting_cell, sign_key=key)
    assert not (tmp_path / "out").exists()


def test_the_local_pool_passes_the_signing_key_path_to_every_cell(tmp_path):
    private, _ = new_keypair(tmp_path / "lab")
    sweep, base, cells = make_sweep(seeds=(0,), traits=("owl",))
    outcome = run_sweep(sweep, base, cells, tmp_path / "out", executor=ExecutorSettings(kind="local", workers=1),
                        cell_fn=counting_cell, sign_key=private)
    assert outcome.count("done") == 2
    for cell in cells:
        folder = tmp_path / "out" / "cells" / cell.id
        assert (folder / "sign_key").read_text() == str(private.resolve())
        assert int((folder / "starts").read_text()) != os.getpid()  # ran in a pool process


def test_a_rerun_with_a_key_names_the_finished_cells_it_cannot_sign(tmp_path):
    from rich.console import Console

    private, _ = new_keypair(tmp_path / "lab")
    sweep, base, cells = make_sweep(seeds=(0,), traits=("owl",))
    run_sweep(sweep, base, cells, tmp_path / "out", executor=INLINE, cell_fn=counting_cell)
    console = Console(record=True, width=200)
    again = run_sweep(sweep, base, cells, tmp_path / "out", executor=INLINE, cell_fn=counting_cell,
                      sign_key=private, console=console)
    assert again.already_done == 2 and again.outcomes == []
    assert "note: 2 finished cells were not signed with this key" in console.export_text()


def test_status_of_a_folder_that_is_no_sweep(tmp_path):
    with pytest.raises(SublabError, match=r"not a sweep folder \(no plan.json\)"):
        sweep_status(tmp_path)


def test_dask_local_cluster_runs_every_cell_once(tmp_path):
    private, _ = new_keypair(tmp_path / "lab")
    sweep, base, cells = make_sweep(seeds=(0,))
    settings = ExecutorSettings(kind="dask", workers=2)
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=settings, cell_fn=counting_cell, sign_key=private)
    assert outcome.count("done") == 4
    assert counts(tmp_path, "completions") == {c.id: 1 for c in cells}
    assert {(tmp_path / "cells" / c.id / "sign_key").read_text() for c in cells} == {str(private.resolve())}
    pids = {int(p) for c in cells for p in (tmp_path / "cells" / c.id / "starts").read_text().split()}
    assert os.getpid() not in pids  # ran in the cluster's worker processes
    again = run_sweep(sweep, base, cells, tmp_path, executor=settings, cell_fn=counting_cell)
    assert again.already_done == 4 and again.outcomes == []


def test_submitit_local_executor_runs_every_cell_once(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))  # the fake
    sweep, base, cells = make_sweep(seeds=(0,), traits=("owl",))
    settings = ExecutorSettings(kind="slurm", slurm={"cluster": "local", "timeout_min": 5, "partition": "gpu"})
    private, _ = new_keypair(tmp_path / "lab")
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=settings, cell_fn=counting_cell, sign_key=private)
    assert outcome.count("done") == 2
    assert counts(tmp_path, "completions") == {c.id: 1 for c in cells}
    assert {(tmp_path / "cells" / c.id / "sign_key").read_text() for c in cells} == {str(private.resolve())}
    jobs = read_json(next((tmp_path / "slurm").glob("jobs-*.json")))
    assert set(jobs) == {c.id for c in cells}


def test_submitit_rejects_unknown_parameters(tmp_path):
    sweep, base, cells = make_sweep(seeds=(0,), traits=("owl",))
    settings = ExecutorSettings(kind="slurm", slurm={"cluster": "local", "parameters": {"gpus_per_nod": 1}})
    with pytest.raises(SublabError, match=r"executor.slurm.parameters"):
        run_sweep(sweep, base, cells, tmp_path, executor=settings, cell_fn=counting_cell)


def test_submitit_without_waiting_returns_and_the_jobs_finish(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    sweep, base, cells = make_sweep(seeds=(0,), traits=("owl",))
    settings = ExecutorSettings(kind="slurm", wait=False, slurm={"cluster": "local", "timeout_min": 5})
    outcome = run_sweep(sweep, base, cells, tmp_path, executor=settings, cell_fn=counting_cell)
    assert len(outcome.outcomes) == 1 and outcome.outcomes[0]["status"].startswith("submitted as job ")
    assert set(read_json(next((tmp_path / "slurm").glob("jobs-*.json")))) == {c.id for c in cells}
    deadline = time.time() + 120
    while {row.state for row in sweep_status(tmp_path)} != {"done"} and time.time() < deadline:
        time.sleep(0.5)
    assert {row.state for row in sweep_status(tmp_path)} == {"done"}
    assert counts(tmp_path, "completions") == {c.id: 1 for c in cells}
