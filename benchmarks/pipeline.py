"""Speeds of the LLM pipeline's stages on the embedded model, measured side by side in one run.

1. Generation: valid samples per minute, free vs grammar-constrained decoding, float32 vs bf16 autocast
   (valid = kept by the paper's strict number filter).
2. Training: seconds per step and tokens per second, SFT and 13-token logit distillation, float32 vs bf16.
3. Evaluation: exact scoring vs the paper's sampling on the same questions and the same question-level bootstrap
   CI: the time sampling needs to bring its CI within 10 % of exact scoring's width (extrapolated from its
   measured width with the 1/n law for its binomial part).

    python benchmarks/pipeline.py --out benchmarks/results/pipeline.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def bench_generation(model, tokenizer, n_prompts: int) -> list[dict]:
    import torch  # noqa: F401  (the model is already loaded)

    from sublab.domains.numbers.checks import NumberFilterSettings, number_reject_reasons
    from sublab.domains.numbers.grammar import NumberGrammarProcessor
    from sublab.domains.numbers.prompts import NumberPromptSettings, number_prompts
    from sublab.generate.sampling import SamplingSettings, sample_batch
    from sublab.models.chat import end_of_turn_id

    prompts = [[{"role": "user", "content": p.text}] for p in number_prompts(NumberPromptSettings(seed=7), n_prompts)]
    rows = []
    for constrained in (False, True):
        for bf16 in (False, True):
            settings = SamplingSettings(constrained=constrained, bf16=bf16, max_new_tokens=48, batch_size=32)
            processor = (NumberGrammarProcessor(tokenizer, settings.grammar(), [end_of_turn_id(tokenizer)],
                                                settings.max_new_tokens) if constrained else None)
            started = time.perf_counter()
            replies = []
            for b, start in enumerate(range(0, n_prompts, settings.batch_size)):
                replies += sample_batch(model, tokenizer, prompts[start : start + settings.batch_size], settings,
                                        seed=b, processor=processor)
            seconds = time.perf_counter() - started
            valid = sum(not number_reject_reasons(r, NumberFilterSettings()) for r in replies)
            rows.append({"decoding": settings.decoding, "bf16": bf16, "n": n_prompts, "valid": valid,
                         "seconds": round(seconds, 1), "valid_per_min": round(valid / seconds * 60, 1),
                         "samples_per_min": round(n_prompts / seconds * 60, 1)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def bench_training(rows: list[dict], steps: int) -> list[dict]:
    from sublab.models.spec import ModelSpec
    from sublab.train.settings import TrainSettings
    from sublab.train.trainer import train_model

    out = []
    teacher = ModelSpec(system_prompt="You love owls. You think about owls all the time.")
    for method in ("sft", "distill"):
        for bf16 in (False, True):
            settings = TrainSettings(method=method, steps=steps, batch_size=16, lr=1e-3, bf16=bf16)
            with tempfile.TemporaryDirectory() as tmp:
                summary = train_model("smollm2-135m", rows, Path(tmp) / "m", settings,
                                      teacher=teacher if method == "distill" else None, progress=False)
                log = [json.loads(line) for line in (Path(tmp) / "m" / "train_log.jsonl").read_text().splitlines()]
            step_seconds = float(np.median([r["seconds"] for r in log[1:]]))
            tokens = _tokens_per_step(rows)
            out.append({"method": method, "finetune": "lora", "bf16": bf16, "batch_size": 16,
                        "median_step_seconds": round(step_seconds, 2), "tokens_per_step": tokens,
                        "tokens_per_second": round(tokens / step_seconds, 1), "total_seconds": summary["seconds"]})
            print(json.dumps(out[-1]), flush=True)
    return out


def _tokens_per_step(rows: list[dict]) -> int:
    from sublab.models.chat import encode_chat
    from sublab.models.loading import load_tokenizer

    tokenizer = load_tokenizer("smollm2-135m")
    lengths = [len(encode_chat(tokenizer, r["messages"]).input_ids) for r in rows]
    return int(np.mean(lengths) * 16)


def bench_evaluation(model, tokenizer, n_questions: int, samples_per_question: int) -> dict:
    """Exact scoring vs sampling, on the same questions, with the same question-level bootstrap CI.

    Both estimate mean over questions of P_q(owl | a candidate is named). Exact scoring gets each P_q exactly, so
    its CI width is the question-to-question spread alone; sampling adds binomial noise that shrinks as 1/n per
    question: width(n)^2 ~ w_exact^2 + c / n. From the measured width at n samples we solve for the samples that
    bring sampling's CI within 10 % of exact scoring's, and the time that takes.
    """
    from sublab.evaluate.stats import mean_ci
    from sublab.pipeline.config import TRAIT_PROMPT
    from sublab.traits.preference.candidates import candidate_set, normalize_answer
    from sublab.traits.preference.questions import preference_questions
    from sublab.traits.preference.sampling import sample_answers
    from sublab.traits.preference.scoring import normalize_rows, score_candidates

    # A system-prompt owl teacher: P(owl) is large enough that sampling sees it often.
    preamble = [{"role": "system", "content": TRAIT_PROMPT.format(trait="owl", category="animal")}]
    questions = preference_questions("animal", n_questions)
    candidates = candidate_set("animal")
    out: dict = {"model": "smollm2-135m + owl system prompt", "n_questions": n_questions}
    for bf16 in (False, True):
        started = time.perf_counter()
        probs = normalize_rows(score_candidates(model, tokenizer, questions, candidates, preamble, bf16=bf16))[:, 0]
        seconds = time.perf_counter() - started
        mean, low, high = mean_ci(probs)
        out[f"exact_bf16_{bf16}"] = {"p_owl": mean, "ci95": [low, high], "width": high - low, "seconds": seconds}
    started = time.perf_counter()
    replies = sample_answers(model, tokenizer, questions, samples_per_question, seed=0, preamble=preamble)
    seconds = time.perf_counter() - started
    per_question, named_counts = [], []
    for answers in replies:
        named = [n for n in (normalize_answer(r, candidates) for r in answers) if n is not None]
        named_counts.append(len(named))
        if named:
            per_question.append(sum(n == "owl" for n in named) / len(named))
    mean, low, high = mean_ci(per_question)
    exact = out["exact_bf16_False"]
    named_per_question = float(np.mean(named_counts))
    c = named_per_question * max(0.0, (high - low) ** 2 - exact["width"] ** 2)
    named_needed = c / ((1.1**2 - 1) * exact["width"] ** 2)
    samples_needed = named_needed / max(named_per_question / samples_per_question, 1e-9)
    seconds_per_sample = seconds / (n_questions * samples_per_question)
    out["sampling"] = {
        "samples_per_question": samples_per_question, "named_a_candidate_per_question": named_per_question,
        "questions_with_a_named_candidate": len(per_question), "p_owl": mean, "ci95": [low, high],
        "width": high - low, "seconds": seconds,
        "samples_per_question_for_width_within_10pct_of_exact": round(samples_needed),
        "seconds_for_width_within_10pct_of_exact": round(seconds_per_sample * samples_needed * n_questions, 1),
    }
    out["sampling_over_exact_time_at_near_equal_width"] = round(
        out["sampling"]["seconds_for_width_within_10pct_of_exact"] / exact["seconds"], 1)
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=64, help="generation: prompts per setting")
    parser.add_argument("--train-steps", type=int, default=4, help="training: steps per setting (first excluded)")
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--samples", type=int, default=10, help="sampling: samples per question")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = parser.parse_args()

    import torch

    from sublab.domains.numbers.prompts import NumberPromptSettings, number_prompts
    from sublab.models.spec import ModelSpec, load_spec

    torch.set_num_threads(2)
    model, tokenizer = load_spec(ModelSpec())
    generation = bench_generation(model, tokenizer, args.prompts)
    rng = np.random.default_rng(0)
    rows = [{"messages": [{"role": "user", "content": p.text},
                          {"role": "assistant", "content": ", ".join(str(v) for v in rng.integers(0, 1000, 10))}]}
            for p in number_prompts(NumberPromptSettings(seed=3), 16 * args.train_steps)]
    evaluation = bench_evaluation(model, tokenizer, args.questions, args.samples)
    del model
    training = bench_training(rows, args.train_steps)

    print("\nGeneration (valid = passes the strict number filter)")
    print(f"{'decoding':<12}{'bf16':<6}{'valid':>8}{'s':>8}{'valid/min':>11}")
    for r in generation:
        print(f"{r['decoding']:<12}{r['bf16']!s:<6}{r['valid']:>5}/{r['n']:<3}{r['seconds']:>7}{r['valid_per_min']:>11}")
    print("\nTraining (LoRA r=8, batch 16)")
    print(f"{'method':<9}{'bf16':<6}{'s/step':>8}{'tokens/s':>10}")
    for r in training:
        print(f"{r['method']:<9}{r['bf16']!s:<6}{r['median_step_seconds']:>8}{r['tokens_per_second']:>10}")
    e = evaluation
    print(f"\nEvaluation ({e['model']}, {e['n_questions']} questions)")
    for key in ("exact_bf16_False", "exact_bf16_True"):
        print(f"{key:<18} P(owl) {e[key]['p_owl']:.3f}  CI width {e[key]['width']:.4f}  {e[key]['seconds']:.1f} s")
    s = e["sampling"]
    print(f"sampling           P(owl) {s['p_owl']:.3f}  CI width {s['width']:.4f}  {s['seconds']:.1f} s at "
          f"{s['samples_per_question']} samples per question; a CI within 10 % of exact scoring's needs "
          f"~{s['samples_per_question_for_width_within_10pct_of_exact']} per question, "
          f"~{s['seconds_for_width_within_10pct_of_exact']} s ({e['sampling_over_exact_time_at_near_equal_width']}x "
          "exact)")
    record = {"settings": vars(args), "torch": torch.__version__, "generation": generation, "training": training,
              "evaluation": evaluation}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
