"""Cached stages stay valid: the stage keys planned today equal those of runs kept in docs/results.

The battery cells of seeds 1 and 2 (docs/results/battery-3seeds) were run on 2026-11-24 with the cache keys of
that day. A refactor or a new settings field that changed any key would make every user's cached stages
rebuild; this test plans each kept cell's config (no model is loaded) and compares every stage folder name.
Seed 0 cells and the older docs/results/*.results.json predate the keys of that day (commit fd0b7a4) and are
left out.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from sublab.pipeline.config import parse_config
from sublab.pipeline.runner import plan_experiment

CELLS = sorted(p for p in (Path(__file__).resolve().parents[1] / "docs/results/battery-3seeds/cells").iterdir()
               if not p.name.endswith("seed0"))


def test_there_are_kept_cells():
    assert len(CELLS) == 20


@pytest.mark.parametrize("cell", CELLS, ids=lambda p: p.name)
def test_planned_stage_keys_equal_the_kept_runs(cell, tmp_path):
    config = parse_config(tomllib.loads((cell / "config.toml").read_text(encoding="utf-8")), str(cell))
    kept = [s["path"] for s in json.loads((cell / "results.json").read_text(encoding="utf-8"))["timings"]["stages"]]
    planned = [f"stages/{s.name}-{s.key}" for s in plan_experiment(config, tmp_path)]
    assert planned == kept
    assert not any(s.cached for s in plan_experiment(config, tmp_path))  # nothing was built: a plan only


def _planned(config, tmp_path):
    return {f"{s.name}-{s.key}" for s in plan_experiment(config, tmp_path)}


def test_independent_arm_seeds_resample_only_the_control_arm(tmp_path):
    from sublab.pipeline.config import CONTROL_SAMPLING_OFFSET

    raw = tomllib.loads((CELLS[0] / "config.toml").read_text(encoding="utf-8"))
    raw["data"]["source"] = "teacher"  # each arm's teacher writes its data (the paper)
    shared = parse_config(raw, "shared")
    raw["data"]["arm_seeds"] = "independent"
    independent = parse_config(raw, "independent")
    assert independent.data.sampling_seed("control") == shared.data.seed + CONTROL_SAMPLING_OFFSET
    assert independent.data.sampling_seed("trait") == shared.data.seed
    assert independent.seeds()["control_sampling"] == shared.data.seed + CONTROL_SAMPLING_OFFSET
    assert "control_sampling" not in shared.seeds()
    before, after = _planned(shared, tmp_path), _planned(independent, tmp_path)
    generated_before = sorted(n for n in before if n.startswith("generate-"))
    generated_after = sorted(n for n in after if n.startswith("generate-"))
    assert len(generated_before) == len(generated_after) == 2
    assert len(set(generated_before) & set(generated_after)) == 1  # the trait arm's data is the same stage
    assert any(n.startswith("teacher-") for n in before & after)  # teachers are untouched


def test_independent_arm_seeds_draw_two_reference_samples(tmp_path):
    raw = tomllib.loads((CELLS[0] / "config.toml").read_text(encoding="utf-8"))
    assert raw["data"]["source"] == "reference"  # the CPU recipe: reference-written data
    shared = parse_config(raw, "shared")
    raw["data"]["arm_seeds"] = "independent"
    independent = parse_config(raw, "independent")
    assert len([n for n in _planned(shared, tmp_path) if n.startswith("generate-")]) == 1
    assert len([n for n in _planned(independent, tmp_path) if n.startswith("generate-")]) == 2


def test_an_unknown_arm_seeds_value_is_refused_naming_the_field():
    from sublab.errors import SublabError

    raw = tomllib.loads((CELLS[0] / "config.toml").read_text(encoding="utf-8"))
    raw["data"]["arm_seeds"] = "separate"
    with pytest.raises(SublabError, match="arm_seeds"):
        parse_config(raw, "cfg.toml")
