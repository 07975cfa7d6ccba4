"""Keyword arguments of a causal LM's ``forward`` that changed name across transformers versions."""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=64)
def _cache_argument_of(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """``{name: cache}`` for passing a KV cache to ``model.forward``: transformers >= 5.24 calls the argument
    ``cache`` (the old ``past_key_values`` warns, and goes in 5.40); older 5.x only knows ``past_key_values``.
    A PEFT model's forward passes keyword arguments through to the model it wraps, so that one is asked."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return {_cache_argument_of(type(base)): cache}
