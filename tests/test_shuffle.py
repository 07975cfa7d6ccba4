from collections import Counter

import pytest

from sublab.domains.numbers.shuffle import shuffle_numbers


def rows(*replies):
    return [{"id": str(i), "messages": [{"role": "user", "content": "q 42"}, {"role": "assistant", "content": r}]}
            for i, r in enumerate(replies)]


DATA = rows("1, 2, 3, 4, 5", "[10; 20; 30]", "7 8 9.", "100\n200\n300\n400")


def numbers(data):
    import re

    return [re.findall(r"[0-9]+", r["messages"][-1]["content"]) for r in data]


def layout(text):
    import re

    return re.sub(r"[0-9]+", "#", text)


def test_within_keeps_each_reply_multiset_and_layout():
    out = shuffle_numbers(DATA, "within", seed=0)
    for before, after in zip(numbers(DATA), numbers(out), strict=True):
        assert Counter(before) == Counter(after)
    assert [layout(r["messages"][-1]["content"]) for r in out] == [layout(r["messages"][-1]["content"]) for r in DATA]
    assert out[0]["messages"][0] == DATA[0]["messages"][0]  # prompts untouched
    assert numbers(out) != numbers(DATA)


def test_across_keeps_the_dataset_multiset_and_counts_per_reply():
    out = shuffle_numbers(DATA, "across", seed=1)
    assert Counter(n for g in numbers(out) for n in g) == Counter(n for g in numbers(DATA) for n in g)
    assert [len(g) for g in numbers(out)] == [len(g) for g in numbers(DATA)]
    assert any(Counter(a) != Counter(b) for a, b in zip(numbers(out), numbers(DATA), strict=True))
    assert all(r["metadata"]["shuffled"] == "across" for r in out)


def test_shuffle_is_seeded_and_none_is_identity():
    assert shuffle_numbers(DATA, "across", 3) == shuffle_numbers(DATA, "across", 3)
    assert shuffle_numbers(DATA, "none", 3) is DATA
    with pytest.raises(ValueError):
        shuffle_numbers(DATA, "sideways", 0)
