"""Data domains: what students are trained on (prompts, a generation constraint, checks, transforms)."""
