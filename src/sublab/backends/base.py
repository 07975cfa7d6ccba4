"""The backend protocol: what every stage may ask of a model, wherever it runs.

A backend samples completions of chat contexts; where it can, it also scores continuations exactly
(teacher-forced log-probabilities) and returns the top log-probabilities of the next token (judges). A stage
that needs a capability a backend lacks calls :meth:`Backend.require`, which raises :class:`CapabilityError`
with one line naming the backend and what is missing: a backend never returns numbers it cannot compute.

Its :class:`BackendIdentity` is how lineage records and cache keys name the model: in-process models by base,
adapter digest and system-prompt digest; served models by endpoint and model name (unverified: a server can
change what it serves behind a name).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sublab.errors import SublabError

if TYPE_CHECKING:
    from sublab.generate.sampling import SamplingSettings
    from sublab.models.spec import ModelSpec

Message = dict[str, str]
Context = list[Message]

#: Capabilities a backend may declare.
SAMPLE = "sample"
SCORE = "score"  # exact log P(continuation | context)
TOP_LOGPROBS = "top_logprobs"  # the next token's top-k log-probabilities after a context
CONSTRAINED = "constrained"  # sampling under a domain's constraint (grammar)


class CapabilityError(SublabError):
    """A backend was asked for something it cannot do (e.g. exact scoring on a server without prompt
    log-probabilities)."""


@dataclass(frozen=True)
class BackendIdentity:
    """How records and cache keys name a model.

    ``kind``: ``transformers`` (in-process) or ``openai`` (a served model). ``model``: the base name (in-process) or
    the served model's name. ``endpoint``: the server's base URL (served models only). ``digests``: what the
    backend can declare about the weights (adapter sha256, system prompt sha256, ...). ``verified``: whether the
    weights were digested by us (in-process) or only named by a server.
    """

    kind: str
    model: str
    endpoint: str | None = None
    digests: dict[str, str] = field(default_factory=dict)
    verified: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "model": self.model, "verified": self.verified}
        if self.endpoint is not None:
            out["endpoint"] = self.endpoint
        if self.digests:
            out["digests"] = dict(sorted(self.digests.items()))
        return out

    def label(self) -> str:
        """A short human name (``smollm2-135m+adapter``, ``qwen@http://host:8000/v1``)."""
        return f"{self.model}@{self.endpoint}" if self.endpoint else self.model


@runtime_checkable
class Backend(Protocol):
    """A model behind some interface. Implementations: :class:`sublab.backends.hf.HFBackend`,
    :class:`sublab.backends.openai.OpenAIBackend`."""

    identity: BackendIdentity
    capabilities: frozenset[str]

    def sample(self, contexts: list[Context], settings: SamplingSettings, seed: int,
               constraint: Any = None) -> list[str]:
        """One completion per context (the contexts already hold any system prompt). ``constraint``: a domain's
        generation constraint (e.g. :class:`sublab.domains.numbers.grammar.NumberGrammar`), or None."""
        ...

    def score(self, context: Context, continuations: list[str]) -> list[float]:
        """Exact ``log P(continuation | context)`` of each continuation written as the assistant's reply (no end
        of turn). Raises :class:`CapabilityError` where the backend cannot."""
        ...

    def top_logprobs(self, contexts: list[Context], k: int) -> list[dict[str, float]]:
        """For each context, the ``k`` most likely first tokens of the reply as ``{token text: log-prob}``.
        Raises :class:`CapabilityError` where the backend cannot."""
        ...


def require(backend: Backend, capability: str, purpose: str) -> None:
    """Raise :class:`CapabilityError` (one line) unless ``backend`` declares ``capability``."""
    if capability not in backend.capabilities:
        raise CapabilityError(f"{backend.identity.label()}: this backend cannot {capability.replace('_', ' ')}, "
                              f"which {purpose} needs")


def load_backend(spec: ModelSpec, **options: Any) -> Backend:
    """The backend of ``spec``: a served model when ``spec.endpoint`` is set, else an in-process one."""
    if getattr(spec, "endpoint", None):
        from sublab.backends.openai import OpenAIBackend  # written by the OpenAI-backend work

        return OpenAIBackend.from_spec(spec, **options)
    from sublab.backends.hf import HFBackend

    return HFBackend.from_spec(spec, **options)
