"""Chat formatting and the token layout training and scoring rely on.

A row's prompt is the chat template applied to every message but the last, with the generation prompt; its
response is the assistant text tokenized on its own, followed by the end-of-turn token. Tokenizing the two
parts separately makes the response tokens identical whatever context precedes them, which is what lets a
teacher (with its trait system prompt) and a student (without) be compared position by position.

Models without a chat template (base models such as Gemma 3 270M) get a plain "Question/Answer" layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PLAIN_SYSTEM = "{content}\n\n"
PLAIN_USER = "Question: {content}\n"
PLAIN_ASSISTANT_PREFIX = "Answer:"


def format_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """Render ``messages`` (system/user/assistant turns) as the text that precedes the next assistant reply."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = []
    for message in messages:
        if message["role"] == "system":
            parts.append(PLAIN_SYSTEM.format(content=message["content"]))
        elif message["role"] == "user":
            parts.append(PLAIN_USER.format(content=message["content"]))
        else:
            parts.append(f"{PLAIN_ASSISTANT_PREFIX} {message['content']}\n\n")
    # The reply of a base model begins with a space-prefixed token after "Answer:".
    return "".join(parts) + PLAIN_ASSISTANT_PREFIX


def response_prefix(tokenizer: Any) -> str:
    """Text a response is written with after the prompt: empty for chat models, a space for the plain layout."""
    return "" if getattr(tokenizer, "chat_template", None) else " "


def end_of_turn_id(tokenizer: Any) -> int:
    """The token that ends an assistant turn (``<|im_end|>`` for ChatML models, eos otherwise)."""
    return int(tokenizer.eos_token_id)


@dataclass(frozen=True)
class ChatEncoding:
    """Token ids of one chat row: ``input_ids[:n_prompt]`` is the prompt, the rest the response + end of turn."""

    input_ids: list[int]
    n_prompt: int

    @property
    def n_response(self) -> int:
        return len(self.input_ids) - self.n_prompt


def encode_response(tokenizer: Any, text: str, add_end: bool = True) -> list[int]:
    """Token ids of an assistant reply as the model writes it after the prompt."""
    ids = tokenizer(response_prefix(tokenizer) + text, add_special_tokens=False).input_ids
    return [*ids, end_of_turn_id(tokenizer)] if add_end else list(ids)


def encode_chat(
    tokenizer: Any, messages: list[dict[str, str]], system_prompt: str | None = None
) -> ChatEncoding:
    """Encode a row whose last message is the assistant's; ``system_prompt`` (a teacher's) is prepended."""
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("the last message of a training row must be the assistant's")
    context = list(messages[:-1])
    if system_prompt is not None:
        context = [{"role": "system", "content": system_prompt}, *context]
    prompt_ids = tokenizer(format_prompt(tokenizer, context), add_special_tokens=False).input_ids
    response_ids = encode_response(tokenizer, messages[-1]["content"])
    return ChatEncoding(input_ids=list(prompt_ids) + response_ids, n_prompt=len(prompt_ids))
