"""The generate stage: prompts in, sampled chat rows out, resumable."""
