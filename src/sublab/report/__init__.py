"""Reports drawn from result files only: markdown tables, figures, terminal tables."""
