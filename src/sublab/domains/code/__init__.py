"""The code domain: small Python tasks, replies that must be code only (see domain.py)."""
