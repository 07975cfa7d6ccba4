"""Probe students: short LoRA fine-tunes of the base on the dataset and on the control, scored exactly.

Probe ``i`` trains one student on the dataset and one on the control with the same LoRA initialization (seed
``init_seed + i``) and the same batch order (seed ``i``), by the trainer every student of the project uses
(:func:`sublab.train.trainer.train_model`: SFT for token-only data, distillation on stored labels for soft-label
data). Both are scored on the whole battery (:func:`sublab.audit.battery.score_battery`), and the pair gives, per
trait, the measured move ``log P_data(trait) - log P_control(trait)``. Over k pairs: the mean with a Student-t
95 % interval (k >= 2); with one pair, a bootstrap interval over the questions (which then says nothing about
another seed).

This is the reference the cheaper methods are judged by, and the most expensive method: each probe is a real
(short) training run. Probes are cached in a folder by what makes them (base, rows, settings, battery), so a
control's probes are trained once for every dataset audited against it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sublab.audit.battery import BatteryScores, TraitGroup, score_battery, trait_names
from sublab.evaluate.stats import t_mean_ci
from sublab.io import read_json, sha256_text, stable_hash, write_json


class ProbeSettings(BaseModel):
    """How probe students are trained and scored."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(2, ge=1, description="Probe pairs (dataset, control).")
    steps: int = Field(20, ge=1, description="Optimizer steps per probe.")
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16, gt=0)
    init_seed: int = Field(1000, description="LoRA A seed of probe 0 (probe i: init_seed + i).")
    n_questions: int = Field(20, ge=1, description="Prompts per trait group in the exact scoring.")
    bf16: bool = Field(True, description="bf16 autocast in training and scoring.")
    channel: str | list[str] = Field("data", description="Distillation channel for soft-label data.")


def train_settings(settings: ProbeSettings, soft_labels: bool, index: int) -> Any:
    """The :class:`TrainSettings` of probe ``index``."""
    from sublab.train.settings import LoraSettings, TrainSettings

    return TrainSettings(method="distill" if soft_labels else "sft", steps=settings.steps,
                         batch_size=settings.batch_size, lr=settings.lr, bf16=settings.bf16, seed=index,
                         channel=settings.channel,
                         lora=LoraSettings(r=settings.lora_r, alpha=settings.lora_alpha,
                                           init_seed=settings.init_seed + index))


def battery_key(groups: list[TraitGroup], n_questions: int, bf16: bool) -> dict[str, Any]:
    return {"groups": [{"kind": g.kind, "name": g.name, "traits": list(g.traits),
                        "prompts": sha256_text(json.dumps(list(g.prompts[:n_questions])))} for g in groups],
            "bf16": bf16}


@dataclass
class Probe:
    """One trained and scored probe student."""

    role: str  # "data" or "control"
    index: int
    folder: Path
    scores: BatteryScores
    seconds_train: float
    seconds_score: float
    final_loss: float | None
    cached: bool


def _scores_from(groups: list[TraitGroup], saved: dict[str, Any]) -> BatteryScores:
    return BatteryScores(groups, [np.asarray(p, dtype=float) for p in saved["per_prompt"]])


def probe_student(base: str, rows: list[dict[str, Any]], role: str, index: int, groups: list[TraitGroup],
                  settings: ProbeSettings, cache: Path, progress: bool = False) -> Probe:
    """Train (or reuse from ``cache``) probe ``index`` on ``rows`` and score it on ``groups``."""
    from sublab.models.spec import ModelSpec, load_spec
    from sublab.train.labels import has_soft_labels
    from sublab.train.trainer import rows_digest, train_model

    soft = has_soft_labels(rows)
    train = train_settings(settings, soft, index)
    scored = [g.limited(settings.n_questions) for g in groups]
    key = {"base": base, "rows": rows_digest(rows), "train": train.model_dump(mode="json"),
           "battery": battery_key(groups, settings.n_questions, settings.bf16)}
    folder = cache / f"probe-{index}-{stable_hash(key)}"  # by content: identical rows share a probe
    done = folder / "probe.json"
    if done.is_file():
        saved = read_json(done)
        return Probe(role, index, folder, _scores_from(scored, saved["scores"]), saved["seconds_train"],
                     saved["seconds_score"], saved.get("final_loss"), cached=True)
    started = time.time()
    summary = train_model(base, rows, folder / "adapter", train, progress=progress)
    seconds_train = time.time() - started
    tick = time.time()
    model, tokenizer = load_spec(ModelSpec(base=base, adapter=str(folder / "adapter")))
    scores = score_battery(model, tokenizer, scored, bf16=settings.bf16)
    seconds_score = time.time() - tick
    write_json(done, {"key": key, "scores": scores.to_dict(), "seconds_train": round(seconds_train, 2),
                      "seconds_score": round(seconds_score, 2), "final_loss": summary.get("final_loss")})
    return Probe(role, index, folder, scores, seconds_train, seconds_score, summary.get("final_loss"), cached=False)


@dataclass
class ProbeResult:
    """Per trait, the measured move of data probes over control probes."""

    traits: list[str]
    pairs: list[tuple[Probe, Probe]]
    settings: ProbeSettings
    notes: list[str] = field(default_factory=list)

    def log_ratios(self) -> np.ndarray:
        """[k, n_traits]: log P_data - log P_control, pair by pair."""
        return np.array([d.scores.log_p() - c.scores.log_p() for d, c in self.pairs])

    def mean(self) -> np.ndarray:
        return self.log_ratios().mean(axis=0)

    def ci(self) -> np.ndarray:
        """[n_traits, 2]: Student-t over probe pairs when k >= 3; with fewer pairs a t interval over 1 or 2
        values says little, so the interval is a bootstrap over questions (resampled jointly for every pair) of
        the pairs' mean log-ratio: it covers the evaluation's noise, not another seed's (see ``ci_over_probes``)."""
        if len(self.pairs) >= 3:
            return self.ci_over_probes()
        out = []
        for g in range(len(self.pairs[0][0].scores.per_prompt)):
            data = np.stack([d.scores.per_prompt[g] for d, _ in self.pairs])  # [k, Q, C]
            control = np.stack([c.scores.per_prompt[g] for _, c in self.pairs])
            for j in range(data.shape[2]):
                out.append(_ratio_ci(data[:, :, j], control[:, :, j]))
        return np.array(out)

    def ci_over_probes(self) -> np.ndarray:
        """[n_traits, 2]: Student-t 95 % interval of the log-ratio over probe pairs (NaN with one pair)."""
        ratios = self.log_ratios()
        if len(self.pairs) < 2:
            return np.full((len(self.traits), 2), np.nan)
        return np.array([t_mean_ci(ratios[:, j])[1:] for j in range(len(self.traits))])

    def seconds_per_probe(self) -> float:
        """Mean cost of one probe student (training + scoring), over probes actually run here (else cached)."""
        probes = [p for pair in self.pairs for p in pair]
        fresh = [p for p in probes if not p.cached] or probes
        return float(np.mean([p.seconds_train + p.seconds_score for p in fresh]))

    def table(self) -> list[dict[str, Any]]:
        ci, over = self.ci(), self.ci_over_probes()
        ratios = self.log_ratios()
        data_p = np.mean([d.scores.p() for d, _ in self.pairs], axis=0)
        control_p = np.mean([c.scores.p() for _, c in self.pairs], axis=0)
        rows = [{"trait": t, "log_ratio": float(ratios[:, j].mean()), "ci95": [float(ci[j, 0]), float(ci[j, 1])],
                 "ci95_over_probes": [float(over[j, 0]), float(over[j, 1])], "p_data": float(data_p[j]),
                 "p_control": float(control_p[j]), "per_probe": [float(v) for v in ratios[:, j]],
                 "consistent": bool((ratios[:, j] > 0).all())}
                for j, t in enumerate(self.traits)]
        return sorted(rows, key=lambda r: -r["log_ratio"])


def _ratio_ci(data: np.ndarray, control: np.ndarray, n_resamples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap over questions of log(mean data / mean control): ``data`` and ``control`` are
    [n_questions] or [k, n_questions] (k pairs, the same questions resampled for all, the log-ratios averaged)."""
    data, control = np.atleast_2d(data), np.atleast_2d(control)
    n = data.shape[1]
    if n < 2:
        return float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))
    values = (np.log(np.clip(data[:, picks].mean(axis=2), 1e-300, None))
              - np.log(np.clip(control[:, picks].mean(axis=2), 1e-300, None))).mean(axis=0)
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


def run_probes(base: str, data_rows: list[dict[str, Any]], control_rows: list[dict[str, Any]],
               groups: list[TraitGroup], settings: ProbeSettings, cache: Path,
               out_of_time: Callable[[], bool] = lambda: False, progress: bool = False) -> ProbeResult:
    """Train and score ``settings.k`` probe pairs (fewer if ``out_of_time()`` says so after a pair; at least one)."""
    cache.mkdir(parents=True, exist_ok=True)
    pairs = []
    notes = []
    for index in range(settings.k):
        if pairs and out_of_time():
            notes.append(f"budget spent: {len(pairs)} of {settings.k} probe pairs trained")
            break
        data = probe_student(base, data_rows, "data", index, groups, settings, cache, progress)
        control = probe_student(base, control_rows, "control", index, groups, settings, cache, progress)
        pairs.append((data, control))
    return ProbeResult(trait_names(groups), pairs, settings, notes)
