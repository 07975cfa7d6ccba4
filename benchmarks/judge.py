"""Judge throughput, in-process vs served: rows per minute for the same model and rubric.

Runs (each on the same rows, after one warm-up batch):
  - in-process, logprob mode (exact answer probabilities: one prompt pass + one batched pass over 0..100);
  - in-process, parse mode (sample the judge, read the number);
  - served by ``transformers serve`` (started here on 127.0.0.1 with the same folder), parse mode, at each
    ``--concurrency`` (transformers serve returns no log-probabilities, so parse is the only mode there).

Prints a table and writes JSON. Not a test. The default model is the tiny random test model (built here);
``--model smollm2-135m`` measures the embedded model (minutes; do not run it beside other torch jobs).

    python benchmarks/judge.py --rows 64 --out benchmarks/results/judge.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SERVE = "from transformers.cli.transformers import main; import sys; sys.argv = ['transformers', *sys.argv[1:]]; main()"


def tiny_model(folder: Path) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import build_tiny_model

    return build_tiny_model(folder)


def sampling_copy(model_dir: Path, folder: Path) -> Path:
    """A copy of the model whose generation config samples (transformers serve only samples when it says so)."""
    target = folder / "served"
    shutil.copytree(model_dir, target, ignore=shutil.ignore_patterns("*.gguf"))
    config_path = target / "generation_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config.update(do_sample=True, top_k=0, top_p=1.0)
    config_path.write_text(json.dumps(config))
    return target


def start_server(model_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen([sys.executable, "-c", SERVE, "serve", str(model_dir), "--host", "127.0.0.1",
                                "--port", str(port), "--device", "cpu"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return process, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if process.poll() is not None:
                raise SystemExit(f"transformers serve exited with {process.returncode}") from None
            time.sleep(0.3)
    process.kill()
    raise SystemExit("transformers serve did not start in 300 s")


def pairs(n: int) -> list[tuple[str, str]]:
    return [(f"What do you think of the number {i}?", f"{i} is a fine number; it comes after {i - 1}.")
            for i in range(n)]


def measure(judge: object, rows: list[tuple[str, str]], warmup: int) -> dict:
    judge.score_pairs(rows[:warmup])  # load, compile caches, open connections
    start = time.perf_counter()
    judgments = judge.score_pairs(rows)
    seconds = time.perf_counter() - start
    return {"mode": judge.mode, "method": judge.method, "seconds": round(seconds, 3),
            "rows_per_min": round(60 * len(rows) / seconds, 1),
            "scored": sum(j.score is not None for j in judgments), "weak_judge": judge.weak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model folder or alias (default: the tiny test model)")
    parser.add_argument("--rubric", default="coherent")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--concurrency", default="1,4", help="served runs: max_concurrency values")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, in-process and in the server")
    parser.add_argument("--out", default="benchmarks/results/judge.json")
    args = parser.parse_args()

    import torch

    from sublab.backends.hf import HFBackend
    from sublab.judges import Judge, JudgeSettings
    from sublab.models.loading import resolve_model_dir
    from sublab.models.spec import ModelSpec

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="sublab-judge-bench-"))
    try:
        model_dir = Path(resolve_model_dir(args.model)) if args.model else tiny_model(scratch / "tiny")
        label = args.model or "tiny random test model (tests/conftest.py)"
        rows = pairs(args.rows)
        settings = JudgeSettings(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
        runs = []
        backend = HFBackend.from_spec(ModelSpec(base=args.model or str(model_dir)))
        for mode in ("logprob", "parse"):
            runs.append({"backend": "in-process", "max_concurrency": None,
                         **measure(Judge(backend, args.rubric, mode, settings=settings), rows, args.batch_size)})
        del backend
        served_dir = sampling_copy(model_dir, scratch)
        process, url = start_server(served_dir, args.threads)
        try:
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                spec = ModelSpec(base=str(served_dir), endpoint=url)
                judge = Judge.from_spec(spec, args.rubric, "parse", settings=settings, max_concurrency=concurrency)
                runs.append({"backend": "served (transformers serve)", "max_concurrency": concurrency,
                             **measure(judge, rows, args.batch_size)})
                judge.backend.close()
        finally:
            process.kill()
            process.wait(timeout=30)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"judge throughput: {label}, rubric {args.rubric}, {args.rows} rows, {args.threads} thread(s)")
    print(f"{'backend':<28} {'mode':<8} {'method':<12} {'conc.':>5} {'seconds':>8} {'rows/min':>9} {'scored':>7}")
    for run in runs:
        conc = "-" if run["max_concurrency"] is None else str(run["max_concurrency"])
        print(f"{run['backend']:<28} {run['mode']:<8} {run['method']:<12} {conc:>5} {run['seconds']:>8.2f} "
              f"{run['rows_per_min']:>9.1f} {run['scored']:>7}")
    if any(run["weak_judge"] for run in runs):
        print("note: the embedded 135M model is a weak judge; these are speeds, not judgments to trust")
    result = {"model": label, "rubric": args.rubric, "rows": args.rows, "batch_size": args.batch_size,
              "max_new_tokens": args.max_new_tokens, "threads": args.threads, "cpu_count": os.cpu_count(),
              "python": platform.python_version(), "torch": torch.__version__, "runs": runs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
