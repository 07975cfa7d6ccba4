"""Sweeps: a grid of experiments (traits × conditions × settings × seeds), its executors and its statistics."""
