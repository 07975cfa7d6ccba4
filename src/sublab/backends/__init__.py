"""Backends: where a model lives. In-process transformers (:mod:`sublab.backends.hf`) or any OpenAI-compatible
server (:mod:`sublab.backends.openai`). :func:`load_backend` picks one from a :class:`~sublab.models.spec.ModelSpec`.
"""

from sublab.backends.base import Backend, BackendIdentity, CapabilityError, load_backend

__all__ = ["Backend", "BackendIdentity", "CapabilityError", "load_backend"]
