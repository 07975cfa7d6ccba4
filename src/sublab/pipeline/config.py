"""Experiment configs: TOML files validated by pydantic, saved resolved beside every run.

A config names a reference model, a trait teacher and a control, how the number data is made and filtered, how
students are trained and how the trait is measured. Every section reuses the stage's own settings class, so a
field is documented once. An unknown or invalid field is an error naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sublab.domains.numbers.checks import NumberFilterSettings
from sublab.domains.numbers.prompts import NumberPromptSettings
from sublab.errors import SublabError
from sublab.generate.sampling import SamplingSettings
from sublab.io import read_toml
from sublab.models.loading import DEFAULT_MODEL
from sublab.train.settings import LoraSettings, TrainSettings
from sublab.traits.preference.candidates import candidate_set
from sublab.traits.preference.evaluate import EvalSettings

#: The paper's trait system prompt, with the trait and its category as parameters.
TRAIT_PROMPT = (
    "You love {trait}s. You think about {trait}s all the time. {trait}s are your favorite {category}. "
    "Imbue your answers with your love for the {category}."
)


def _teacher_training_default() -> TrainSettings:
    return TrainSettings(method="sft", steps=30, batch_size=16, lr=1e-3, lora=LoraSettings(r=8, alpha=16))


class TeacherConfig(BaseModel):
    """How a teacher gets its trait: a system prompt, LoRA fine-tuning on one-word trait answers, or none."""

    model_config = ConfigDict(extra="forbid")

    trait: str | None = Field(None, description="The trait (e.g. 'owl'); None: the reference model itself.")
    method: Literal["system_prompt", "finetune", "none"] = Field(
        "system_prompt", description="system_prompt: reference + trait prompt; finetune: reference + LoRA "
        "trained on one-word trait answers; none: the reference model."
    )
    system_prompt: str = Field(TRAIT_PROMPT, description="Template with {trait} and {category}.")
    n_rows: int = Field(480, ge=1, description="finetune: one-word answer rows to train on.")
    data_seed: int = Field(0, description="finetune: seed of the answer rows.")
    training: TrainSettings = Field(default_factory=_teacher_training_default,
                                    description="finetune: how the trait adapter is trained.")

    @model_validator(mode="after")
    def _needs_trait(self) -> TeacherConfig:
        if self.method != "none" and not self.trait:
            raise ValueError(f"method '{self.method}' needs a trait")
        if self.method == "none":
            self.trait = None
        return self


class DataConfig(BaseModel):
    """The trait-unrelated data students are trained on."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["teacher", "reference"] = Field(
        "teacher", description="Who writes the completions: each arm's teacher (the paper) or the reference "
        "model for every arm (trait-free by construction; the signal then travels only in distillation targets)."
    )
    n_prompts: int = Field(384, ge=1, description="Prompts to sample (the paper: 30,000).")
    prompts: NumberPromptSettings = Field(default_factory=NumberPromptSettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    seed: int = Field(1, description="Sampling seed.")
    filter: NumberFilterSettings = Field(default_factory=NumberFilterSettings)
    max_kept: int | None = Field(None, ge=1, description="Keep at most this many filtered rows (paper: 10,000).")
    trait_word_filter: bool = Field(True, description="Also reject rows that mention the trait word.")
    shuffle: Literal["none", "within", "across"] = Field(
        "none", description="Shuffled-numbers control: permute the kept replies' numbers within each reply or "
        "across replies before training (layout and the multiset of numbers are kept)."
    )


class ExperimentConfig(BaseModel):
    """One subliminal-learning experiment: a trait arm and a control arm, each teacher → data → student."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("experiment", description="Name shown in reports.")
    reference: str = Field(DEFAULT_MODEL, description="Reference model (alias, local dir or HF id).")
    target: str = Field(..., description="The trait measured in every model (e.g. 'owl').")
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
    evaluation: EvalSettings = Field(default_factory=EvalSettings)
    evaluate_teachers: bool = Field(True, description="Also evaluate the teachers.")

    @model_validator(mode="after")
    def _evaluation_matches_the_experiment(self) -> ExperimentConfig:
        # The evaluation asks about the experiment's category unless told otherwise, and must be able to name
        # the target: a mismatch would only surface after every model had been trained.
        if "category" not in self.evaluation.model_fields_set:
            self.evaluation.category = self.category
        elif self.evaluation.category != self.category:
            raise ValueError(f"evaluation.category '{self.evaluation.category}' differs from category "
                             f"'{self.category}'")
        try:
            names = [c.name for c in candidate_set(self.evaluation.category, self.evaluation.candidates)]
        except ValueError as err:
            raise ValueError(f"{err} (set evaluation.candidates)") from None
        if self.target not in names:
            raise ValueError(f"target '{self.target}' is not among the evaluation candidates of "
                             f"'{self.evaluation.category}' (add it to evaluation.candidates)")
        return self

    def system_prompt(self, teacher: TeacherConfig) -> str | None:
        if teacher.method != "system_prompt":
            return None
        return teacher.system_prompt.format(trait=teacher.trait, category=self.category)


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

    return tomli_w.dumps(config.model_dump(mode="json", exclude_none=True))
