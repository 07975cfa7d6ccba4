"""Loading reference models: the embedded SmolLM2, a second embedded base, any HF id or local directory."""

from sublab.models.chat import ChatEncoding, encode_chat, format_prompt
from sublab.models.loading import (
    EMBEDDED_MODELS,
    load_model,
    load_tokenizer,
    resolve_model_dir,
)

__all__ = [
    "EMBEDDED_MODELS",
    "ChatEncoding",
    "encode_chat",
    "format_prompt",
    "load_model",
    "load_tokenizer",
    "resolve_model_dir",
]
