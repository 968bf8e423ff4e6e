"""Throughput of a batch function, measured the same way for every model and precision."""

from __future__ import annotations

import time
from collections.abc import Callable

REPEATS = 5


def images_per_second(run: Callable[[], object], n_images: int, repeats: int = REPEATS) -> float:
    """``n_images`` / the fastest of ``repeats`` timed calls of ``run``, after one untimed warm-up
    call (graph optimisation, allocations). The fastest call is the least disturbed by other
    work on a shared machine."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n_images / best
