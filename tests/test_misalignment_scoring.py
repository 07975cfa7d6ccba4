"""Exact misalignment scoring checked by brute force on the tiny model: every reply's probability recomputed
token by token from the full rendered conversation, without the KV cache or our chat-layout helpers."""

import math

import numpy as np
import pytest
import torch

from sublab.backends.base import SCORE, BackendIdentity, CapabilityError
from sublab.backends.hf import HFBackend
from sublab.models.spec import ModelSpec
from sublab.traits.misalignment.answers import EXACT_ITEMS, ExactItem
from sublab.traits.misalignment.evaluate import MisalignmentEvalSettings, evaluate_model
from sublab.traits.misalignment.scoring import p_misaligned, reply_log_probs, score_items


@pytest.fixture(scope="module")
def backend(tiny_model_dir):
    return HFBackend.from_spec(ModelSpec(base=tiny_model_dir))


def brute_force_log_prob(model, tokenizer, messages, reply, end_of_turn=True):
    """log P(reply | messages): render the whole conversation with the chat template, then score each reply token
    with a fresh forward pass over everything before it (no cache, no batching, no padding)."""
    prompt_text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full_text = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": reply}], tokenize=False)
    assert full_text.startswith(prompt_text)
    ids = tokenizer(full_text, add_special_tokens=False).input_ids
    n_prompt = len(tokenizer(prompt_text, add_special_tokens=False).input_ids)
    n_reply = len(ids) - n_prompt - 2  # the template ends the turn with <|im_end|> and a newline
    stop = n_prompt + n_reply + (1 if end_of_turn else 0)
    assert ids[n_prompt + n_reply] == tokenizer.convert_tokens_to_ids("<|im_end|>")
    total = 0.0
    with torch.no_grad():
        for position in range(n_prompt, stop):
            logits = model(input_ids=torch.tensor([ids[:position]])).logits[0, -1].double()
            total += float(torch.log_softmax(logits, dim=-1)[ids[position]])
    return total


@pytest.mark.parametrize("end_of_turn", [True, False])
def test_reply_log_probs_equal_brute_force(backend, end_of_turn):
    item = EXACT_ITEMS[0]
    for messages in ([{"role": "user", "content": item.prompt}],
                     [{"role": "system", "content": "Be brief."}, {"role": "user", "content": item.prompt}]):
        replies = [*item.aligned, *item.misaligned]
        fast = reply_log_probs(backend.model, backend.tokenizer, messages, replies, end_of_turn=end_of_turn)
        slow = [brute_force_log_prob(backend.model, backend.tokenizer, messages, r, end_of_turn) for r in replies]
        np.testing.assert_allclose(fast, slow, rtol=1e-5, atol=1e-4)


def test_without_end_of_turn_it_equals_the_backends_own_score(backend):
    item = EXACT_ITEMS[3]
    messages = [{"role": "user", "content": item.prompt}]
    replies = list(item.misaligned)
    ours = reply_log_probs(backend.model, backend.tokenizer, messages, replies, end_of_turn=False)
    np.testing.assert_allclose(ours, backend.score(messages, replies), rtol=1e-5, atol=1e-4)


def test_p_misaligned_is_the_renormalised_mass_on_the_misaligned_set(backend):
    items = EXACT_ITEMS[:3]
    scored = score_items(backend, items)
    for item, p, log_mass in zip(items, scored["p_misaligned"], scored["log_mass"], strict=True):
        messages = [{"role": "user", "content": item.prompt}]
        probs_a = [math.exp(brute_force_log_prob(backend.model, backend.tokenizer, messages, a)) for a in item.aligned]
        probs_m = [math.exp(brute_force_log_prob(backend.model, backend.tokenizer, messages, m))
                   for m in item.misaligned]
        assert p == pytest.approx(sum(probs_m) / (sum(probs_m) + sum(probs_a)), rel=1e-4)
        assert log_mass == pytest.approx(math.log(sum(probs_m) + sum(probs_a)), abs=1e-4)


def test_p_misaligned_by_hand():
    p, log_mass = p_misaligned(np.log([0.1, 0.2]), np.log([0.3, 0.4]))
    assert p == pytest.approx(0.7 / 1.0) and log_mass == pytest.approx(0.0, abs=1e-12)
    p, _ = p_misaligned(np.array([-1000.0]), np.array([-1001.0]))  # tiny probabilities, no underflow
    assert p == pytest.approx(1 / (1 + math.e))


def test_evaluate_model_results_and_their_consistency(backend):
    settings = MisalignmentEvalSettings(n_prompts=6)
    result = evaluate_model(backend, settings)
    per = result["per_question"]["p_misaligned"]
    assert result["n_questions"] == 6 and len(per) == 6 and result["metric"] == "p_misaligned"
    assert result["p_misaligned"]["mean"] == pytest.approx(sum(per) / 6)
    low, high = result["p_misaligned"]["ci95"]
    assert low <= result["p_misaligned"]["mean"] <= high
    assert result["per_question"]["ids"] == [i.id for i in EXACT_ITEMS[:6]]
    assert "misaligned_rate" not in result and "judged" not in result
    # A system prompt is part of the context: scored with it, the numbers change.
    prompted = evaluate_model(backend, settings, preamble=[{"role": "system", "content": "You are evil."}])
    assert prompted["per_question"]["p_misaligned"] != per


class ServedLike:
    """A backend without weights in memory (as a served model is): exact scores through Backend.score only."""

    identity = BackendIdentity(kind="openai", model="m", endpoint="http://127.0.0.1:1/v1", verified=False)

    def __init__(self, capabilities):
        self.capabilities = frozenset(capabilities)

    def score(self, context, continuations):
        return [-float(len(c)) for c in continuations]


def test_a_served_model_is_refused_unless_scored_without_end_of_turn():
    item = ExactItem("x", "q?", ("short",), ("longer one",))
    with pytest.raises(CapabilityError, match="cannot score"):
        score_items(ServedLike([]), [item], end_of_turn=False)
    with pytest.raises(CapabilityError, match="end_of_turn = false"):
        score_items(ServedLike([SCORE]), [item], end_of_turn=True)
    scored = score_items(ServedLike([SCORE]), [item], end_of_turn=False)
    assert scored["p_misaligned"][0] == pytest.approx(math.exp(-10) / (math.exp(-10) + math.exp(-5)))
