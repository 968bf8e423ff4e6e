"""One shard of a ``catalog-annotate`` run, end to end in the process that runs it: open the
catalog and the bundle (once per process), annotate the shard's rows (:mod:`export.serve.annotate`)
and write its two tables atomically (``catalogs.shards``). The flow maps this over the shards and
does nothing else per row.

Workers receive paths and shard numbers, never pixels or sessions, so any runner (threads,
processes, a Dask cluster) can run a shard anywhere the catalog and the bundle are readable.
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq

from catalogs.contract import Catalog, read_catalog, read_rows
from catalogs.shards import RunPlan, plan_shards, write_shard
from export.serve.annotate import annotate_rows
from export.serve.runtime import LoadedBundle, open_bundle


@functools.cache
def opened_catalog(path: str) -> Catalog:
    """The whole catalog, validated: for the process that plans a run, not for its workers."""
    return read_catalog(Path(path))


def count_rows(path: str) -> int:
    """How many rows a catalog file has, from its Parquet footer (no row is read)."""
    return pq.ParquetFile(path).metadata.num_rows


_BUNDLES: dict[tuple, LoadedBundle] = {}
_BUNDLES_LOCK = threading.Lock()


def opened_bundle(path: str, device: str, threads: int, expect_image_size: int | None = None,
                  precision: str = "auto") -> LoadedBundle:
    """The bundle, opened once per process and setting. One opened with ``auto`` is also kept
    under the precision it chose, which is what the run's shards then ask for, so a run on the
    thread runner opens its bundle (and probes its lower precision) once, not twice."""
    key = (path, device, threads, expect_image_size)
    with _BUNDLES_LOCK:  # shards starting together on threads open it once between them
        loaded = _BUNDLES.get((*key, precision))
        if loaded is None:
            loaded = open_bundle(Path(path), device=device, intra_op_threads=threads, require=("classifier",),
                                 expect_image_size=expect_image_size, precision=precision)
            _BUNDLES[(*key, precision)] = loaded
            _BUNDLES.setdefault((*key, loaded.precision), loaded)
    return loaded


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


def run_shard(catalog: str, bundle: str, out: str, run_id: str, shard_size: int, shard_index: int,
              batch_size: int, device: str, threads: int, expect_image_size: int | None = None,
              catalog_rows: int | None = None, precision: str = "fp32") -> dict:
    """Annotate and write shard ``shard_index`` of the run; returns what the run summary needs.
    Only the shard's rows are read from the catalog (its row groups, the columns annotation
    needs; ``catalog_rows``, the planner's count, spares the footer's): a worker's memory and
    start-up do not grow with the catalog. ``precision``: the image graph's, as the run chose it
    (``fp32``, ``int8`` or ``fp16``), so that every worker of a run computes alike."""
    t0 = time.perf_counter()
    loaded = opened_bundle(bundle, device, threads, expect_image_size, precision)
    shards = tuple(plan_shards(count_rows(catalog) if catalog_rows is None else catalog_rows, shard_size))
    shard = shards[shard_index]
    t_rows = time.perf_counter()
    rows = read_rows(Path(catalog), shard.start, shard.stop)
    started = time.perf_counter() - t0
    read_seconds = time.perf_counter() - t_rows
    result = annotate_rows(loaded, rows.root, rows.table, start_row=shard.start,
                           bundle_id=loaded.bundle_id, run_id=run_id, batch_size=batch_size,
                           decode_workers=threads)
    write_shard(RunPlan(Path(out), run_id, loaded.bundle_id, shards), shard, result.predictions, result.errors)
    labels = result.predictions.column("label_pred").to_pylist()
    return {"shard": shard.index, "rows": len(shard), "predictions": result.predictions.num_rows,
            "startup_seconds": round(started, 4), "rows_read_seconds": round(read_seconds, 4),
            "errors": result.errors.num_rows, "seconds": round(time.perf_counter() - t0, 3),
            "stages": {k: round(v, 3) for k, v in result.seconds.items()},
            "class_counts": {c: labels.count(c) for c in sorted(set(labels))},
            "ood_flagged": int(sum(bool(f) for f in result.predictions.column("ood_flag").to_pylist())),
            "provider": loaded.provider, "precision": loaded.precision,
            "peak_rss_mb": peak_rss_mb()}
