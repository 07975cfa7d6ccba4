"""Settings of the training stage (SFT and logit distillation, LoRA or full fine-tuning)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class LoraSettings(BaseModel):
    """A LoRA adapter. ``init_seed`` fixes the random A matrices (B starts at zero, so the model starts unchanged):
    a student that should share its teacher's initialization uses the teacher's ``init_seed``."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(8, ge=1, description="Rank.")
    alpha: float = Field(16, gt=0, description="Scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(default_factory=lambda: list(ALL_LINEAR), description="Module names.")
    init_seed: int = Field(0, description="Seed of the adapter's random initialization.")


#: In an experiment config's ``student.channel_exclude``: the experiment's trait words (resolved by the runner).
TRAIT_WORDS_PLACEHOLDER = "{trait_words}"
#: In ``student.channel_exclude``: every word of every answer the trait kind's evaluation scores (a preference's
#: candidates, misalignment's aligned and misaligned answers): a control that the student's move is not carried
#: by the channel's copies of the scored answers' own tokens. Resolved by the runner.
ANSWER_WORDS_PLACEHOLDER = "{answer_words}"


class TrainSettings(BaseModel):
    """How a model is trained on chat rows."""

    model_config = ConfigDict(extra="forbid")
    KEY_ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"length_buckets", "channel_exclude"})  # sublab.keys

    method: Literal["sft", "distill"] = Field(
        "sft", description="sft: cross-entropy on the response tokens; distill: KL to a teacher's next-token "
        "distribution at the response positions."
    )
    finetune: Literal["lora", "full"] = Field("lora", description="Train a LoRA adapter or all weights.")
    lora: LoraSettings = Field(default_factory=LoraSettings)
    steps: int | None = Field(None, ge=1, description="Optimizer steps (give steps or epochs).")
    epochs: float | None = Field(None, gt=0, description="Passes over the data (give steps or epochs).")
    batch_size: int = Field(16, ge=1, description="Rows per optimizer step.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    schedule: Literal["constant", "linear"] = Field("constant", description="constant, or linear decay to 0.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float | None = Field(1.0, description="Gradient clipping (None: off).")
    bf16: bool = Field(
        False, description="bf16 autocast for matmuls (master weights stay float32). Fast on GPUs and on CPUs "
        "with bf16 units: a SmolLM2 LoRA distillation step took 5.3 s instead of 8 s here (docs/cpu-recipe.md)."
    )
    seed: int = Field(0, description="Seed of the batch order.")
    channel: Literal["data", "full"] | list[str] = Field(
        "data", description="distill: tokens the KL is taken over. 'data': every token the responses use "
        "(for number lists: digits, separators, end of turn); 'full': the whole vocabulary; or token texts."
    )
    channel_exclude: list[str] = Field(
        default_factory=list, description="distill: words whose possible first tokens leave the channel: every "
        "token whose text, leading whitespace removed and case-folded, is a non-empty prefix of the word or starts "
        "with it (for 'owl': O, o, Ow, owl, ' Owl', 'owls'...). A data channel otherwise lets a teacher's overt "
        "preference for its trait's first token through wherever that token occurs once in the data. In an "
        "experiment config '{trait_words}' stands for the experiment's trait words (target, teacher and control "
        "traits) and '{answer_words}' for every word of the answers the evaluation scores. Not with channel 'full'."
    )
    max_rows: int | None = Field(None, ge=1, description="Use at most this many rows (the paper: 10,000).")
    checkpoint_every: int = Field(0, ge=0, description="Save a resumable checkpoint every k steps (0: off).")
    length_buckets: bool = Field(
        False, description="Batch rows of similar length together (sublab.train.buckets): less padding with long "
        "replies (code, chain of thought); the same rows are trained on, in other batches."
    )

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainSettings:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of 'steps' and 'epochs'")
        if self.channel_exclude and self.channel == "full":
            raise ValueError("channel_exclude: the whole vocabulary ('full') has every token by definition; use "
                             "channel 'data' (or a token list) to leave the trait's tokens out")
        if any(not w.strip() for w in self.channel_exclude):
            raise ValueError("channel_exclude: an empty word")
        return self

    def n_steps(self, n_rows: int) -> int:
        if self.steps is not None:
            return self.steps
        return max(1, round(self.epochs * n_rows / self.batch_size))  # type: ignore[operator]
