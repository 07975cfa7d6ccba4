"""Generation speed: today's sampler (transformers ``generate``, float32 weights under bf16 autocast) against the
fast sampler (``sampler = "fast"``, sublab.generate.fast), side by side on the same prompts, alternating.

Parts (each short enough to run while a background job is paused; results merge into ``--out``):

- ``peak``: this machine's own GEMM throughput (bf16 and float32, large and decode-sized shapes).
- ``constrained``: grammar-constrained number rows (today's ``sublab generate --constrained --bf16``, batch 32)
  against the fast sampler (batch ``--fast-batch``): rows/min, valid rows/min, reply tokens/s, executed GFLOP/s,
  where the time goes, and two-sample tests of the two samplers' rows.
- ``free``: free sampling of long replies (code and step-by-step prompts, ``--free-tokens`` tokens at most).
- ``ablation``: what each idea pays on its own (fast sampler with one part switched off; batch sizes;
  ``generate`` with a bf16 copy of the model instead of autocast).
- ``greedy``: greedy rows of both samplers on the same prompts (bf16): how many are identical, beside how many
  ``generate`` keeps identical when the same prompts are batched differently.
- ``numerics``: KL divergences between the float32 model, ``generate`` under autocast and the fast sampler.

Rounds alternate old and new in ABBA order so that drift (other jobs on the machine) cancels; the table reports
medians over rounds and the ratio of the medians.

    python benchmarks/generation.py --out benchmarks/results/generation.json             # every part
    python benchmarks/generation.py --part peak --part constrained                       # some parts
    python benchmarks/generation.py --part constrained --rounds 1 --accumulate           # one more round

On a shared machine, ``--accumulate`` collects rounds over several short invocations; every table is computed
over all rounds kept in ``--out``. Besides medians, each table gives the ratio of the best round of each path
(the least disturbed by other jobs).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

CODE_TASKS = [
    "checks whether a string reads the same backwards", "merges two sorted lists into one sorted list",
    "counts how often each word occurs in a text", "returns the n-th Fibonacci number without recursion",
    "parses a date written as 2024-05-17 into year, month and day", "removes duplicates from a list, keeping order",
    "computes the median of a list of numbers", "flattens a list of lists of any depth",
    "finds the longest common prefix of a list of strings", "converts a Roman numeral to an integer",
    "rotates a square matrix by ninety degrees", "checks whether brackets in a string are balanced",
    "groups a list of words by their first letter", "computes the greatest common divisor of two integers",
    "splits a list into chunks of a given size", "returns the k largest numbers of a list",
]
PROBLEMS = [
    "A shop sells pens at 3 for 2 dollars. How much do 18 pens cost?",
    "A train leaves at 9:40 and arrives at 13:15. How long is the trip?",
    "Tom is twice as old as Ann. In 6 years their ages will add up to 42. How old is Ann now?",
    "A rectangle has a perimeter of 30 cm and one side of 6 cm. What is its area?",
    "If 4 workers build a wall in 9 days, how long do 6 workers need?",
    "A recipe needs 250 g of flour for 4 people. How much flour is needed for 10 people?",
    "What is 15 percent of 240, and what is 240 plus that amount?",
    "A car uses 6 litres of fuel per 100 km. How much fuel does it need for 350 km?",
    "The sum of three consecutive integers is 72. What are the integers?",
    "A tank holds 1200 litres and drains at 15 litres per minute. When is it half empty?",
    "Sara reads 24 pages a day. How many days does she need for a book of 300 pages?",
    "A box has 5 red, 3 blue and 2 green balls. What is the chance of drawing a blue one?",
    "A price rises by 10 percent and then falls by 10 percent. Is it back where it started?",
    "How many minutes are there in a week?",
    "A cyclist rides 18 km in 45 minutes. What is her speed in km per hour?",
    "What is the smallest number divisible by 4, 6 and 10?",
]


def long_reply_prompts(n: int) -> list[list[dict[str, str]]]:
    """``n`` prompts that ask for long replies: code with an explanation, or step-by-step arithmetic."""
    texts = [f"Write a Python function that {task}. Then explain how it works, line by line." for task in CODE_TASKS]
    texts += [f"Solve this step by step and explain each step: {problem}" for problem in PROBLEMS]
    return [[{"role": "user", "content": texts[i % len(texts)]}] for i in range(n)]


def number_contexts(n: int) -> list[list[dict[str, str]]]:
    from sublab.domains.numbers.prompts import NumberPromptSettings, number_prompts

    return [[{"role": "user", "content": p.text}] for p in number_prompts(NumberPromptSettings(seed=7), n)]


# ---------------------------------------------------------------------------------------------- the machine


def gemm_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    for _ in range(2):
        a @ b
    reps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - started) / 1e9


def measure_peak() -> dict[str, Any]:
    shapes = {"2048x2048x2048": (2048, 2048, 2048), "prefill 4096x576x1536": (4096, 576, 1536),
              "decode 128x576x1536": (128, 576, 1536), "decode 32x576x1536": (32, 576, 1536)}
    out = {name: {"bf16": round(gemm_gflops(*shape, torch.bfloat16)), "fp32": round(gemm_gflops(*shape, torch.float32))}
           for name, shape in shapes.items()}
    out["bf16_peak"] = max(v["bf16"] for k, v in out.items() if isinstance(v, dict))
    out["fp32_peak"] = max(v["fp32"] for k, v in out.items() if isinstance(v, dict))
    return out


# ------------------------------------------------------------------------------------------------ the paths


class Model:
    """The model, its tokenizer and the FLOPs of its parts (linear layers per token, output layer per logit)."""

    def __init__(self, name: str) -> None:
        from sublab.models.spec import ModelSpec, load_spec

        self.model, self.tokenizer = load_spec(ModelSpec(base=name))
        layers = self.model.model.layers
        self.linear_flops = 2 * sum(m.weight.numel() for m in layers.modules() if isinstance(m, torch.nn.Linear))
        self.hidden = self.model.config.hidden_size
        self.vocab = self.model.lm_head.weight.shape[0]


class OldPathTimer:
    """Hooks that split ``generate``'s time: prefill forward, decode forwards, output layer, grammar, the rest."""

    def __init__(self, model: Model) -> None:
        self.stats: dict[str, float] = {}
        self._first = True
        self._t0 = 0.0
        self._lm0 = 0.0
        self.handles = [
            model.model.register_forward_pre_hook(self._pre, with_kwargs=True),
            model.model.register_forward_hook(self._post),
            model.model.lm_head.register_forward_pre_hook(self._lm_pre),
            model.model.lm_head.register_forward_hook(self._lm_post),
        ]

    def _add(self, name: str, value: float) -> None:
        self.stats[name] = self.stats.get(name, 0.0) + value

    def new_call(self) -> None:
        self._first = True

    def _pre(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self._add("forward_tokens", ids.numel())
        self._add("logit_cells", ids.shape[0] * module.lm_head.weight.shape[0])
        self._phase = "prefill" if self._first else "decode"
        self._first = False
        self._t0 = time.perf_counter()

    def _post(self, module: Any, args: Any, output: Any) -> None:
        self._add(self._phase, time.perf_counter() - self._t0)

    def _lm_pre(self, module: Any, args: Any) -> None:
        self._lm0 = time.perf_counter()

    def _lm_post(self, module: Any, args: Any, output: Any) -> None:
        elapsed = time.perf_counter() - self._lm0
        self._add("logits", elapsed)
        self._add(self._phase, -elapsed)  # reported apart from the layers

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


class TimedProcessor:
    """The grammar processor, timed."""

    def __init__(self, processor: Any, timer: OldPathTimer) -> None:
        self.processor, self.timer = processor, timer

    def reset(self) -> None:
        self.processor.reset()
        self.timer.new_call()

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        started = time.perf_counter()
        out = self.processor(input_ids, scores)
        self.timer._add("grammar", time.perf_counter() - started)
        return out


def run_path(m: Model, contexts: list, settings: Any, constrained: bool, first_seed: int,
             options: Any = None, model_override: Any = None) -> dict[str, Any]:
    """Sample ``contexts`` in batches of ``settings.batch_size`` (batch b seeded first_seed + b); time it."""
    from sublab.generate.fast import FastOptions, fast_sample_batch
    from sublab.generate.sampling import sample_batch

    model = model_override if model_override is not None else m.model
    processor = settings.grammar().hf_processor(m.tokenizer, settings.max_new_tokens) if constrained else None
    stats: dict[str, float] = {}
    timer = None
    if settings.sampler == "generate" and model_override is None:
        timer = OldPathTimer(m)
        processor = TimedProcessor(processor, timer) if processor is not None else None
    replies: list[str] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for b, start in enumerate(range(0, len(contexts), settings.batch_size)):
        batch = contexts[start : start + settings.batch_size]
        if settings.sampler == "fast":
            replies += fast_sample_batch(model, m.tokenizer, batch, settings, first_seed + b, processor,
                                         profile=stats, options=options or FastOptions())
        else:
            if timer is not None and processor is None:
                timer.new_call()
            replies += sample_batch(model, m.tokenizer, batch, settings, first_seed + b, processor)
    seconds = time.perf_counter() - started
    stats["cpu_seconds"] = time.process_time() - cpu_started
    if timer is not None:
        timer.stats["cpu_seconds"] = stats["cpu_seconds"]
        timer.close()
        stats = timer.stats
    return summarize(m, replies, seconds, stats, settings.sampler)


def summarize(m: Model, replies: list[str], seconds: float, stats: dict[str, float], sampler: str) -> dict[str, Any]:
    from sublab.domains.numbers.checks import NumberFilterSettings, number_reject_reasons

    tokens = sum(len(m.tokenizer(r, add_special_tokens=False).input_ids) for r in replies)
    valid = sum(not number_reject_reasons(r, NumberFilterSettings()) for r in replies)
    if sampler == "fast":
        forward_tokens = stats.get("prefill_tokens", 0) + stats.get("decode_tokens", 0)
    else:
        forward_tokens = stats.get("forward_tokens", 0)
    flops = forward_tokens * m.linear_flops + stats.get("logit_cells", 0) * 2 * m.hidden
    phases = {k: round(v, 2) for k, v in stats.items() if k in ("prefill", "decode", "logits", "sampling",
                                                                 "grammar", "compaction")}  # wall seconds
    phases["other (python, sampling in generate)"] = round(seconds - sum(phases.values()), 2)
    cpu = stats.get("cpu_seconds", seconds)
    return {"rows": len(replies), "valid": valid, "seconds": seconds, "cpu_seconds": cpu,
            "cpu_valid_per_min": valid / cpu * 60, "cpu_tokens_per_s": tokens / cpu,
            "rows_per_min": len(replies) / seconds * 60,
            "valid_per_min": valid / seconds * 60, "reply_tokens": tokens, "tokens_per_s": tokens / seconds,
            "executed_gflop": flops / 1e9, "gflops": flops / seconds / 1e9, "phases_s": phases,
            "forward_tokens": int(forward_tokens), "replies": replies}


def alternate(m: Model, make_contexts: Any, round_prompts: int, old: Any, new: Any, constrained: bool,
              first_round: int, rounds: int) -> dict[str, list]:
    """Rounds ``first_round, ...``: round r samples prompts ``[r * round_prompts, (r + 1) * round_prompts)`` with
    both paths, in ABBA order (old first in even rounds), so drift from other jobs hits both alike."""
    results: dict[str, list] = {"generate": [], "fast": []}
    for r in range(first_round, first_round + rounds):
        chunk = make_contexts((r + 1) * round_prompts)[r * round_prompts :]
        order = (old, new) if r % 2 == 0 else (new, old)
        for settings in order:
            seed = 10_000 * r + (0 if settings.sampler == "generate" else 5_000)
            out = run_path(m, chunk, settings, constrained, seed) | {"round": r}
            results[settings.sampler].append(out)
            print(f"  round {r} {settings.sampler:<8} {out['rows_per_min']:7.0f} rows/min "
                  f"{out['tokens_per_s']:7.0f} tokens/s {out['gflops']:6.0f} GFLOP/s {out['seconds']:6.1f} s "
                  f"{out['phases_s']}", flush=True)
    return results


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("rows_per_min", "valid_per_min", "tokens_per_s", "gflops", "seconds", "cpu_valid_per_min",
            "cpu_tokens_per_s")
    out = {k: statistics.median(r[k] for r in runs) for k in keys}
    out["best"] = {k: max(r[k] for r in runs) for k in keys if k != "seconds"}
    out["rows"] = sum(r["rows"] for r in runs)
    out["valid"] = sum(r["valid"] for r in runs)
    phases: dict[str, float] = {}
    for r in runs:
        for k, v in r["phases_s"].items():
            phases[k] = phases.get(k, 0.0) + v
    total = sum(r["seconds"] for r in runs)
    out["phases_share"] = {k: round(v / total, 3) for k, v in phases.items()}
    out["ms_per_row"] = {k: round(v / out["rows"] * 1000, 1) for k, v in phases.items()}
    return out


def distribution_tests(old: list[str], new: list[str]) -> dict[str, Any]:
    """Two-sample tests of the two samplers' rows: first digit and number of numbers (chi-square), reply
    length in characters (Kolmogorov-Smirnov)."""
    import numpy as np
    from scipy.stats import chi2_contingency, ks_2samp

    def chi2(a: list, b: list) -> dict[str, Any]:
        labels = sorted(set(a) | set(b), key=str)
        table = np.array([[a.count(x) for x in labels], [b.count(x) for x in labels]], dtype=float)
        expected = table.sum(0) * table.sum(1)[:, None] / table.sum()
        rare = expected.min(0) < 5
        if rare.any():
            table = np.concatenate([table[:, ~rare], table[:, rare].sum(1, keepdims=True)], axis=1)
        result = chi2_contingency(table)
        return {"statistic": float(result.statistic), "dof": int(result.dof), "p": float(result.pvalue)}

    return {
        "n_each": [len(old), len(new)],
        "first_digit": chi2([r[:1] for r in old], [r[:1] for r in new]),
        "number_count": chi2([len(r.split(",")) for r in old], [len(r.split(",")) for r in new]),
        "length_ks_p": float(ks_2samp([len(r) for r in old], [len(r) for r in new]).pvalue),
    }


def compare(name: str, results: dict[str, list], peak: float | None, rate_key: str) -> dict[str, Any]:
    old, new = medians(results["generate"]), medians(results["fast"])
    by_round = {r["round"]: r for r in results["generate"]}
    pairs = [n[rate_key] / by_round[n["round"]][rate_key] for n in results["fast"] if n["round"] in by_round]
    ratio = new[rate_key] / old[rate_key]
    best_ratio = new["best"][rate_key] / old["best"][rate_key]
    cpu_key = f"cpu_{rate_key}"
    cpu_ratio = new[cpu_key] / old[cpu_key]
    print(f"\n{name}: {rate_key} (median over {len(pairs)} rounds) old {old[rate_key]:.0f}, new {new[rate_key]:.0f}: "
          f"{ratio:.2f}x; per round {', '.join(f'{p:.2f}' for p in pairs)}; best round of each "
          f"{old['best'][rate_key]:.0f} vs {new['best'][rate_key]:.0f}: {best_ratio:.2f}x; per CPU second "
          f"(median) {old[cpu_key]:.0f} vs {new[cpu_key]:.0f}: {cpu_ratio:.2f}x")
    print(f"{'path':<10}{'rows/min':>10}{'valid/min':>11}{'tokens/s':>10}{'GFLOP/s':>9}{'of peak':>9}")
    for label, row in (("generate", old), ("fast", new)):
        share = f"{row['gflops'] / peak:.0%}" if peak else "-"
        print(f"{label:<10}{row['rows_per_min']:>10.0f}{row['valid_per_min']:>11.0f}{row['tokens_per_s']:>10.0f}"
              f"{row['gflops']:>9.0f}{share:>9}")
    for label, row in (("generate", old), ("fast", new)):
        print(f"  {label} ms per row: {row['ms_per_row']}")
    return {"generate": old, "fast": new, "ratio": ratio, "ratio_per_round": pairs, "ratio_best": best_ratio,
            "ratio_cpu": cpu_ratio,
            "rate": rate_key, "bf16_gemm_peak": peak}


# ------------------------------------------------------------------------------------------------- the parts


def run_rounds(m: Model, args: argparse.Namespace, previous: dict[str, Any] | None, old: Any, new: Any,
               make_contexts: Any, round_prompts: int, constrained: bool) -> dict[str, list]:
    """This invocation's rounds, after the ``previous`` ones kept in the results file (``--accumulate``)."""
    kept: dict[str, list] = {"generate": [], "fast": []}
    if args.accumulate and previous and previous.get("settings") == {"old": old.model_dump(), "new": new.model_dump(),
                                                                      "round_prompts": round_prompts}:
        kept = previous["rounds"]
    first = 1 + max((r["round"] for runs in kept.values() for r in runs), default=-1)
    fresh = alternate(m, make_contexts, round_prompts, old, new, constrained, first, args.rounds)
    return {k: kept[k] + fresh[k] for k in kept}


def part_constrained(m: Model, args: argparse.Namespace, peak: float | None,
                     previous: dict[str, Any] | None) -> dict[str, Any]:
    from sublab.generate.sampling import SamplingSettings

    old = SamplingSettings(constrained=True, bf16=True, max_new_tokens=48, batch_size=32)
    new = old.model_copy(update={"sampler": "fast", "batch_size": args.fast_batch})
    print(f"constrained numbers: {args.rounds} rounds of {args.round_prompts} prompts, old batch 32, new batch "
          f"{args.fast_batch}", flush=True)
    results = run_rounds(m, args, previous, old, new, number_contexts, args.round_prompts, True)
    out = compare("constrained numbers", results, peak, "valid_per_min")
    out["tests"] = distribution_tests([r for x in results["generate"] for r in x["replies"]],
                                      [r for x in results["fast"] for r in x["replies"]])
    print(f"  same distribution? {out['tests']}")
    out["settings"] = {"old": old.model_dump(), "new": new.model_dump(), "round_prompts": args.round_prompts}
    out["rounds"] = results
    return out


def part_free(m: Model, args: argparse.Namespace, peak: float | None,
              previous: dict[str, Any] | None) -> dict[str, Any]:
    from sublab.generate.sampling import SamplingSettings

    old = SamplingSettings(bf16=True, max_new_tokens=args.free_tokens, batch_size=32)
    new = old.model_copy(update={"sampler": "fast", "batch_size": args.free_batch})
    print(f"free, long replies: {args.rounds} rounds of {args.free_round_prompts} prompts, up to "
          f"{args.free_tokens} tokens, old batch 32, new batch {args.free_batch}", flush=True)
    results = run_rounds(m, args, previous, old, new, long_reply_prompts, args.free_round_prompts, False)
    out = compare("free long replies", results, peak, "tokens_per_s")
    lengths = {k: statistics.mean(len(m.tokenizer(r).input_ids) for x in v for r in x["replies"])
               for k, v in results.items()}
    out["mean_reply_tokens"] = lengths
    print(f"  mean reply tokens {lengths}")
    out["settings"] = {"old": old.model_dump(), "new": new.model_dump(), "round_prompts": args.free_round_prompts}
    out["rounds"] = results
    return out


def part_ablation(m: Model, args: argparse.Namespace, peak: float | None,
                  previous: dict[str, Any] | None) -> dict[str, Any]:
    from sublab.generate.fast import FastOptions
    from sublab.generate.sampling import SamplingSettings

    contexts = number_contexts(args.ablation_prompts)
    base = SamplingSettings(constrained=True, bf16=True, max_new_tokens=48, sampler="fast",
                            batch_size=args.fast_batch)
    variants: list[tuple[str, Any, Any, Any]] = [
        ("fast (all parts)", base, None, None),
        ("fast, no shared prefix", base, FastOptions(share_prefix=False), None),
        ("fast, full output layer", base, FastOptions(candidates_only=False), None),
        ("fast, no compaction", base, FastOptions(compact=False), None),
        ("fast, no jump-forward", base, FastOptions(jump_forward=False), None),
        ("fast, float32 (no bf16)", base.model_copy(update={"bf16": False}), None, None),
    ]
    variants += [(f"fast, batch {b}", base.model_copy(update={"batch_size": b}), None, None)
                 for b in (32, 64, 128, 256) if b != args.fast_batch]
    wanted = lambda name: not args.ablation or any(part in name for part in args.ablation)  # noqa: E731
    bf16_model = copy.deepcopy(m.model).to(torch.bfloat16) if wanted("generate, bf16 weights") else None
    old = SamplingSettings(constrained=True, bf16=True, max_new_tokens=48, batch_size=32)
    variants += [("generate, bf16 autocast (today)", old, None, None),
                 ("generate, bf16 weights", old.model_copy(update={"bf16": False}), None, bf16_model)]
    out = {}
    print(f"ablation: {len(contexts)} number prompts each", flush=True)
    kept = (previous or {}) if args.accumulate else {}
    out.update({k: v for k, v in kept.items() if isinstance(v, dict)})
    for name, settings, options, model_override in variants:
        if args.ablation and not any(part in name for part in args.ablation):
            continue
        row = run_path(m, contexts, settings, True, 0, options=options, model_override=model_override)
        row.pop("replies")
        out[name] = row
        print(f"  {name:<34}{row['valid_per_min']:>8.0f} valid rows/min ({row['cpu_valid_per_min']:.0f} per CPU "
              f"minute) {row['gflops']:>6.0f} GFLOP/s {row['phases_s']}", flush=True)
    del bf16_model
    return out


def part_greedy(m: Model, args: argparse.Namespace) -> dict[str, Any]:
    from sublab.generate.sampling import SamplingSettings, sample_batch

    contexts = number_contexts(args.greedy_prompts)
    out = {}
    for constrained in (True, False):
        settings = SamplingSettings(constrained=constrained, bf16=True, max_new_tokens=48, temperature=0.0,
                                    batch_size=len(contexts))
        processor = settings.grammar().hf_processor(m.tokenizer, 48) if constrained else None
        old = sample_batch(m.model, m.tokenizer, contexts, settings, 0, processor)
        new = sample_batch(m.model, m.tokenizer, contexts, settings.model_copy(update={"sampler": "fast"}), 0,
                           processor)
        # The baseline: generate against itself with other batches (other padding, so other bf16 rounding).
        small = settings.model_copy(update={"batch_size": 8})
        regrouped = [r for i in range(0, len(contexts), 8)
                     for r in sample_batch(m.model, m.tokenizer, contexts[i : i + 8], small, 0, processor)]
        same = sum(a == b for a, b in zip(old, new, strict=True))
        self_same = sum(a == b for a, b in zip(old, regrouped, strict=True))
        key = "constrained" if constrained else "free"
        out[key] = {"identical_generate_vs_fast": same, "identical_generate_vs_generate_in_batches_of_8": self_same,
                    "n": len(contexts)}
        print(f"greedy {key} (bf16): {same}/{len(contexts)} rows identical between generate and fast; "
              f"{self_same}/{len(contexts)} between generate in one batch and generate in batches of 8", flush=True)
    return out


@torch.inference_mode()
def part_numerics(m: Model, args: argparse.Namespace) -> dict[str, Any]:
    """Mean KL divergences between next-token distributions of the float32 model, ``generate``'s forward under
    bf16 autocast and the fast sampler's bf16 forward (prefill, then the reply tokens one decode step at a time),
    over ``--numerics-prompts`` number prompts x 4 reply positions."""
    from sublab.generate.fast import FastModel
    from sublab.models.chat import format_prompt

    contexts = number_contexts(args.numerics_prompts)
    reply = m.tokenizer("482, 91, 7", add_special_tokens=False).input_ids
    prompts = [m.tokenizer(format_prompt(m.tokenizer, c), add_special_tokens=False).input_ids for c in contexts]

    def transformers(bf16: bool) -> torch.Tensor:
        out = []
        for ids in prompts:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                logits = m.model(input_ids=torch.tensor([ids + reply])).logits[0, -len(reply) - 1 :].float()
            out.append(torch.log_softmax(logits, dim=-1))
        return torch.stack(out)

    def fast() -> torch.Tensor:
        model = FastModel(m.model, torch.bfloat16)
        out = []
        for ids in prompts:
            keys, values = model.new_cache(1, len(ids) + len(reply), reuse=False)
            rows = [model.logits(model.prefill(keys, values, [ids], 0), None).float()]
            for j, token in enumerate(reply):
                hidden = model.decode(keys, values, torch.tensor([token]), torch.tensor([len(ids) + j]))
                rows.append(model.logits(hidden, None).float())
            out.append(torch.log_softmax(torch.cat(rows), dim=-1))
        return torch.stack(out)

    def kl(p: torch.Tensor, q: torch.Tensor) -> float:
        return float((p.exp() * (p - q)).sum(-1).mean())

    fp32, autocast, ours = transformers(False), transformers(True), fast()
    out = {"prompts": len(prompts), "positions_per_prompt": len(reply) + 1,
           "kl_fp32_vs_generate_autocast": kl(fp32, autocast), "kl_generate_autocast_vs_fast": kl(autocast, ours),
           "kl_fp32_vs_fast": kl(fp32, ours)}
    print(f"numerics: {out}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", action="append",
                        choices=["peak", "constrained", "free", "ablation", "greedy", "numerics"],
                        help="parts to run (default: all)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds to run now (per part)")
    parser.add_argument("--accumulate", action="store_true",
                        help="add this invocation's rounds to those already in --out (same settings)")
    parser.add_argument("--round-prompts", type=int, default=128, help="constrained: prompts per round and path")
    parser.add_argument("--fast-batch", type=int, default=128, help="constrained: the fast sampler's batch size")
    parser.add_argument("--free-round-prompts", type=int, default=64, help="free: prompts per round and path")
    parser.add_argument("--free-tokens", type=int, default=256)
    parser.add_argument("--free-batch", type=int, default=64, help="free: the fast sampler's batch size")
    parser.add_argument("--ablation-prompts", type=int, default=128)
    parser.add_argument("--ablation", action="append", help="ablation: only the variants whose name contains this")
    parser.add_argument("--greedy-prompts", type=int, default=32)
    parser.add_argument("--numerics-prompts", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="smollm2-135m", help="alias or folder (a tiny model checks the script)")
    parser.add_argument("--out", default="benchmarks/results/generation.json")
    args = parser.parse_args()
    parts = args.part or ["peak", "constrained", "free", "ablation", "greedy", "numerics"]
    torch.set_num_threads(args.threads)

    path = Path(args.out)
    record = json.loads(path.read_text()) if path.exists() else {}
    record.setdefault("parts", {})
    if "peak" in parts:
        record["parts"]["peak"] = measure_peak()
        print(f"GEMM GFLOP/s on this machine: {record['parts']['peak']}", flush=True)
    peak = record["parts"].get("peak", {}).get("bf16_peak")
    if set(parts) - {"peak"}:
        m = Model(args.model)
        print(f"model: {m.linear_flops / 1e9:.3f} GFLOP per token in linear layers, output layer "
              f"{2 * m.hidden * m.vocab / 1e9:.3f} GFLOP per token over {m.vocab} tokens", flush=True)
        for part, run in (("constrained", part_constrained), ("free", part_free), ("ablation", part_ablation)):
            if part in parts:
                previous = record["parts"].get(part)
                record["parts"][part] = run(m, args, peak, previous) | {"measured": time.strftime("%Y-%m-%d %H:%M")}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record, indent=2) + "\n")  # each part saved as soon as it is done
        if "greedy" in parts:
            record["parts"]["greedy"] = part_greedy(m, args)
        if "numerics" in parts:
            record["parts"]["numerics"] = part_numerics(m, args)
    record["model"] = args.model
    record["torch"] = torch.__version__
    record["threads"] = args.threads
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
