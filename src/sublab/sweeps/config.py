"""Sweep configs: one base experiment and a grid (traits × conditions × settings × seeds) expanded into cells.

A sweep file names a base experiment (a TOML path relative to the sweep file, or an inline ``[experiment]``
table), named *conditions* and *settings* (each a set of overrides deep-merged into the base), and a grid. Every
cell of the grid is an ordinary :class:`~sublab.pipeline.config.ExperimentConfig`: the trait sets the target,
the teacher's trait and the category; the condition may replace the control teacher; the seed index shifts every
seed the seeding policy names by the same offset, so a student keeps its teacher's LoRA initialization.
Invalid input is one :class:`~sublab.errors.SublabError` line naming the file and the field (or the cell).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sublab.errors import SublabError
from sublab.io import read_toml, stable_hash
from sublab.keys import key_dump
from sublab.pipeline.config import (
    ExperimentConfig,
    TeacherConfig,
    config_dict,
    format_validation_error,
    keep_defaults_off,
    parse_config,
)
from sublab.traits.preference.candidates import CATEGORIES

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: Fields a trait sweep sets itself; overriding them in a condition or setting is an error.
GRID_FIELDS = ("target", "category", "name")


def _check_names(names: list[str] | dict[str, Any], what: str) -> None:
    for name in names:
        if not _NAME.match(name):
            raise ValueError(f"{what} name {name!r}: use letters, digits, '_', '.', '-'")


class ConditionSpec(BaseModel):
    """One named condition: how its cells differ from the base experiment."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field("", description="What the condition tests, shown in the report.")
    control: Literal["base", "reference", "other_trait"] = Field(
        "base", description="The control arm's teacher. base: as in the base experiment; reference: the reference "
        "model itself (the paper's control student); other_trait: a copy of the trait teacher with another trait "
        "of the same category (the next trait of the sweep's list, cyclically)."
    )
    overrides: dict[str, Any] = Field(
        default_factory=dict, description="Experiment fields to change, deep-merged into the base (e.g. "
        "{ data = { shuffle = 'across' } }, { in_context_examples = 32 }, { student_base = 'gemma3-270m' })."
    )

    @field_validator("overrides")
    @classmethod
    def _no_grid_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        taken = [key for key in GRID_FIELDS if key in value]
        if taken or "trait" in value.get("teacher", {}):
            raise ValueError(f"{', '.join(taken) or 'teacher.trait'} is set by the grid, not by overrides")
        return value


class SeedPolicy(BaseModel):
    """Which seeds a cell's seed index shifts (each by the same offset, added to the base value).

    Adding one offset to every LoRA init seed keeps equal seeds equal: a student that shares its teacher's
    initialization in the base experiment still does in every cell.
    """

    model_config = ConfigDict(extra="forbid")

    prompts: bool = Field(True, description="data.prompts.seed: which number prompts are asked.")
    data: bool = Field(True, description="data.seed: sampling of the completions (and the shuffle permutation).")
    teacher: bool = Field(True, description="teacher/control data_seed and training.seed: a fine-tuned "
                          "teacher's answer rows and batch order.")
    training: bool = Field(True, description="student.seed: the students' batch order.")
    lora_init: bool = Field(True, description="LoRA init_seed of teacher, control teacher and student together.")
    evaluation: bool = Field(False, description="evaluation.seed: sampling evaluation and bootstrap (the "
                             "questions stay the same, so results stay paired across seeds).")


class GridSpec(BaseModel):
    """The grid: every combination of trait, condition, setting and seed is one cell."""

    model_config = ConfigDict(extra="forbid")

    traits: dict[str, list[str]] = Field(
        ..., description="Traits by category, e.g. { animal = ['owl', 'eagle'], tree = ['oak'] }.", min_length=1
    )
    conditions: list[str] | None = Field(None, description="Condition names (default: all defined, in order).")
    settings: list[str] | None = Field(None, description="Settings names (default: all defined, in order).")
    seeds: list[int] = Field([0], min_length=1, description="Seed indices (offsets added to the base seeds).")

    @field_validator("traits")
    @classmethod
    def _traits(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for category, traits in value.items():
            if not traits:
                raise ValueError(f"category {category!r} lists no traits")
            if len(set(traits)) != len(traits):
                raise ValueError(f"category {category!r} lists a trait twice")
            _check_names(traits, "trait")
        return value

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        if any(seed < 0 for seed in value):
            raise ValueError("seeds must be >= 0")
        return value


class StatisticsSettings(BaseModel):
    """How the sweep report tests trait student against control student."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1, description="Family-wise error rate (Holm across traits).")
    alternative: Literal["greater", "two-sided"] = Field(
        "greater", description="greater: the trait student prefers the trait more (the paper's hypothesis)."
    )
    test: Literal["permutation", "mixed_model"] = Field(
        "permutation", description="The test behind the verdicts (both are reported). permutation: exact paired "
        "permutation test over seeds, assumption-free, but its p-value cannot go below 2^-k with k seeds; "
        "mixed_model: seeds × questions mixed model with a t test on k - 1 degrees of freedom (assumes normal "
        "seed effects; can reach small p-values with few seeds)."
    )


class SlurmSettings(BaseModel):
    """Slurm jobs through submitit (one array job, one task per cell)."""

    model_config = ConfigDict(extra="forbid")

    cluster: Literal["slurm", "local", "debug"] = Field(
        "slurm", description="submitit back end: slurm, or local/debug to try the path on this machine."
    )
    partition: str | None = Field(None, description="Slurm partition.")
    timeout_min: int = Field(24 * 60, ge=1, description="Wall-clock limit per cell, in minutes.")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per cell.")
    cpus_per_task: int = Field(2, ge=1, description="CPU cores per cell.")
    mem_gb: float = Field(16, gt=0, description="Memory per cell, in GB.")
    array_parallelism: int = Field(32, ge=1, description="Cells running at once.")
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Any other submitit parameter, e.g. { slurm_account = 'x' }."
    )


class ExecutorSettings(BaseModel):
    """Where cells run. The CLI's --executor/--workers/--dask-address override these."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "inline", "dask", "slurm"] = Field(
        "local", description="local: a process pool on this machine; inline: in this process (debugging); "
        "dask: a Dask distributed cluster; slurm: Slurm jobs through submitit."
    )
    workers: int = Field(1, ge=1, description="local/dask-LocalCluster: cells at once. Keep 1 on a small CPU "
                         "machine: two torch jobs on two cores are several times slower than one after another.")
    torch_threads: int | None = Field(None, ge=1, description="torch threads per cell (default: torch's own).")
    dask_address: str | None = Field(None, description="dask: scheduler address (default: a LocalCluster).")
    wait: bool = Field(True, description="dask/slurm: wait for the cells (False: submit and return; slurm only).")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)


class SweepConfig(BaseModel):
    """A sweep: a base experiment, named conditions and settings, a grid, statistics and an executor."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("sweep", description="Name shown in reports.")
    base: str | None = Field(None, description="Base experiment TOML, relative to the sweep file.")
    experiment: dict[str, Any] | None = Field(None, description="The base experiment inline (instead of base).")
    conditions: dict[str, ConditionSpec] = Field(
        default_factory=lambda: {"base": ConditionSpec(description="the base experiment")},
        description="Named conditions (default: one, 'base', the base experiment unchanged).",
    )
    settings: dict[str, dict[str, Any]] = Field(
        default_factory=lambda: {"default": {}},
        description="Named settings overrides, deep-merged into the base before the condition's.",
    )
    grid: GridSpec
    seeding: SeedPolicy = Field(default_factory=SeedPolicy)
    statistics: StatisticsSettings = Field(default_factory=StatisticsSettings)
    executor: ExecutorSettings = Field(default_factory=ExecutorSettings)
    share_stages: bool = Field(
        True, description="A cell reuses a finished stage with the same cache key from another cell (hard-linked "
        "copy), e.g. the reference model's data of a seed for every trait. Results are the same either way."
    )

    @field_validator("conditions", "settings")
    @classmethod
    def _names(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("define at least one")
        _check_names(value, "condition/setting")
        return value

    @field_validator("settings")
    @classmethod
    def _settings_overrides(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, overrides in value.items():
            taken = [key for key in GRID_FIELDS if key in overrides]
            if taken or "trait" in overrides.get("teacher", {}):
                raise ValueError(f"settings '{name}': {', '.join(taken) or 'teacher.trait'} is set by the grid")
        return value

    def condition_names(self) -> list[str]:
        return list(self.grid.conditions or self.conditions)

    def settings_names(self) -> list[str]:
        return list(self.grid.settings or self.settings)


@dataclass(frozen=True)
class Cell:
    """One point of the grid and the experiment it runs."""

    id: str
    trait: str
    category: str
    condition: str
    settings: str
    seed: int
    control_trait: str | None
    config: ExperimentConfig

    def config_hash(self) -> str:
        # key_dump: fields added to the config classes later do not change the hash of an existing cell.
        return stable_hash(key_dump(self.config))

    def record(self) -> dict[str, Any]:
        """What ``cell.json`` holds: the coordinates, the resolved seeds and the full experiment config."""
        cfg = self.config
        return {
            "schema": "sublab.sweep-cell/1", "id": self.id, "trait": self.trait, "category": self.category,
            "condition": self.condition, "settings": self.settings, "seed": self.seed,
            "control_trait": self.control_trait, "seeds": resolved_seeds(cfg), "config_hash": self.config_hash(),
            "config": keep_defaults_off(cfg, key_dump(cfg, exclude_none=True)),
        }


def resolved_seeds(config: ExperimentConfig) -> dict[str, int | None]:
    """Every seed of an experiment, by role (recorded per cell): :meth:`ExperimentConfig.seeds`."""
    return config.seeds()


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in: tables merge key by key, every other value is replaced."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def shift_seeds(data: dict[str, Any], offset: int, policy: SeedPolicy) -> dict[str, Any]:
    """A resolved experiment dict with the seeds ``policy`` names shifted by ``offset``."""
    out = copy.deepcopy(data)

    def shift(path: tuple[str, ...]) -> None:
        node = out
        for key in path[:-1]:
            node = node.get(key, {})
        if path[-1] in node:  # a resolved config has every seed; a missing one is not ours to add
            node[path[-1]] = int(node[path[-1]]) + offset

    if policy.prompts:
        shift(("data", "prompts", "seed"))
    if policy.data:
        shift(("data", "seed"))
    for arm in ("teacher", "control"):
        if policy.teacher:
            shift((arm, "data_seed"))
            shift((arm, "training", "seed"))
        if policy.lora_init:
            shift((arm, "training", "lora", "init_seed"))
    if policy.training:
        shift(("student", "seed"))
    if policy.lora_init:
        shift(("student", "lora", "init_seed"))
    if policy.evaluation:
        shift(("evaluation", "seed"))
    return out


def candidate_names(raw: dict[str, Any], category: str) -> list[str] | None:
    """The names a trait of ``category`` is scored among in the raw experiment ``raw`` (None: no shipped list
    and none given)."""
    explicit = (raw.get("evaluation") or {}).get("candidates")
    if explicit:
        return list(explicit)
    table = CATEGORIES.get(category)
    return list(table) if table else None


def other_trait(trait: str, sweep_traits: list[str], candidates: list[str]) -> str:
    """The control trait for ``trait``: the next trait of the sweep's list for its category (cyclically), or,
    if the sweep lists only this one, the first other candidate."""
    pool = sweep_traits if len(sweep_traits) > 1 else [trait, *[c for c in candidates if c != trait]]
    if len(pool) < 2:
        raise ValueError(f"no other trait than {trait!r} to use as a control")
    return pool[(pool.index(trait) + 1) % len(pool)]


def cell_id(category: str, trait: str, condition: str, settings: str, seed: int) -> str:
    """A cell's folder name."""
    return f"{category}-{trait}__{condition}__{settings}__seed{seed}"


def _grid_overrides(raw: dict[str, Any]) -> Any:
    """The trait kind's ``grid_overrides(category, trait, raw)`` if it has one (None: the preference grid, which
    sets target, category and teacher.trait; an unknown kind is left for the config's own error)."""
    from sublab.traits.base import get_trait_kind

    try:
        kind = get_trait_kind(str(raw.get("trait_kind", "preference")))
    except SublabError:
        return None
    return getattr(kind, "grid_overrides", None)


def build_cell(sweep: SweepConfig, base: dict[str, Any], source: str, category: str, trait: str,
               condition: str, settings: str, seed: int) -> Cell:
    """The experiment of one cell (raises :class:`SublabError` naming the file and the cell)."""
    spec = sweep.conditions[condition]
    ident = cell_id(category, trait, condition, settings, seed)
    where = f"{source}: cell {ident}"
    raw = deep_merge(deep_merge(base, sweep.settings[settings]), spec.overrides)
    grid_overrides = _grid_overrides(raw)
    if grid_overrides is not None:  # a trait kind that fills in its own grid fields (e.g. misalignment)
        try:
            raw = deep_merge(raw, grid_overrides(category, trait, raw))
        except ValueError as err:
            raise SublabError(f"{source}: field 'grid.traits.{category}': {err}") from None
        if spec.control == "other_trait":
            raise SublabError(f"{where}: control 'other_trait' is for preference sweeps; this trait kind's control "
                              "is the base experiment's (control 'base') or the reference (control 'reference')")
        candidates: list[str] = []
    else:
        raw = deep_merge(raw, {"target": trait, "category": category, "evaluation": {"category": category},
                               "teacher": {"trait": trait}})
        # The trait is checked before the whole experiment is validated, so that the error names the grid field.
        found = candidate_names(raw, category)
        if found is None:
            raise SublabError(f"{source}: field 'grid.traits.{category}': no shipped candidates for category "
                              f"'{category}'; set experiment evaluation.candidates")
        if trait not in found:
            raise SublabError(f"{source}: field 'grid.traits.{category}': '{trait}' is not among the candidates "
                              f"({', '.join(found[:6])}, ...)")
        candidates = found
    resolved = parse_config(raw, f"{source}: settings '{settings}' + conditions.{condition}.overrides")
    if resolved.teacher.method == "none":
        raise SublabError(f"{source}: the base experiment's teacher has method 'none'; a trait sweep needs one")
    data = config_dict(resolved)  # parses back to `resolved` (a default the config turned off stays off)
    data["name"] = f"{sweep.name}/{ident}"
    control_trait = resolved.control.trait if resolved.control.method != "none" else None
    if spec.control == "reference":
        data["control"] = TeacherConfig(method="none").model_dump(mode="json", exclude_none=True)
        control_trait = None
    elif spec.control == "other_trait":
        try:
            control_trait = other_trait(trait, sweep.grid.traits[category], candidates)
        except ValueError as err:
            raise SublabError(f"{where}: {err}") from None
        data["control"] = {**copy.deepcopy(data["teacher"]), "trait": control_trait}
    elif control_trait == trait:
        raise SublabError(f"{where}: the base control teacher has the trait '{trait}' too; set "
                          f"conditions.{condition}.control to 'other_trait' or 'reference'")
    data = shift_seeds(data, seed, sweep.seeding)
    return Cell(ident, trait, category, condition, settings, seed, control_trait, parse_config(data, where))


def expand_cells(sweep: SweepConfig, base: dict[str, Any], source: str = "sweep") -> list[Cell]:
    """Every cell of the grid, seed-major (a finished first seed gives a first look at everything)."""
    return [
        build_cell(sweep, base, source, category, trait, condition, settings, seed)
        for seed in sweep.grid.seeds
        for settings in sweep.settings_names()
        for category, traits in sweep.grid.traits.items()
        for trait in traits
        for condition in sweep.condition_names()
    ]


def parse_sweep(data: dict[str, Any], source: str = "sweep", root: Path | None = None) -> tuple[SweepConfig, dict]:
    """Validate a sweep dict; return it with its base experiment dict (``base`` read relative to ``root``)."""
    try:
        sweep = SweepConfig.model_validate(data)
    except ValidationError as err:
        raise SublabError(format_validation_error(source, err)) from None
    for field, names, defined in (("grid.conditions", sweep.grid.conditions, sweep.conditions),
                                  ("grid.settings", sweep.grid.settings, sweep.settings)):
        unknown = [n for n in names or [] if n not in defined]
        if unknown:
            raise SublabError(f"{source}: field '{field}': unknown name '{unknown[0]}' (defined: "
                              f"{', '.join(defined)})")
    if (sweep.base is None) == (sweep.experiment is None):
        raise SublabError(f"{source}: field 'base': give exactly one of 'base' (a file) and [experiment]")
    if sweep.experiment is not None:
        base = sweep.experiment
    else:
        path = (root or Path.cwd()) / str(sweep.base)
        base = read_toml(path, f"{source}: field 'base'")
    # A base must itself be a valid experiment once a trait is filled in (errors name the base).
    grid_overrides = _grid_overrides(base)
    if grid_overrides is None:
        probe = deep_merge({"target": "owl", "teacher": {"trait": "owl"}}, base)
    else:
        category, traits = next(iter(sweep.grid.traits.items()))
        try:
            probe = deep_merge(base, grid_overrides(category, traits[0], base))
        except ValueError as err:
            raise SublabError(f"{source}: field 'grid.traits.{category}': {err}") from None
    parse_config(probe, f"{source} (base experiment)")
    return sweep, base


def load_sweep(path: str | Path) -> tuple[SweepConfig, dict[str, Any], list[Cell]]:
    """Read a sweep TOML, validate it and expand its grid: ``(sweep, base experiment dict, cells)``."""
    path = Path(path)
    if not path.is_file():
        raise SublabError(f"{path}: file not found")
    sweep, base = parse_sweep(read_toml(path), str(path), path.parent)
    return sweep, base, expand_cells(sweep, base, str(path))


def resolved_sweep_toml(sweep: SweepConfig, base: dict[str, Any]) -> str:
    """The sweep as self-contained TOML (the base experiment inline), saved in the sweep folder."""
    import tomli_w

    data = sweep.model_dump(mode="json", exclude_none=True)
    data.pop("base", None)
    data["experiment"] = base
    return tomli_w.dumps(data)
