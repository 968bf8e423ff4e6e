"""Timing a batch function: the one timer of the exporter's speed figures and of ``morphcat bench throughput``."""

from __future__ import annotations

import time
from collections.abc import Callable

REPEATS = 5


def timed_rates(run: Callable[[], int], repeats: int) -> list[float]:
    """Rows per second of each of ``repeats`` timed calls of ``run`` (which returns how many rows
    it did), after one untimed warm-up call (graph optimisation, allocations, caches)."""
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    run()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        rows = run()
        rates.append(rows / (time.perf_counter() - start))
    return rates


def images_per_second(run: Callable[[], object], n_images: int, repeats: int = REPEATS) -> float:
    """``n_images`` / the fastest of ``repeats`` timed calls of ``run``: the fastest call is the
    least disturbed by other work on a shared machine."""
    return max(timed_rates(lambda: (run(), n_images)[1], repeats))
