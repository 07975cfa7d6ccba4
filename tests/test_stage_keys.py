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
