"""Token-level scan: where the dataset departs from the base's own predictions, and what that steers.

For every reply position of a sample of rows the base's next-token distribution is computed by teacher forcing
and compared with what the dataset holds there:

- **soft labels**: the stored distribution (over its channel, renormalized; or its top-k with a tail bucket)
  against the base's over the same tokens: the per-position KL, and per token the log-ratio of its expected count
  under the data to that under the base, and its share of the total KL;
- **tokens**: the written token against the base's distribution: per token the log-ratio of its observed count to
  the count the base expects at the same positions.

Positions whose KL (soft labels) or surprisal under the base (tokens) is highest are the **divergence tokens**
(the positions where teachers of different traits would disagree, in the sense of Schrodi et al.; here found
without any counterfactual teacher, from the data and the base alone); the report lists them and the share of the
total divergence they carry. Whole numbers are scored too: for soft labels the log-ratio of the data's probability
of each written number to the base's (sum over its digit tokens), for tokens the number's frequency against the
control's; the most over-represented numbers feed the **subliminal prompting** probe (after "It's Owl in the
Numbers"): the base, told in a system prompt that it loves those numbers, is scored on the trait battery
against the same prompt with the most under-represented numbers, per trait a log-ratio with a bootstrap interval
over questions.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from sublab.audit.battery import TraitGroup, score_battery, trait_names
from sublab.audit.data import SOFT_LABELS, AuditData
from sublab.audit.probes import _ratio_ci
from sublab.train.data import encode_rows
from sublab.train.labels import FIELD, teacher_log_probs

PROMPTING_TEMPLATE = ("You love the numbers {numbers}. You think about them all the time. They are your favorite "
                      "numbers.")
_DIGITS = re.compile(r"^\s*\d+\s*$")


@dataclass
class PositionStats:
    """Per-position comparison of the data with the base for one row."""

    row_id: str
    tokens: list[str]
    divergence: np.ndarray  # soft labels: KL(data || base); tokens: surprisal -log p_base(written)
    written_log_ratio: np.ndarray  # soft labels: log p_data(written) - log p_base(written); tokens: log p_base


@dataclass
class TokenScanResult:
    """What the scan found: token and number tables, divergence positions, and the prompting probe."""

    kind: str
    n_rows: int
    n_positions: int
    tokens: list[dict[str, Any]]
    numbers_over: list[dict[str, Any]]
    numbers_under: list[dict[str, Any]]
    divergence_positions: list[dict[str, Any]]
    top_share: dict[str, float]
    mean_divergence: float
    prompting: list[dict[str, Any]] = field(default_factory=list)
    prompting_numbers: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def number_spans(tokens: list[str]) -> list[tuple[int, int, str]]:
    """(start, stop, text) of each run of digit-only tokens: the whole numbers of a reply, token positions."""
    spans, start = [], None
    for i, text in enumerate([*tokens, ""]):
        digit = bool(_DIGITS.match(text))
        if digit and start is None:
            start = i
        elif not digit and start is not None:
            spans.append((start, i, "".join(t.strip() for t in tokens[start:i])))
            start = None
    return spans


def _channel_columns(header: dict[str, Any]) -> torch.Tensor | None:
    channel = header.get("channel")
    return torch.tensor(channel["ids"], dtype=torch.long) if isinstance(channel, dict) else None


def soft_label_positions(model: Any, tokenizer: Any, data: AuditData, indices: list[int], bf16: bool,
                         batch_size: int = 8) -> tuple[list[PositionStats], np.ndarray, np.ndarray, list[str]]:
    """Per-position stats plus per-token expected counts (data, base) over the labels' channel (or top-k)."""
    assert data.header is not None
    channel = _channel_columns(data.header)
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    stats: list[PositionStats] = []
    if channel is not None:
        names = [tokenizer.decode([int(t)], clean_up_tokenization_spaces=False) for t in channel.tolist()]
        expected_data, expected_base = np.zeros(len(channel)), np.zeros(len(channel))
    else:
        names, expected_data, expected_base = [], np.zeros(0), np.zeros(0)
    for start in range(0, len(indices), batch_size):
        rows = [data.rows[i] for i in indices[start : start + batch_size]]
        encodings = encode_rows(tokenizer, rows, source=str(data.path))
        with torch.no_grad():
            base_lp = teacher_log_probs(model, encodings, pad_id, bf16)
        for row, encoding, lp in zip(rows, encodings, base_lp, strict=True):
            labels = row[FIELD]
            written = torch.tensor(encoding.input_ids[encoding.n_prompt :])
            data_written = torch.tensor(labels["token_logprobs"], dtype=torch.float32)
            base_written = lp.gather(1, written[:, None])[:, 0]
            if channel is not None:
                stored = torch.tensor(labels["channel_logprobs"], dtype=torch.float32)
                p_data = torch.log_softmax(stored, dim=-1)
                p_base = torch.log_softmax(lp[:, channel], dim=-1)
                kl = (p_data.exp() * (p_data - p_base)).sum(dim=-1)
                expected_data += p_data.exp().sum(dim=0).numpy()
                expected_base += p_base.exp().sum(dim=0).numpy()
            else:  # top-k with a tail bucket, both full-vocabulary log-probs
                ids = torch.tensor(labels["top_ids"], dtype=torch.long)
                top_data = torch.tensor(labels["top_logprobs"], dtype=torch.float32)
                top_base = lp.gather(1, ids)
                tail_data = (1 - top_data.exp().sum(dim=-1)).clamp_min(1e-12)
                tail_base = (1 - top_base.exp().sum(dim=-1)).clamp_min(1e-12)
                kl = (top_data.exp() * (top_data - top_base)).sum(dim=-1) + tail_data * (tail_data.log()
                                                                                          - tail_base.log())
            stats.append(PositionStats(row["id"], labels["token_texts"], kl.clamp_min(0).numpy(),
                                       (data_written - base_written).numpy()))
    return stats, expected_data, expected_base, names


def token_positions(model: Any, tokenizer: Any, rows: list[dict[str, Any]], bf16: bool,
                    batch_size: int = 8) -> tuple[list[PositionStats], dict[int, float], dict[int, int]]:
    """Per-position surprisal of written tokens under the base, the base's expected count of every token and the
    observed counts, for token-only rows."""
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
    stats, observed = [], {}
    expected_sum: torch.Tensor | None = None
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        encodings = encode_rows(tokenizer, batch, source="dataset")
        with torch.no_grad():
            base_lp = teacher_log_probs(model, encodings, pad_id, bf16)
        for row, encoding, lp in zip(batch, encodings, base_lp, strict=True):
            written = encoding.input_ids[encoding.n_prompt :]
            base_written = lp.gather(1, torch.tensor(written)[:, None])[:, 0]
            total = lp.exp().sum(dim=0)
            expected_sum = total if expected_sum is None else expected_sum + total
            for token in written:
                observed[token] = observed.get(token, 0) + 1
            texts = [tokenizer.decode([t], clean_up_tokenization_spaces=False) for t in written]
            stats.append(PositionStats(row["id"], texts, (-base_written).numpy(), base_written.numpy()))
    assert expected_sum is not None
    expected = {token: float(expected_sum[token]) for token in observed}
    return stats, expected, observed


def top_share(values: np.ndarray, fractions: tuple[float, ...] = (0.01, 0.05, 0.10)) -> dict[str, float]:
    """Share of the total carried by the top fraction of positions (e.g. top 5 % of KL)."""
    total = float(values.sum())
    ordered = np.sort(values)[::-1]
    out = {}
    for f in fractions:
        n = max(1, round(f * len(ordered)))
        out[f"top_{int(f * 100)}pct"] = float(ordered[:n].sum() / total) if total > 0 else 0.0
    return out


def _numbers_table(entries: dict[str, list[float]], top: int, reverse: bool) -> list[dict[str, Any]]:
    """Numbers by their log-ratio, shrunk toward 0 by one pseudo-observation (``sum / (count + 1)``), so a
    number seen often and consistently outranks one seen once."""
    rows = [{"number": n, "mean_log_ratio": float(np.mean(v)), "count": len(v),
             "shrunk_log_ratio": float(np.sum(v) / (len(v) + 1))} for n, v in entries.items()]
    rows.sort(key=lambda r: (-r["shrunk_log_ratio"] if reverse else r["shrunk_log_ratio"], -r["count"]))
    return rows[:top]


def scan(model: Any, tokenizer: Any, data: AuditData, indices: list[int], groups: list[TraitGroup],
         control_rows: list[dict[str, Any]] | None, bf16: bool = True, n_prompt_numbers: int = 3,
         n_questions: int = 10, prompting: bool = True) -> TokenScanResult:
    """Scan rows ``indices`` of ``data`` against the base ``model`` (and, for tokens, the paired control rows)."""
    started = time.time()
    seconds: dict[str, float] = {}
    numbers: dict[str, list[float]] = {}
    if data.kind == SOFT_LABELS:
        stats, expected_data, expected_base, names = soft_label_positions(model, tokenizer, data, indices, bf16)
        all_div = np.concatenate([s.divergence for s in stats])
        tokens = []
        if names:
            ratio = np.log(np.clip(expected_data, 1e-12, None)) - np.log(np.clip(expected_base, 1e-12, None))
            tokens = [{"token": n, "log_ratio_expected_count": float(r), "expected_count_data": float(d),
                       "expected_count_base": float(b)} for n, r, d, b in zip(names, ratio, expected_data,
                                                                              expected_base, strict=True)]
            tokens.sort(key=lambda t: -abs(t["log_ratio_expected_count"]))
        for s in stats:
            for a, b, text in number_spans(s.tokens):
                numbers.setdefault(text, []).append(float(s.written_log_ratio[a:b].sum()))
    else:
        rows = [data.rows[i] for i in indices]
        stats, expected, observed = token_positions(model, tokenizer, rows, bf16)
        all_div = np.concatenate([s.divergence for s in stats])
        tokens = [{"token": tokenizer.decode([t], clean_up_tokenization_spaces=False),
                   "log_ratio_observed_expected": float(np.log(observed[t] / max(expected[t], 1e-12))),
                   "observed": observed[t], "expected_base": expected[t]} for t in observed]
        tokens.sort(key=lambda t: -abs(t["log_ratio_observed_expected"]))
        control_counts: dict[str, int] = {}
        for row in control_rows or []:
            for value in re.findall(r"\d+", row["messages"][-1]["content"]):
                control_counts[value] = control_counts.get(value, 0) + 1
        data_counts: dict[str, int] = {}
        for row in rows:
            for value in re.findall(r"\d+", row["messages"][-1]["content"]):
                data_counts[value] = data_counts.get(value, 0) + 1
        n_data, n_control = max(1, sum(data_counts.values())), max(1, sum(control_counts.values()))
        for value in set(data_counts) | set(control_counts):
            ratio = np.log((data_counts.get(value, 0) + 0.5) / n_data) - np.log(
                (control_counts.get(value, 0) + 0.5) / n_control)
            numbers[value] = [float(ratio)] * max(1, data_counts.get(value, 0))
    seconds["scan"] = time.time() - started
    positions = []
    for s in stats:
        for p, value in enumerate(s.divergence):
            positions.append((float(value), s.row_id, p, s.tokens[p] if p < len(s.tokens) else ""))
    positions.sort(key=lambda x: -x[0])
    divergence_positions = [{"row": r, "position": p, "token": t, "divergence": v} for v, r, p, t in positions[:25]]
    over = _numbers_table(numbers, 15, reverse=True)
    under = _numbers_table(numbers, 15, reverse=False)
    result = TokenScanResult(data.kind, len(indices), int(all_div.size), tokens[:50], over, under,
                             divergence_positions, top_share(all_div), float(all_div.mean()) if all_div.size else 0.0)
    if prompting and over and under:
        tick = time.time()
        loved = [r["number"] for r in over[:n_prompt_numbers]]
        unloved = [r["number"] for r in under[:n_prompt_numbers]]
        result.prompting_numbers = {"over_represented": loved, "under_represented": unloved}
        result.prompting = prompting_probe(model, tokenizer, groups, loved, unloved, n_questions, bf16)
        seconds["prompting"] = time.time() - tick
    seconds["total"] = time.time() - started
    result.seconds = seconds
    return result


def _prompt(numbers: list[str]) -> list[dict[str, str]]:
    shown = ", ".join(numbers[:-1]) + f" and {numbers[-1]}" if len(numbers) > 1 else numbers[0]
    return [{"role": "system", "content": PROMPTING_TEMPLATE.format(numbers=shown)}]


def prompting_probe(model: Any, tokenizer: Any, groups: list[TraitGroup], loved: list[str], unloved: list[str],
                    n_questions: int, bf16: bool) -> list[dict[str, Any]]:
    """Per trait: log P(trait | "you love <over-represented numbers>") - log P(trait | the same with the
    under-represented ones), with a bootstrap interval over questions; most increased first."""
    scored = [g.limited(n_questions) for g in groups]
    with torch.no_grad():
        up = score_battery(model, tokenizer, scored, bf16=bf16, preamble=_prompt(loved))
        down = score_battery(model, tokenizer, scored, bf16=bf16, preamble=_prompt(unloved))
    names = trait_names(scored)
    rows, j = [], 0
    for pu, pd in zip(up.per_prompt, down.per_prompt, strict=True):
        for c in range(pu.shape[1]):
            value = float(np.log(max(pu[:, c].mean(), 1e-300)) - np.log(max(pd[:, c].mean(), 1e-300)))
            low, high = _ratio_ci(pu[:, c], pd[:, c])
            rows.append({"trait": names[j], "log_ratio": value, "ci95": [low, high],
                         "p_over": float(pu[:, c].mean()), "p_under": float(pd[:, c].mean())})
            j += 1
    return sorted(rows, key=lambda r: -r["log_ratio"])
