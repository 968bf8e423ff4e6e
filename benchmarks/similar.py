"""``morphcat bench similar``: what "more like this" costs at survey scale, and how right HNSW is.

For each size in ``rows`` (synthetic unit vectors of the embedding width, drawn around a few
thousand cluster centres so that neighbourhoods exist as they do for galaxies, unlike uniform
noise on the sphere), both index kinds of ``export.serve.similar`` are built and queried one
vector at a time (what ``morphcat similar`` does): build seconds, median and 95th-percentile query
latency, and recall@10 of HNSW against the exact search. The figures decide
``EXACT_MAX_ROWS``: exact below the size where it is as fast.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.report import write_summary
from benchmarks.run import machine, machine_line
from catalogs.outputs import EMBEDDING_DIM
from export.serve.similar import EXACT, EXACT_MAX_ROWS, HNSW, build_index

K = 10
CENTRES = 5000
SPREAD = 0.35  # within-cluster scatter relative to the centres' unit scale


def synthetic_embeddings(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, EMBEDDING_DIM)).astype(np.float32)
    x = centres[rng.integers(0, CENTRES, n)] + SPREAD * rng.standard_normal((n, EMBEDDING_DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _latencies(index, queries: np.ndarray) -> np.ndarray:
    out = np.empty(len(queries))
    for i, q in enumerate(queries):
        t = time.perf_counter()
        index.search(q[None, :], K)
        out[i] = time.perf_counter() - t
    return out


def run_similar_bench(out: Path, rows: list[int], queries: int = 200, seed: int = 0) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for n in rows:
        vectors = synthetic_embeddings(n, seed)
        # Queries are new galaxies (not rows of the index), as for --image.
        probe = synthetic_embeddings(queries, seed + 1)
        ids = np.arange(n).astype(str)
        row = {"rows": n}
        found = {}
        for kind in (EXACT, HNSW):
            t = time.perf_counter()
            index = build_index(ids, vectors, kind)
            row[f"{kind}_build_seconds"] = round(time.perf_counter() - t, 3)
            lat = _latencies(index, probe)
            row[f"{kind}_query_ms_median"] = round(float(np.median(lat)) * 1e3, 3)
            row[f"{kind}_query_ms_p95"] = round(float(np.quantile(lat, 0.95)) * 1e3, 3)
            found[kind] = index.search(probe, K)[1]
            del index
        row["hnsw_recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / K
                                                        for a, b in zip(found[EXACT], found[HNSW])])), 4)
        results.append(row)
    summary = {"machine": machine(), "dim": EMBEDDING_DIM, "k": K, "queries": queries, "exact_max_rows": EXACT_MAX_ROWS,
               "results": results}
    return write_summary(out, "similar", summary, similar_markdown(summary))


def similar_markdown(s: dict) -> str:
    lines = [f"{s['dim']}-float unit embeddings, {s['queries']} single-vector queries for the {s['k']} nearest "
             f"({machine_line(s['machine'])}); `morphcat similar` uses the exact index up to "
             f"{s['exact_max_rows']:,} rows, HNSW above:", "",
             "| embeddings | exact: build (s) | exact: query median / p95 (ms) | HNSW: build (s) "
             "| HNSW: query median / p95 (ms) | HNSW recall@10 |", "|---:|---:|---|---:|---|---:|"]
    for r in s["results"]:
        lines.append(f"| {r['rows']:,} | {r['exact_build_seconds']:.2f} | {r['exact_query_ms_median']:.2f} / "
                     f"{r['exact_query_ms_p95']:.2f} | {r['hnsw_build_seconds']:.1f} | {r['hnsw_query_ms_median']:.3f} / "
                     f"{r['hnsw_query_ms_p95']:.3f} | {r['hnsw_recall_at_10']:.3f} |")
    return "\n".join(lines) + "\n"
