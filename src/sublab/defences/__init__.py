"""Defences against subliminal transfer, applied to a dataset before a student trains on it (docs/defences.md).

- :mod:`sublab.defences.soft_labels`: for distillation data, tempering or truncating the stored distributions,
  mixing them with other teachers' (or the base's) labels of the same replies, and masking out of the loss or
  replacing by the base's own labels the positions where the data departs most from the base (divergence tokens);
- :mod:`sublab.defences.tokens`: for token-only data, threshold sampling at generation (drop tokens below a
  probability; :class:`MinProbabilityProcessor`, ``SamplingSettings.min_prob``), divergence tokens resampled from
  the base, and paraphrasing by another model.

Each is a pure transform of rows (plus, where it needs one, the base model's own distribution), so its effect can
be measured by training students on the result; ``sublab defend`` applies one from the command line.
"""
