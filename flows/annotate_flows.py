"""Prefect flow ``catalog-annotate``: :func:`export.serve.catalog.annotate_catalog` with its shards
as Prefect tasks, on threads, processes or a Dask cluster.

The flow runs the library's three steps: :func:`~export.serve.catalog.plan_annotation` (bad
input refused before any work, the run registered, its unfinished shards found), one
``annotate-shard`` task per unfinished shard, and :func:`~export.serve.catalog.finish_annotation`
(every row accounted for, the summary). Tasks get paths and shard numbers, never pixels or
sessions: each worker process opens the catalog and the bundle once (cached) and writes its shard
atomically, so a killed run resumes where it stopped and ends identical to an uninterrupted one.
"""

from __future__ import annotations

import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from catalogs.decoding import BATCH_SIZE
from catalogs.errors import UsageError
from catalogs.shards import SHARD_SIZE
from export.serve.catalog import AnnotationRun, finish_annotation, plan_annotation, summary_markdown
from export.serve.shard import run_shard
from catalogs.progress import StageBar

RUNNERS = ("thread", "process", "dask")


def _transient_io(task, task_run, state) -> bool:
    """Retry a shard only for I/O errors (a flaky network file system), never for bugs or bad
    input, which would fail the same way again."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, OSError)


@task(name="annotate-shard", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=2,
      retry_condition_fn=_transient_io)
def annotate_shard(catalog: str, bundle: str, out: str, run_id: str, shard_size: int, shard_index: int,
                   batch_size: int, device: str, threads: int, expect_image_size: int | None,
                   catalog_rows: int, precision: str) -> dict:
    return run_shard(catalog, bundle, out, run_id, shard_size, shard_index, batch_size, device, threads,
                     expect_image_size, catalog_rows, precision)


def task_runner(runner: str, workers: int, dask_address: str | None = None):
    """The Prefect task runner for ``runner``: local threads or processes, or Dask (a local
    cluster of ``workers`` single-threaded processes, or the cluster at ``dask_address``)."""
    if runner not in RUNNERS:
        raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
    if dask_address and runner != "dask":
        raise UsageError("`dask_address` needs `runner` dask")
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


def annotate_shards(runner, run: AnnotationRun, progress: bool) -> list[dict]:
    """One ``annotate-shard`` task per unfinished shard of ``run`` on the started task
    ``runner``, inside the ``catalog-annotate`` run: the runner is a run parameter, and a subflow
    to carry it would cost a second flow run (and its heartbeat thread's exit, up to 1 s) per run."""
    total = len(run.plan.shards)
    done = total - len(run.todo)
    artifact = create_progress_artifact(100.0 * done / max(1, total), key="annotate-progress",
                                        description=f"shards of run {run.plan.run_id} written")
    futures = [runner.submit(annotate_shard, run.shard_arguments(i)) for i in run.todo]
    results = []
    started = time.perf_counter()
    with StageBar("annotating", total, "shards", enabled=progress, done=done) as bar:
        for future in as_completed(futures):
            results.append(future.result())
            done += 1
            update_progress_artifact(artifact, 100.0 * done / max(1, total))
            rows = sum(r["rows"] for r in results)
            bar.advance(rows=rows, images_per_s=rows / (time.perf_counter() - started))
    return results


@flow(name="catalog-annotate")
def catalog_annotate(catalog: Path, bundle: Path, out: Path, shard_size: int = SHARD_SIZE,
                     batch_size: int = BATCH_SIZE,
                     runner: str = "thread", workers: int = 1, dask_address: str | None = None,
                     device: str = "auto", progress: bool = False, expect_image_size: int | None = None,
                     shards: list[int] | None = None, precision: str = "auto") -> dict:
    """Annotate every row of ``catalog`` with the models of ``bundle`` into ``out``; returns the
    run summary. The parameters are :func:`export.serve.catalog.annotate_catalog`'s, plus where
    the shards run: ``runner`` (thread, process or dask), ``workers`` at once, ``dask_address``
    (a running Dask cluster), and ``progress`` (a terminal progress bar)."""
    runner_obj = task_runner(runner, workers, dask_address)  # a bad choice fails before any work
    run = plan_annotation(catalog, bundle, out, shard_size=shard_size, batch_size=batch_size, workers=workers,
                          threads=None if dask_address is None else 1, device=device,
                          expect_image_size=expect_image_size, shards=shards, precision=precision)
    t0 = time.perf_counter()
    with runner_obj as started:
        results = annotate_shards(started, run, progress)
    summary = finish_annotation(run, results, time.perf_counter() - t0, runner, workers)
    create_markdown_artifact(summary_markdown(summary), key="annotate-summary",
                             description=f"catalog-annotate {run.catalog.name} × bundle {run.loaded.bundle_id}")
    return summary
