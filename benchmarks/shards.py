"""``morphcat bench shard``: does one shard's worker cost depend on the size of the catalog?

For catalogs of each size in ``rows`` (the same synthetic images reused through their paths, as
:func:`benchmarks.load.load_catalog` builds them; written in row groups like every catalog), the
run is planned once here (the planner reads the whole catalog), then shards are annotated one at a
time each in a fresh worker process, as a cluster worker would start: the worker's peak resident
memory (``VmHWM``) and its shard start-up time (opening the bundle, reading the shard's rows from
the catalog) are measured. A shard at the start, the middle and the end of each catalog is timed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.load import load_catalog
from catalogs.atomic import write_text
from catalogs.decoding import BATCH_SIZE
from catalogs.shards import SHARD_SIZE


def _worker(catalog: Path, bundle: Path, out: Path, run_id: str, shard_size: int, index: int, batch: int,
            rows: int) -> dict:
    # The worker's clock starts at the parent's spawn: process start-up (imports) is part of it.
    code = ("import json, sys, time; from export.serve.shard import peak_rss_mb, run_shard; "
            "called = time.time(); "
            "r = run_shard(*sys.argv[1:5], int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]), 'cpu', 2, None, "
            "int(sys.argv[8])); "
            "r['process_startup_seconds'] = called - float(sys.argv[9]) + r['startup_seconds']; "
            "r['peak_rss_mb'] = peak_rss_mb(); print(json.dumps(r))")
    proc = subprocess.run([sys.executable, "-c", code, str(catalog), str(bundle), str(out), run_id, str(shard_size),
                           str(index), str(batch), str(rows), repr(time.time())], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"the shard worker failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_shard_bench(out: Path, bundle: Path, rows: list[int], images: int = 1000, size: int = 424,
                    shard_size: int = SHARD_SIZE, batch_size: int = BATCH_SIZE) -> dict:
    from catalogs.contract import read_catalog
    from catalogs.shards import plan_shards, prepare_run, shard_files
    from export.serve.runtime import open_bundle

    out = Path(out).resolve()
    bundle_id = open_bundle(bundle, device="cpu").bundle_id
    results = []
    for n in rows:
        catalog = load_catalog(out, n, images, size, 0)
        whole = read_catalog(catalog)  # the planner's read: validation, fingerprint
        plan = prepare_run(out / f"annotations-{n}", whole.table, bundle_id, shard_size,
                           {"batch_size": batch_size}, source=str(catalog))
        count = len(plan_shards(n, shard_size))
        shards = sorted({0, count // 2, count - 1})
        measured = [_worker(catalog, Path(bundle).resolve(), plan.out, plan.run_id, shard_size, i, batch_size, n)
                    for i in shards]
        paths = whole.table.column("image_path").to_pylist()
        image_bytes = [sum((whole.root / paths[r]).stat().st_size for r in range(s.start, s.stop))
                       for s in plan.shards if s.index in shards]
        files = [shard_files(plan.out, plan.run_id, plan.shards[i]) for i in shards]
        written = [f.predictions.stat().st_size + f.errors.stat().st_size for f in files]
        results.append({"rows": n, "catalog_bytes": catalog.stat().st_size, "shards_timed": shards,
                        "peak_rss_mb": [m["peak_rss_mb"] for m in measured],
                        "startup_seconds": [m["startup_seconds"] for m in measured],
                        "rows_read_seconds": [m["rows_read_seconds"] for m in measured],
                        "process_startup_seconds": [round(m["process_startup_seconds"], 3) for m in measured],
                        "shard_seconds": [m["seconds"] for m in measured],
                        "image_bytes_read": image_bytes, "bytes_written": written})
    small, large = results[0], results[-1]
    summary = {"images": images, "size": size, "shard_size": shard_size, "results": results,
               "rss_ratio": round(float(np.median(large["peak_rss_mb"]) / np.median(small["peak_rss_mb"])), 3),
               "startup_ratio": round(float(np.median(large["startup_seconds"]) / np.median(small["startup_seconds"])),
                                      3),
               "process_startup_ratio": round(float(np.median(large["process_startup_seconds"])
                                                    / np.median(small["process_startup_seconds"])), 3)}
    write_text(out / "shards.json", json.dumps(summary, indent=2) + "\n")
    write_text(out / "shards.md", shard_markdown(summary))
    return summary


def shard_markdown(s: dict) -> str:
    lines = [f"One shard of {s['shard_size']} rows per fresh worker process ({s['size']} px synthetic JPEGs, "
             f"{s['images']} images reused), shards at the start, middle and end of each catalog:", "",
             "| catalog rows | catalog file | worker peak RSS (MiB) | worker start-up, from spawn (s) | shard start-up "
             "in the worker (s) | of which reading its rows (s) | shard (s) | images read (MB) | written (kB) |",
             "|---:|---:|---|---|---|---|---|---|---|"]
    for r in s["results"]:
        lines.append(f"| {r['rows']:,} | {r['catalog_bytes'] / 2**20:.1f} MiB | "
                     + " / ".join(f"{x:.0f}" for x in r["peak_rss_mb"]) + " | "
                     + " / ".join(f"{x:.2f}" for x in r["process_startup_seconds"]) + " | "
                     + " / ".join(f"{x:.3f}" for x in r["startup_seconds"]) + " | "
                     + " / ".join(f"{x:.3f}" for x in r["rows_read_seconds"]) + " | "
                     + " / ".join(f"{x:.2f}" for x in r["shard_seconds"]) + " | "
                     + " / ".join(f"{x / 1e6:.1f}" for x in r["image_bytes_read"]) + " | "
                     + " / ".join(f"{x / 1e3:.0f}" for x in r["bytes_written"]) + " |")
    lines += ["", f"largest ÷ smallest catalog, medians: peak RSS {s['rss_ratio']:.3f}, worker start-up from spawn "
              f"{s['process_startup_ratio']:.3f}, shard start-up in the worker {s['startup_ratio']:.3f}"]
    return "\n".join(lines) + "\n"
