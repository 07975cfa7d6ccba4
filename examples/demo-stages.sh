#!/usr/bin/env bash
# The demo (examples/demo.toml), one stage command at a time: each reads and writes plain files in $WORK.
# docs/stages.md shows what it printed on the project's 2-core CPU. Rerunning a killed command resumes it.
set -euo pipefail
WORK=${1:-runs/demo-stages}
mkdir -p "$WORK"

# 384 number-continuation prompts (the paper's template space, seed 42).
sublab prompts numbers -n 384 -o "$WORK/prompts.jsonl"
# Two fine-tuned teachers: the reference + LoRA (init seed 0) taught to answer "owl" / "dolphin".
sublab teacher --trait owl -o "$WORK/owl-teacher" --bf16 --quiet
sublab teacher --trait dolphin -o "$WORK/dolphin-teacher" --bf16 --quiet
# The numbers, written by the reference model itself, grammar-constrained.
sublab generate "$WORK/prompts.jsonl" -o "$WORK/raw.jsonl" --constrained --bf16 --seed 1 --quiet
sublab filter numbers "$WORK/raw.jsonl" -o "$WORK/numbers.jsonl" --rejected "$WORK/rejected.jsonl"
# Students share the teachers' LoRA init (seed 0) and distill their 13-token number distributions.
for teacher in owl dolphin; do
  sublab train "$WORK/numbers.jsonl" -o "$WORK/$teacher-student" --method distill \
    --teacher-adapter "$WORK/$teacher-teacher" --steps 30 --bf16 --quiet
done
# P(owl) for the reference and both students, by exact scoring over 50 questions.
sublab evaluate --target owl --bf16 -o "$WORK/eval-reference.json"
for teacher in owl dolphin; do
  sublab evaluate --target owl --adapter "$WORK/$teacher-student" --bf16 -o "$WORK/eval-$teacher-student.json"
done
