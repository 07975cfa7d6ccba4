"""Explore the CPU demo recipe: how P(target) of a distilled student moves along training, per setting.

Trains one student per setting (same reference-written number data, same teacher) and evaluates P(target) by
exact scoring every ``--eval-every`` steps. Prints a table and writes JSON. Not a test: minutes per setting.

    python benchmarks/demo_recipe.py --data runs/demo/stages/filter-*/filtered.jsonl \
        --teacher-adapter runs/demo/stages/teacher-owl-*/adapter --target owl --out benchmarks/results/recipe.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from sublab.io import read_jsonl, write_json
from sublab.models.loading import load_tokenizer
from sublab.models.spec import ModelSpec
from sublab.train.settings import LoraSettings, TrainSettings
from sublab.train.trainer import train_model
from sublab.traits.preference.evaluate import EvalSettings, evaluate_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", required=True)
    parser.add_argument("--teacher-adapter", required=True)
    parser.add_argument("--target", default="owl")
    parser.add_argument("--also", default="dolphin", help="a second candidate to track")
    parser.add_argument("--settings", default='[{"batch_size": 16, "lr": 1e-3, "steps": 40}]',
                        help="JSON list of TrainSettings overrides")
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--n-questions", type=int, default=25)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results/demo_recipe.json")
    args = parser.parse_args()

    rows = read_jsonl(args.data)[: args.rows]
    tokenizer = load_tokenizer("smollm2-135m")
    eval_settings = EvalSettings(n_questions=args.n_questions)
    teacher = ModelSpec(adapter=args.teacher_adapter)
    results = []
    for overrides in json.loads(args.settings):
        base = {"method": "distill", "channel": "data", "lora": LoraSettings(r=8, alpha=16, init_seed=0)}
        settings = TrainSettings(**{**base, **overrides})
        trajectory = []
        started = time.time()
        train_seconds = [0.0]

        def on_step(step: int, loss: float, model: object, settings: TrainSettings = settings,
                    trajectory: list = trajectory, overrides: dict = overrides,
                    train_seconds: list = train_seconds) -> None:
            if (step + 1) % args.eval_every and step + 1 != settings.n_steps(len(rows)):
                return
            model.eval()
            tick = time.time()
            result = evaluate_model(model, tokenizer, args.target, eval_settings)
            train_seconds[0] += time.time() - tick
            model.train()
            point = {"step": step + 1, "loss": loss, "p_target": result["p_target"],
                     "p_also": result["distribution"].get(args.also)}
            trajectory.append(point)
            print(json.dumps({"settings": overrides, **point}), flush=True)

        summary = train_model("smollm2-135m", rows, Path("/tmp/recipe_student"), settings, teacher=teacher,
                              progress=False, on_step=on_step)
        results.append({"settings": overrides, "n_rows": len(rows), "trajectory": trajectory,
                        "train_seconds": round(time.time() - started - train_seconds[0], 1),
                        "final_loss": summary["final_loss"]})
    write_json(args.out, {"target": args.target, "n_questions": args.n_questions, "runs": results})
    print(f"{'settings':50s} {'steps':>5s} {'P(target)':>10s} {'95% CI':>20s} {'train s':>8s}")
    for run in results:
        for point in run["trajectory"]:
            low, high = point["p_target"]["ci95"]
            print(f"{json.dumps(run['settings']):50s} {point['step']:5d} {point['p_target']['mean']:10.4f} "
                  f"[{low:.4f}, {high:.4f}] {run['train_seconds']:8.0f}")


if __name__ == "__main__":
    main()
