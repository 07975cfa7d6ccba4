"""Audit a dataset before training on it: what would a student of a given base move toward?

``sublab audit DATASET.jsonl --base MODEL --out DIR`` reads a token-only (SFT) or a soft-label (distillation)
dataset and predicts, for every candidate trait, how far a student of MODEL trained on it would move toward that
trait beyond what control data does. One module per detector:

- :mod:`sublab.audit.first_order`: the paper's one-step theorem as a tool, the inner product of the data's
  training gradient with each trait score's gradient at the base (forward-mode, all traits at once);
- :mod:`sublab.audit.probes`: short LoRA probe students on the dataset and on the control, scored exactly;
- :mod:`sublab.audit.token_scan`: where the data departs from the base's own predictions (divergence tokens,
  over-represented numbers) and the "subliminal prompting" probe;
- :mod:`sublab.audit.lineage`: the shared-base verdict of the dataset's lineage records.

:mod:`sublab.audit.ranking` turns the methods' tables into one ranking with calibrated flags and worded
verdicts; :mod:`sublab.audit.report` writes ``audit.json``, ``report.md``, an HTML page and figures;
:mod:`sublab.audit.run` runs the chosen methods within a budget. docs/audit.md explains the methods and their
measured accuracy.
"""
