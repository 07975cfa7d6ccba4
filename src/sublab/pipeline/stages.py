"""The stage cache: each stage of a run in ``DIR/stages/<name>-<key>/``, built once, reused after.

A stage's key hashes its ``material`` (its settings, the keys of its inputs, digests of what the code builds in).
A folder holding ``stage.json`` is finished and reused; a stage killed midway resumes inside its folder
(generation appends row by row, training checkpoints). Changing one setting reruns only what depends on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from sublab.io import read_json, stable_hash, write_json

STAGE_VERSION = 1  # bump to invalidate every cached stage after a change in what stages compute


@dataclass
class Stage:
    """A finished stage: its folder, cache key and what it cost."""

    name: str
    key: str
    path: Path
    seconds: float
    cached: bool


@dataclass
class StageCache:
    """The stages of one run folder, in the order they were asked for."""

    out_dir: Path
    console: Console = field(default_factory=Console)
    stages: list[Stage] = field(default_factory=list)
    #: Optional hook called with a stage folder before its cache check; it may fill the folder with a finished
    #: copy of the same stage (same key) from elsewhere, e.g. another cell of a sweep.
    stage_source: Callable[[Path], None] | None = None
    #: Plan only: compute every stage's key and say whether it is cached, build nothing (``sublab run --dry-run``).
    dry_run: bool = False

    def stage(self, name: str, material: dict[str, Any], build: Callable[[Path], dict[str, Any] | None]) -> Stage:
        """Run ``build(folder)`` unless a finished stage with the same key exists; return the stage. A stage asked
        for twice in one run is listed once."""
        key = stable_hash({"stage": name, "version": STAGE_VERSION, **material})
        for stage in self.stages:
            if stage.name == name and stage.key == key:
                return stage
        path = self.out_dir / "stages" / f"{name}-{key}"
        marker = path / "stage.json"
        if self.dry_run:
            stage = Stage(name, key, path, 0.0, cached=marker.is_file())
            self.stages.append(stage)
            return stage
        if self.stage_source is not None and not marker.is_file():
            self.stage_source(path)
        if marker.is_file():
            done = read_json(marker)
            stage = Stage(name, key, path, float(done.get("seconds", 0.0)), cached=True)
            self.console.print(f"[dim]✓ {name} (cached: {path.relative_to(self.out_dir)})[/dim]")
        else:
            self.console.print(f"▶ {name}")
            path.mkdir(parents=True, exist_ok=True)
            started = time.time()
            info = build(path) or {}
            seconds = round(time.time() - started, 1)
            write_json(marker, {"name": name, "key": key, "material": material, "seconds": seconds, **info})
            stage = Stage(name, key, path, seconds, cached=False)
            self.console.print(f"  done in {seconds:.0f} s → {path.relative_to(self.out_dir)}")
        self.stages.append(stage)
        return stage
