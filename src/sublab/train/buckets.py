"""Length-bucketed batch order: batches of rows of similar length, for long replies (code, chain of thought).

A right-padded batch costs as much as its longest row times its size. With replies from 20 to 500 tokens, a
random batch is mostly padding; with buckets it is not. Memory: the output layer runs only at real response
positions, so the step with the longest rows (with buckets, a batch of only long rows) holds the most logits
(for full-vocabulary distillation, positions x vocabulary, twice with the teacher's); that step sets the peak, so
lower ``batch_size`` if it does not fit.

The rows are taken in exactly the stream :func:`sublab.train.trainer.batch_order` uses (consecutive epochs, each a
permutation seeded by ``(seed, epoch)``), so the rows trained on are the same multiset; the stream is cut into
*megabatches* of ``batch_size * megabatch`` rows, each megabatch is sorted by length and cut into batches, and the
batches of a megabatch are shuffled (seeded). Batches are then homogeneous in length while long and short
batches still come in random order, not as a curriculum. The same scheme as transformers' ``LengthGroupedSampler``;
ours is a pure function of (lengths, batch size, steps, seed).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Batches per megabatch (transformers uses 50).
MEGABATCH = 50


def row_stream(n_rows: int, n_items: int, seed: int) -> list[int]:
    """The first ``n_items`` row indices of consecutive seeded epochs (what ``batch_order`` cuts into steps)."""
    stream: list[int] = []
    epoch = 0
    while len(stream) < n_items:
        stream += np.random.default_rng([seed, epoch]).permutation(n_rows).tolist()
        epoch += 1
    return stream[:n_items]


def length_bucketed_order(lengths: Sequence[int], batch_size: int, n_steps: int, seed: int,
                          megabatch: int = MEGABATCH) -> list[list[int]]:
    """Row indices of every step, ``n_steps`` batches of ``batch_size`` (see the module docstring)."""
    if not lengths or batch_size < 1 or megabatch < 1:
        raise ValueError("length_bucketed_order needs rows, a positive batch size and a positive megabatch")
    stream = row_stream(len(lengths), n_steps * batch_size, seed)
    size = batch_size * megabatch
    steps: list[list[int]] = []
    for k, start in enumerate(range(0, len(stream), size)):
        chunk = sorted(stream[start : start + size], key=lambda i: (-lengths[i], i))
        batches = [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        order = np.random.default_rng([seed, k, 1]).permutation(len(batches)).tolist()
        steps += [batches[b] for b in order]
    return steps


def padding_fraction(lengths: Sequence[int], steps: Sequence[Sequence[int]]) -> float:
    """Share of the positions of right-padded batches that are padding (0 = none)."""
    total = sum(max(lengths[i] for i in batch) * len(batch) for batch in steps)
    used = sum(lengths[i] for batch in steps for i in batch)
    return 1.0 - used / total if total else 0.0
