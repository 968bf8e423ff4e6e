"""Reproducible benchmarks (``morphcat bench``); see :mod:`benchmarks.run`."""
