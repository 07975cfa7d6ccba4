"""The OpenAI-compatible backend's own logic, without a server: the retry policy (with the client's real
exception types), response parsing on payloads of the documented shapes (vLLM chat logprobs and echoed prompt
log-probs), seeds, the key from the environment, and refusals that need no request. The real-server tests are
in test_served.py."""

from __future__ import annotations

import math

import pytest

openai = pytest.importorskip("openai", reason="the served backend needs the openai package ('.[serve]')")

from sublab.backends.base import CapabilityError  # noqa: E402
from sublab.backends.openai import (  # noqa: E402
    PLACEHOLDER_KEY,
    OpenAIBackend,
    ServerError,
    ServerOptions,
    call_with_retries,
    chat_text,
    chat_top_logprobs,
    declared_digests,
    echoed_prompt_logprobs,
    request_seed,
)
from sublab.errors import SublabError  # noqa: E402
from sublab.models.spec import ModelSpec  # noqa: E402

try:
    import httpx2 as httpx
except ImportError:  # older openai clients use httpx
    import httpx

URL = "http://127.0.0.1:9/v1"
REQUEST = httpx.Request("POST", f"{URL}/chat/completions")


def status_error(status: int, body: object = None) -> Exception:
    response = httpx.Response(status, request=REQUEST, json=body if body is not None else {})
    cls = {429: openai.RateLimitError, 500: openai.InternalServerError, 503: openai.InternalServerError,
           400: openai.BadRequestError, 401: openai.AuthenticationError,
           422: openai.UnprocessableEntityError}[status]
    return cls(f"status {status}", response=response, body=body)


class Flaky:
    """Raise the given errors in turn, then return 'ok'."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def retry(fn, retries=4, sleeps=None):
    return call_with_retries(fn, endpoint=URL, what="sampling", retries=retries, backoff_s=0.5, max_backoff_s=1.5,
                             sleep=(sleeps.append if sleeps is not None else lambda s: None))


def test_429_5xx_timeouts_and_connection_errors_are_retried_with_exponential_backoff():
    sleeps: list[float] = []
    fn = Flaky(status_error(429), status_error(503), openai.APITimeoutError(request=REQUEST),
               openai.APIConnectionError(request=REQUEST))
    assert retry(fn, sleeps=sleeps) == "ok"
    assert fn.calls == 5 and sleeps == [0.5, 1.0, 1.5, 1.5]  # doubling, capped at max_backoff_s


def test_after_the_last_retry_one_line_names_the_endpoint():
    sleeps: list[float] = []
    fn = Flaky(*[status_error(500, {"detail": "boom\nwith a second line"})] * 3)
    with pytest.raises(ServerError) as err:
        retry(fn, retries=2, sleeps=sleeps)
    assert str(err.value) == f"{URL}: sampling: HTTP 500: boom with a second line after 3 tries; is the server up?"
    assert fn.calls == 3 and sleeps == [0.5, 1.0]


@pytest.mark.parametrize(("status", "expected"), [
    (400, "HTTP 400: bad field"), (422, "HTTP 422: bad field"), (401, "authentication refused")])
def test_errors_a_retry_cannot_fix_fail_at_once(status, expected):
    fn = Flaky(status_error(status, {"detail": "bad field"}))
    with pytest.raises(ServerError, match=expected):
        retry(fn)
    assert fn.calls == 1


def test_malformed_payloads_are_one_line_and_never_numbers():
    with pytest.raises(ValueError, match="no choices"):
        chat_text({"choices": []})
    with pytest.raises(ValueError, match="no message content"):
        chat_text({"choices": [{"message": {"content": None}, "finish_reason": "length"}]})
    assert chat_text({"choices": [{"message": {"content": "12, 13"}}]}) == "12, 13"
    with pytest.raises(ValueError, match="bad top_logprobs entry"):
        chat_top_logprobs({"choices": [{"logprobs": {"content": [{"top_logprobs": [{"token": "a", "logprob": 0.7}]}
                                                                 ]}}]})
    with pytest.raises(ValueError, match="bad prompt log-prob"):
        echoed_prompt_logprobs({"choices": [{"logprobs": {"token_logprobs": [None, "x"]}}]}, 2)


def test_chat_top_logprobs_of_a_vllm_shaped_response():
    response = {"choices": [{"message": {"content": "50"}, "logprobs": {"content": [{
        "token": "50", "logprob": -0.5,
        "top_logprobs": [{"token": "50", "logprob": -0.5}, {"token": "60", "logprob": -1.5},
                         {"token": "50", "logprob": -3.0}]}]}}]}
    top = chat_top_logprobs(response)
    assert set(top) == {"50", "60"}  # two ids with the same text are one answer
    assert top["50"] == pytest.approx(math.log(math.exp(-0.5) + math.exp(-3.0)))
    assert chat_top_logprobs({"choices": [{"message": {"content": "x"}}]}) is None  # the server sent none


def test_echoed_prompt_logprobs_of_a_vllm_shaped_completion():
    response = {"choices": [{"text": "abc", "logprobs": {"tokens": ["a", "b", "c", "d"],
                                                         "token_logprobs": [None, -1.0, -2.0, -0.1]}}]}
    assert echoed_prompt_logprobs(response, 3) == [None, -1.0, -2.0]
    assert echoed_prompt_logprobs({"choices": [{"text": "x", "logprobs": None}]}, 3) is None
    assert echoed_prompt_logprobs({"choices": [{"logprobs": {"token_logprobs": [None]}}]}, 3) is None


def test_declared_digests_keep_stable_fields_only():
    entry = {"id": "qwen", "object": "model", "created": 1, "owned_by": "vllm", "root": "/models/qwen",
             "max_model_len": 4096, "status": {"value": "loaded"}, "permission": [{}], "parent": None}
    assert declared_digests(entry) == {"max_model_len": "4096", "owned_by": "vllm", "root": "/models/qwen"}


def test_request_seeds_depend_on_the_seed_and_position_only():
    seeds = [request_seed(7, i) for i in range(100)]
    assert len(set(seeds)) == 100 and all(0 <= s < 2**31 for s in seeds)
    assert seeds == [request_seed(7, i) for i in range(100)] and request_seed(8, 0) != seeds[0]


def test_the_key_comes_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test-123")
    assert OpenAIBackend(URL, "m", ServerOptions(api_key_env="MY_JUDGE_KEY")).client.api_key == "sk-test-123"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert OpenAIBackend(URL, "m").client.api_key == PLACEHOLDER_KEY  # local servers take any key
    with pytest.raises(Exception, match="extra"):
        ServerOptions(api_key="sk-in-a-config-file")  # no way to pass a key but the environment


def test_from_spec_and_refusals_that_need_no_request():
    from sublab.domains.numbers.grammar import NumberGrammar
    from sublab.generate.sampling import SamplingSettings

    backend = OpenAIBackend.from_spec(ModelSpec(base="qwen", endpoint=URL + "/", system_prompt="You love owls."),
                                      max_concurrency=3)
    assert (backend.endpoint, backend.model, backend.options.max_concurrency) == (URL, "qwen", 3)
    with pytest.raises(SublabError, match=r"an adapter \(some/folder\) cannot be applied to a served model"):
        OpenAIBackend.from_spec(ModelSpec(base="qwen", adapter="some/folder", endpoint=URL))
    # Nothing listens on port 9: a refusal that came from the server would be a ServerError instead.
    with pytest.raises(CapabilityError, match="constrained decoding through a server needs vLLM-style"):
        backend.sample([[{"role": "user", "content": "1, 2, 3"}]], SamplingSettings(), 0, NumberGrammar())
    with pytest.raises(CapabilityError, match=r"threshold sampling \(min_prob\) needs an in-process model"):
        backend.sample([[{"role": "user", "content": "1, 2, 3"}]], SamplingSettings(min_prob=0.01), 0)
    told = OpenAIBackend(URL, "m")
    told._capabilities = frozenset({"sample", "top_logprobs"})  # as if a probe had found them
    with pytest.raises(SublabError, match="top_logprobs k=25: servers return 1 to 20"):
        told.top_logprobs([[{"role": "user", "content": "hi"}]], 25)


def test_the_grammar_regex_is_what_structured_outputs_would_send():
    import re

    from sublab.domains.numbers.grammar import NumberGrammar, is_valid_reply

    grammar = NumberGrammar(max_digits=3, max_count=4)
    pattern = re.compile(grammar.regex())
    for text in ["7", "12, 0, 999", "1, 2, 3, 4", "01", "1, 2, 3, 4, 5", "1,2", "1000", ""]:
        assert bool(pattern.fullmatch(text)) == is_valid_reply(grammar, text), text
