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

import time
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from catalogs.decoding import BATCH_SIZE
from catalogs.shards import SHARD_SIZE, account_rows, discard_incomplete, finished_shards, prepare_run
from export.serve.shard import opened_bundle, opened_catalog, peak_rss_mb, run_shard, threads_per_worker
from catalogs.errors import UsageError
from flows.progress import StageBar

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


def annotate_shards(runner, catalog: str, bundle: str, out: str, run_id: str, shard_size: int, shards: list[int],
                    batch_size: int, device: str, threads: int, total_shards: int, progress: bool,
                    expect_image_size: int | None, catalog_rows: int, precision: str) -> list[dict]:
    """One ``annotate-shard`` task per shard in ``shards`` on the started task ``runner``, inside
    the ``catalog-annotate`` run: the runner is a run parameter, and a subflow to carry it
    would cost a second flow run (and its heartbeat thread's exit, up to 1 s) per run."""
    done = total_shards - len(shards)
    artifact = create_progress_artifact(100.0 * done / max(1, total_shards), key="annotate-progress",
                                        description=f"shards of run {run_id} written")
    futures = [runner.submit(annotate_shard, dict(
        catalog=catalog, bundle=bundle, out=out, run_id=run_id, shard_size=shard_size, shard_index=i,
        batch_size=batch_size, device=device, threads=threads, expect_image_size=expect_image_size,
        catalog_rows=catalog_rows, precision=precision)) for i in shards]
    results = []
    started = time.perf_counter()
    with StageBar("annotating", total_shards, "shards", enabled=progress, done=done) as bar:
        for future in as_completed(futures):
            results.append(future.result())
            done += 1
            update_progress_artifact(artifact, 100.0 * done / max(1, total_shards))
            rows = sum(r["rows"] for r in results)
            bar.advance(rows=rows, images_per_s=rows / (time.perf_counter() - started))
    return sorted(results, key=lambda r: r["shard"])


@flow(name="catalog-annotate")
def catalog_annotate(catalog: Path, bundle: Path, out: Path, shard_size: int = SHARD_SIZE,
                     batch_size: int = BATCH_SIZE,
                     runner: str = "thread", workers: int = 1, dask_address: str | None = None,
                     device: str = "auto", progress: bool = False, expect_image_size: int | None = None,
                     shards: list[int] | None = None, precision: str = "auto") -> dict:
    """Annotate every row of ``catalog`` (a Parquet from ``morphcat ingest``/``synth``) with the
    models of ``bundle`` into ``out``; returns the run summary (rows, errors, throughput...).
    ``expect_image_size``: refuse a bundle whose models take another input size. ``shards``: run
    only these shard numbers (for a quick look, or to redo a range); the run then accounts for
    the rows of every finished shard and lists the shards still to do. ``precision``: of the image
    graph (``auto``: int8 where the bundle's passed its agreement gate and runs faster here, see
    ``export.serve.runtime.open_bundle``); chosen once here, so every worker computes alike."""
    if shard_size < 1 or batch_size < 1 or workers < 1:
        raise ValueError(f"shard_size, batch_size and workers must be ≥ 1, got {shard_size}, {batch_size}, {workers}")
    runner_obj = task_runner(runner, workers, dask_address)  # a bad choice fails before any work
    catalog, bundle, out = Path(catalog).resolve(), Path(bundle).resolve(), Path(out).resolve()
    threads = threads_per_worker(workers) if dask_address is None else 1
    cat = opened_catalog(str(catalog))
    loaded = opened_bundle(str(bundle), device, threads, expect_image_size, precision)  # a refused bundle costs no work
    # The precision is part of the run (recorded in OUT's manifest with it): an fp32 and an int8
    # run of one catalog are two runs.
    params = {"batch_size": batch_size, "precision": loaded.precision}
    plan = prepare_run(out, cat.table, loaded.bundle_id, shard_size, params, source=str(catalog))
    discard_incomplete(out, plan.run_id)
    planned = {s.index for s in plan.shards}
    if shards is not None and not set(shards) <= planned:
        raise UsageError(f"--shards {_ranges(sorted(set(shards) - planned))}: the run has shards 0–{len(planned) - 1}")
    wanted = planned if shards is None else set(shards)
    todo = sorted(wanted - finished_shards(out, plan.run_id))
    t0 = time.perf_counter()
    with runner_obj as started:
        results = annotate_shards(started, str(catalog), str(bundle), str(out), plan.run_id, shard_size, todo,
                                  batch_size, device, threads, len(plan.shards), progress, expect_image_size,
                                  cat.table.num_rows, loaded.precision)
    seconds = time.perf_counter() - t0
    account = account_rows(out, plan.run_id)
    # Every shard asked for is written and holds exactly its rows (all of them, without --shards).
    accounted = (account.complete if shards is None else not (account.miscounted_shards or account.unexpected_files
                                                              or wanted & set(account.missing_shards)))
    if not accounted:
        raise RuntimeError(f"run {plan.run_id} in {out} does not account for every row: {account}")
    # What a worker lost mid-shard left in .staging (its shard was written again elsewhere).
    discard_incomplete(out, plan.run_id)
    summary = _summary(plan, account, results, seconds, loaded, runner, workers, len(wanted) - len(todo))
    summary["shards_to_do"] = _ranges(sorted(account.missing_shards))
    create_markdown_artifact(_markdown(summary), key="annotate-summary",
                             description=f"catalog-annotate {catalog.name} × bundle {loaded.bundle_id}")
    return summary


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` → ``"0-2,5,7-8"`` (the ``--shards`` syntax), ``""`` for none."""
    parts, i = [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(str(numbers[i]) if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ",".join(parts)


def parse_shards(text: str) -> list[int]:
    """``"0-9,42"`` → ``[0, 1, …, 9, 42]``: shard numbers and inclusive ranges, comma-separated."""
    out: set[int] = set()
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise UsageError(f"--shards takes shard numbers and ranges like 0-9,42, not {text!r}")
        out.update(range(int(lo), int(hi if dash else lo) + 1))
    return sorted(out)


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
        "precision": loaded.precision, "precision_reason": loaded.precision_reason,
        "runner": runner, "workers": workers,
        # The largest process: the flow's, or a worker's when shards ran in other processes.
        "peak_rss_mb": max([peak_rss_mb(), *(r["peak_rss_mb"] for r in results)]),
    }


def _markdown(s: dict) -> str:
    lines = [f"# catalog-annotate run `{s['run_id']}`", "",
             "| | |", "|---|---|",
             *(f"| {k} | {s[k]} |" for k in ("out", "bundle_id", "catalog_rows", "predictions", "errors", "shards",
                                              "shards_skipped", "ood_flagged_this_run", "seconds", "images_per_second",
                                              "provider", "precision", "precision_reason",
                                              "runner", "workers", "peak_rss_mb")),
             "", "| class (this run) | rows |", "|---|---:|",
             *(f"| {c} | {n} |" for c, n in sorted(s["class_counts_this_run"].items()))]
    return "\n".join(lines)
