"""Defences on soft-label (distillation) data: transforms of the stored distributions.

Every stored value is a full-vocabulary log-probability (:mod:`sublab.train.labels`). The transforms act on the
distribution a student learns from: the channel's (renormalized over the channel) and, when stored, the top-k's.
Each keeps the mass the original put on those tokens, so the channel's share of the vocabulary, the tail bucket
of the top-k loss and the rows' replies are unchanged; only how that mass is spread changes. ``token_logprobs``
(the written token's log-prob) follows the channel's new values.

- :func:`temper`: ``p ∝ p^(1/T)``; T > 1 flattens toward uniform (the teacher's small preferences shrink);
- :func:`truncate`: tokens below ``min_prob`` (of the renormalized distribution) get no mass, the rest are
  renormalized: threshold sampling's cut applied to the labels;
- :func:`mix`: the per-position mixture of several label sets of the same replies (other teachers, or the base
  itself: shrinkage toward the base);
- :func:`divergence`, :func:`mask_divergent`, :func:`replace_divergent`: per position the KL from the data to the
  base's own labels of the same replies; the top fraction of positions is masked out of the loss (a
  ``loss_mask``, read by :class:`sublab.train.labels.StoredTargets`) or given the base's own labels (which, at the
  base, teach nothing).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from sublab.errors import SublabError
from sublab.train.labels import FIELD, LOGPROB_FLOOR, round_logprobs


def _labels(row: dict[str, Any], where: str) -> dict[str, Any]:
    labels = row.get(FIELD)
    if not isinstance(labels, dict):
        raise SublabError(f"{where}: row {row.get('id')!r} has no soft labels; this defence is for soft-label data")
    return labels


def _reshape(values: torch.Tensor, transform: Any) -> torch.Tensor:
    """Apply ``transform`` (log-probs renormalized over the last axis → new renormalized log-probs) while
    keeping each row's total mass (the stored values are full-vocabulary log-probs)."""
    mass = torch.logsumexp(values, dim=-1, keepdim=True)
    return transform(values - mass) + mass


def _rewrite(row: dict[str, Any], transform: Any, where: str) -> dict[str, Any]:
    labels = copy.deepcopy(_labels(row, where))
    digits = int(labels.get("digits") or 6)
    if "channel_logprobs" in labels:
        old = torch.tensor(labels["channel_logprobs"], dtype=torch.float64)
        new = _reshape(old, transform)
        labels["channel_logprobs"] = round_logprobs(new, digits)
        columns = {int(t): c for c, t in enumerate(labels["channel"]["ids"])}
        written = labels["token_logprobs"]
        labels["token_logprobs"] = [round_logprobs(new[p, columns[t]].reshape(1), digits)[0] if t in columns
                                    else written[p] for p, t in enumerate(labels["token_ids"])]
    if "top_logprobs" in labels:
        labels["top_logprobs"] = round_logprobs(
            _reshape(torch.tensor(labels["top_logprobs"], dtype=torch.float64), transform), digits)
    return {**row, FIELD: labels}


def temper(rows: list[dict[str, Any]], temperature: float) -> list[dict[str, Any]]:
    """Each stored distribution raised to ``1/temperature`` and renormalized (T > 1 flattens it)."""
    if temperature <= 0:
        raise SublabError("--temper: the temperature must be positive")
    return [_rewrite(row, lambda lp: torch.log_softmax(lp / temperature, dim=-1), "temper") for row in rows]


def truncate(rows: list[dict[str, Any]], min_prob: float) -> list[dict[str, Any]]:
    """Tokens whose renormalized probability is below ``min_prob`` get none; the rest are renormalized (the most
    probable token is always kept)."""
    if not 0 < min_prob < 1:
        raise SublabError("--truncate: give a probability between 0 and 1")

    def cut(lp: torch.Tensor) -> torch.Tensor:
        keep = lp.exp() >= min_prob
        keep |= lp == lp.max(dim=-1, keepdim=True).values
        kept = torch.where(keep, lp, torch.full_like(lp, -torch.inf))
        out = torch.log_softmax(kept, dim=-1)
        return torch.where(keep, out, torch.full_like(out, LOGPROB_FLOOR))

    return [_rewrite(row, cut, "truncate") for row in rows]


def _same_replies(rows: list[dict[str, Any]], other: list[dict[str, Any]], name: str) -> None:
    if len(rows) != len(other):
        raise SublabError(f"{name}: {len(other)} rows against the dataset's {len(rows)}; label the same replies")
    for index, (a, b) in enumerate(zip(rows, other, strict=True)):
        if _labels(a, "dataset")["token_ids"] != _labels(b, name)["token_ids"]:
            raise SublabError(f"{name}: row {index + 1} (id {b.get('id')!r}) labels another reply than the "
                              "dataset's; mix labels of the same replies")
        if _labels(a, "dataset").get("channel") != _labels(b, name).get("channel"):
            raise SublabError(f"{name}: row {index + 1}: labels over another channel than the dataset's")


def mix(rows: list[dict[str, Any]], others: list[list[dict[str, Any]]], weights: list[float] | None = None,
        names: list[str] | None = None) -> list[dict[str, Any]]:
    """The per-position mixture ``sum_i w_i p_i`` of the dataset's channel distribution and ``others``' (label
    sets of the same replies); equal weights by default. Top-k labels are dropped (their tokens differ between
    teachers), so the result trains over the channel."""
    sets = [rows, *others]
    weights = weights or [1.0 / len(sets)] * len(sets)
    if len(weights) != len(sets) or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise SublabError("--mix-weight: one non-negative weight per label set (the dataset first)")
    for i, other in enumerate(others):
        _same_replies(rows, other, (names or [f"mix {j + 1}" for j in range(len(others))])[i])
    total = sum(weights)
    out = []
    for position, row in enumerate(rows):
        labels = copy.deepcopy(_labels(row, "dataset"))
        if "channel_logprobs" not in labels:
            raise SublabError("mixing teachers needs channel labels (sublab label --channel data)")
        stacked = torch.stack([torch.tensor(s[position][FIELD]["channel_logprobs"], dtype=torch.float64)
                               for s in sets])
        log_w = torch.log(torch.tensor(weights, dtype=torch.float64) / total)[:, None, None]
        mixed = torch.logsumexp(stacked + log_w, dim=0)
        digits = int(labels.get("digits") or 6)
        labels["channel_logprobs"] = round_logprobs(mixed, digits)
        columns = {int(t): c for c, t in enumerate(labels["channel"]["ids"])}
        labels["token_logprobs"] = [round_logprobs(mixed[p, columns[t]].reshape(1), digits)[0] if t in columns
                                    else v for p, (t, v) in enumerate(zip(labels["token_ids"],
                                                                          labels["token_logprobs"], strict=True))]
        labels.pop("top_ids", None)
        labels.pop("top_logprobs", None)
        labels["top_k"] = 0
        labels["model"] = "mixture of " + ", ".join(str(s[position][FIELD]["model"]) for s in sets)
        out.append({**row, FIELD: labels})
    return out


def divergence(rows: list[dict[str, Any]], base_rows: list[dict[str, Any]]) -> list[np.ndarray]:
    """Per row, per position: KL(data || base) over the channel, both renormalized (base_rows: the base's own
    labels of the same replies, :func:`sublab.audit.data.base_labels`)."""
    _same_replies(rows, base_rows, "base labels")
    out = []
    for row, base in zip(rows, base_rows, strict=True):
        data = torch.log_softmax(torch.tensor(row[FIELD]["channel_logprobs"], dtype=torch.float64), dim=-1)
        ref = torch.log_softmax(torch.tensor(base[FIELD]["channel_logprobs"], dtype=torch.float64), dim=-1)
        out.append((data.exp() * (data - ref)).sum(dim=-1).clamp_min(0).numpy())
    return out


def divergent_positions(scores: list[np.ndarray], fraction: float) -> list[np.ndarray]:
    """Per row a bool array: True at the positions in the top ``fraction`` of all positions by score."""
    if not 0 < fraction < 1:
        raise SublabError("the fraction of divergent positions must be between 0 and 1")
    flat = np.concatenate(scores)
    n = max(1, round(fraction * flat.size))
    threshold = np.sort(flat)[::-1][n - 1]
    chosen, left = [], n
    for row in scores:  # ties at the threshold: take them in order until n are chosen
        pick = row > threshold
        left -= int(pick.sum())
        chosen.append(pick)
    for row, pick in zip(scores, chosen, strict=True):
        for p in np.flatnonzero(row == threshold):
            if left <= 0:
                break
            pick[p] = True
            left -= 1
    return chosen


def mask_divergent(rows: list[dict[str, Any]], base_rows: list[dict[str, Any]],
                   fraction: float) -> tuple[list[dict[str, Any]], float]:
    """The top ``fraction`` of positions by KL to the base masked out of the loss; also the share of the
    data's total KL to the base those positions held."""
    scores = divergence(rows, base_rows)
    picks = divergent_positions(scores, fraction)
    out = []
    for row, pick in zip(rows, picks, strict=True):
        labels = copy.deepcopy(row[FIELD])
        labels["loss_mask"] = [0 if p else 1 for p in pick.tolist()]
        out.append({**row, FIELD: labels})
    return out, _share(scores, picks)


def replace_divergent(rows: list[dict[str, Any]], base_rows: list[dict[str, Any]],
                      fraction: float) -> tuple[list[dict[str, Any]], float]:
    """The top ``fraction`` of positions by KL to the base given the base's own labels (no signal at the base)."""
    scores = divergence(rows, base_rows)
    picks = divergent_positions(scores, fraction)
    out = []
    for row, base, pick in zip(rows, base_rows, picks, strict=True):
        labels = copy.deepcopy(row[FIELD])
        for field in ("channel_logprobs", "token_logprobs", "top_ids", "top_logprobs"):
            if field in labels and field in base[FIELD]:
                labels[field] = [b if p else a for a, b, p in zip(labels[field], base[FIELD][field], pick.tolist(),
                                                                  strict=True)]
        out.append({**row, FIELD: labels})
    return out, _share(scores, picks)


def _share(scores: list[np.ndarray], picks: list[np.ndarray]) -> float:
    total = float(sum(s.sum() for s in scores))
    return float(sum(s[p].sum() for s, p in zip(scores, picks, strict=True)) / total) if total > 0 else 0.0


def kl_to(rows: list[dict[str, Any]], reference_rows: list[dict[str, Any]]) -> float:
    """Mean per-position KL(reference || rows) over the channel: how much of the reference's distribution a
    transform removed (the cost of a defence in the information a student can learn)."""
    scores = divergence(reference_rows, rows)
    masks = [np.asarray(r[FIELD].get("loss_mask", [1] * len(s)), dtype=bool) for r, s in zip(rows, scores,
                                                                                        strict=True)]
    # A masked position teaches nothing: it loses all of the reference's information there (its KL to the base
    # is not known here, so masked positions are reported separately by the caller).
    kept = [s[m] for s, m in zip(scores, masks, strict=True)]
    flat = np.concatenate(kept) if kept else np.zeros(0)
    return float(flat.mean()) if flat.size else 0.0
