"""The chain-of-thought domain: maths word problems, replies with reasoning and a checked answer (see domain.py)."""
