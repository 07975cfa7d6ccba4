"""Kill -9 at a point, rerun, compare with an uninterrupted run (issue 10): teacher training, evaluation and the
sweep report, in the style of the generate and train kill tests.

Each run is a subprocess of the real CLI with one function wrapped so that the process SIGKILLs itself just
before (or just after) that function's n-th call: a kill at a known point, with no chance to clean up. The same
command is then rerun unchanged; its outputs must equal those of a run that was never interrupted, its lineage
must verify, and nothing may be left behind (no ``.partial`` folder, no lock file, no half-written file).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sublab.lineage import verify_lineage

TESTS = Path(__file__).resolve().parent

KILLER = textwrap.dedent("""
    import importlib, os, signal, sys

    target, when, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix, then attributes
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        break
    original = getattr(owner, parts[-1])
    calls = 0

    def wrapped(*args, **kwargs):
        global calls
        calls += 1
        if when == "before" and calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if when == "after" and calls == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, parts[-1], wrapped)
    from sublab.cli import app
    app(sys.argv[4:], prog_name="sublab")
""")


def sublab(args: list[str], kill: tuple[str, str, int] | None = None, cwd: Path | None = None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    command = [sys.executable, "-c", KILLER, *(map(str, kill)), *args] if kill else \
        [sys.executable, "-m", "sublab", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


def files(root: Path, only: tuple[str, ...] | None = None) -> dict[str, bytes]:
    """Visible files under ``root`` by relative path (hidden files are temporary or locks: checked apart)."""
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        visible = path.is_file() and not any(part.startswith(".") for part in rel.parts)
        if visible and (only is None or rel.parts[0] in only):
            found[str(rel)] = path.read_bytes()
    return found


def leftovers(root: Path) -> list[str]:
    """Lock files, temporary files and checkpoint folders: what a finished rerun must not leave."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.endswith((".lock", ".partial")) or (p.name.startswith(".") and p.name.endswith(".tmp")))


def check_killed(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == -signal.SIGKILL, (done.returncode, done.stderr[-3000:])


def check_ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr[-3000:]


# --- teacher training ----------------------------------------------------------------------------------------


def teacher_args(out: Path, base: str) -> list[str]:
    return ["teacher", "--trait", "owl", "-o", str(out), "--base", base, "--n-rows", "8", "--steps", "3",
            "--batch-size", "4", "--quiet"]


#: Where a teacher run is killed: after its rows are written; mid-training (before its 2nd logged step); with the
#: model saved but not yet moved into place; with the model in place but no lineage record; mid-record.
TEACHER_KILLS = {
    "rows-written": ("sublab.train.teacher.write_jsonl", "after", 1),
    "mid-training": ("sublab.io.JsonlAppender.write", "before", 2),
    "model-saved": ("sublab.train.trainer._move_into_place", "before", 1),
    "before-record": ("sublab.pipeline.provenance.record_stage", "before", 1),
    "mid-record": ("sublab.lineage.statement.atomic_write_bytes", "before", 1),
}


@pytest.fixture(scope="module")
def uninterrupted_teacher(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("teacher-clean")
    check_ok(sublab(teacher_args(root / "teacher", tiny_model_dir)))
    return root


def teacher_outputs(root: Path) -> dict[str, object]:
    adapter = root / "teacher"
    log = [{k: v for k, v in json.loads(line).items() if k != "seconds"}
           for line in (adapter / "train_log.jsonl").read_text().splitlines()]
    return {"adapter_model": (adapter / "adapter_model.safetensors").read_bytes(),
            "adapter_config": (adapter / "adapter_config.json").read_bytes(),
            "rows": (root / "teacher.trait_answers.jsonl").read_bytes(), "log": log,
            "files": sorted(p.name for p in adapter.iterdir())}


@pytest.mark.parametrize("point", TEACHER_KILLS)
def test_teacher_training_killed_at_a_point_resumes_to_the_uninterrupted_result(point, uninterrupted_teacher,
                                                                               tiny_model_dir, tmp_path):
    args = teacher_args(tmp_path / "teacher", tiny_model_dir)
    check_killed(sublab(args, kill=TEACHER_KILLS[point]))
    check_ok(sublab(args))
    assert teacher_outputs(tmp_path) == teacher_outputs(uninterrupted_teacher)
    report = verify_lineage(tmp_path / "teacher")
    assert report.ok, [p.line() for p in report.problems]
    assert leftovers(tmp_path) == []


# --- evaluation ---------------------------------------------------------------------------------------------


def eval_args(out: Path, model: str) -> list[str]:
    return ["evaluate", "--target", "owl", "-o", str(out), "--model", model, "--n-questions", "3",
            "--candidates", "owl,cat,dog"]


EVAL_KILLS = {
    "mid-scoring": ("sublab.traits.preference.scoring.score_question", "before", 2),
    "result-written": ("sublab.io.write_json", "after", 1),
    "before-record": ("sublab.pipeline.provenance.record_stage", "before", 1),
}


@pytest.fixture(scope="module")
def uninterrupted_eval(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("eval-clean")
    check_ok(sublab(eval_args(root / "eval.json", tiny_model_dir)))
    return root


@pytest.mark.parametrize("point", EVAL_KILLS)
def test_evaluation_killed_at_a_point_reruns_to_the_uninterrupted_result(point, uninterrupted_eval, tiny_model_dir,
                                                                        tmp_path):
    args = eval_args(tmp_path / "eval.json", tiny_model_dir)
    check_killed(sublab(args, kill=EVAL_KILLS[point]))
    check_ok(sublab(args))
    result, expected = tmp_path / "eval.json", uninterrupted_eval / "eval.json"
    assert json.loads(result.read_text()) == json.loads(expected.read_text())
    assert result.read_bytes() == expected.read_bytes()
    report = verify_lineage(tmp_path / "eval.json")
    assert report.ok, [p.line() for p in report.problems]
    assert leftovers(tmp_path) == []


# --- the sweep report ---------------------------------------------------------------------------------------

REPORT = ("summary.json", "report.md", "report.html", "figures")
REPORT_KILLS = {
    "summary-written": ("sublab.report.sweep.write_sweep_report", "before", 1),
    "first-figure": ("sublab.report.sweep.atomic_write_bytes", "after", 1),
    "markdown-written": ("sublab.report.sweep.atomic_write_text", "after", 1),
}


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
    """A finished sweep (scripted cells, as in test_sweep), its report never written."""
    sys.path.insert(0, str(TESTS))
    from sublab.sweeps.config import ExecutorSettings
    from sublab.sweeps.run import run_sweep
    from test_sweep import counting_cell, make_sweep

    out = tmp_path_factory.mktemp("sweep") / "out"
    sweep, base, cells = make_sweep(seeds=range(3))
    run_sweep(sweep, base, cells, out, executor=ExecutorSettings(kind="inline"), cell_fn=counting_cell)
    return out


@pytest.fixture(scope="module")
def uninterrupted_report(finished_sweep, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("report-clean") / "out"
    shutil.copytree(finished_sweep, copy)
    check_ok(sublab(["sweep", "report", str(copy)]))
    return copy


@pytest.mark.parametrize("point", REPORT_KILLS)
def test_the_sweep_report_killed_at_a_point_reruns_to_the_uninterrupted_report(point, finished_sweep,
                                                                             uninterrupted_report, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished_sweep, out)
    check_killed(sublab(["sweep", "report", str(out)], kill=REPORT_KILLS[point]))
    check_ok(sublab(["sweep", "report", str(out)]))
    expected = files(uninterrupted_report, REPORT)
    assert set(expected) >= {"summary.json", "report.md", "report.html"} and any(k.startswith("figures/")
                                                                                 for k in expected)
    assert files(out, REPORT) == expected
    assert files(out) == files(uninterrupted_report)  # and the cells are untouched
    assert leftovers(out) == [p for p in leftovers(uninterrupted_report)]
