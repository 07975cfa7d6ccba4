"""subliminal-lab: reproduce, measure and audit subliminal learning.

The pipeline stages live in one subpackage each: :mod:`sublab.generate`, :mod:`sublab.filter`,
:mod:`sublab.train`, :mod:`sublab.evaluate`, :mod:`sublab.lineage`, :mod:`sublab.report` and
:mod:`sublab.experiments`. Every stage reads and writes plain files (JSONL chat rows, safetensors, JSON).
"""

__version__ = "0.1.0"
