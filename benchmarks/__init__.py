"""Reproducible benchmarks (``morphcat bench NAME``, declared in :mod:`benchmarks.registry`)."""
