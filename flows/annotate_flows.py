"""Prefect flow ``catalog-annotate``: a catalog × a model bundle → ``OUT/predictions/`` and
``OUT/errors/`` (``catalogs.outputs``, ``catalogs.shards``), sharded, resumable, on threads,
processes or a Dask cluster.

The flow refuses bad input before any work (the catalog is validated, the bundle verified and
opened), registers the run, plans the shards and maps one task per unfinished shard. Tasks get
paths and shard numbers, never pixels or sessions: each worker process opens the catalog and
the bundle once (cached) and writes its shard atomically, so a killed run resumes where it
stopped and ends identical to an uninterrupted one.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from catalogs.contract import Catalog, read_catalog
from export.errors import BundleError
from catalogs.shards import (
    RunPlan,
    account_rows,
    discard_incomplete,
    finished_shards,
    plan_shards,
    prepare_run,
    write_shard,
)

RUNNERS = ("thread", "process", "dask")


@functools.cache
def _catalog(path: str) -> Catalog:
    return read_catalog(Path(path))


@functools.cache
def _bundle(path: str, device: str, threads: int):
    from export.runtime import open_bundle

    return open_bundle(Path(path), device=device, intra_op_threads=threads, require=("classifier",))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB. On Linux ``VmHWM``: unlike
    ``ru_maxrss`` it restarts at ``exec``, so a process started from a large parent (a served
    deployment, a benchmark) does not report its parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def threads_per_worker(workers: int) -> int:
    """onnxruntime threads for each of ``workers`` concurrent shards: the cores shared out, so
    that workers × threads never oversubscribes the machine."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _transient_io(task, task_run, state) -> bool:
    """Retry a shard only for I/O errors (a flaky network file system), never for bugs or bad
    input, which would fail the same way again."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError)


@task(name="annotate-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=_transient_io)
def annotate_shard(catalog: str, bundle: str, out: str, run_id: str, shard_size: int, shard_index: int,
                   batch_size: int, device: str, threads: int) -> dict:
    from export.annotate import annotate_rows

    cat = _catalog(catalog)
    loaded = _bundle(bundle, device, threads)
    shards = tuple(plan_shards(cat.table.num_rows, shard_size))
    shard = shards[shard_index]
    t0 = time.perf_counter()
    result = annotate_rows(loaded, cat.root, cat.table.slice(shard.start, len(shard)), start_row=shard.start,
                           bundle_id=loaded.bundle_id, run_id=run_id, batch_size=batch_size,
                           decode_workers=threads)
    write_shard(RunPlan(Path(out), run_id, loaded.bundle_id, shards), shard, result.predictions, result.errors)
    labels = result.predictions.column("label_pred").to_pylist()
    return {"shard": shard.index, "rows": len(shard), "predictions": result.predictions.num_rows,
            "errors": result.errors.num_rows, "seconds": round(time.perf_counter() - t0, 3),
            "stages": {k: round(v, 3) for k, v in result.seconds.items()},
            "class_counts": {c: labels.count(c) for c in sorted(set(labels))},
            "ood_flagged": int(sum(bool(f) for f in result.predictions.column("ood_flag").to_pylist())),
            "provider": loaded.provider,
            "peak_rss_mb": peak_rss_mb()}


def task_runner(runner: str, workers: int, dask_address: str | None = None):
    """The Prefect task runner for ``runner``: local threads or processes, or Dask (a local
    cluster of ``workers`` single-threaded processes, or the cluster at ``dask_address``)."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    if dask_address and runner != "dask":
        raise ValueError("--dask-address needs --runner dask")
    if runner == "thread":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if runner == "process":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(cluster_class="distributed.LocalCluster",
                          cluster_kwargs={"n_workers": workers, "threads_per_worker": 1, "processes": True,
                                          "dashboard_address": None})


@flow(name="annotate-shards")
def annotate_shards(catalog: str, bundle: str, out: str, run_id: str, shard_size: int, shards: list[int],
                    batch_size: int, device: str, threads: int, total_shards: int, progress: bool = False) -> list[dict]:
    """One task per shard in ``shards``, on the task runner chosen by ``catalog-annotate``."""
    done = total_shards - len(shards)
    artifact = create_progress_artifact(100.0 * done / max(1, total_shards), key="annotate-progress",
                                        description=f"shards of run {run_id} written")
    futures = [annotate_shard.submit(catalog, bundle, out, run_id, shard_size, i, batch_size, device, threads)
               for i in shards]
    results = []
    with _progress_bar(progress, total_shards, done) as advance:
        for future in as_completed(futures):
            results.append(future.result())
            done += 1
            update_progress_artifact(artifact, 100.0 * done / max(1, total_shards))
            advance()
    return sorted(results, key=lambda r: r["shard"])


class _progress_bar:
    """A rich progress bar over shards on the terminal (the CLI), or nothing (deployments)."""

    def __init__(self, enabled: bool, total: int, done: int):
        self._bar = None
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

            self._bar = Progress("annotating", BarColumn(), MofNCompleteColumn(), "shards", TimeRemainingColumn())
            self._task = self._bar.add_task("shards", total=total, completed=done)

    def __enter__(self):
        if self._bar is None:
            return lambda: None
        self._bar.__enter__()
        return lambda: self._bar.advance(self._task)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.__exit__(*exc)


@flow(name="catalog-annotate")
def catalog_annotate(catalog: Path, bundle: Path, out: Path, shard_size: int = 1000, batch_size: int = 64,
                     runner: str = "thread", workers: int = 1, dask_address: str | None = None,
                     device: str = "auto", progress: bool = False, expect_image_size: int | None = None) -> dict:
    """Annotate every row of ``catalog`` (a Parquet from ``morphcat ingest``/``synth``) with the
    models of ``bundle`` into ``out``; returns the run summary (rows, errors, throughput...).
    ``expect_image_size``: refuse a bundle whose models take another input size."""
    if shard_size < 1 or batch_size < 1 or workers < 1:
        raise ValueError(f"shard_size, batch_size and workers must be ≥ 1, got {shard_size}, {batch_size}, {workers}")
    runner_obj = task_runner(runner, workers, dask_address)  # a bad choice fails before any work
    catalog, bundle, out = Path(catalog).resolve(), Path(bundle).resolve(), Path(out).resolve()
    threads = threads_per_worker(workers) if dask_address is None else 1
    cat = _catalog(str(catalog))
    loaded = _bundle(str(bundle), device, threads)  # verified here: a refused bundle costs no work
    if expect_image_size is not None and expect_image_size != loaded.image.size:
        raise BundleError(f"bundle {bundle} takes {loaded.image.size}×{loaded.image.size} px model inputs, "
                          f"not the {expect_image_size} px this run expects")
    plan = prepare_run(out, cat.table, loaded.bundle_id, shard_size, {"batch_size": batch_size}, source=str(catalog))
    discard_incomplete(out, plan.run_id)
    todo = sorted({s.index for s in plan.shards} - finished_shards(out, plan.run_id))
    t0 = time.perf_counter()
    results = annotate_shards.with_options(task_runner=runner_obj)(
        str(catalog), str(bundle), str(out), plan.run_id, shard_size, todo, batch_size, device, threads,
        len(plan.shards), progress)
    seconds = time.perf_counter() - t0
    account = account_rows(out, plan.run_id)
    if not account.complete:
        raise RuntimeError(f"run {plan.run_id} in {out} does not account for every row: {account}")
    summary = _summary(plan, account, results, seconds, loaded, runner, workers, len(plan.shards) - len(todo))
    create_markdown_artifact(_markdown(summary), key="annotate-summary",
                             description=f"catalog-annotate {catalog.name} × bundle {loaded.bundle_id}")
    return summary


def _summary(plan, account, results, seconds, loaded, runner, workers, skipped) -> dict:
    rows_done = sum(r["rows"] for r in results)
    counts: dict[str, int] = {}
    for r in results:
        for label, n in r["class_counts"].items():
            counts[label] = counts.get(label, 0) + n
    return {
        "out": str(plan.out), "run_id": plan.run_id, "bundle_id": plan.bundle_id,
        "catalog_rows": account.catalog_rows, "predictions": account.predictions, "errors": account.errors,
        "shards": len(plan.shards), "shards_skipped": skipped, "rows_this_run": rows_done,
        "seconds": round(seconds, 2), "images_per_second": round(rows_done / seconds, 1) if seconds > 0 else None,
        "class_counts_this_run": counts, "ood_flagged_this_run": sum(r["ood_flagged"] for r in results),
        "provider": results[0]["provider"] if results else loaded.provider,
        "runner": runner, "workers": workers,
        # The largest process: the flow's, or a worker's when shards ran in other processes.
        "peak_rss_mb": max([peak_rss_mb(), *(r["peak_rss_mb"] for r in results)]),
    }


def _markdown(s: dict) -> str:
    lines = [f"# catalog-annotate run `{s['run_id']}`", "",
             "| | |", "|---|---|",
             *(f"| {k} | {s[k]} |" for k in ("out", "bundle_id", "catalog_rows", "predictions", "errors", "shards",
                                              "shards_skipped", "ood_flagged_this_run", "seconds", "images_per_second",
                                              "provider",
                                              "runner", "workers", "peak_rss_mb")),
             "", "| class (this run) | rows |", "|---|---:|",
             *(f"| {c} | {n} |" for c, n in sorted(s["class_counts_this_run"].items()))]
    return "\n".join(lines)
