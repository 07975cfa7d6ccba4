"""Statistics shared by every evaluation: confidence intervals, paired tests, across-seed summaries."""
