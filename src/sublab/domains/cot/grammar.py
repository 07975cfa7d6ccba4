"""Format-constrained decoding for chain-of-thought replies (``data.sampling.constrained = true``).

The model samples from its own next-token distribution renormalized over the tokens that keep the reply a
prefix of::

    <think> TEXT </think><answer> -? DIGITS </answer> END

TEXT is at least one character and holds no ``<`` (a ``<`` can only start the closing tags); DIGITS are 1 to
``max_digits`` digits. So every reply passes the filter's format check by construction (the reasoning is the
model's own free text; only the tags and the answer's shape are imposed), while the answer's correctness is
still the model's. A token budget keeps room to close: once the tokens left could not write the rest of the
format one character per token, only tokens that move along it are allowed. On SmolLM2-135M free sampling
produced the tags in 0 of 96 replies (docs/code-cot.md); the GPU configs sample freely, as the paper did.

The grammar runs on characters, like the number grammar, so it works with any tokenizer that has single-character
tokens for the tag characters. Allowed-token masks are cached per state (about forty states).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from sublab.errors import SublabError

OPEN = "<think>"
MIDDLE = "</think><answer>"
CLOSE = "</answer>"
DIGITS = "0123456789"

# States: ("o", i) i characters of OPEN written; ("t", has_text) inside the reasoning; ("m", i) i characters of
# MIDDLE written (i >= 1); ("n", negative, digits) inside the answer; ("c", i) i characters of CLOSE written
# (i >= 1); ("d",) done: only the end of turn remains; DEAD: not a prefix of the format.
State = tuple[Any, ...]
START: State = ("o", 0)
DONE: State = ("d",)
DEAD: State = ("x",)


@dataclass(frozen=True)
class CotFormat:
    """The reply format as a constraint (hashable: backends cache one processor per constraint)."""

    max_digits: int = 7

    def regex(self) -> str:
        """The same language as a regular expression (for servers with regex-constrained decoding)."""
        return f"<think>[^<]+</think><answer>-?[0-9]{{1,{self.max_digits}}}</answer>"

    def hf_processor(self, tokenizer: Any, max_new_tokens: int | None = None) -> CotFormatProcessor:
        """A transformers logits processor for this format (ends replies with the tokenizer's end of turn)."""
        from sublab.models.chat import end_of_turn_id

        return CotFormatProcessor(tokenizer, self, [end_of_turn_id(tokenizer)], max_new_tokens)


def step_char(fmt: CotFormat, state: State, char: str) -> State:
    """Advance by one character (DEAD if the character is not allowed)."""
    kind = state[0]
    if kind == "o":
        i = state[1]
        return ("o", i + 1) if char == OPEN[i] and i + 1 < len(OPEN) else ("t", False) if char == OPEN[i] else DEAD
    if kind == "t":
        if char == "<":
            return ("m", 1) if state[1] else DEAD
        return ("t", True)
    if kind == "m":
        i = state[1]
        if char != MIDDLE[i]:
            return DEAD
        return ("m", i + 1) if i + 1 < len(MIDDLE) else ("n", False, 0)
    if kind == "n":
        _, negative, digits = state
        if char == "-" and not negative and digits == 0:
            return ("n", True, 0)
        if char in DIGITS and digits < fmt.max_digits:
            return ("n", negative, digits + 1)
        if char == "<" and digits > 0:
            return ("c", 1)
        return DEAD
    if kind == "c":
        i = state[1]
        if char != CLOSE[i]:
            return DEAD
        return ("c", i + 1) if i + 1 < len(CLOSE) else DONE
    return DEAD


def step_text(fmt: CotFormat, state: State, text: str) -> State:
    """Advance by every character of ``text``."""
    for char in text:
        state = step_char(fmt, state, char)
        if state == DEAD:
            return DEAD
    return state


def distance(state: State) -> int:
    """Fewest characters from ``state`` to the end of the format."""
    kind = state[0]
    rest = len(CLOSE)
    if kind == "o":
        return len(OPEN) - state[1] + 1 + len(MIDDLE) + 1 + rest
    if kind == "t":
        return (0 if state[1] else 1) + len(MIDDLE) + 1 + rest
    if kind == "m":
        return len(MIDDLE) - state[1] + 1 + rest
    if kind == "n":
        return (0 if state[2] else 1) + rest
    if kind == "c":
        return len(CLOSE) - state[1]
    return 0 if state == DONE else 10**9


def is_valid_reply(fmt: CotFormat, text: str) -> bool:
    """Whether ``text`` is a complete reply of the format."""
    return step_text(fmt, START, text) == DONE


class CotFormatProcessor:
    """A transformers ``LogitsProcessor`` that masks every token the format does not allow (one state per row,
    advanced by the token sampled at the previous step; create one per ``generate`` call or :meth:`reset`)."""

    def __init__(self, tokenizer: Any, fmt: CotFormat, end_ids: list[int], max_new_tokens: int | None = None) -> None:
        self.fmt = fmt
        self.end_ids = list(end_ids)
        self.max_new_tokens = max_new_tokens
        self.vocab_size = len(tokenizer)
        special = set(getattr(tokenizer, "all_special_ids", []) or [])
        self.token_text: dict[int, str] = {}
        singles: set[str] = set()
        for token_id in range(self.vocab_size):
            if token_id in special:
                continue
            text = tokenizer.decode([token_id], clean_up_tokenization_spaces=False)
            if text:
                self.token_text[token_id] = text
                if len(text) == 1:
                    singles.add(text)
        missing = sorted(set(OPEN + MIDDLE + CLOSE + DIGITS) - singles)
        if missing:
            raise SublabError(f"constrained CoT decoding: the tokenizer has no single-character token for "
                              f"{''.join(missing)!r}, so the budget rule could not always close the format")
        if max_new_tokens is not None and max_new_tokens < distance(START) + 1:
            raise SublabError(f"constrained CoT decoding needs max_new_tokens >= {distance(START) + 1} (the tags "
                              f"alone take {distance(START)} characters), not {max_new_tokens}")
        self._masks: dict[State, torch.Tensor] = {}
        self._after: dict[State, dict[int, State]] = {}
        self._budget_masks: dict[tuple[State, int], torch.Tensor] = {}
        self.reset()

    def reset(self) -> None:
        self._states: list[State] | None = None
        self._length = -1
        self._start = -1

    def _transitions(self, state: State) -> dict[int, State]:
        after = self._after.get(state)
        if after is None:
            after = {}
            for token_id, text in self.token_text.items():
                new = step_text(self.fmt, state, text)
                if new != DEAD:
                    after[token_id] = new
            self._after[state] = after
        return after

    def allowed_mask(self, state: State) -> torch.Tensor:
        """Tokens allowed in ``state`` with no budget pressure (cached)."""
        mask = self._masks.get(state)
        if mask is None:
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            if state in (DONE, DEAD):
                mask[self.end_ids] = True  # finished (or, defensively, broken): end the reply
            else:
                mask[list(self._transitions(state))] = True
            self._masks[state] = mask
        return mask

    def budget_mask(self, state: State, remaining: int) -> torch.Tensor:
        """Tokens allowed when ``remaining`` tokens are left: those after which the rest of the format (and the
        end of turn) still fits at one character per token."""
        key = (state, remaining)
        mask = self._budget_masks.get(key)
        if mask is None:
            mask = self.allowed_mask(state).clone()
            if state not in (DONE, DEAD):
                for token_id, new in self._transitions(state).items():
                    if distance(new) + 1 > remaining - 1:
                        mask[token_id] = False
            if not mask.any():  # out of budget (cannot happen from the start state): end the reply
                mask[self.end_ids] = True
            self._budget_masks[key] = mask
        return mask

    def advance(self, state: State, token_id: int) -> State:
        if state in (DONE, DEAD):
            return DEAD
        return self._transitions(state).get(token_id, DEAD)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        batch = input_ids.shape[0]
        if self._states is None or input_ids.shape[1] <= self._length:
            self._states = [START] * batch
            self._length = self._start = input_ids.shape[1]
        elif input_ids.shape[1] > self._length:
            last = input_ids[:, -1].tolist()
            self._states = [self.advance(s, t) for s, t in zip(self._states, last, strict=True)]
            self._length = input_ids.shape[1]
        rows = []
        for state in self._states:
            if self.max_new_tokens is not None:
                remaining = self.max_new_tokens - (input_ids.shape[1] - self._start)
                if remaining - 1 < distance(state) + len(OPEN):  # close to the budget: keep room to finish
                    rows.append(self.budget_mask(state, remaining))
                    continue
            rows.append(self.allowed_mask(state))
        masks = torch.stack(rows).to(scores.device)
        if masks.shape[1] < scores.shape[1]:  # the output layer may be padded beyond the tokenizer
            pad = torch.zeros(batch, scores.shape[1] - masks.shape[1], dtype=torch.bool, device=scores.device)
            masks = torch.cat([masks, pad], dim=1)
        return scores.masked_fill(~masks, float("-inf"))
