"""Any OpenAI-compatible server as a backend: vLLM, SGLang, llama.cpp's server, Ollama, ``transformers serve``,
or a hosted API.

What a server can do differs, so capabilities are probed once (on first use) and cached:

- ``sample``: always (``/v1/chat/completions``).
- ``top_logprobs``: only if a one-token chat request with ``logprobs``/``top_logprobs`` comes back with them
  (vLLM, llama.cpp, Ollama >= 0.12.11 and OpenAI do; ``transformers serve`` ignores the fields).
- ``score`` (exact teacher-forced log-probabilities): only if the server tokenizes chat contexts
  (vLLM's ``/tokenize``) and its completions endpoint echoes prompt log-probabilities (``echo`` with
  ``logprobs``). Anything else raises :class:`CapabilityError` with one line: a server never gives numbers we
  cannot check.
- ``constrained`` (a domain's grammar): only when the user says the server takes vLLM's
  ``structured_outputs`` regex (``structured_outputs=True``), since servers that do not understand the field
  may ignore it silently.

Requests are retried with exponential backoff on 429, 5xx, timeouts and connection errors; after the last try
one :class:`ServerError` line names the endpoint. Requests run in a bounded thread pool
(``max_concurrency``). The API key comes from an environment variable only (``api_key_env``, default
``OPENAI_API_KEY``); local servers accept any value, so an unset variable sends a placeholder.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sublab.backends.base import (
    CONSTRAINED,
    SAMPLE,
    SCORE,
    TOP_LOGPROBS,
    BackendIdentity,
    CapabilityError,
    Context,
    require,
)
from sublab.errors import SublabError

if TYPE_CHECKING:
    from sublab.generate.sampling import SamplingSettings
    from sublab.models.spec import ModelSpec

T = TypeVar("T")

DEFAULT_KEY_ENV = "OPENAI_API_KEY"
#: Sent when the key variable is unset: local servers (vLLM, transformers serve, llama.cpp) accept any key.
PLACEHOLDER_KEY = "EMPTY"
#: The most top log-probabilities the OpenAI API (and most servers) return per position.
MAX_TOP_LOGPROBS = 20
#: Fields of a /v1/models entry that change while the weights do not (not part of the identity).
VOLATILE_MODEL_FIELDS = frozenset({"status", "created", "object", "permission", "id"})


class ServerError(SublabError):
    """A server could not be reached, kept failing, or answered something we cannot use (one line)."""


class ServerOptions(BaseModel):
    """How to talk to a server (none of this changes what the model computes, except ``extra_body``)."""

    model_config = ConfigDict(extra="forbid")

    api_key_env: str = Field(DEFAULT_KEY_ENV, description="Environment variable holding the API key.")
    max_concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    timeout_s: float = Field(120.0, gt=0, description="Seconds to wait for one response.")
    retries: int = Field(4, ge=0, description="Retries after a 429/5xx/timeout/connection error.")
    backoff_s: float = Field(1.0, ge=0, description="First retry wait; doubles each retry.")
    max_backoff_s: float = Field(30.0, ge=0, description="Longest wait between two tries.")
    structured_outputs: bool = Field(
        False, description="The server takes vLLM's structured_outputs regex (constrained number decoding)."
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict, description="Server-specific request fields sent with every request (recorded)."
    )


def request_seed(seed: int, index: int) -> int:
    """The seed sent with the ``index``-th context of a call: independent of batching, below 2**31."""
    return (seed * 1_000_003 + index) % (2**31 - 1)


def _one_line(text: object, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _status_message(err: Any) -> str:
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("message") or (body.get("error") or {})
        if isinstance(detail, dict):
            detail = detail.get("message") or detail
        return _one_line(detail)
    return _one_line(getattr(err, "message", err))


def call_with_retries(fn: Callable[[], T], *, endpoint: str, what: str, retries: int, backoff_s: float,
                      max_backoff_s: float, sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``fn`` (one request), retrying 429/5xx/timeouts/connection errors with exponential backoff.

    Raises :class:`ServerError` (one line naming ``endpoint``) after the last try, or at once for an error a
    retry cannot fix (400, 401, 404, 422, a response that is not what the API promises).
    """
    openai = _openai()
    attempt = 0
    while True:
        try:
            return fn()
        except openai.APITimeoutError:
            reason = "timed out"
            retryable = True
        except openai.APIConnectionError as err:
            reason = f"connection failed ({_one_line(err.__cause__ or err, 120)})"
            retryable = True
        except openai.APIStatusError as err:
            status = err.status_code
            reason = f"HTTP {status}: {_status_message(err)}"
            retryable = status == 429 or status >= 500
            if status in (401, 403):
                raise ServerError(f"{endpoint}: {what}: HTTP {status} (authentication refused; the key comes from "
                                  "the environment variable named by api_key_env)") from None
            if not retryable:
                raise ServerError(f"{endpoint}: {what}: {reason}") from None
        except (openai.APIResponseValidationError, ValueError, TypeError, KeyError) as err:
            raise ServerError(f"{endpoint}: {what}: malformed response ({_one_line(err, 160)})") from None
        if attempt >= retries:
            tries = f"{attempt + 1} {'try' if attempt == 0 else 'tries'}"
            raise ServerError(f"{endpoint}: {what}: {reason} after {tries}; is the server up?")
        sleep(min(max_backoff_s, backoff_s * 2**attempt))
        attempt += 1


def _get(obj: Any, name: str) -> Any:
    """A field of an API object or of a plain dict (servers add fields the client types do not know)."""
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def chat_text(response: Any) -> str:
    """The reply text of a chat completion, or ValueError for a response that is not one."""
    choices = _get(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices")
    message = _get(choices[0], "message")
    content = _get(message, "content") if message is not None else None
    if not isinstance(content, str):
        raise ValueError(f"no message content (finish_reason={_get(choices[0], 'finish_reason')!r})")
    return content


def chat_top_logprobs(response: Any) -> dict[str, float] | None:
    """``{token text: log-prob}`` of the first generated token's top log-probabilities, or None if the server
    sent none. Tokens with the same text (different ids) are merged by log-sum-exp."""
    choices = _get(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices")
    logprobs = _get(choices[0], "logprobs")
    content = _get(logprobs, "content") if logprobs is not None else None
    if not content:
        return None
    top = _get(content[0], "top_logprobs")
    if not top:
        return None
    merged: dict[str, float] = {}
    for entry in top:
        token, value = _get(entry, "token"), _get(entry, "logprob")
        if not isinstance(token, str) or not isinstance(value, int | float) or math.isnan(value) or value > 1e-6:
            raise ValueError(f"bad top_logprobs entry {entry!r}")
        value = float(value)
        merged[token] = value if token not in merged else float(
            max(merged[token], value) + math.log1p(math.exp(-abs(merged[token] - value))))
    return merged


def echoed_prompt_logprobs(response: Any, n_prompt: int) -> list[float | None] | None:
    """The log-probability of each of the ``n_prompt`` prompt tokens a completions response echoed (the
    first is None: nothing precedes it), or None if the server echoed none."""
    choices = _get(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise ValueError("no choices")
    logprobs = _get(choices[0], "logprobs")
    values = _get(logprobs, "token_logprobs") if logprobs is not None else None
    if not isinstance(values, list) or len(values) < n_prompt:
        return None
    out: list[float | None] = []
    for i, value in enumerate(values[:n_prompt]):
        if value is None and i == 0:
            out.append(None)
        elif isinstance(value, int | float) and not math.isnan(value) and value <= 1e-6:
            out.append(float(value))
        else:
            raise ValueError(f"bad prompt log-prob {value!r} at position {i}")
    return out


def declared_digests(entry: dict[str, Any]) -> dict[str, str]:
    """What a ``/v1/models`` entry declares about the weights (e.g. vLLM's ``root``, ``owned_by``), as strings;
    volatile fields (status, timestamps) are left out."""
    return {str(k): str(v) for k, v in sorted(entry.items())
            if k not in VOLATILE_MODEL_FIELDS and isinstance(v, str | int | float) and not isinstance(v, bool)}


def _openai() -> Any:
    try:
        import openai
    except ImportError:  # pragma: no cover - depends on the environment
        raise SublabError("served models need the openai package: pip install 'subliminal-lab[serve]'") from None
    return openai


class OpenAIBackend:
    """A model served behind an OpenAI-compatible API (see the module docstring for what is probed)."""

    def __init__(self, endpoint: str, model: str, options: ServerOptions | None = None,
                 system_prompt: str | None = None) -> None:
        openai = _openai()

        self.endpoint = endpoint.rstrip("/")
        self.model = model
        self.options = options or ServerOptions()
        self.system_prompt = system_prompt
        key = os.environ.get(self.options.api_key_env) or PLACEHOLDER_KEY
        # Our own retry loop (call_with_retries) owns backoff and the final one-line error.
        self.client = openai.OpenAI(base_url=self.endpoint, api_key=key, timeout=self.options.timeout_s,
                                    max_retries=0)
        self._lock = threading.Lock()
        self._identity: BackendIdentity | None = None
        self._capabilities: frozenset[str] | None = None
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec, **options: Any) -> OpenAIBackend:
        """The served model of ``spec`` (``spec.endpoint``, model name ``spec.base``); ``options`` are
        :class:`ServerOptions` fields. An adapter cannot be applied to a served model and is refused."""
        if not spec.endpoint:
            raise SublabError(f"model '{spec.base}': no endpoint given, so it is not a served model")
        if spec.adapter:
            raise SublabError(f"{spec.endpoint}: an adapter ({spec.adapter}) cannot be applied to a served model; "
                              "serve the adapted model instead")
        return cls(spec.endpoint, spec.base, ServerOptions(**options), system_prompt=spec.system_prompt)

    # ----- plumbing -----

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        o = self.options
        return call_with_retries(fn, endpoint=self.endpoint, what=what, retries=o.retries, backoff_s=o.backoff_s,
                                 max_backoff_s=o.max_backoff_s)

    def _map(self, fn: Callable[[int], T], n: int) -> list[T]:
        """``[fn(0), ..., fn(n-1)]`` with at most ``max_concurrency`` in flight; the first error is raised."""
        if n <= 1 or self.options.max_concurrency == 1:
            return [fn(i) for i in range(n)]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.options.max_concurrency, thread_name_prefix="sublab-openai")
        return list(self._pool.map(fn, range(n)))

    def close(self) -> None:
        """Stop the worker threads and the HTTP client."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.client.close()

    def _chat(self, messages: Context, what: str, **fields: Any) -> Any:
        extra = dict(self.options.extra_body)
        extra.update(fields.pop("extra_body", {}))
        return self._call(what, lambda: self.client.chat.completions.create(
            model=self.model, messages=messages, extra_body=extra or None, **fields))

    # ----- identity and capabilities -----

    @property
    def identity(self) -> BackendIdentity:
        """Endpoint, model name and what ``/v1/models`` declares about it; never verified."""
        with self._lock:
            if self._identity is None:
                self._identity = self._fetch_identity()
            return self._identity

    def _fetch_identity(self) -> BackendIdentity:
        openai = _openai()
        digests: dict[str, str] = {}
        try:
            listing = self._call("listing models", lambda: self.client.get("/models", cast_to=object))
        except ServerError as err:
            if "HTTP 404" not in str(err):  # a server without /v1/models is still usable
                raise
            listing = None
        except openai.OpenAIError as err:  # pragma: no cover - depends on the server
            raise ServerError(f"{self.endpoint}: listing models: {_one_line(err)}") from None
        if listing is not None:
            entries = listing.get("data") if isinstance(listing, dict) else None
            if not isinstance(entries, list):
                raise ServerError(f"{self.endpoint}: listing models: malformed response (no 'data' list)")
            ids = [str(e.get("id")) for e in entries if isinstance(e, dict)]
            entry = next((e for e in entries if isinstance(e, dict) and e.get("id") == self.model), None)
            if entry is None:
                shown = ", ".join(ids[:5]) + (", ..." if len(ids) > 5 else "")
                raise ServerError(f"{self.endpoint}: does not serve model '{self.model}' (it lists: "
                                  f"{shown or 'nothing'})")
            digests = declared_digests(entry)
        if self.system_prompt is not None:
            from sublab.io import sha256_text

            digests["system_prompt"] = sha256_text(self.system_prompt)
        return BackendIdentity(kind="openai", model=self.model, endpoint=self.endpoint, digests=digests,
                               verified=False)

    @property
    def declared_digests(self) -> dict[str, str]:
        """What the server itself declares about the model (the identity's digests less our own)."""
        return {k: v for k, v in self.identity.digests.items() if k != "system_prompt"}

    @property
    def capabilities(self) -> frozenset[str]:
        """Probed once, on first use (two one-token requests), then cached."""
        with self._lock:
            cached = self._capabilities
        if cached is None:
            found = {SAMPLE}
            if self._probe_top_logprobs():
                found.add(TOP_LOGPROBS)
            if self._probe_score():
                found.add(SCORE)
            if self.options.structured_outputs:
                found.add(CONSTRAINED)
            cached = frozenset(found)
            with self._lock:
                self._capabilities = cached
        return cached

    def _probe_top_logprobs(self) -> bool:
        messages = [{"role": "user", "content": "Say yes."}]
        try:
            response = self._chat(messages, "probing logprobs", max_tokens=1, temperature=0.0, logprobs=True,
                                  top_logprobs=2, seed=0)
        except ServerError as err:
            if any(f"HTTP {s}" in str(err) for s in (400, 404, 422)):
                return False  # the server refuses the fields
            raise
        try:
            return bool(chat_top_logprobs(response))
        except ValueError as err:
            raise ServerError(f"{self.endpoint}: probing logprobs: malformed response ({err})") from None

    def _root_url(self) -> str:
        return self.endpoint[: -len("/v1")] if self.endpoint.endswith("/v1") else self.endpoint

    def _tokenize(self, body: dict[str, Any], what: str) -> list[int]:
        """Token ids from vLLM's ``/tokenize`` (at the server root, beside ``/v1``)."""
        out = self._call(what, lambda: self.client.post(f"{self._root_url()}/tokenize",
                                                        body={"model": self.model, **body}, cast_to=object))
        tokens = out.get("tokens") if isinstance(out, dict) else None
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ServerError(f"{self.endpoint}: {what}: malformed /tokenize response")
        return tokens

    def _prompt_logprobs(self, ids: list[int], what: str) -> list[float | None] | None:
        response = self._call(what, lambda: self.client.completions.create(
            model=self.model, prompt=ids, max_tokens=1, temperature=0.0, echo=True, logprobs=0,
            extra_body=dict(self.options.extra_body) or None))
        try:
            return echoed_prompt_logprobs(response, len(ids))
        except ValueError as err:
            raise ServerError(f"{self.endpoint}: {what}: malformed response ({err})") from None

    def _probe_score(self) -> bool:
        try:
            ids = self._tokenize({"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": True},
                                 "probing prompt log-probs")
            ids = ids + self._tokenize({"prompt": "Hello", "add_special_tokens": False}, "probing prompt log-probs")
            values = self._prompt_logprobs(ids, "probing prompt log-probs")
        except ServerError as err:
            if any(f"HTTP {s}" in str(err) for s in (400, 404, 405, 422)) or "malformed" in str(err):
                return False
            raise
        return values is not None and all(v is not None for v in values[1:])

    # ----- the Backend protocol -----

    def request_fields(self, settings: SamplingSettings, seed: int, index: int) -> dict[str, Any]:
        """The sampling fields sent for the ``index``-th context of a call (what rows should record)."""
        return {"temperature": settings.temperature, "top_p": 1.0, "max_tokens": settings.max_new_tokens,
                "seed": request_seed(seed, index)}

    def sample(self, contexts: list[Context], settings: SamplingSettings, seed: int,
               constraint: Any = None) -> list[str]:
        """One completion per context, each sent with its own seed (:func:`request_seed`): the same contexts
        and seed give the same requests whatever the batching. Whether the server honours the seed is its
        business (vLLM does per request; ``transformers serve`` seeds its global generator)."""
        extra: dict[str, Any] = {}
        if settings.min_prob:  # OpenAI-style servers have no absolute probability threshold (vLLM's min_p is relative)
            raise CapabilityError(f"{self.endpoint}: threshold sampling (min_prob) needs an in-process model; a "
                                  "server cannot apply it")
        if constraint is not None:
            if not self.options.structured_outputs:
                raise CapabilityError(f"{self.endpoint}: constrained decoding through a server needs vLLM-style "
                                      "structured outputs; pass --structured-outputs if this server takes them, "
                                      "or sample freely and filter")
            if not hasattr(constraint, "regex"):
                raise CapabilityError(f"{self.endpoint}: this constraint has no regular expression to send")
            extra["structured_outputs"] = {"regex": constraint.regex()}

        def one(i: int) -> str:
            response = self._chat(contexts[i], "sampling", extra_body=extra, **self.request_fields(settings, seed, i))
            try:
                return chat_text(response)
            except ValueError as err:
                raise ServerError(f"{self.endpoint}: sampling: malformed response ({err})") from None

        return self._map(one, len(contexts))

    def top_logprobs(self, contexts: list[Context], k: int) -> list[dict[str, float]]:
        """The first reply token's top-``k`` log-probabilities (``k`` <= 20), greedy one-token requests."""
        require(self, TOP_LOGPROBS, "top log-probabilities")
        if not 1 <= k <= MAX_TOP_LOGPROBS:
            raise SublabError(f"{self.endpoint}: top_logprobs k={k}: servers return 1 to {MAX_TOP_LOGPROBS}")

        def one(i: int) -> dict[str, float]:
            response = self._chat(contexts[i], "top log-probabilities", max_tokens=1, temperature=0.0,
                                  logprobs=True, top_logprobs=k, seed=0)
            try:
                top = chat_top_logprobs(response)
            except ValueError as err:
                raise ServerError(f"{self.endpoint}: top log-probabilities: malformed response ({err})") from None
            if not top:
                raise ServerError(f"{self.endpoint}: top log-probabilities: the server sent none this time")
            return top

        return self._map(one, len(contexts))

    def score(self, context: Context, continuations: list[str]) -> list[float]:
        """Exact ``log P(continuation | context)``: the context's chat tokens (server ``/tokenize``) followed by
        the continuation's own tokens, teacher-forced through the completions endpoint with ``echo``."""
        require(self, SCORE, "exact scoring")
        prompt = self._tokenize({"messages": context, "add_generation_prompt": True}, "scoring")

        def one(i: int) -> float:
            reply = self._tokenize({"prompt": continuations[i], "add_special_tokens": False}, "scoring")
            if not reply:
                return 0.0
            values = self._prompt_logprobs(prompt + reply, "scoring")
            if values is None:
                raise ServerError(f"{self.endpoint}: scoring: the server echoed no prompt log-probs this time")
            tail = values[len(prompt):]
            if any(v is None for v in tail):
                raise ServerError(f"{self.endpoint}: scoring: a continuation token has no log-prob")
            return float(sum(tail))  # type: ignore[arg-type]

        return self._map(one, len(continuations))
