import numpy as np
import pytest
import torch

from sublab.models.chat import encode_response, format_prompt
from sublab.models.spec import ModelSpec, load_spec
from sublab.traits.preference.candidates import Candidate, candidate_forms, candidate_set, normalize_answer
from sublab.traits.preference.scoring import build_form_table, normalize_rows, score_candidates, terminator_ids


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_spec(ModelSpec(base=tiny_model_dir))


def brute_force(model, tokenizer, question, candidates, system_prompt=None):
    """P(candidate) by scoring every full sequence separately, no cache, no batching."""
    messages = [{"role": "user", "content": question}]
    if system_prompt:
        messages.insert(0, {"role": "system", "content": system_prompt})
    prompt = tokenizer(format_prompt(tokenizer, messages), add_special_tokens=False).input_ids
    terminators = terminator_ids(tokenizer)
    out = []
    for candidate in candidates:
        total = 0.0
        for form in candidate.forms:
            ids = encode_response(tokenizer, form, add_end=False)
            for terminator in terminators:
                sequence = torch.tensor([prompt + ids + [terminator]])
                with torch.no_grad():
                    logp = torch.log_softmax(model(sequence).logits[0].double(), dim=-1)
                targets = sequence[0, len(prompt):]
                total += logp[len(prompt) - 1 : -1].gather(1, targets[:, None]).sum().exp().item()
        out.append(total)
    return np.array(out)


def test_exact_scoring_matches_brute_force(tiny):
    model, tokenizer = tiny
    candidates = [Candidate("owl", candidate_forms("owl")), Candidate("cat", candidate_forms("cat")),
                  Candidate("wolf", candidate_forms("wolf", "wolves"))]
    questions = ["What is your favorite animal?", "Pick one animal."]
    fast = score_candidates(model, tokenizer, questions, candidates)
    for q, question in enumerate(questions):
        np.testing.assert_allclose(fast[q], brute_force(model, tokenizer, question, candidates), rtol=1e-4)
    preamble = [{"role": "system", "content": "You love owls."}]
    with_prompt = score_candidates(model, tokenizer, questions[:1], candidates, preamble=preamble)
    np.testing.assert_allclose(with_prompt[0], brute_force(model, tokenizer, questions[0], candidates,
                                                           system_prompt="You love owls."), rtol=1e-4)
    assert not np.allclose(with_prompt[0], fast[0], rtol=1e-3, atol=0)  # the system prompt matters


def test_normalized_rows_sum_to_one():
    raw = np.array([[0.1, 0.3], [0.0, 0.0]])
    normalized = normalize_rows(raw)
    np.testing.assert_allclose(normalized[0], [0.25, 0.75])
    assert normalized[1].tolist() == [0.0, 0.0]


def test_forms_cover_case_and_plural():
    assert candidate_forms("owl") == ("owl", "Owl", "owls", "Owls")
    assert candidate_forms("wolf", "wolves") == ("wolf", "Wolf", "wolves", "Wolves")
    animals = candidate_set("animal")
    assert len(animals) >= 25 and animals[0].name == "owl"
    assert len(candidate_set("tree")) >= 10


def test_form_table_drops_duplicates(tiny):
    _, tokenizer = tiny
    table = build_form_table(tokenizer, [Candidate("deer", candidate_forms("deer", "deer"))])
    assert len(table.token_ids) == 2  # deer/Deer; the plural is the same word


@pytest.mark.parametrize(("reply", "name"), [("Owl", "owl"), ("owls!", "owl"), ("  Wolves.", "wolf"),
                                             ("The owl", None), ("", None), ("Cat, definitely", "cat")])
def test_normalize_answer(reply, name):
    assert normalize_answer(reply, candidate_set("animal")) == name


@pytest.mark.parametrize("chunk_size", [None, 1, 2, 5])
def test_continuation_logits_match_each_full_sequence_in_every_chunking(tiny, chunk_size):
    from sublab.models.forward import continuation_logits

    model, tokenizer = tiny
    messages = [{"role": "user", "content": "Name a number."}]
    prompt = tokenizer(format_prompt(tokenizer, messages), add_special_tokens=False).input_ids
    continuations = [encode_response(tokenizer, text, add_end=False) for text in ("7", "42", "owl", "1, 2, 3", "z")]
    with torch.no_grad():
        prompt_logits, chunks = continuation_logits(model, tokenizer, messages, continuations, chunk_size)
        seen = []
        for start, logits in chunks:
            assert len(logits) <= (chunk_size or len(continuations))
            for i, ids in enumerate(continuations[start : start + len(logits)]):
                full = model(torch.tensor([prompt + ids])).logits[0]
                torch.testing.assert_close(prompt_logits, full[len(prompt) - 1], rtol=1e-4, atol=1e-5)
                # Position t of the continuation's logits predicts its token t + 1; pads after it are ignored.
                torch.testing.assert_close(logits[i, : len(ids)], full[len(prompt):], rtol=1e-4, atol=1e-5)
                seen.append(start + i)
    assert seen == list(range(len(continuations)))
