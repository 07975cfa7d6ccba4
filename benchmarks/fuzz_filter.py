"""Seeded fuzz run of the number filter's parser against an independent reference implementation of its grammar.

The grammar (``sublab.domains.numbers.checks``; ``WS`` = ASCII space, tab, newline)::

    reply = WS* body (WS* ".")? WS*
    body  = list | "[" WS* list WS* "]" | "(" WS* list WS* ")"
    list  = NUM (SEP NUM)*         every SEP of a reply the same string
    SEP   = WS* ("," | ";") WS*  |  WS+
    NUM   = ("0".."9")+

with, before parsing, replies longer than ``MAX_REPLY_CHARS`` rejected as ``too_long`` and, after it, digit runs
longer than ``MAX_DIGIT_RUN`` as ``too_many_digits``. :func:`reference_parse` implements that text with a
character scanner (no regular expressions, no ``str.strip``), written from the grammar rather than from the
parser, so the two can disagree. Inputs: random strings over a hostile alphabet (Unicode spaces and controls,
look-alike digits, brackets), valid lists with one or more mutations, long digit runs, over-long replies and
random code points. Prints inputs tried, crashes (an exception from the parser or the filter) and disagreements;
writes JSON. Not a test (the tests run a smaller hypothesis search); the goal is 0 crashes and 0 disagreements.

    python benchmarks/fuzz_filter.py                   # 100,000 inputs, seed 0
    python benchmarks/fuzz_filter.py --n 1000000 --seed 7
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from pathlib import Path

from sublab.domains.numbers.checks import (
    MAX_DIGIT_RUN,
    MAX_REPLY_CHARS,
    NumberFilterSettings,
    number_reject_reasons,
    parse_number_list,
)

WS = (" ", "\t", "\n")
DIGITS = "0123456789"
PUNCT = (",", ";")
#: Characters a hostile reply might use to smuggle content past a Unicode-aware parser.
UNICODE_SPACES = ["\u00a0", "\u3000", "\u2028", "\u2029", "\u001c", "\u001d", "\u001e", "\u001f", "\r", "\x0b",
                  "\x0c", "\u0085", "\u1680", "\u2000", "\u2007", "\u200b", "\u202f", "\u205f", "\ufeff", "\x00"]
LOOKALIKE_DIGITS = ["\u0661", "\uff11", "\u00b9", "\u2460", "\U0001d7d9", "\u0967"]
ALPHABET = [*DIGITS, *WS, *PUNCT, ".", "[", "]", "(", ")", "-", "+", "_", "e", "x", "a", "1", "2", "0",
            *UNICODE_SPACES, *LOOKALIKE_DIGITS]


def _skip_ws(text: str, i: int, end: int) -> int:
    while i < end and text[i] in WS:
        i += 1
    return i


def _skip_ws_back(text: str, start: int, j: int) -> int:
    while j > start and text[j - 1] in WS:
        j -= 1
    return j


def reference_parse(text: str) -> tuple[str | None, tuple[str, ...] | None]:
    """``(reject reason, None)`` or ``(None, digit strings)`` for ``text`` under the grammar above."""
    if len(text) > MAX_REPLY_CHARS:
        return "too_long", None
    i, j = _skip_ws(text, 0, len(text)), len(text)
    j = _skip_ws_back(text, i, j)
    if i == j:
        return "empty", None
    if text[j - 1] == ".":
        j = _skip_ws_back(text, i, j - 1)
    if j - i >= 2 and (text[i], text[j - 1]) in (("[", "]"), ("(", ")")):
        i = _skip_ws(text, i + 1, j - 1)
        j = _skip_ws_back(text, i, j - 1)
    numbers: list[str] = []
    separators: list[str] = []
    k = i
    while True:
        start = k
        while k < j and text[k] in DIGITS:
            k += 1
        if k == start:  # a number was expected here
            return "bad_format", None
        numbers.append(text[start:k])
        if k == j:
            break
        sep_start = k
        k = _skip_ws(text, k, j)
        if k < j and text[k] in PUNCT:
            k = _skip_ws(text, k + 1, j)
        if k == sep_start:  # neither whitespace nor punctuation after a number
            return "bad_format", None
        separators.append(text[sep_start:k])
    if any(sep != separators[0] for sep in separators):
        return "inconsistent_separator", None
    if any(len(number) > MAX_DIGIT_RUN for number in numbers):
        return "too_many_digits", None
    return None, tuple(numbers)


def format_number_list(numbers: list[str], separator: str = ", ", wrap: str = "", period: bool = False,
                       before: str = "", after: str = "") -> str:
    """A reply the grammar accepts: digit strings joined by ``separator``, wrapped in ``wrap`` ("", "[]" or
    "()"), with an optional final period and ASCII whitespace around."""
    body = separator.join(numbers)
    if wrap:
        body = f"{wrap[0]}{body}{wrap[1]}"
    return f"{before}{body}{'.' if period else ''}{after}"


def parser_outcome(text: str) -> tuple[str | None, tuple[str, ...] | None]:
    """The production parser's answer in the reference's shape."""
    parsed = parse_number_list(text)
    if parsed.numbers is None:
        return parsed.reason, None
    assert parsed.numbers == tuple(int(s) for s in parsed.digit_strings)
    return None, parsed.digit_strings


# --- input generators ------------------------------------------------------------------------------------------


def _separator(rng: random.Random) -> str:
    punct = rng.choice(["", *PUNCT])
    left = "".join(rng.choice(WS) for _ in range(rng.choice([0, 0, 1, 2])))
    right = "".join(rng.choice(WS) for _ in range(rng.choice([0, 1, 1, 2])))
    return (left + punct + right) or " "


def valid_reply(rng: random.Random) -> str:
    numbers = ["".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 12))]
    return format_number_list(numbers, _separator(rng), rng.choice(["", "", "[]", "()"]), rng.random() < 0.2,
                              rng.choice(["", " ", "\n", "\t "]), rng.choice(["", " ", "\n"]))


def mutate(text: str, rng: random.Random, n: int) -> str:
    chars = list(text)
    for _ in range(n):
        op = rng.randrange(4)
        pos = rng.randint(0, len(chars))
        char = rng.choice(ALPHABET)
        if op == 0 or not chars:
            chars.insert(pos, char)
        elif op == 1:
            del chars[min(pos, len(chars) - 1)]
        elif op == 2:
            chars[min(pos, len(chars) - 1)] = char
        else:  # swap an ASCII separator character for a Unicode look-alike
            spots = [k for k, c in enumerate(chars) if c in WS or c in PUNCT]
            if spots:
                chars[rng.choice(spots)] = rng.choice(UNICODE_SPACES)
    return "".join(chars)


def random_input(rng: random.Random) -> tuple[str, str]:
    """One fuzz input and the name of the generator that made it."""
    kind = rng.choices(["alphabet", "valid", "mutated", "long_digits", "long_reply", "codepoints"],
                       weights=[25, 15, 40, 6, 4, 10])[0]
    if kind == "alphabet":
        text = "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))
    elif kind == "valid":
        text = valid_reply(rng)
    elif kind == "mutated":
        text = mutate(valid_reply(rng), rng, rng.randint(1, 3))
    elif kind == "long_digits":
        run = "".join(rng.choice(DIGITS) for _ in range(rng.choice([MAX_DIGIT_RUN, MAX_DIGIT_RUN + 1, 4300, 4301,
                                                                     rng.randint(1, 6000)])))
        text = rng.choice([run, f"1, {run}", f"[{run}]", f"{run}, 2, x"])
    elif kind == "long_reply":
        length = rng.choice([MAX_REPLY_CHARS, MAX_REPLY_CHARS + 1, rng.randint(MAX_REPLY_CHARS - 50,
                                                                                MAX_REPLY_CHARS + 50)])
        text = (", ".join(["7"] * (length // 3 + 1)))[:length].rstrip(", ")
        text = text + "1" * (length - len(text))
    else:
        text = "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0, 0x2FFF), rng.randint(0, 0x10FFFF)]))
                       for _ in range(rng.randint(0, 12)))
        text = "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)
    return text, kind


def run(n: int, seed: int, max_examples_kept: int = 10) -> dict:
    rng = random.Random(seed)
    settings = NumberFilterSettings()
    crashes: list[dict] = []
    disagreements: list[dict] = []
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    started = time.perf_counter()
    for _ in range(n):
        text, kind = random_input(rng)
        kinds[kind] += 1
        try:
            found = parser_outcome(text)
            number_reject_reasons(text, settings, frozenset({13, 666}))
        except Exception as err:  # a crash is what this run looks for
            crashes.append({"input": text[:200], "kind": kind, "error": f"{type(err).__name__}: {err}"[:300]})
            continue
        expected = reference_parse(text)
        outcomes[found[0] or "accepted"] += 1
        if found != expected:
            disagreements.append({"input": text[:200], "kind": kind, "parser": str(found)[:200],
                                  "reference": str(expected)[:200]})
    seconds = time.perf_counter() - started
    return {"benchmark": "fuzz_filter", "seed": seed, "inputs_tried": n, "crashes": len(crashes),
            "disagreements": len(disagreements), "seconds": round(seconds, 1),
            "inputs_per_kind": dict(sorted(kinds.items())), "outcomes": dict(sorted(outcomes.items())),
            "limits": {"max_reply_chars": MAX_REPLY_CHARS, "max_digit_run": MAX_DIGIT_RUN,
                       "whitespace": [" ", "\t", "\n"]},
            "crash_examples": crashes[:max_examples_kept],
            "disagreement_examples": disagreements[:max_examples_kept]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="inputs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/fuzz_filter.json")
    args = parser.parse_args()
    result = run(args.n, args.seed)
    print(f"{'inputs tried':<16}{result['inputs_tried']:>10,}")
    print(f"{'crashes':<16}{result['crashes']:>10,}")
    print(f"{'disagreements':<16}{result['disagreements']:>10,}")
    print(f"{'seconds':<16}{result['seconds']:>10}")
    for name, count in result["outcomes"].items():
        print(f"  {name:<24}{count:>8,}")
    for example in result["crash_examples"] + result["disagreement_examples"]:
        print("  example:", json.dumps(example, ensure_ascii=True)[:300])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    if result["crashes"] or result["disagreements"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
