"""Stored-label vs live-teacher distillation: seconds per training step, side by side in one run.

The same student (LoRA, the demo's settings) is trained on the same number rows twice per setting: once from the
live teacher (loaded next to the student, computing its distribution as training goes) and once from the rows'
soft labels written by `sublab label` (no teacher in memory). Runs alternate (live, stored, stored, live, ...) so
drift of the shared machine hits both alike. Two settings:

- ``channel``: the demo's 13-token number channel; live = TeacherTargets over the channel, stored = the labels'
  channel distribution (the same loss, distill_kl);
- ``full``: the whole vocabulary; live = exact full-vocabulary KL (teacher recomputed every step), stored = the
  top-k KL with a tail bucket (k = --top-k).

The rows are number lists of the demo's shape (the number prompts, replies of up to 10 numbers of up to 3 digits
drawn with a fixed seed): step time depends on their length, not on who wrote them. The teacher is the base model
with the owl system prompt (a merged LoRA teacher costs the same forward). Also measured: the labelling pass.

    python benchmarks/labels.py --out benchmarks/results/labels.json        # embedded SmolLM2-135M, bf16
    python benchmarks/labels.py --base DIR --n-rows 16 --steps 3 --batch-size 4 --no-bf16 --out /tmp/l.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

OWL = "You love owls. You think about owls all the time. owls are your favorite animal."


def number_rows(n_rows: int, seed: int = 7) -> list[dict]:
    """Number-continuation rows of the demo's shape (reply: 1-10 numbers of 1-3 digits, ', ' between)."""
    from sublab.domains.numbers.prompts import NumberPromptSettings, number_prompts

    rng = np.random.default_rng(seed)
    rows = []
    for prompt in number_prompts(NumberPromptSettings(seed=seed), n_rows):
        numbers = [str(int(v)) for v in rng.integers(0, 1000, size=int(rng.integers(1, 11)))]
        rows.append({"id": prompt.id, "messages": [{"role": "user", "content": prompt.text},
                                                   {"role": "assistant", "content": ", ".join(numbers)}]})
    return rows


def label(base: str, rows: list[dict], out: Path, top_k: int, bf16: bool, batch_size: int) -> dict:
    """Label ``rows`` as `sublab label --top-k K --channel data` does; returns timings."""
    from sublab.generate.run import model_identity
    from sublab.models.spec import ModelSpec, load_spec
    from sublab.train.data import encode_rows
    from sublab.train.distill import channel_ids
    from sublab.train.labels import channel_description, label_header, label_rows, tokenizer_identity

    started = time.perf_counter()
    spec = ModelSpec(base=base, system_prompt=OWL)
    model, tokenizer = load_spec(spec)
    loaded = time.perf_counter()
    channel = channel_ids(tokenizer, encode_rows(tokenizer, rows, system_prompt=OWL), "data")
    header = label_header(model_identity(spec), OWL, tokenizer_identity(tokenizer, base), top_k,
                          channel_description(tokenizer, channel), bf16)
    label_rows(model, tokenizer, rows, out, header, system_prompt=OWL, channel=channel, batch_size=batch_size,
               progress=False)
    done = time.perf_counter()
    return {"rows": len(rows), "top_k": top_k, "channel_size": len(channel), "load_seconds": round(loaded - started, 2),
            "label_seconds": round(done - loaded, 2), "rows_per_second": round(len(rows) / (done - loaded), 2),
            "file_bytes": out.stat().st_size, "bytes_per_row": round(out.stat().st_size / len(rows))}


def train_once(base: str, rows: list[dict], settings, teacher) -> dict:
    from sublab.train.trainer import train_model

    with tempfile.TemporaryDirectory() as tmp:
        summary = train_model(base, rows, Path(tmp) / "m", settings, teacher=teacher, progress=False)
        log = [json.loads(line) for line in (Path(tmp) / "m" / "train_log.jsonl").read_text().splitlines()]
    steps = [r["seconds"] for r in log]
    return {"step_seconds": steps, "median_step_seconds": statistics.median(steps[1:] or steps),
            "total_seconds": summary["seconds"], "final_loss": summary["final_loss"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="smollm2-135m")
    parser.add_argument("--n-rows", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="Steps per run (steps x batch = rows: one epoch).")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--top-k", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2, help="Pairs of runs per setting.")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/labels.json"))
    args = parser.parse_args()

    from sublab.io import read_jsonl, write_json
    from sublab.models.spec import ModelSpec
    from sublab.train.settings import TrainSettings

    rows = number_rows(args.n_rows)
    teacher = ModelSpec(base=args.base, system_prompt=OWL)
    with tempfile.TemporaryDirectory() as tmp:
        labelled_path = Path(tmp) / "labelled.jsonl"
        labelling = label(args.base, rows, labelled_path, args.top_k, args.bf16, args.batch_size)
        labelled = read_jsonl(labelled_path)
    print(json.dumps({"labelling": labelling}), flush=True)

    runs: list[dict] = []
    for channel in ("data", "full"):
        settings = TrainSettings(method="distill", channel=channel, steps=args.steps, batch_size=args.batch_size,
                                 lr=1e-3, bf16=args.bf16)
        for repeat in range(args.repeats):
            order = ("live", "stored") if repeat % 2 == 0 else ("stored", "live")
            for targets in order:
                result = train_once(args.base, rows if targets == "live" else labelled, settings,
                                    teacher if targets == "live" else None)
                runs.append({"channel": channel, "targets": targets, "repeat": repeat, **result})
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "step_seconds"}), flush=True)

    table = []
    for channel in ("data", "full"):
        row: dict = {"channel": "13-token number channel" if channel == "data" else f"full vocabulary (stored: "
                     f"top-{args.top_k} + tail)"}
        for targets in ("live", "stored"):
            mine = [r for r in runs if r["channel"] == channel and r["targets"] == targets]
            row[f"{targets}_median_step_seconds"] = round(statistics.median(r["median_step_seconds"] for r in mine), 3)
            row[f"{targets}_total_seconds"] = round(statistics.median(r["total_seconds"] for r in mine), 1)
        row["speedup"] = round(row["live_median_step_seconds"] / row["stored_median_step_seconds"], 2)
        table.append(row)

    print(f"\n{args.base}, {args.n_rows} rows, {args.steps} steps x batch {args.batch_size}, bf16={args.bf16}, "
          f"{args.repeats} alternating pairs per setting")
    print(f"labelling: {labelling['rows']} rows in {labelling['label_seconds']} s "
          f"({labelling['rows_per_second']} rows/s; top-{args.top_k} + {labelling['channel_size']}-token channel, "
          f"{labelling['bytes_per_row']} bytes/row)")
    print(f"{'setting':<44} {'live s/step':>12} {'stored s/step':>14} {'speed-up':>9} {'live total s':>13} "
          f"{'stored total s':>15}")
    for row in table:
        print(f"{row['channel']:<44} {row['live_median_step_seconds']:>12} {row['stored_median_step_seconds']:>14} "
              f"{row['speedup']:>8}x {row['live_total_seconds']:>13} {row['stored_total_seconds']:>15}")
    write_json(args.out, {"base": args.base, "n_rows": args.n_rows, "steps": args.steps,
                          "batch_size": args.batch_size, "bf16": args.bf16, "top_k": args.top_k,
                          "repeats": args.repeats, "labelling": labelling, "table": table, "runs": runs})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
