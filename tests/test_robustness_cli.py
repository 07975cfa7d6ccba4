"""Commands that append or write a run folder hold an exclusive lock (defect 2 of issue 10); outputs never
overwrite inputs or each other (defect 3); a resume checks each row's prompt text (defect 4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from sublab.cli import app
from sublab.io import lock_path, read_jsonl, write_jsonl

runner = CliRunner()

#: Runs the CLI with one function wrapped to stop at its n-th call: it prints "paused" and waits for a line on
#: stdin (then carries on), or, with "kill", SIGKILLs the process there.
PAUSER = textwrap.dedent("""
    import importlib, os, signal, sys

    target, action, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix, then attributes
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        break
    attr = parts[-1]
    original = getattr(owner, attr)
    calls = 0

    def wrapped(*args, **kwargs):
        global calls
        calls += 1
        result = original(*args, **kwargs)
        if calls == nth:
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            print("paused", flush=True)
            sys.stdin.readline()
        return result

    setattr(owner, attr, wrapped)
    from sublab.cli import app
    app(sys.argv[4:], prog_name="sublab")
""")


def paused(args: list[str], target: str, nth: int = 1, action: str = "pause") -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", PAUSER, target, action, str(nth), *map(str, args)], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_paused(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    assert line.strip() == "paused", (line, process.stderr.read()[-3000:] if process.poll() is not None else "")


def prompts_file(path: Path, n: int = 6) -> Path:
    write_jsonl(path, [{"id": f"p{i}", "messages": [{"role": "user", "content": f"Continue: {i}, {i + 1}"}]}
                       for i in range(n)])
    return path


def generate_args(prompts: Path, out: Path, model: str) -> list[str]:
    return ["generate", str(prompts), "-o", str(out), "--model", model, "--constrained", "--max-new-tokens", "6",
            "--batch-size", "2", "--quiet"]


def test_two_generates_into_one_output_cannot_both_append(tiny_model_dir, tmp_path):
    """Defect 2: both used to exit 0 and leave every row twice. The second is refused, naming the first."""
    prompts, out = prompts_file(tmp_path / "prompts.jsonl"), tmp_path / "raw.jsonl"
    first = paused(generate_args(prompts, out, tiny_model_dir), "sublab.io.JsonlAppender.write")
    try:
        wait_paused(first)  # holding the output, one batch appended
        second = runner.invoke(app, generate_args(prompts, out, tiny_model_dir))
        assert second.exit_code == 2
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"error: {out}: in use by pid {first.pid} on ") and f"generate {prompts}" in line
    finally:
        _, stderr = first.communicate("go on\n", timeout=300)
    assert first.returncode == 0, stderr[-3000:]
    ids = [row["id"] for row in read_jsonl(out)]
    assert sorted(ids) == [f"p{i}" for i in range(6)]  # every row once
    assert not lock_path(out).exists()


def test_a_generate_killed_mid_run_leaves_a_stale_lock_that_the_rerun_takes_over(tiny_model_dir, tmp_path):
    prompts, out = prompts_file(tmp_path / "prompts.jsonl"), tmp_path / "raw.jsonl"
    killed = paused(generate_args(prompts, out, tiny_model_dir), "sublab.io.JsonlAppender.write", action="kill")
    killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert json.loads(lock_path(out).read_text())["pid"] == killed.pid  # a dead holder's lock file
    result = runner.invoke(app, generate_args(prompts, out, tiny_model_dir))
    assert result.exit_code == 0, result.output
    assert "(2 already done)" in result.stdout and len(read_jsonl(out)) == 6 and not lock_path(out).exists()


def test_a_second_run_into_one_folder_is_one_line_not_a_traceback(tmp_path):
    """Defect 2 for `sublab run`: the second used to die with a traceback."""
    config = tmp_path / "smoke.toml"
    config.write_text((Path(__file__).parents[1] / "examples" / "smoke.toml").read_text())
    out = tmp_path / "run"
    first = paused(["run", str(config), "-o", str(out), "--quiet"], "sublab.cli.pipeline.signing_key")
    try:
        wait_paused(first)  # the folder is claimed; the runner has not started yet
        second = runner.invoke(app, ["run", str(config), "-o", str(out), "--quiet"])
        assert second.exit_code == 2 and "Traceback" not in second.output
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"error: {out}: in use by pid {first.pid} on ")
    finally:
        first.kill()  # never let it run the experiment
        first.communicate(timeout=60)


def test_filter_outputs_never_overwrite_the_input_or_each_other(tmp_path):
    """Defect 3: `--rejected Y -o Y` wrote the rejected rows into the kept file while the record said n_kept=N,
    and `-o` equal to the input overwrote the raw data."""
    raw = tmp_path / "raw.jsonl"
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": "go"},
                                          {"role": "assistant", "content": reply}]}
            for i, reply in enumerate(["1, 2", "hello", "3, 4"])]
    write_jsonl(raw, rows)
    before = raw.read_bytes()
    os.symlink(raw, tmp_path / "alias.jsonl")
    cases = {
        ("-o", str(tmp_path / "y.jsonl"), "--rejected", str(tmp_path / "y.jsonl")): f"{tmp_path / 'y.jsonl'}: given "
                                                                                    "for two outputs",
        ("-o", str(raw)): f"{raw}: is also an input",
        ("-o", str(tmp_path / "alias.jsonl")): "alias.jsonl: is also an input",
        ("-o", str(tmp_path / "k.jsonl"), "--rejected", str(raw)): f"{raw}: is also an input",
    }
    for options, message in cases.items():
        result = runner.invoke(app, ["filter", "numbers", str(raw), *options])
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert raw.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.jsonl", "raw.jsonl"]


def test_a_resume_checks_each_row_against_its_prompt_text(tiny_model_dir, tmp_path):
    """Defect 4: prompts whose texts changed under the same ids kept their stale rows, and the new record claimed
    the new prompts."""
    prompts, out = prompts_file(tmp_path / "prompts.jsonl"), tmp_path / "raw.jsonl"
    args = generate_args(prompts, out, tiny_model_dir)
    assert runner.invoke(app, args).exit_code == 0
    rows = read_jsonl(out)
    assert all(row["metadata"]["generation"]["prompt_sha256"] for row in rows)
    write_jsonl(out, rows[:4])  # as if killed after two batches
    changed = read_jsonl(prompts)
    changed[1]["messages"][0]["content"] = "Continue: 100, 200"
    write_jsonl(prompts, changed)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {out}:2: row 'p1' was generated for another text of prompt 'p1' (the "
                                     "prompts changed since); use a new output file")
    assert len(read_jsonl(out)) == 4
    # Rows written before rows carried the digest are checked against the prompt messages they hold.
    old_style = [{**r, "metadata": {**r["metadata"], "generation": {
        k: v for k, v in r["metadata"]["generation"].items() if k != "prompt_sha256"}}} for r in rows[:4]]
    write_jsonl(out, old_style)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and f"{out}:2: row 'p1' was generated for another text" in result.stderr
    write_jsonl(prompts, [{**p, "messages": r["messages"][:-1]} for p, r in zip(changed, rows, strict=False)] +
                changed[len(rows):])
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "(4 already done)" in result.stdout
    assert [r["id"] for r in read_jsonl(out)] == [f"p{i}" for i in range(6)]
