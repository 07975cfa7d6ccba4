import pytest
import torch

from sublab.domains.numbers.grammar import (
    DEAD,
    START,
    NumberGrammar,
    NumberGrammarProcessor,
    can_end,
    is_valid_reply,
    step_text,
)
from sublab.filter import NumberFilterSettings, number_reject_reasons

GRAMMAR = NumberGrammar(separator=", ", max_digits=3, max_count=3)


@pytest.mark.parametrize("text", ["0", "7", "12", "999", "1, 2", "10, 200, 3"])
def test_valid_replies(text):
    assert is_valid_reply(GRAMMAR, text)


@pytest.mark.parametrize(
    "text", ["", "1,", "1, ", "1000", "01", "00", "1,2", "1 2", "1, 2, 3, 4", "a", "1, , 2", " 1"]
)
def test_invalid_replies(text):
    assert not is_valid_reply(GRAMMAR, text)


def test_prefixes_stay_alive_until_they_break():
    assert step_text(GRAMMAR, START, "12, 3") != DEAD
    assert step_text(GRAMMAR, START, "12,") != DEAD and not can_end(GRAMMAR, step_text(GRAMMAR, START, "12,"))
    assert step_text(GRAMMAR, START, "1234") == DEAD
    assert step_text(GRAMMAR, START, "1, 2, 3,") == DEAD  # a fourth number could not follow


def test_single_character_separator():
    grammar = NumberGrammar(separator=" ", max_count=10)
    assert is_valid_reply(grammar, "1 22 333")
    assert not is_valid_reply(grammar, "1  2")


def test_valid_grammar_replies_pass_the_filter():
    grammar = NumberGrammar()
    for text in ["5", "1, 22, 333", ", ".join(str(i) for i in range(10))]:
        assert is_valid_reply(grammar, text)
        assert number_reject_reasons(text, NumberFilterSettings()) == []


def test_processor_masks_follow_the_grammar(tiny_model_dir):
    from sublab.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    end = tokenizer.eos_token_id
    processor = NumberGrammarProcessor(tokenizer, GRAMMAR, [end])
    digit = {tokenizer.convert_tokens_to_ids(str(d)) for d in range(10)}
    comma, space = tokenizer.convert_tokens_to_ids(","), tokenizer.convert_tokens_to_ids(" ")
    start_mask = processor.allowed_mask(START)
    assert set(start_mask.nonzero().flatten().tolist()) == digit
    after_digit = processor.allowed_mask(step_text(GRAMMAR, START, "1"))
    assert set(after_digit.nonzero().flatten().tolist()) == digit | {comma, end}
    after_comma = processor.allowed_mask(step_text(GRAMMAR, START, "1,"))
    assert set(after_comma.nonzero().flatten().tolist()) == {space}
    full = processor.allowed_mask(step_text(GRAMMAR, START, "1, 2, 333"))
    assert set(full.nonzero().flatten().tolist()) == {end}


def test_processor_tracks_rows_across_steps(tiny_model_dir):
    from sublab.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    processor = NumberGrammarProcessor(tokenizer, GRAMMAR, [tokenizer.eos_token_id])
    ids = lambda s: tokenizer.convert_tokens_to_ids(s)  # noqa: E731
    vocab = len(tokenizer)
    prompt = torch.tensor([[ids("a")], [ids("b")]])
    scores = processor(prompt, torch.zeros(2, vocab))
    assert torch.isinf(scores[:, ids(",")]).all()  # nothing generated yet: a digit must come first
    step1 = torch.cat([prompt, torch.tensor([[ids("1")], [ids("2")]])], dim=1)
    step2 = torch.cat([step1, torch.tensor([[ids(",")], [ids("3")]])], dim=1)
    processor(step1, torch.zeros(2, vocab))
    scores = processor(step2, torch.zeros(2, vocab))
    assert scores[0, ids(" ")] == 0 and torch.isinf(scores[0, ids("4")])  # row 0 is after "1,"
    assert scores[1, ids("4")] == 0 and scores[1, ids(",")] == 0  # row 1 is inside "23"


def test_token_budget_never_cuts_a_separator(tiny_model_dir):
    from sublab.models.loading import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    processor = NumberGrammarProcessor(tokenizer, NumberGrammar(), [tokenizer.eos_token_id], max_new_tokens=4)
    ids = tokenizer.convert_tokens_to_ids
    vocab = len(tokenizer)
    prompt = torch.tensor([[ids("a")]])
    processor(prompt, torch.zeros(1, vocab))
    after_one = torch.cat([prompt, torch.tensor([[ids("1")]])], dim=1)
    scores = processor(after_one, torch.zeros(1, vocab))
    # 3 tokens left: ", " + digit + end would need 4, so only more digits or the end are allowed.
    assert torch.isinf(scores[0, ids(",")]) and scores[0, ids("2")] == 0 and scores[0, tokenizer.eos_token_id] == 0
