"""The effect of k on the numbers demo: students distilled from `sublab label` output vs the live teacher.

Runs the demo's recipe stage by stage (the commands of examples/demo-stages.sh), then trains one student per way
of getting the owl teacher's targets, all with the demo's student settings (LoRA, init seed 0, 30 steps x 16,
lr 1e-3, bf16), and scores P(owl) for each:

| student | targets |
|---|---|
| live-channel | the live owl teacher over the 13-token number channel (the demo's trait student) |
| stored-channel | `sublab label --channel data` output: the same channel distribution, stored (same loss) |
| stored-k20, -k5, -k1 | `sublab label --top-k K` output, trained with `--channel full`: top-k KL + tail bucket |
| live-full | the live owl teacher over the full vocabulary (what the top-k labels approximate) |
| control | the live dolphin teacher over the channel (the demo's control student) |

Every command is printed before it runs and skipped when its output exists, so a rerun continues where a killed
run stopped (generate and label also resume inside a file). Results: a table on stdout and --out (JSON).

    python benchmarks/labels_k.py --work runs/labels-k --out benchmarks/results/labels_k.json   # embedded model
    python benchmarks/labels_k.py --base DIR --work /tmp/k --n-prompts 16 --steps 2 --teacher-steps 2 \\
        --n-questions 3 --batch-size 4 --no-bf16 --out /tmp/k.json                              # a quick check
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

KS = (20, 5, 1)


def sublab(*args: object, output: Path) -> float:
    """Run one `sublab` command unless ``output`` exists; returns its seconds (0 when skipped)."""
    if output.exists() and not output.with_name(output.name + ".partial").exists():
        print(f"skip (exists): {output}", flush=True)
        return 0.0
    command = [sys.executable, "-m", "sublab", *map(str, args)]
    print("$ sublab " + shlex.join(command[3:]), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--work", type=Path, default=Path("runs/labels-k"))
    parser.add_argument("--n-prompts", type=int, default=384)
    parser.add_argument("--steps", type=int, default=30, help="Student steps.")
    parser.add_argument("--teacher-steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-questions", type=int, default=50)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/labels_k.json"))
    args = parser.parse_args()

    work, base = args.work, args.base
    work.mkdir(parents=True, exist_ok=True)
    bf16 = ["--bf16"] if args.bf16 else []
    quiet = ["--quiet"]
    seconds: dict[str, float] = {}

    prompts, raw, numbers = work / "prompts.jsonl", work / "raw.jsonl", work / "numbers.jsonl"
    seconds["prompts"] = sublab("prompts", "numbers", "-n", args.n_prompts, "-o", prompts, output=prompts)
    for trait in ("owl", "dolphin"):
        teacher = work / f"{trait}-teacher"
        seconds[f"teacher-{trait}"] = sublab("teacher", "--trait", trait, "--base", base, "-o", teacher, "--steps",
                                             args.teacher_steps, "--batch-size", args.batch_size, *bf16, *quiet,
                                             output=teacher)
    seconds["generate"] = sublab("generate", prompts, "-o", raw, "--model", base, "--constrained", "--seed", 1, *bf16,
                                 *quiet, output=raw)
    seconds["filter"] = sublab("filter", "numbers", raw, "-o", numbers, output=numbers)

    owl = work / "owl-teacher"
    labelled = {k: work / f"labels-k{k}.jsonl" for k in KS}
    for k, path in labelled.items():
        channel = ["--channel", "data"] if k == max(KS) else []
        seconds[f"label-k{k}"] = sublab("label", numbers, "-o", path, "--model", base, "--adapter", owl, "--top-k", k,
                                        *channel, *bf16, *quiet, output=path)

    common = ["--base", base, "--method", "distill", "--steps", args.steps, "--batch-size", args.batch_size,
              "--lr", 1e-3, "--init-seed", 0, *bf16, *quiet]
    students = {
        "live-channel": [numbers, "--teacher-adapter", owl],
        "stored-channel": [labelled[max(KS)]],
        **{f"stored-k{k}": [labelled[k], "--channel", "full"] for k in KS},
        "live-full": [numbers, "--teacher-adapter", owl, "--channel", "full"],
        "control": [numbers, "--teacher-adapter", work / "dolphin-teacher"],
    }
    for name, extra in students.items():
        seconds[f"student-{name}"] = sublab("train", extra[0], "-o", work / f"student-{name}", *common, *extra[1:],
                                            output=work / f"student-{name}")

    evaluations = {"reference": []} | {name: ["--adapter", work / f"student-{name}"] for name in students}
    results = []
    for name, extra in evaluations.items():
        path = work / f"eval-{name}.json"
        seconds[f"eval-{name}"] = sublab("evaluate", "--target", "owl", "--model", base, *extra, "--n-questions",
                                         args.n_questions, *bf16, "-o", path, output=path)
        evaluation = json.loads(path.read_text())
        training = work / f"student-{name}" / "training.json"
        summary = json.loads(training.read_text()) if training.is_file() else {}
        results.append({"model": name, "p_owl": evaluation["p_target"]["mean"],
                        "ci95": evaluation["p_target"]["ci95"],
                        "first_loss": summary.get("first_loss"), "final_loss": summary.get("final_loss")})

    print(f"\n{base}: P(owl) of students distilled from stored labels vs the live teacher "
          f"({args.steps} steps x {args.batch_size}, {args.n_questions} questions, bf16={args.bf16})")
    print(f"{'model':<16} {'P(owl)':>8} {'95 % CI':>20} {'loss first -> final':>22}")
    for row in results:
        low, high = row["ci95"]
        losses = "" if row["first_loss"] is None else f"{row['first_loss']:.4f} -> {row['final_loss']:.4f}"
        print(f"{row['model']:<16} {row['p_owl']:>8.4f} {f'[{low:.4f}, {high:.4f}]':>20} {losses:>22}")
    from sublab.io import write_json

    write_json(args.out, {"base": base, "work": str(work), "n_prompts": args.n_prompts, "steps": args.steps,
                          "teacher_steps": args.teacher_steps, "batch_size": args.batch_size,
                          "n_questions": args.n_questions, "bf16": args.bf16, "results": results, "seconds": seconds})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
