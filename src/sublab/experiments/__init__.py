"""Standalone experiments: the MNIST auxiliary-logit experiment and the one-step theorem check."""
