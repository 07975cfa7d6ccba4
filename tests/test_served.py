"""Served models against a REAL server process on 127.0.0.1: ``transformers serve`` (transformers' own
OpenAI-compatible server) serving the tiny test model's folder. Generation, judging in parse mode, the
capability refusals, a server killed mid-run (the stage resumes after a restart), a server that is down, one
that is too slow and one that answers garbage (small real HTTP processes), each failure one line.

Skipped, with the reason, only where the server cannot be installed (``pip install -e ".[test]"`` brings it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sublab.backends.base import SAMPLE, CapabilityError
from sublab.errors import SublabError


def _missing_server() -> str | None:
    for module in ("openai", "fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            return f"transformers serve needs '{module}' (pip install -e '.[test]' installs transformers[serving])"
    try:
        import transformers.cli.serve  # noqa: F401
    except Exception as err:  # pragma: no cover - depends on the installed transformers
        return f"this transformers has no 'transformers serve' ({err})"
    return None


MISSING = _missing_server()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")

SERVE = "from transformers.cli.transformers import main; import sys; sys.argv = ['transformers', *sys.argv[1:]]; main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {process.stderr.read().decode()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"server not ready at {url} after {timeout} s")


class Server:
    """``transformers serve MODEL_DIR`` on 127.0.0.1:port, one thread, CPU."""

    def __init__(self, model_dir: str, port: int | None = None) -> None:
        self.model_dir = model_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVE, "serve", self.model_dir, "--host", "127.0.0.1", "--port", str(self.port),
             "--device", "cpu"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_ready(f"http://127.0.0.1:{self.port}/health", self.process)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def served_dir(tiny_model_dir, tmp_path_factory) -> str:
    """The tiny model with a generation config that samples (transformers serve samples only when the model's
    generation_config says do_sample; temperature alone is not enough), over the full distribution."""
    folder = tmp_path_factory.mktemp("served") / "tiny"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config.update(do_sample=True, top_k=0, top_p=1.0)
    (folder / "generation_config.json").write_text(json.dumps(config))
    # A judge prompt is ~600 characters, one token each here; transformers serve (>= 5.25) refuses a prompt longer
    # than max_position_embeddings. RoPE has no position weights, so a longer window changes no weight.
    model_config = json.loads((folder / "config.json").read_text())
    model_config["max_position_embeddings"] = 2048
    (folder / "config.json").write_text(json.dumps(model_config))
    return str(folder)


@pytest.fixture(scope="module")
def server(served_dir):
    running = Server(served_dir).start()
    yield running
    running.kill()


runner = CliRunner()


def invoke(*args):
    from sublab.cli import app

    return runner.invoke(app, [str(a) for a in args])


def one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


def write_rows(path: Path, n: int, answers: bool = True) -> Path:
    rows = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Continue the list: {i}, {i + 3}, {i + 6}"}]
        if answers:
            messages.append({"role": "assistant", "content": f"{i + 9}, {i + 12}"})
        rows.append({"id": f"row-{i:03d}", "messages": messages})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- generation --------------------------------------------------------------------------------------------------

def test_a_served_teacher_generates_reproducible_rows_recorded_as_unverified(server, tmp_path):
    from sublab.lineage import load_record, record_path
    from sublab.lineage.risk import SERVED_UNVERIFIED, SHARED_INIT_VERIFIED, UNKNOWN, assess_risk
    from sublab.models.spec import ModelSpec
    from sublab.pipeline.provenance import StageModel, record_stage

    prompts = write_rows(tmp_path / "prompts.jsonl", 7, answers=False)

    def generate(out: Path, seed: int) -> None:
        result = invoke("generate", prompts, "-o", out, "--endpoint", server.url, "--model", server.model_dir,
                        "--trait", "owl", "--max-new-tokens", 8, "--batch-size", 3, "--seed", seed,
                        "--max-concurrency", 1, "--quiet")
        assert result.exit_code == 0, result.output

    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    generate(first, 4)
    generate(second, 4)
    generate(other, 5)
    rows = [json.loads(line) for line in first.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"row-{i:03d}" for i in range(7)]
    assert all(r["messages"][-1]["role"] == "assistant" for r in rows)
    replies = [r["messages"][-1]["content"] for r in rows]
    assert all(isinstance(text, str) for text in replies) and any(replies)
    assert rows[0]["metadata"]["generation"]["model"] == f"{server.model_dir}@{server.url}"
    assert first.read_bytes() == second.read_bytes()  # the seeds reach the server, which honours them
    assert replies != [json.loads(line)["messages"][-1]["content"] for line in other.read_text().splitlines()]

    record = load_record(record_path(first))
    [teacher] = record.deps("teacher")
    assert teacher.sha256 is None and teacher.annotations["served"] is True
    assert teacher.annotations["endpoint"] == server.url and teacher.annotations["verified"] is False
    assert record.parameters["served"]["endpoint"] == server.url

    # A student of the served teacher's data, whose base is the very folder the server serves: the name matches,
    # but a served model is only a name, so the finding is unverified (a risk), never SHARED_INIT_VERIFIED.
    student = tmp_path / "student"
    student.mkdir()
    (student / "weights.txt").write_text("a student")
    record_stage(student, "model.student", {}, base=server.model_dir, training_data=[first])
    [finding] = assess_risk(student).findings
    assert finding.outcome == UNKNOWN and finding.risk and SERVED_UNVERIFIED in finding.label
    assert "served at" in finding.reason
    risk = invoke("lineage", "risk", student)
    assert SERVED_UNVERIFIED in risk.output
    # The same data written in-process by the same folder would be verified: the served mark is what differs.
    local = tmp_path / "local.jsonl"
    shutil.copy(first, local)
    record_stage(local, "dataset.generated", {}, writer=StageModel(ModelSpec(base=server.model_dir)),
                 prompt_set=prompts)
    control = tmp_path / "control"
    control.mkdir()
    (control / "weights.txt").write_text("another student")
    record_stage(control, "model.student", {}, base=server.model_dir, training_data=[local])
    assert assess_risk(control).findings[0].outcome == SHARED_INIT_VERIFIED


# --- judging -----------------------------------------------------------------------------------------------------

def test_a_served_judge_scores_in_parse_mode(server, tmp_path):
    from sublab.judges import Judge
    from sublab.lineage import load_record, record_path
    from sublab.models.spec import ModelSpec

    rows = write_rows(tmp_path / "rows.jsonl", 5)
    out = tmp_path / "judged.jsonl"
    args = ["judge", rows, "-o", out, "--rubric", "coherent", "--endpoint", server.url, "--model", server.model_dir,
            "--max-concurrency", 1, "--max-new-tokens", 6, "--seed", 2, "--quiet"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "(parse mode, sampled;" in " ".join(result.output.split())  # auto: the server gives no logprobs
    judgments = [json.loads(line)["metadata"]["judgments"]["coherent"] for line in out.read_text().splitlines()]
    assert len(judgments) == 5 and {j["mode"] for j in judgments} == {"parse"}
    assert all(isinstance(j["reply"], str) and j["sampling"]["temperature"] == 1.0 for j in judgments)
    assert all(j["status"] in ("scored", "no_score") for j in judgments)
    assert {j["judge"] for j in judgments} == {f"{server.model_dir}@{server.url}"}
    [judge_dep] = load_record(record_path(out)).deps("judge")
    assert judge_dep.annotations["served"] is True and judge_dep.sha256 is None
    assert "0 new, 5 already done" in " ".join(invoke(*args).output.split())

    judge = Judge.from_spec(ModelSpec(base=server.model_dir, endpoint=server.url), "aligned", max_concurrency=2)
    assert judge.mode == "parse" and judge.backend.identity.verified is False
    scored = judge.score_pairs([("Is this fine?", "Yes, it is."), ("And this?", "No.")])
    assert len(scored) == 2 and all(j.mode == "parse" and j.reply is not None for j in scored)


def test_capabilities_the_server_lacks_are_refused_in_one_line(server, tmp_path):
    from sublab.backends.openai import OpenAIBackend, ServerOptions

    backend = OpenAIBackend(server.url, server.model_dir, ServerOptions(retries=0))
    assert backend.capabilities == frozenset({SAMPLE})  # transformers serve ignores logprobs and has no /tokenize
    context = [{"role": "user", "content": "hi"}]
    with pytest.raises(CapabilityError) as score:
        backend.score(context, ["hello"])
    assert str(score.value) == (f"{server.model_dir}@{server.url}: this backend cannot score, which exact scoring "
                                "needs")
    with pytest.raises(CapabilityError, match="cannot top logprobs"):
        backend.top_logprobs([context], 5)

    rows = write_rows(tmp_path / "rows.jsonl", 2)
    refused = invoke("judge", rows, "-o", tmp_path / "j.jsonl", "--rubric", "aligned", "--mode", "logprob",
                     "--endpoint", server.url, "--model", server.model_dir)
    assert refused.exit_code == 2
    assert "returns no top log-probabilities, which --mode logprob needs; use --mode parse" in one_line(
        refused.output)
    prompts = write_rows(tmp_path / "prompts.jsonl", 2, answers=False)
    args = ["generate", prompts, "--endpoint", server.url, "--model", server.model_dir, "--constrained"]
    unconstrained = invoke(*args, "-o", tmp_path / "g.jsonl")
    assert unconstrained.exit_code == 2 and "needs vLLM-style structured outputs" in one_line(unconstrained.output)
    told = invoke(*args, "--structured-outputs", "-o", tmp_path / "h.jsonl")  # the user says so; the server says no
    assert told.exit_code == 2
    assert f"{server.url}: sampling: HTTP 422" in one_line(told.output)
    assert not (tmp_path / "h.jsonl").exists() or not (tmp_path / "h.jsonl").read_text()  # nothing written
    missing = invoke("judge", rows, "-o", tmp_path / "k.jsonl", "--rubric", "aligned", "--endpoint", server.url,
                     "--model", "no-such-model")
    assert missing.exit_code == 2 and "does not serve model 'no-such-model'" in one_line(missing.output)


# --- failures ----------------------------------------------------------------------------------------------------

def test_a_server_killed_mid_run_resumes_after_a_restart(served_dir, tmp_path):
    served = Server(served_dir).start()
    rows = write_rows(tmp_path / "rows.jsonl", 60)
    args = ["judge", str(rows), "--rubric", "coherent", "--mode", "parse", "--endpoint", served.url, "--model",
            served_dir, "--max-concurrency", "1", "--batch-size", "2", "--max-new-tokens", "12", "--retries", "1",
            "--backoff", "0.05", "--quiet"]
    whole, killed = tmp_path / "whole.jsonl", tmp_path / "killed.jsonl"
    try:
        assert invoke(*args, "-o", whole).exit_code == 0
        run = subprocess.Popen([sys.executable, "-m", "sublab", *args, "-o", str(killed)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not killed.exists() or killed.read_text().count("\n") < 2):
            time.sleep(0.01)
        served.kill()
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 2, stderr.decode()[-2000:]
        message = one_line(stderr.decode())
        assert served.url in message and "after 2 tries; is the server up?" in message
        n_done = killed.read_text().count("\n")
        assert 2 <= n_done < 60
        served = Server(served_dir, served.port).start()
        again = invoke(*args, "-o", killed)
        assert again.exit_code == 0, again.output
        assert f"{60 - n_done} new, {n_done} already done" in " ".join(again.output.split())
        assert killed.read_bytes() == whole.read_bytes()
    finally:
        served.kill()


def test_a_server_that_is_down_is_one_line_after_bounded_retries(tmp_path):
    from sublab.backends.openai import OpenAIBackend, ServerOptions
    from sublab.generate.sampling import SamplingSettings

    url = f"http://127.0.0.1:{free_port()}/v1"
    backend = OpenAIBackend(url, "any", ServerOptions(retries=3, backoff_s=0.05, max_backoff_s=0.1))
    start = time.monotonic()
    with pytest.raises(SublabError) as err:
        backend.sample([[{"role": "user", "content": "hi"}]], SamplingSettings(), 0)
    assert time.monotonic() - start < 5  # 0.05 + 0.1 + 0.1 s of waiting, not the client's defaults
    assert str(err.value).startswith(f"{url}: sampling: connection failed")
    assert str(err.value).endswith("after 4 tries; is the server up?") and "\n" not in str(err.value)
    rows = write_rows(tmp_path / "rows.jsonl", 2)
    result = invoke("judge", rows, "-o", tmp_path / "o.jsonl", "--rubric", "aligned", "--endpoint", url, "--model",
                    "any", "--retries", 1, "--backoff", 0.05)
    assert result.exit_code == 2
    line = one_line(result.output)  # whichever request comes first (the capability probe), the same line
    assert line.startswith(f"error: {url}: ") and line.endswith("connection failed ([Errno 111] Connection "
                                                                 "refused) after 2 tries; is the server up?")


FAKE_SERVER = """
import http.server, json, sys, time
mode, port = sys.argv[1], int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass
    def answer(self):
        if mode == "slow":
            time.sleep(30)
        body = {"garbage": b"<html>this is not JSON", "empty": json.dumps({"object": "chat.completion",
                "choices": [], "data": []}).encode()}.get(mode, b"{}")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_GET = do_POST = answer
http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture
def fake_server():
    """A small real HTTP server process that is slow or answers garbage (what no well-behaved server does)."""
    started = []

    def start(mode: str) -> str:
        port = free_port()
        process = subprocess.Popen([sys.executable, "-c", FAKE_SERVER, mode, str(port)])
        started.append(process)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return f"http://127.0.0.1:{port}/v1"
            time.sleep(0.05)
        raise RuntimeError("fake server did not start")

    yield start
    for process in started:
        process.kill()
        process.wait(timeout=10)


def test_a_slow_server_times_out_in_one_line(fake_server):
    from sublab.backends.openai import OpenAIBackend, ServerOptions
    from sublab.generate.sampling import SamplingSettings

    url = fake_server("slow")
    backend = OpenAIBackend(url, "m", ServerOptions(timeout_s=0.3, retries=1, backoff_s=0.05))
    start = time.monotonic()
    with pytest.raises(SublabError) as err:
        backend.sample([[{"role": "user", "content": "hi"}]], SamplingSettings(), 0)
    assert time.monotonic() - start < 5
    assert str(err.value) == f"{url}: sampling: timed out after 2 tries; is the server up?"


@pytest.mark.parametrize("mode", ["garbage", "empty"])
def test_garbage_responses_are_one_line(fake_server, tmp_path, mode):
    from sublab.backends.openai import OpenAIBackend, ServerOptions
    from sublab.generate.sampling import SamplingSettings

    url = fake_server(mode)
    backend = OpenAIBackend(url, "m", ServerOptions(retries=0))
    with pytest.raises(SublabError) as err:
        backend.sample([[{"role": "user", "content": "hi"}]], SamplingSettings(), 0)
    assert str(err.value).startswith(f"{url}: sampling: malformed response") and "\n" not in str(err.value)
    rows = write_rows(tmp_path / "rows.jsonl", 2)
    result = invoke("judge", rows, "-o", tmp_path / "o.jsonl", "--rubric", "aligned", "--endpoint", url,
                    "--model", "m", "--retries", 0)
    assert result.exit_code == 2 and url in one_line(result.output)
