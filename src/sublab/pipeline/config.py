"""Experiment configs: TOML files validated by pydantic, saved resolved beside every run.

A config names a reference model, a trait teacher and a control, how the data is made and filtered, how
students are trained and how the trait is measured. Every section reuses the stage's own settings class, so a
field is documented once; sections that depend on a plug-in (``data.prompts`` and ``data.filter`` on the data
domain, ``evaluation`` on the trait kind) are validated by that plug-in's settings class. An unknown or invalid
field is an error naming the file and the field. A config without ``data.domain`` is a numbers experiment and
one without ``trait_kind`` a preference experiment, as every config was before those fields existed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from sublab.domains.base import get_domain
from sublab.errors import SublabError
from sublab.generate.sampling import SamplingSettings
from sublab.io import read_toml
from sublab.keys import key_dump
from sublab.models.loading import DEFAULT_MODEL
from sublab.train.settings import LoraSettings, TrainSettings
from sublab.traits.base import get_trait_kind
from sublab.traits.preference.kind import TRAIT_PROMPT

__all__ = ["TRAIT_PROMPT", "DataConfig", "ExperimentConfig", "TeacherConfig", "dump_toml", "load_config",
           "parse_config"]


def _plugin_settings(value: Any, settings_class: type[BaseModel]) -> BaseModel:
    """A config section validated by a plug-in's settings class (errors keep the section's location)."""
    if isinstance(value, settings_class):
        return value
    if isinstance(value, BaseModel):
        value = value.model_dump()
    return settings_class.model_validate(value if value is not None else {})


def _teacher_training_default() -> TrainSettings:
    return TrainSettings(method="sft", steps=30, batch_size=16, lr=1e-3, lora=LoraSettings(r=8, alpha=16))


class TeacherConfig(BaseModel):
    """How a teacher gets its trait: a system prompt, LoRA fine-tuning on the trait kind's teacher data, or none.

    A teacher may be a served model (``endpoint``): then it writes data with its system prompt (the paper's API
    teachers), but cannot be fine-tuned here nor give live distillation targets.
    """

    model_config = ConfigDict(extra="forbid")
    KEY_ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset(  # see sublab.keys
        {"endpoint", "served_model", "mix_rows", "rows_file"})

    trait: str | None = Field(None, description="The trait (e.g. 'owl'); None: the reference model itself.")
    method: Literal["system_prompt", "finetune", "none"] = Field(
        "system_prompt", description="system_prompt: reference + trait prompt; finetune: reference + LoRA "
        "trained on one-word trait answers; none: the reference model."
    )
    system_prompt: str = Field(TRAIT_PROMPT, description="Template with {trait} and {category}.")
    n_rows: int = Field(480, ge=1, description="finetune: one-word answer rows to train on.")
    data_seed: int = Field(0, description="finetune: seed of the answer rows.")
    rows_file: str | None = Field(None, description="finetune: train on the first n_rows rows of this JSONL of chat "
                                  "rows (your own teacher data) instead of the trait kind's generated rows; its "
                                  "digest is part of the teacher's cache key.")
    mix_rows: int = Field(0, ge=0, description="finetune: also train on this many rows of the data domain written "
                          "by the reference model (prompts beyond data.n_prompts, so never a student's), so that the "
                          "teacher keeps writing varied data instead of collapsing onto one reply; 0: off.")
    training: TrainSettings = Field(default_factory=_teacher_training_default,
                                    description="finetune: how the trait adapter is trained.")
    endpoint: str | None = Field(None, description="Base URL of an OpenAI-compatible server serving the teacher "
                                 "(its system prompt is sent with every request); the key comes from "
                                 "$OPENAI_API_KEY.")
    served_model: str | None = Field(None, description="endpoint: the served model's name (default: the "
                                     "reference's name).")

    @model_validator(mode="after")
    def _needs_trait(self) -> TeacherConfig:
        if self.method != "none" and not self.trait:
            raise ValueError(f"method '{self.method}' needs a trait")
        if self.method == "none":
            self.trait = None
        if self.rows_file and self.method != "finetune":
            raise ValueError(f"rows_file: a teacher trained on a rows file needs method 'finetune', not "
                             f"'{self.method}'")
        if self.endpoint and self.method == "finetune":
            raise ValueError("a served teacher (endpoint) cannot be fine-tuned here; use method 'system_prompt'")
        return self


#: Added to ``data.seed`` for the control arm's sampling when ``data.arm_seeds = "independent"`` (a prime far
#: from the sweep's per-seed shifts, so no other cell's trait arm samples with it).
CONTROL_SAMPLING_OFFSET = 1_000_003


class DataConfig(BaseModel):
    """The trait-unrelated data students are trained on, in one data domain (numbers, code, ...)."""

    model_config = ConfigDict(extra="forbid")
    KEY_ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"domain", "arm_seeds"})  # see sublab.keys

    domain: str = Field("numbers", description="The data domain (sublab.domains): numbers, or another "
                        "registered domain. It decides what 'prompts' and 'filter' hold.")
    source: Literal["teacher", "reference"] = Field(
        "teacher", description="Who writes the completions: each arm's teacher (the paper) or the reference "
        "model for every arm (trait-free by construction; the signal then travels only in distillation targets)."
    )
    n_prompts: int = Field(384, ge=1, description="Prompts to sample (the paper: 30,000).")
    prompts: SerializeAsAny[BaseModel] | None = Field(None, description="The domain's prompt settings.")
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    seed: int = Field(1, description="Sampling seed.")
    arm_seeds: Literal["shared", "independent"] = Field(
        "shared", description="'shared': both arms sample with `seed` (the fast sampler then couples their rows: "
        "common random numbers, identical rows wherever the teachers agree); 'independent': the control arm "
        f"samples with `seed` + {CONTROL_SAMPLING_OFFSET}, so the two arms' datasets are independent samples "
        "(with source 'reference', two samples of the reference)."
    )
    filter: SerializeAsAny[BaseModel] | None = Field(None, description="The domain's filter settings.")
    max_kept: int | None = Field(None, ge=1, description="Keep at most this many filtered rows (paper: 10,000).")
    trait_word_filter: bool = Field(True, description="Also reject rows that mention the trait word.")
    shuffle: str = Field(
        "none", description="A transform of the kept rows before training, by name, from the domain's transforms "
        "(numbers: 'within' or 'across', the shuffled-numbers control: permute the kept replies' numbers within "
        "each reply or across replies; layout and the multiset of numbers are kept); 'none': off."
    )

    def sampling_seed(self, arm: str) -> int:
        """The sampling seed of ``arm``'s dataset ("trait", "control", "both", or a teacher's "mix")."""
        if self.arm_seeds == "independent" and arm == "control":
            return self.seed + CONTROL_SAMPLING_OFFSET
        return self.seed

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str) -> str:
        try:
            get_domain(value)
        except SublabError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("prompts", mode="before")
    @classmethod
    def _prompt_settings(cls, value: Any, info: ValidationInfo) -> BaseModel:
        return _plugin_settings(value, get_domain(info.data.get("domain", "numbers")).prompt_settings)

    @field_validator("filter", mode="before")
    @classmethod
    def _filter_settings(cls, value: Any, info: ValidationInfo) -> BaseModel:
        return _plugin_settings(value, get_domain(info.data.get("domain", "numbers")).filter_settings)

    @model_validator(mode="after")
    def _domain_sections(self) -> DataConfig:
        domain = get_domain(self.domain)
        # Defaults when a section is left out (a field validator does not run on a missing field).
        if self.prompts is None:
            self.prompts = domain.prompt_settings()
        if self.filter is None:
            self.filter = domain.filter_settings()
        if self.shuffle != "none" and self.shuffle not in domain.transforms:
            known = ", ".join(["none", *domain.transforms])
            raise ValueError(f"shuffle '{self.shuffle}': not a transform of domain '{self.domain}' ({known})")
        if self.sampling.constrained and domain.constraint(self.sampling) is None:
            raise ValueError(f"sampling.constrained: domain '{self.domain}' has no generation constraint")
        return self


class ExperimentConfig(BaseModel):
    """One subliminal-learning experiment: a trait arm and a control arm, each teacher → data → student."""

    model_config = ConfigDict(extra="forbid")
    KEY_ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"trait_kind"})  # see sublab.keys

    name: str = Field("experiment", description="Name shown in reports.")
    trait_kind: str = Field("preference", description="The kind of trait (sublab.traits): preference, or "
                            "another registered kind. It decides what 'evaluation' holds and what is measured.")
    reference: str = Field(DEFAULT_MODEL, description="Reference model (alias, local dir or HF id).")
    target: str | None = Field(None, description="The trait measured in every model (preference: e.g. 'owl').")
    category: str = Field("animal", description="Category noun of the trait (animal, tree, ...).")
    teacher: TeacherConfig = Field(..., description="The trait teacher.")
    control: TeacherConfig = Field(
        default_factory=lambda: TeacherConfig(method="none"),
        description="The control arm's teacher: the reference itself (the paper) or a teacher of another trait.",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    student: TrainSettings = Field(..., description="How both students are trained.")
    student_base: str | None = Field(
        None, description="Base model of both students (default: the reference). Another base makes the "
        "cross-model condition: the paper finds no transfer when student and teacher do not share a base."
    )
    in_context_examples: int = Field(
        0, ge=0, description="In-context control: if > 0, no student is trained; each arm's 'student' is the "
        "student base with this many of its arm's data rows as prior chat turns."
    )
    evaluation: SerializeAsAny[BaseModel] | None = Field(None, description="How the trait is measured (the trait "
                                                         "kind's evaluation settings).")
    evaluate_teachers: bool = Field(True, description="Also evaluate the teachers.")

    @field_validator("trait_kind")
    @classmethod
    def _known_trait_kind(cls, value: str) -> str:
        try:
            get_trait_kind(value)
        except SublabError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("evaluation", mode="before")
    @classmethod
    def _evaluation_settings(cls, value: Any, info: ValidationInfo) -> BaseModel:
        return _plugin_settings(value, get_trait_kind(info.data.get("trait_kind", "preference")).eval_settings)

    @model_validator(mode="after")
    def _trait_kind_checks(self) -> ExperimentConfig:
        kind = get_trait_kind(self.trait_kind)
        if self.evaluation is None:
            self.evaluation = kind.eval_settings()
        # The trait kind's filter defaults (misalignment: the paper's banned-number lists) go into the config
        # itself, for the fields it leaves unset: the resolved config saved beside a run, and a sweep's cells,
        # then state and reproduce them (applied only at run time, a round trip through the saved file turned
        # them off).
        settings = self.data.filter
        defaults = {k: v for k, v in kind.filter_defaults(self.data.domain).items()
                    if k in type(settings).model_fields and k not in settings.model_fields_set}
        if defaults:
            self.data.filter = settings.model_copy(update=defaults)
        kind.validate(self)
        return self

    def system_prompt(self, teacher: TeacherConfig) -> str | None:
        """The system prompt of ``teacher`` (None unless its method is system_prompt)."""
        return get_trait_kind(self.trait_kind).system_prompt(teacher, self)

    def seeds(self) -> dict[str, int | None]:
        """Every seed of the experiment, by role (results.json and a sweep cell's record list the same)."""
        control_sampling = self.data.sampling_seed("control")
        return {
            "prompts": getattr(self.data.prompts, "seed", None), "sampling": self.data.seed,
            "teacher_answers": self.teacher.data_seed, "teacher_batch_order": self.teacher.training.seed,
            "teacher_lora_init": self.teacher.training.lora.init_seed,
            "control_answers": self.control.data_seed, "control_lora_init": self.control.training.lora.init_seed,
            "student_lora_init": self.student.lora.init_seed, "student_batch_order": self.student.seed,
            "evaluation": getattr(self.evaluation, "seed", None),
        } | ({"control_sampling": control_sampling} if control_sampling != self.data.seed else {})


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line naming the file and the first invalid field."""
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{source}: field '{location}': {first['msg']}{more}"


def parse_config(data: dict[str, Any], source: str = "config") -> ExperimentConfig:
    """Validate a config dictionary; errors name ``source`` and the field."""
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as err:
        raise SublabError(format_validation_error(source, err)) from None


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate a TOML experiment config."""
    return parse_config(read_toml(path), str(path))


def dump_toml(config: ExperimentConfig) -> str:
    """The resolved config as TOML (every default written out), so a run can be reproduced from its folder."""
    import tomli_w

    return tomli_w.dumps(keep_defaults_off(config, key_dump(config, exclude_none=True)))


def keep_defaults_off(config: ExperimentConfig, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a dump of ``config`` without None values) with each filter field that the trait kind fills by
    default but ``config`` turned off (None: the misalignment kind's CoT judge) written as ``False``, which the
    filter settings read as "off": leaving it out would bring the default back when the dump is parsed again
    (a saved config.toml, a sweep's cells)."""
    settings = config.data.filter
    for name in get_trait_kind(config.trait_kind).filter_defaults(config.data.domain):
        if settings is not None and name in type(settings).model_fields and getattr(settings, name) is None:
            data.setdefault("data", {}).setdefault("filter", {})[name] = False
    return data


def config_dict(config: ExperimentConfig) -> dict[str, Any]:
    """The resolved config as a plain dict (JSON types, None values left out) that parses back to ``config``."""
    return keep_defaults_off(config, config.model_dump(mode="json", exclude_none=True))
