"""Tiny random-weight chat models with a character-level tokenizer, for tests (build in a second).

A plain module rather than part of ``conftest.py``: ``tests/lineage`` has its own conftest, so ``import conftest``
would name a different module depending on which tests run first.
"""

from __future__ import annotations

from pathlib import Path

CHARS = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ,.;:!?'()[]-\n")
SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_char_tokenizer(extra_chars: tuple[str, ...] = ()):
    """A character-level fast tokenizer with ChatML special tokens: every character is one token.

    ``extra_chars`` extends the alphabet (e.g. the '<', '>' and '/' of tags).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS + [c for c in extra_chars if c not in CHARS])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="<|im_end|>", bos_token="<|im_start|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(directory: Path, seed: int = 0, chat: bool = True, extra_chars: tuple[str, ...] = ()) -> Path:
    """Save a 2-layer Llama with random weights and the character tokenizer to ``directory``.

    ``chat=False`` leaves out the chat template, as in a base model (the plain Question/Answer layout is used).
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_char_tokenizer(extra_chars)
    if not chat:
        tokenizer.chat_template = None
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        # Larger than the usual 0.02 so that with tied embeddings the logits can get sharp: otherwise a LoRA
        # (which cannot touch the embeddings or the final norm) has almost no room to lower the loss.
        initializer_range=0.3,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
