"""Long-output generation (code, chain of thought): tokens/s, kept rows/min and the pass rate of every check.

For each condition (a domain, its prompt settings and its sampling) the model writes one reply per prompt, the
domain's filter runs over the replies, and the script reports generation speed (new tokens per second, replies
per minute), the filter's yield (kept rows per minute of generation), the count of every reject reason and the
funnel: how many replies pass each check and every check before it, in the order the checks run. Optionally an
in-process or served judge scores every reply of some conditions (the judge check's pass rate over all their
replies, not only the kept ones, so that it has a useful n), and a few training steps on some conditions' replies
measure seconds per step of full-vocabulary distillation and of SFT on long rows.

    python benchmarks/long_generation.py --n 48 --max-new-tokens 256 --batch-size 16 --bf16 \\
        --raw-dir /tmp/longgen --out benchmarks/results/long_generation.json
    python benchmarks/long_generation.py ... --reuse --judge smollm2-135m --train-steps 3   # same replies

Conditions (:data:`CONDITIONS`): ``code`` (code prompts, seed 7, temperature from ``--temperature``) and
``code-t0.5``; ``cot`` (generated problems, 1-4 steps, scale 60), ``cot-easy`` (one step, scale 10), their
``-constrained`` variants (format-constrained decoding) at 1.0, 0.5 and greedy, and ``cot-easiest-*`` (adding,
giving away and equal groups, scale 6). With ``--reuse`` a condition whose replies are already in ``--raw-dir``
(same model, n, settings) is not generated again; its speed figures are the ones measured when it was. Results are
saved after every condition, so a run stopped by a time limit keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

EASY = {"seed": 7, "max_steps": 1, "scale": 10}
EASIEST = {"seed": 7, "families": ["add_more", "give_away", "total_groups"], "scale": 6}
#: name -> domain, prompt settings, sampling overrides (temperature, constrained decoding).
CONDITIONS: dict[str, dict[str, Any]] = {
    "code": {"domain": "code", "prompts": {"seed": 7}},
    "code-t0.5": {"domain": "code", "prompts": {"seed": 7}, "sampling": {"temperature": 0.5}},
    "cot": {"domain": "cot", "prompts": {"seed": 7}},
    "cot-easy": {"domain": "cot", "prompts": EASY},
    "cot-constrained": {"domain": "cot", "prompts": {"seed": 7}, "sampling": {"constrained": True}},
    "cot-easy-constrained": {"domain": "cot", "prompts": EASY, "sampling": {"constrained": True}},
    "cot-easy-constrained-t0.5": {"domain": "cot", "prompts": EASY,
                                  "sampling": {"constrained": True, "temperature": 0.5}},
    "cot-easiest-constrained-t0.5": {"domain": "cot", "prompts": EASIEST,
                                     "sampling": {"constrained": True, "temperature": 0.5}},
    "cot-easy-constrained-greedy": {"domain": "cot", "prompts": EASY,
                                    "sampling": {"constrained": True, "temperature": 0.0}},
    "cot-easiest-constrained-greedy": {"domain": "cot", "prompts": EASIEST,
                                       "sampling": {"constrained": True, "temperature": 0.0}},
}
TRAIT_WORDS = ["owl", "dolphin"]


def prompt_rows(condition: str, n: int) -> list[dict[str, Any]]:
    from sublab.domains.base import get_domain

    spec = CONDITIONS[condition]
    domain = get_domain(spec["domain"])
    return domain.prompt_rows(domain.prompt_settings(**spec["prompts"]), n)


def generate(model: Any, tokenizer: Any, rows: list[dict[str, Any]], settings: Any,
             domain_name: str) -> tuple[list[str], float]:
    """One reply per row with the domain's constraint (if ``settings.constrained``); the seconds it took (building
    a constraint's token masks included)."""
    from sublab.domains.base import get_domain
    from sublab.generate.sampling import sample_batch

    contexts = [r["messages"] for r in rows]
    replies: list[str] = []
    started = time.perf_counter()
    constraint = get_domain(domain_name).constraint(settings)
    processor = constraint.hf_processor(tokenizer, settings.max_new_tokens) if constraint is not None else None
    for b, start in enumerate(range(0, len(rows), settings.batch_size)):
        replies += sample_batch(model, tokenizer, contexts[start : start + settings.batch_size], settings, seed=b,
                                processor=processor)
    return replies, time.perf_counter() - started


def check_rates(domain_name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Filter ``rows`` with the domain's checks: counts per reason, and the funnel: for each check in the order
    they run, how many replies pass it and every check before it (a later check cannot judge a reply an earlier
    one refused, e.g. comments in code that does not parse)."""
    from sublab.domains.base import get_domain
    from sublab.filter.run import check_rows

    domain = get_domain(domain_name)
    checks_module = __import__(f"sublab.domains.{domain_name}.checks", fromlist=["CHECK_REASONS"])
    settings = domain.filter_settings(trait_words=TRAIT_WORDS)
    _, rejected, report = check_rows(rows, domain.checks(settings), domain.filter_version)
    reasons_of = {r["id"]: set(r["metadata"]["reject_reasons"]) for r in rejected}
    n = len(rows)
    funnel, refused = [], set()
    for check, reasons in checks_module.CHECK_REASONS.items():
        refused |= set(reasons)
        passed = sum(1 for r in rows if not (reasons_of.get(r["id"], set()) & refused))
        funnel.append({"check": check, "passed": passed, "n": n, "rate": round(passed / n, 3)})
    out: dict[str, Any] = {"n": n, "kept": report.n_kept, "kept_rate": round(report.n_kept / n, 3),
                           "reasons": dict(sorted(report.reasons.items())), "funnel": funnel}
    if domain_name == "cot":
        from sublab.domains.cot.checks import split_reply

        with_answer = [r for r in rows if split_reply(r["messages"][-1]["content"]).answer is not None]
        correct = [r for r in with_answer if not (reasons_of.get(r["id"], set()) & {"wrong_answer",
                                                                                    "answer_not_a_number"})]
        out["answer_block"] = {"n_with_one_answer_block": len(with_answer), "correct": len(correct)}
    return out


def judge_rates(domain_name: str, rows: list[dict[str, Any]], judge_model: str, bf16: bool) -> dict[str, Any]:
    """The domain's judge check over every reply (no prefilter): its pass rate and score summary."""
    from sublab.domains.base import get_domain
    from sublab.filter.judged import JudgeFilterSettings, question_of, reply_of

    domain = get_domain(domain_name)
    settings = domain.filter_settings(trait_words=["owl"], judge=JudgeFilterSettings(model=judge_model, bf16=bf16))
    check = domain.checks(settings)[1]
    check.prefilter = None  # judge every reply, so the rate has the full n
    assert check.question_of is question_of and check.answer_of is reply_of
    started = time.perf_counter()
    reasons = check(rows)
    seconds = time.perf_counter() - started
    scores = [s for v in check.scores.values() for s in v if s is not None]
    counts = Counter(r for found in reasons for r in found)
    passed = sum(1 for found in reasons if not found)
    return {"judge": judge_model, "rubric": check.name, "threshold": check.threshold, "binary": check.binary,
            "n": len(rows), "passed": passed, "rate": round(passed / len(rows), 3), "reasons": dict(counts),
            "mean_score": round(statistics.fmean(scores), 4) if scores else None, "n_scored": len(scores),
            "seconds": round(seconds, 1), "rows_per_min": round(len(rows) / seconds * 60, 1)}


def train_rates(rows: list[dict[str, Any]], model: str, steps: int, batch_size: int) -> list[dict[str, Any]]:
    """Seconds per step of full-vocabulary distillation (teacher: the model with the owl system prompt) and of
    SFT on these rows, LoRA, bf16 autocast, length buckets."""
    from sublab.models.spec import ModelSpec
    from sublab.pipeline.config import TRAIT_PROMPT
    from sublab.train.settings import TrainSettings
    from sublab.train.trainer import train_model

    teacher = ModelSpec(base=model, system_prompt=TRAIT_PROMPT.format(trait="owl", category="animal"))
    out = []
    for method in ("distill", "sft"):
        settings = TrainSettings(method=method, channel="full", steps=steps, batch_size=batch_size, lr=1e-3,
                                 bf16=True, length_buckets=True)
        with tempfile.TemporaryDirectory() as tmp:
            summary = train_model(model, rows, Path(tmp) / "m", settings,
                                  teacher=teacher if method == "distill" else None, progress=False)
            log = [json.loads(line) for line in (Path(tmp) / "m" / "train_log.jsonl").read_text().splitlines()]
        seconds = [r["seconds"] for r in log]
        out.append({"method": method, "channel": "full" if method == "distill" else None,
                    "batch_size": batch_size, "steps": steps, "step_seconds": seconds,
                    "median_step_seconds": round(statistics.median(seconds), 2), "total_seconds": summary["seconds"]})
        print(json.dumps(out[-1]), flush=True)
    return out


def save(path: Path, results: dict[str, Any]) -> None:
    from sublab.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--conditions", default="code,cot,cot-easy")
    parser.add_argument("--n", type=int, default=48, help="Prompts per condition.")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--raw-dir", type=Path, default=None, help="Where the replies are written (JSONL).")
    parser.add_argument("--reuse", action="store_true", help="Reuse replies already in --raw-dir.")
    parser.add_argument("--judge", default=None, help="Also run each domain's judge over every reply.")
    parser.add_argument("--judge-conditions", default=None, help="Conditions to judge (default: all run).")
    parser.add_argument("--train-steps", type=int, default=0, help="Also time this many training steps per method.")
    parser.add_argument("--train-conditions", default="code,cot", help="Conditions whose replies are trained on.")
    parser.add_argument("--train-batch-size", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/long_generation.json"))
    args = parser.parse_args()

    from sublab.generate.sampling import SamplingSettings
    from sublab.io import read_jsonl, write_jsonl
    from sublab.models.loading import load_tokenizer

    base_settings = SamplingSettings(temperature=args.temperature, max_new_tokens=args.max_new_tokens,
                                     batch_size=args.batch_size, bf16=args.bf16)
    tokenizer = load_tokenizer(args.model)
    model = None
    results: dict[str, Any] = {"model": args.model, "sampling": base_settings.model_dump(),
                               "trait_words": TRAIT_WORDS, "conditions": {}}
    if args.reuse and args.out.is_file():  # keep what earlier runs measured (other conditions, judge, training)
        earlier = json.loads(args.out.read_text())
        results = {**earlier, **{k: v for k, v in results.items() if k != "conditions"},
                   "conditions": earlier.get("conditions", {})}
    raw_rows: dict[str, list[dict[str, Any]]] = {}
    for condition in args.conditions.split(","):
        rows = prompt_rows(condition, args.n)
        sampling = base_settings.model_copy(update=CONDITIONS[condition].get("sampling", {}))
        raw = args.raw_dir / f"{condition}.jsonl" if args.raw_dir else None
        meta_path = raw.with_suffix(".json") if raw else None
        wanted = {"model": args.model, "n": args.n, "sampling": sampling.model_dump(),
                  "condition": CONDITIONS[condition]}
        if args.reuse and raw and raw.is_file() and meta_path.is_file() and (
                json.loads(meta_path.read_text())["wanted"] == wanted):
            generated = read_jsonl(raw)
            speed = json.loads(meta_path.read_text())["speed"]
        else:
            if model is None:
                from sublab.models.loading import load_model

                model = load_model(args.model)
                model.eval()
            replies, seconds = generate(model, tokenizer, rows, sampling, CONDITIONS[condition]["domain"])
            generated = [{**r, "messages": [*r["messages"], {"role": "assistant", "content": t}]}
                         for r, t in zip(rows, replies, strict=True)]
            lengths = [len(tokenizer(t, add_special_tokens=False).input_ids) for t in replies]
            speed = {"seconds": round(seconds, 1), "new_tokens": sum(lengths),
                     "tokens_per_s": round(sum(lengths) / seconds, 1),
                     "replies_per_min": round(len(replies) / seconds * 60, 1),
                     "mean_reply_tokens": round(statistics.fmean(lengths), 1),
                     "hit_max_new_tokens": sum(n >= args.max_new_tokens - 1 for n in lengths),
                     "temperature": sampling.temperature, "constrained": sampling.constrained}
            if raw:
                write_jsonl(raw, generated)
                meta_path.write_text(json.dumps({"wanted": wanted, "speed": speed}, indent=1))
        raw_rows[condition] = generated
        domain = CONDITIONS[condition]["domain"]
        entry = {**speed, **check_rates(domain, generated)}
        entry["kept_rows_per_min"] = round(entry["kept"] / speed["seconds"] * 60, 2)
        entry["examples"] = [r["messages"][-1]["content"][:400] for r in generated[:3]]
        results["conditions"][condition] = entry
        save(args.out, results)  # after every condition: a run stopped by a time limit keeps what it measured
        print(json.dumps({k: v for k, v in entry.items() if k != "examples"}), flush=True)
    del model
    if args.train_steps:
        results.setdefault("training", {})
        for condition in args.train_conditions.split(","):
            if condition in raw_rows:
                results["training"][condition] = train_rates(raw_rows[condition], args.model, args.train_steps,
                                                             args.train_batch_size)
                save(args.out, results)
    if args.judge:
        results.setdefault("judge", {})
        judged = args.judge_conditions.split(",") if args.judge_conditions else list(raw_rows)
        for condition, generated in raw_rows.items():
            if condition not in judged:
                continue
            results["judge"][condition] = judge_rates(CONDITIONS[condition]["domain"], generated, args.judge,
                                                      args.bf16)
            save(args.out, results)
            print(json.dumps({condition: results["judge"][condition]}), flush=True)
    save(args.out, results)

    print(f"\n{'condition':<10} {'tok/s':>7} {'replies/min':>11} {'mean tok':>8} {'kept':>9} {'kept/min':>8}  "
          "passing each check and all before it")
    for condition, e in results["conditions"].items():
        rates = " > ".join(f"{f['check']} {f['passed']}" for f in e["funnel"])
        print(f"{condition:<10} {e['tokens_per_s']:>7} {e['replies_per_min']:>11} {e['mean_reply_tokens']:>8} "
              f"{e['kept']:>4}/{e['n']:<4} {e['kept_rows_per_min']:>8}  {rates}")
    for condition, j in results.get("judge", {}).items():
        print(f"judge {condition}: {j['rubric']} passed {j['passed']}/{j['n']} (mean score {j['mean_score']}, "
              f"{j['rows_per_min']} rows/min)")
    for condition, runs in results.get("training", {}).items():
        for run in runs:
            print(f"train {condition} {run['method']}: {run['median_step_seconds']} s/step (batch {run['batch_size']})")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
