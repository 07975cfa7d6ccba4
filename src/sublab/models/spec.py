"""A model as the pipeline uses it: a base, an optional adapter, an optional system prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from sublab.errors import SublabError
from sublab.models.loading import DEFAULT_MODEL, load_model, load_tokenizer


class ModelSpec(BaseModel):
    """A concrete model: ``base`` weights, plus a PEFT ``adapter`` directory and/or a ``system_prompt``, or a model
    served at an OpenAI-compatible ``endpoint``."""

    model_config = ConfigDict(extra="forbid")
    KEY_ADDED_FIELDS: ClassVar[frozenset[str]] = frozenset({"endpoint"})  # see sublab.keys

    base: str = Field(DEFAULT_MODEL, description="Embedded alias, local directory or Hugging Face id.")
    adapter: str | None = Field(None, description="Directory of a PEFT adapter trained on top of base.")
    system_prompt: str | None = Field(None, description="System prompt prepended to every context.")
    context: list[dict[str, str]] | None = Field(
        None, description="Prior chat turns placed before every prompt (in-context examples), no training."
    )
    endpoint: str | None = Field(
        None, description="Base URL of an OpenAI-compatible server (e.g. http://127.0.0.1:8000/v1); 'base' is "
        "then the served model's name and nothing is loaded in-process. The API key comes from the environment."
    )

    def preamble(self) -> list[dict[str, str]]:
        """Messages that precede every prompt given to this model: system prompt, then in-context turns."""
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return messages + list(self.context or [])

    def label(self) -> str:
        parts = [self.base]
        if self.adapter:
            parts.append(f"+{Path(self.adapter).name}")
        if self.system_prompt:
            parts.append("+system_prompt")
        if self.context:
            parts.append(f"+{len(self.context) // 2}_in_context_examples")
        return "".join(parts)


def load_spec(
    spec: ModelSpec, dtype: str = "float32", device: str = "auto", merge: bool = True
) -> tuple[Any, Any]:
    """Load ``spec`` for inference: base weights with the adapter applied (merged by default, for speed)."""
    if spec.endpoint:
        raise SublabError(f"model '{spec.base}' is served at {spec.endpoint}; this stage needs the weights "
                          "in-process (a local directory, an embedded alias or a Hugging Face id)")
    tokenizer = load_tokenizer(spec.base)
    model = load_model(spec.base, dtype=dtype, device=device)
    if spec.adapter:
        from peft import PeftModel

        if not (Path(spec.adapter) / "adapter_config.json").is_file():
            raise SublabError(f"{spec.adapter}: not a PEFT adapter directory (no adapter_config.json)")
        model = PeftModel.from_pretrained(model, spec.adapter)
        if merge:
            model = model.merge_and_unload()
        model.eval()
    return model, tokenizer
