"""Orchestration: experiment configs, the runner and its stage cache, and the lineage glue of every stage."""
