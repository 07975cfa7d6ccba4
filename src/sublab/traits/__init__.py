"""Trait kinds: what a teacher has and a student may inherit (teacher data, banned words, evaluation, metric)."""
