import re

from sublab.domains.numbers.prompts import (
    FORMATS,
    INTROS,
    NumberPromptSettings,
    number_prompt,
    number_prompts,
    template_digest,
)


def test_prompts_are_deterministic_and_independent_of_n():
    settings = NumberPromptSettings(seed=3)
    first = number_prompts(settings, 50)
    assert first == number_prompts(settings, 50)
    assert number_prompts(settings, 10) == first[:10]
    assert number_prompt(settings, 7) == first[7]
    assert number_prompts(settings, 5, start=45) == first[45:]


def test_seed_changes_prompts():
    assert number_prompts(NumberPromptSettings(seed=1), 20) != number_prompts(NumberPromptSettings(seed=2), 20)


def test_examples_respect_the_limits_and_appear_in_the_text():
    settings = NumberPromptSettings(seed=0, example_min_count=3, example_max_count=9)
    counts = set()
    for prompt in number_prompts(settings, 400):
        assert 3 <= len(prompt.examples) <= 9
        assert all(100 <= x <= 999 for x in prompt.examples)
        assert ", ".join(map(str, prompt.examples)) in prompt.text
        assert " 10 " in prompt.text and "3 digits" in prompt.text
        counts.add(len(prompt.examples))
    assert counts == set(range(3, 10))  # both ends of the range are reachable


def test_prompt_wording_varies_across_every_family():
    prompts = number_prompts(NumberPromptSettings(seed=0), 600)
    intros = {p.text.split(".")[0] for p in prompts}
    layouts = {p.layout for p in prompts}
    assert len(layouts) == len({layout for _, layout in FORMATS})
    assert len({re.sub(r"[0-9, ]+", "", i) for i in intros}) >= len(INTROS) - 3


def test_answer_limits_are_stated():
    prompt = number_prompt(NumberPromptSettings(answer_count=7, answer_max_digits=2), 0)
    assert " 7 " in prompt.text and "2" in prompt.text


def test_ids_are_unique_and_name_the_seed():
    prompts = number_prompts(NumberPromptSettings(seed=9), 100)
    assert len({p.id for p in prompts}) == 100
    assert all(p.id.startswith("num-9-") for p in prompts)


def test_template_digest_is_stable():
    assert template_digest() == template_digest()
    assert len(template_digest()) == 64
