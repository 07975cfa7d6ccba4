"""The student's training loss on rows of the dataset and of its control, as :func:`sublab.train.trainer.
train_model` computes it: SFT cross-entropy on the reply tokens (token-only data), or distillation on stored soft
labels (the channel KL, or with ``channel = "full"`` the top-k KL with a tail bucket).

:meth:`StudentObjective.excess_loss` is the loss on a minibatch of the dataset minus the loss on the matching
rows of the control. With soft labels the two share their replies, so one forward pass gives both losses (the
difference of two distillation losses on the same logits); with tokens the data and control rows run in one
batch. Its gradient at the base is the *excess* training signal the first-order audit projects on each trait.
"""

from __future__ import annotations

from typing import Any

import torch

from sublab.audit.data import SOFT_LABELS, AuditData
from sublab.errors import SublabError
from sublab.train.data import collate, encode_rows, response_logits
from sublab.train.distill import autocast, channel_ids
from sublab.train.labels import StoredTargets
from sublab.train.losses import distill_kl, sft_loss, top_k_kl


class StudentObjective:
    """Training losses of a student of ``tokenizer``'s model on ``data`` rows and on paired ``control`` rows.

    ``control[i]`` is the control row paired with ``data.rows[indices[i]]`` (same prompt; for soft labels the same
    reply). ``channel``: the distillation channel (``"data"``, ``"full"`` or token texts, as
    :class:`sublab.train.settings.TrainSettings`); ``"data"`` is taken over the *whole* dataset, as a student
    trained on all of it would use.
    """

    def __init__(self, data: AuditData, indices: list[int], control: list[dict[str, Any]], tokenizer: Any,
                 channel: str | list[str] = "data", bf16: bool = False) -> None:
        if len(control) != len(indices):
            raise SublabError("internal: control rows must pair with the audited rows one for one")
        self.kind = data.kind
        self.bf16 = bf16
        self.tokenizer = tokenizer
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)
        rows = [data.rows[i] for i in indices]
        self.encodings = encode_rows(tokenizer, rows, source=str(data.path))
        self.control_encodings = encode_rows(tokenizer, control, source="control")
        self.channel: torch.Tensor | None = None
        self.targets: StoredTargets | None = None
        self.control_targets: StoredTargets | None = None
        if self.kind == SOFT_LABELS:
            all_encodings = encode_rows(tokenizer, data.rows, source=str(data.path)) if channel == "data" else []
            self.channel = channel_ids(tokenizer, all_encodings, channel)
            self.targets = StoredTargets(rows, tokenizer, self.encodings, self.channel, source=str(data.path))
            self.control_targets = StoredTargets(control, tokenizer, self.control_encodings, self.channel,
                                                 source="control")
        # Soft labels of the very replies of the data (the base's own labels, the default control): one forward.
        self.shared_replies = self.kind == SOFT_LABELS and all(
            c.input_ids == d.input_ids for c, d in zip(self.control_encodings, self.encodings, strict=True))

    @property
    def n(self) -> int:
        return len(self.encodings)

    def _distill(self, logits: torch.Tensor, targets: StoredTargets, positions: list[int]) -> torch.Tensor:
        if targets.use_top_k:
            index, log_probs, ids = targets.top_k(positions)
            return top_k_kl(logits[index], ids, log_probs)
        index, log_probs = targets(positions)
        return distill_kl(logits[index], log_probs)

    def losses(self, model: Any, positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss on the dataset's rows, loss on their control rows) for rows ``positions`` (0..n-1).

        Soft labels of the same replies share one forward pass; otherwise data and control rows run in one batch.
        """
        if self.shared_replies:
            batch = collate([self.encodings[i] for i in positions], self.pad_id)
            with autocast(model, self.bf16):
                logits = response_logits(model, batch, self.channel)
            return (self._loss(logits, batch, self.targets, positions),
                    self._loss(logits, batch, self.control_targets, positions))
        encodings = [self.encodings[i] for i in positions] + [self.control_encodings[i] for i in positions]
        batch = collate(encodings, self.pad_id)
        with autocast(model, self.bf16):
            logits = response_logits(model, batch, self.channel)
        n_data = int(sum(self.encodings[i].n_response for i in positions))
        data_batch = _slice_targets(batch, 0, n_data)
        control_batch = _slice_targets(batch, n_data, None)
        return (self._loss(logits[:n_data], data_batch, self.targets, positions),
                self._loss(logits[n_data:], control_batch, self.control_targets, positions))

    def _loss(self, logits: torch.Tensor, batch: Any, targets: StoredTargets | None,
              positions: list[int]) -> torch.Tensor:
        if targets is None:
            return sft_loss(logits, batch.targets.to(logits.device))
        return self._distill(logits, targets, positions)

    def excess_loss(self, model: Any, positions: list[int]) -> torch.Tensor:
        """Loss on the dataset's rows minus the loss on their control rows."""
        data, control = self.losses(model, positions)
        return data - control

    def data_loss(self, model: Any, positions: list[int]) -> torch.Tensor:
        return self.losses(model, positions)[0]


def _slice_targets(batch: Any, start: int, stop: int | None) -> Any:
    """A view of a batch whose ``targets`` are positions ``start:stop`` (the SFT loss reads only those)."""
    from dataclasses import replace

    return replace(batch, targets=batch.targets[start:stop])
