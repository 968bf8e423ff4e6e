"""Annotating a whole catalog with a bundle, as plain Python: plan the run (catalog validated,
bundle verified and opened, shards planned, what a killed run left discarded), annotate each
unfinished shard (:func:`export.serve.shard.run_shard`), account for every row and summarise.

:func:`annotate_catalog` runs the shards on threads of this process. The ``catalog-annotate``
flow runs the same three steps, :func:`plan_annotation`, the shards as Prefect tasks on its task
runner, and :func:`finish_annotation`, so both produce the same files and the same summary.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from catalogs.decoding import BATCH_SIZE
from catalogs.errors import UsageError
from catalogs.shards import SHARD_SIZE, RunPlan, account_rows, discard_incomplete, finished_shards, prepare_run
from export.serve.runtime import LoadedBundle
from export.serve.shard import opened_bundle, opened_catalog, peak_rss_mb, run_shard, threads_per_worker


@dataclass(frozen=True)
class AnnotationRun:
    """A planned run: where it reads and writes, how, and which shards are still to annotate."""

    catalog: Path
    bundle: Path
    out: Path
    plan: RunPlan
    loaded: LoadedBundle
    catalog_rows: int
    shard_size: int
    batch_size: int
    device: str
    threads: int
    expect_image_size: int | None
    wanted: frozenset[int]  # the shards asked for (all of them unless ``shards`` was given)
    todo: tuple[int, ...]  # those not finished yet
    asked_for_all: bool

    def shard_arguments(self, index: int) -> dict:
        """What :func:`~export.serve.shard.run_shard` takes for shard ``index``: paths and
        numbers only, so that any worker (a thread, a process, a Dask worker) can run it."""
        return dict(catalog=str(self.catalog), bundle=str(self.bundle), out=str(self.out), run_id=self.plan.run_id,
                    shard_size=self.shard_size, shard_index=index, batch_size=self.batch_size, device=self.device,
                    threads=self.threads, expect_image_size=self.expect_image_size,
                    catalog_rows=self.catalog_rows, precision=self.loaded.precision)


def plan_annotation(catalog: Path, bundle: Path, out: Path, *, shard_size: int = SHARD_SIZE,
                    batch_size: int = BATCH_SIZE, workers: int = 1, threads: int | None = None,
                    device: str = "auto", expect_image_size: int | None = None, shards: list[int] | None = None,
                    precision: str = "auto") -> AnnotationRun:
    """Refuse bad input before any work, then register the run in ``out`` and find the shards
    still to annotate. ``threads``: onnxruntime threads per shard (default: the cores shared out
    between ``workers``). ``precision`` is chosen once here (``auto``: int8 where the bundle's
    passed its agreement gate and runs faster here, see ``export.serve.runtime.open_bundle``), so
    every worker computes alike."""
    if shard_size < 1 or batch_size < 1 or workers < 1:
        raise ValueError(f"shard_size, batch_size and workers must be ≥ 1, got {shard_size}, {batch_size}, {workers}")
    catalog, bundle, out = Path(catalog).resolve(), Path(bundle).resolve(), Path(out).resolve()
    threads = threads_per_worker(workers) if threads is None else threads
    cat = opened_catalog(str(catalog))
    loaded = opened_bundle(str(bundle), device, threads, expect_image_size, precision)  # a refused bundle costs no work
    # The precision is part of the run (recorded in OUT's manifest with it): an fp32 and an int8
    # run of one catalog are two runs.
    params = {"batch_size": batch_size, "precision": loaded.precision}
    plan = prepare_run(out, cat.table, loaded.bundle_id, shard_size, params, source=str(catalog))
    discard_incomplete(out, plan.run_id)
    planned = {s.index for s in plan.shards}
    if shards is not None and not set(shards) <= planned:
        raise UsageError(f"`shards` {shard_ranges(sorted(set(shards) - planned))}: the run has shards "
                         f"0–{len(planned) - 1}")
    wanted = frozenset(planned if shards is None else shards)
    todo = tuple(sorted(wanted - finished_shards(out, plan.run_id)))
    return AnnotationRun(catalog, bundle, out, plan, loaded, cat.table.num_rows, shard_size, batch_size, device,
                         threads, expect_image_size, wanted, todo, shards is None)


def finish_annotation(run: AnnotationRun, results: list[dict], seconds: float, runner: str, workers: int) -> dict:
    """Check that every shard asked for is written and holds exactly its rows (all of them when
    no ``shards`` were given), clear what a lost worker left, and return the run's summary."""
    account = account_rows(run.out, run.plan.run_id)
    accounted = (account.complete if run.asked_for_all else
                 not (account.miscounted_shards or account.unexpected_files or run.wanted & set(account.missing_shards)))
    if not accounted:
        raise RuntimeError(f"run {run.plan.run_id} in {run.out} does not account for every row: {account}")
    # What a worker lost mid-shard left in .staging (its shard was written again elsewhere).
    discard_incomplete(run.out, run.plan.run_id)
    results = sorted(results, key=lambda r: r["shard"])
    rows_done = sum(r["rows"] for r in results)
    counts: dict[str, int] = {}
    for r in results:
        for label, n in r["class_counts"].items():
            counts[label] = counts.get(label, 0) + n
    return {
        "out": str(run.plan.out), "run_id": run.plan.run_id, "bundle_id": run.plan.bundle_id,
        "catalog_rows": account.catalog_rows, "predictions": account.predictions, "errors": account.errors,
        "shards": len(run.plan.shards), "shards_skipped": len(run.wanted) - len(run.todo), "rows_this_run": rows_done,
        "seconds": round(seconds, 2), "images_per_second": round(rows_done / seconds, 1) if seconds > 0 else None,
        "class_counts_this_run": counts, "ood_flagged_this_run": sum(r["ood_flagged"] for r in results),
        "provider": results[0]["provider"] if results else run.loaded.provider,
        "precision": run.loaded.precision, "precision_reason": run.loaded.precision_reason,
        "runner": runner, "workers": workers,
        # The largest process: this one, or a worker's when shards ran in other processes.
        "peak_rss_mb": max([peak_rss_mb(), *(r["peak_rss_mb"] for r in results)]),
        "shards_to_do": shard_ranges(sorted(account.missing_shards)),
    }


def annotate_catalog(catalog: Path, bundle: Path, out: Path, *, shard_size: int = SHARD_SIZE,
                     batch_size: int = BATCH_SIZE, workers: int = 1, device: str = "auto",
                     expect_image_size: int | None = None, shards: list[int] | None = None,
                     precision: str = "auto") -> dict:
    """Annotate every row of ``catalog`` (a Parquet from ``morphcat ingest``/``synth``) with the
    models of ``bundle`` into ``out`` (``predictions/`` and ``errors/``), ``workers`` shards at
    once on threads of this process; returns the run summary (rows, errors, throughput...).
    Finished shards are skipped, so a killed run resumes where it stopped and ends identical to
    an uninterrupted one. ``expect_image_size``: refuse a bundle whose models take another input
    size. ``shards``: only these shard numbers (a quick look, or redoing a range); the summary
    then lists the shards still to do."""
    run = plan_annotation(catalog, bundle, out, shard_size=shard_size, batch_size=batch_size, workers=workers,
                          device=device, expect_image_size=expect_image_size, shards=shards, precision=precision)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda i: run_shard(**run.shard_arguments(i)), run.todo))
    return finish_annotation(run, results, time.perf_counter() - t0, "thread", workers)


def parse_shards(text: str) -> list[int]:
    """``"0-9,42"`` → ``[0, 1, …, 9, 42]``: shard numbers and inclusive ranges, comma-separated."""
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise UsageError(f"`shards` takes shard numbers and ranges like 0-9,42, not {text!r}")
        out.update(range(int(lo), int(hi if dash else lo) + 1))
    return sorted(out)


def shard_ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``"0-2,5,7-8"``, ``""`` for none."""
    parts, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(parts)


def summary_markdown(s: dict) -> str:
    """A run summary as a Markdown table (what the flow publishes as its artifact)."""
    lines = [f"# catalog-annotate run `{s['run_id']}`", "",
             "| | |", "|---|---|",
             *(f"| {k} | {s[k]} |" for k in ("out", "bundle_id", "catalog_rows", "predictions", "errors", "shards",
                                              "shards_skipped", "ood_flagged_this_run", "seconds", "images_per_second",
                                              "provider", "precision", "precision_reason",
                                              "runner", "workers", "peak_rss_mb")),
             "", "| class (this run) | rows |", "|---|---:|",
             *(f"| {c} | {n} |" for c, n in sorted(s["class_counts_this_run"].items()))]
    return "\n".join(lines)


def summary_line(summary: dict) -> str:
    """The run summary in one line (what ``morphcat annotate`` prints)."""
    return (f"run {summary['run_id']}: {summary['catalog_rows']} rows → {summary['predictions']} predictions + "
            f"{summary['errors']} errors in {summary['out']} ({summary['rows_this_run']} rows annotated now, "
            f"{summary['ood_flagged_this_run']} flagged out of distribution, in "
            f"{summary['seconds']} s, {summary['images_per_second']} images/s on {summary['provider']} "
            f"({summary['precision']}: {summary['precision_reason']}), "
            f"peak RSS {summary['peak_rss_mb']:.0f} MiB; "
            f"{summary['shards_skipped']} of {summary['shards']} shards were already done)"
            + (f"; shards still to do: {summary['shards_to_do']}" if summary["shards_to_do"] else ""))
