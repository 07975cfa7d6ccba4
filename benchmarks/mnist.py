"""Auxiliary-logit experiment: the paper's method and ours, side by side, same data, same seeds, one run.

"paper" re-implements the algorithm of the paper's public script (scripts/run_mnist_experiment.py in
MinhxLe/subliminal-learning) in our own code: per-model einsum layers in float32, every model with its own
shuffled copy of the data and its own stored noise tensor (N × n_train × 784 floats), four separate distillation
runs that each recompute the teacher, cross-model students made by permuting the reference models. "ours" is
``sublab.experiments.mnist.run_mnist``. Both start from the same initial weights. Each method runs in its own
process so its peak memory (max RSS) is its own.

    python benchmarks/mnist.py --dataset fashion-mnist --models 10 --out benchmarks/results/mnist.json
    python benchmarks/mnist.py --dataset fashion-mnist --models 10 --repeat 3   # alternate, report medians
    python benchmarks/mnist.py --dataset fashion-mnist --models 100 --only ours   # the paper's would need ~19 GB
                                                                                   # for noise alone
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

RESULT_KEYS = ("reference", "teacher", "student_aux", "student_all", "cross_aux", "cross_all")


# --- the paper's method, our code -----------------------------------------------------------------------------


class EinsumMLP(torch.nn.Module):
    """M MLPs with weights [M, d_out, d_in] applied to per-model inputs [M, B, d_in] by einsum (as the paper)."""

    def __init__(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
        super().__init__()
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w.clone()) for w in weights])
        self.biases = torch.nn.ParameterList([torch.nn.Parameter(b.clone()) for b in biases])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.einsum("moi,mbi->mbo", w, h) + b[:, None, :]
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h

    def reindexed(self, order: list[int]) -> EinsumMLP:
        return EinsumMLP([w.detach()[order] for w in self.weights], [b.detach()[order] for b in self.biases])


def initial_weights(sizes: list[int], seeds: list[int]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    from sublab.experiments.mnist.models import init_layers

    per_model = [init_layers(sizes, s) for s in seeds]
    weights = [torch.stack([m[i][0].T for m in per_model]) for i in range(len(sizes) - 1)]
    biases = [torch.stack([m[i][1] for m in per_model]) for i in range(len(sizes) - 1)]
    return weights, biases


def per_model_batches(x: torch.Tensor, y: torch.Tensor | None, batch_size: int):
    """Each model its own permutation; a batch gathers [M, B, D] (the paper's preloaded loader)."""
    n_models, n = x.shape[0], x.shape[1]
    perm = torch.stack([torch.randperm(n) for _ in range(n_models)])
    for start in range(0, n, batch_size):
        idx = perm[:, start : start + batch_size]
        bx = torch.stack([x[m].index_select(0, idx[m]) for m in range(n_models)])
        by = None if y is None else torch.stack([y.index_select(0, idx[m]) for m in range(n_models)])
        yield bx, by


@torch.inference_mode()
def paper_accuracy(model: EinsumMLP, x: torch.Tensor, y: torch.Tensor, n_models: int) -> list[float]:
    correct = torch.zeros(n_models)
    for start in range(0, x.shape[0], 2000):
        chunk = x[start : start + 2000].unsqueeze(0).expand(n_models, -1, -1)
        correct += (model(chunk)[..., :10].argmax(-1) == y[start : start + 2000]).float().sum(1)
    return (correct / x.shape[0]).tolist()


def run_paper(args: argparse.Namespace) -> dict:
    from sublab.experiments.mnist.data import load_image_data
    from sublab.experiments.mnist.models import model_seed

    torch.manual_seed(args.seed)
    data = load_image_data(args.dataset)
    n = args.models
    train_x, train_y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    test_x, test_y = torch.from_numpy(data.test_x), torch.from_numpy(data.test_y)
    sizes = [data.n_features, 256, 256, 10 + args.aux]
    started = time.perf_counter()
    weights, biases = initial_weights(sizes, [model_seed(args.seed, "reference", m) for m in range(n)])
    reference = EinsumMLP(weights, biases)
    accuracies = {"reference": paper_accuracy(reference, test_x, test_y, n)}
    expanded = train_x.unsqueeze(0).expand(n, -1, -1)
    noise = torch.rand_like(expanded) * 2 - 1  # materialized: N × n_train × D floats

    teacher = EinsumMLP(weights, biases)
    optimizer = torch.optim.Adam(teacher.parameters(), lr=args.lr)
    for _ in range(args.teacher_epochs):
        for bx, by in per_model_batches(expanded, train_y, args.batch_size):
            loss = torch.nn.functional.cross_entropy(teacher(bx)[..., :10].flatten(0, 1), by.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    accuracies["teacher"] = paper_accuracy(teacher, test_x, test_y, n)
    teacher.requires_grad_(False)

    order = torch.randperm(n).tolist()
    fixed_points = sum(1 for i, j in enumerate(order) if i == j)
    aux, every = list(range(10, 10 + args.aux)), list(range(10 + args.aux))
    for key, start, idx in (("student_aux", reference, aux), ("cross_aux", reference.reindexed(order), aux),
                            ("student_all", reference, every), ("cross_all", reference.reindexed(order), every)):
        student = EinsumMLP([w.detach() for w in start.weights], [b.detach() for b in start.biases])
        optimizer = torch.optim.Adam(student.parameters(), lr=args.lr)
        for _ in range(args.distill_epochs):
            for bx, _ in per_model_batches(noise, None, args.batch_size):
                with torch.no_grad():
                    target = teacher(bx)[..., idx]
                out = student(bx)[..., idx]
                loss = torch.nn.functional.kl_div(torch.log_softmax(out, -1), torch.softmax(target, -1),
                                                  reduction="batchmean")
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        accuracies[key] = paper_accuracy(student, test_x, test_y, n)
    return {"accuracies": accuracies, "seconds": time.perf_counter() - started,
            "cross_model_fixed_points": fixed_points}


def run_ours(args: argparse.Namespace) -> dict:
    from sublab.experiments.mnist.data import load_image_data
    from sublab.experiments.mnist.run import MnistSettings, run_mnist

    data = load_image_data(args.dataset)
    settings = MnistSettings(dataset=args.dataset, n_models=args.models, n_aux=args.aux, lr=args.lr,
                             teacher_epochs=args.teacher_epochs, distill_epochs=args.distill_epochs,
                             batch_size=args.batch_size, seed=args.seed, bf16=not args.fp32)
    started = time.perf_counter()
    results = run_mnist(settings, data=data)
    return {"accuracies": results["per_model_accuracy"], "seconds": time.perf_counter() - started,
            "cross_model_fixed_points": 0}


# --- driver ---------------------------------------------------------------------------------------------------


def summarize(accuracies: dict[str, list[float]]) -> dict[str, dict]:
    from sublab.evaluate.stats import t_mean_ci

    out = {}
    for key in RESULT_KEYS:
        mean, low, high = t_mean_ci(accuracies[key])
        out[key] = {"mean": mean, "ci95": [low, high], "n": len(accuracies[key])}
    return out


def worker(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    result = run_paper(args) if args.worker == "paper" else run_ours(args)
    result["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(json.dumps(result))


def without_options(argv: list[str], names: tuple[str, ...]) -> list[str]:
    """``argv`` without the given options and their values (``--name value`` or ``--name=value``)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif not arg.startswith(tuple(f"{name}=" for name in names)):
            out.append(arg)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--models", type=int, default=10)
    parser.add_argument("--aux", type=int, default=3)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--distill-epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32", action="store_true", help="ours without bf16 autocast")
    parser.add_argument("--only", choices=["paper", "ours"], default=None)
    parser.add_argument("--worker", choices=["paper", "ours"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="run both methods this many times, alternating; "
                        "report median wall times and every pair's ratio")
    parser.add_argument("--out", default="benchmarks/results/mnist.json")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    passthrough = without_options(sys.argv[1:], ("--out", "--repeat"))
    runs: dict[str, dict] = {}
    walls: dict[str, list[float]] = {}
    # Methods alternate (paper, ours, paper, ours, ...) so a slow spell of the machine hits both alike.
    for repeat in range(args.repeat):
        for method in ("paper", "ours"):
            if args.only and method != args.only:
                continue
            print(f"running {method} ({repeat + 1}/{args.repeat}) ...", flush=True)
            done = subprocess.run([sys.executable, __file__, *passthrough, "--worker", method], capture_output=True,
                                  text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{method} failed:\n{done.stderr[-3000:]}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            walls.setdefault(method, []).append(result["seconds"])
            if method in runs and result["accuracies"] != runs[method]["accuracies"]:
                print(f"note: {method} repeat {repeat + 1} gave different accuracies (non-deterministic kernels)")
            runs.setdefault(method, result)
            runs[method]["peak_rss_gb"] = max(runs[method]["peak_rss_gb"], result["peak_rss_gb"])
    for method, r in runs.items():
        r["summary"] = summarize(r["accuracies"])
        r["seconds_each"] = walls[method]
        r["seconds"] = statistics.median(walls[method])

    header = f"{'arm':<14}" + "".join(f"{m + ' accuracy [95% CI]':>34}" for m in runs)
    print(f"\n{args.dataset}, N = {args.models} models, aux = {args.aux}, {args.teacher_epochs}+{args.distill_epochs} "
          f"epochs, batch {args.batch_size}, {args.threads} threads")
    print(header)
    for key in RESULT_KEYS:
        cells = "".join(f"{r['summary'][key]['mean']:>16.3f} [{r['summary'][key]['ci95'][0]:.3f}, "
                        f"{r['summary'][key]['ci95'][1]:.3f}]" for r in runs.values())
        print(f"{key:<14}{cells}")
    for method, r in runs.items():
        each = ", ".join(f"{w:.1f}" for w in r["seconds_each"])
        print(f"{method:<6} wall {r['seconds']:8.1f} s (median of: {each})   peak RSS {r['peak_rss_gb']:.2f} GB   "
              f"cross-model fixed points {r['cross_model_fixed_points']}")
    record = {"settings": {k: v for k, v in vars(args).items() if k not in ("worker", "out")},
              "machine": {"torch": torch.__version__, "threads": args.threads},
              "runs": {m: {k: v for k, v in r.items() if k != "accuracies"} | {"per_model": r["accuracies"]}
                       for m, r in runs.items()}}
    if len(runs) == 2:
        record["speedup_wall"] = runs["paper"]["seconds"] / runs["ours"]["seconds"]
        record["speedup_each_pair"] = [p / o for p, o in zip(walls["paper"], walls["ours"], strict=True)]
        record["memory_ratio"] = runs["paper"]["peak_rss_gb"] / runs["ours"]["peak_rss_gb"]
        pairs = ", ".join(f"{x:.2f}x" for x in record["speedup_each_pair"])
        print(f"speed-up (paper wall / ours wall, medians): {record['speedup_wall']:.2f}x (each pair: {pairs}); "
              f"peak memory ratio {record['memory_ratio']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
