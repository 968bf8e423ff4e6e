"""Timing a repeated call: the one timer of the exporter's speed figures, the runtime's precision
probe and the benchmarks. Every timing starts with one untimed warm-up call (graph optimisation,
allocations, caches), which would otherwise be counted as the first call's work."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

REPEATS = 5


def timed_calls(run: Callable[[], object], repeats: int) -> list[tuple[object, float]]:
    """What each of ``repeats`` timed calls of ``run`` returned, and its seconds, after the warm-up."""
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    run()
    calls = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        calls.append((result, time.perf_counter() - start))
    return calls


def timed_rates(run: Callable[[], int], repeats: int) -> list[float]:
    """Rows per second of each timed call of ``run``, which returns how many rows it did."""
    return [rows / seconds for rows, seconds in timed_calls(run, repeats)]


def best_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    """The fastest timed call: the one least disturbed by other work on a shared machine."""
    return min(seconds for _, seconds in timed_calls(run, repeats))


def median_seconds(run: Callable[[], object], repeats: int = REPEATS) -> float:
    return float(np.median([seconds for _, seconds in timed_calls(run, repeats)]))


def images_per_second(run: Callable[[], object], n_images: int, repeats: int = REPEATS) -> float:
    """``n_images`` (what one call of ``run`` does) over the fastest timed call."""
    return n_images / best_seconds(run, repeats)
