"""Logit distillation targets: a teacher's next-token distribution over a token channel, aligned to the student.

With one tokenizer, student and teacher predict the same response tokens at the same response positions. With
two (a cross-model student, e.g. a Gemma student of a SmolLM2 teacher), positions are paired by the piece of
response text they predict: a student position and a teacher position are matched when the tokens they predict
cover the same characters. Unmatched positions (e.g. a leading-space token only one tokenizer writes) are left
out of the loss. Channel tokens are mapped between vocabularies through their text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from sublab.errors import SublabError
from sublab.models.chat import ChatEncoding, end_of_turn_id, response_prefix
from sublab.models.spec import ModelSpec, load_spec
from sublab.train.data import collate, encode_rows, response_logits
from sublab.train.losses import channel_log_probs


def autocast(model: Any, enabled: bool) -> Any:
    """bf16 autocast on the model's device (a no-op context when disabled)."""
    device = next(model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=enabled)


def can_begin_word(token_text: str, word: str) -> bool:
    """Whether a token can begin ``word`` (or is the word with more letters after it): its text, leading
    whitespace removed and case-folded, is a non-empty prefix of the case-folded word, or starts with it.
    ``"O"``, ``" ow"``, ``"Owl"``, ``"owls"`` can begin "owl"; ``"own"``, ``"b"``, ``" "`` cannot."""
    text = token_text.lstrip().casefold()
    word = word.strip().casefold()
    return bool(text) and bool(word) and (word.startswith(text) or text.startswith(word))


def word_start_ids(tokenizer: Any, ids: Iterable[int], words: Sequence[str]) -> list[int]:
    """The ids among ``ids`` whose token can begin one of ``words`` (:func:`can_begin_word`); never the end of
    turn."""
    end = end_of_turn_id(tokenizer)
    return [i for i in ids if i != end and any(
        can_begin_word(tokenizer.decode([i], clean_up_tokenization_spaces=False), w) for w in words)]


def without_word_starts(tokenizer: Any, channel: torch.Tensor, words: Sequence[str]) -> tuple[torch.Tensor, list[int]]:
    """``channel`` (sorted token ids) less the tokens that can begin one of ``words`` (:func:`word_start_ids`; the
    end of turn always stays), and the ids taken out, sorted."""
    left = word_start_ids(tokenizer, channel.tolist(), words)
    return torch.tensor(sorted(set(channel.tolist()) - set(left))), sorted(left)


def channel_ids(tokenizer: Any, encodings: list[ChatEncoding], channel: str | list[str],
                exclude: Sequence[str] = ()) -> torch.Tensor | None:
    """Token ids of the distillation channel (None: the whole vocabulary), without the tokens that can begin a
    word of ``exclude`` (:func:`without_word_starts`)."""
    if channel == "full":
        if exclude:
            raise SublabError("channel_exclude needs channel 'data' or a token list, not 'full'")
        return None
    if channel == "data":
        ids = {t for e in encodings for t in e.input_ids[e.n_prompt :]}
    else:
        ids = set()
        for text in channel:
            tokens = tokenizer(text, add_special_tokens=False).input_ids
            if len(tokens) != 1:
                raise SublabError(f"channel: {text!r} is {len(tokens)} tokens for this tokenizer, not one")
            ids.add(tokens[0])
        ids.add(end_of_turn_id(tokenizer))
    kept = torch.tensor(sorted(ids))
    return without_word_starts(tokenizer, kept, exclude)[0] if exclude else kept


def channel_word_starts(tokenizer: Any, channel: torch.Tensor | None, words: Sequence[str]) -> list[str]:
    """The texts of the tokens of ``channel`` (None: the whole vocabulary) that can begin one of ``words``: a
    trait's first token in a distillation channel lets a teacher's overt preference for it through."""
    pool = range(len(tokenizer)) if channel is None else channel.tolist()
    return [tokenizer.decode([i], clean_up_tokenization_spaces=False) for i in word_start_ids(tokenizer, pool, words)]


def map_channel(ids: torch.Tensor, source: Any, target: Any) -> torch.Tensor:
    """The same channel in another tokenizer, token by token through its text (end of turn to end of turn)."""
    mapped = []
    for token_id in ids.tolist():
        if token_id == end_of_turn_id(source):
            mapped.append(end_of_turn_id(target))
            continue
        text = source.decode([token_id], clean_up_tokenization_spaces=False)
        tokens = target(text, add_special_tokens=False).input_ids
        if len(tokens) != 1:
            raise SublabError(f"channel token {text!r} is not a single token for the other model's tokenizer")
        mapped.append(tokens[0])
    return torch.tensor(mapped)


def response_spans(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """Character span (in ``text``) of each response token, end of turn last as ``(len, len + 1)``.

    Spans of tokens that cover only the layout's response prefix come out negative and never match.
    """
    prefix = response_prefix(tokenizer)
    encoded = tokenizer(prefix + text, add_special_tokens=False, return_offsets_mapping=True)
    spans = [(start - len(prefix), end - len(prefix)) for start, end in encoded["offset_mapping"]]
    return [*spans, (len(text), len(text) + 1)]


Spans = list[tuple[int, int]]


def align_positions(student_spans: Spans, teacher_spans: Spans) -> list[tuple[int, int]]:
    """Pairs (student response index, teacher response index) that predict the same characters."""
    teacher_index = {span: j for j, span in enumerate(teacher_spans) if span[0] >= 0}
    return [(i, teacher_index[span]) for i, span in enumerate(student_spans) if span in teacher_index]


def same_tokenizer(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab() and response_prefix(a) == response_prefix(b)


class TeacherTargets:
    """A teacher's log-probabilities over the channel at the student's response positions.

    Computed once per row and kept when the channel is small (a number channel is 13 tokens); recomputed for
    the full vocabulary, which would not fit in memory for a whole dataset.
    """

    def __init__(self, spec: ModelSpec, rows: list[dict[str, Any]], student_tokenizer: Any,
                 student_encodings: list[ChatEncoding], student_channel: torch.Tensor | None, bf16: bool) -> None:
        self.model, self.tokenizer = load_spec(spec)
        self.model.requires_grad_(False)
        self.encodings = encode_rows(self.tokenizer, rows, system_prompt=spec.system_prompt, source="teacher")
        shared = same_tokenizer(student_tokenizer, self.tokenizer)
        if student_channel is None and not shared:
            raise SublabError("full-vocabulary distillation needs student and teacher to share a tokenizer")
        self.pairs: list[list[tuple[int, int]]] = []
        for row, mine, theirs in zip(rows, student_encodings, self.encodings, strict=True):
            if shared:
                if mine.n_response != theirs.n_response:  # same tokenizer, so the responses must agree
                    raise SublabError(f"row {row.get('id')!r}: student and teacher responses differ in length")
                self.pairs.append([(k, k) for k in range(mine.n_response)])
            else:
                text = row["messages"][-1]["content"]
                self.pairs.append(align_positions(response_spans(student_tokenizer, text),
                                                  response_spans(self.tokenizer, text)))
        self.n_aligned = sum(len(p) for p in self.pairs)
        self.n_positions = sum(e.n_response for e in student_encodings)
        self.student_counts = [e.n_response for e in student_encodings]
        # One tokenizer: the student's channel ids are the teacher's (mapping them through text could fail or
        # pick other ids for tokens that do not round-trip, e.g. byte tokens).
        if student_channel is None or shared:
            self.channel = student_channel
        else:
            self.channel = map_channel(student_channel, student_tokenizer, self.tokenizer)
        self.bf16 = bf16
        self.cache: dict[int, torch.Tensor] = {}
        self.keep = self.channel is not None  # full-vocabulary targets are too large to keep

    @torch.inference_mode()
    def _compute(self, indices: list[int]) -> list[torch.Tensor]:
        batch = collate([self.encodings[i] for i in indices], int(self.tokenizer.pad_token_id))
        with autocast(self.model, self.bf16):
            logits = response_logits(self.model, batch, self.channel)
        log_probs = channel_log_probs(logits)
        counts = [self.encodings[i].n_response for i in indices]
        return list(torch.split(log_probs, counts))

    def __call__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """For a batch of rows: indices into the student's flattened response positions, and the teacher's
        log-probabilities at the matching positions."""
        missing = [i for i in indices if i not in self.cache]
        computed = dict(zip(missing, self._compute(missing), strict=True)) if missing else {}
        if self.keep:
            self.cache.update(computed)
        student_index, targets = [], []
        offset = 0
        for i in indices:
            teacher_rows = self.cache[i] if i in self.cache else computed[i]
            pairs = self.pairs[i]
            student_index += [offset + k for k, _ in pairs]
            targets.append(teacher_rows[[j for _, j in pairs]])
            offset += self.student_counts[i]
        return torch.tensor(student_index, dtype=torch.long), torch.cat(targets)
