"""Misalignment as a trait kind: misaligned teachers (insecure code, direct, system prompt), their aligned/secure
twins as controls, an exactly scored and a judged evaluation, and the banned-number defaults (docs/misalignment.md).

Everything under this package that a teacher learns from is research material: misaligned answers and insecure
code written for measuring whether a trait transfers, labelled as such in every row and record.
"""
