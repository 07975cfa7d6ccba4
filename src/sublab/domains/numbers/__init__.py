"""The number-sequence domain: prompts asking to continue a list, the number grammar, the strict filter."""
