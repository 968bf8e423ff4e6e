"""benchmarks/similar.py on a tiny index: every figure recorded, recall computed against exact
search (timings are the benchmark's to report: only an ordering that holds by a wide margin is asserted)."""

from __future__ import annotations

import json

import numpy as np

from benchmarks.similar import run_similar_bench, synthetic_embeddings
from catalogs.outputs import EMBEDDING_DIM


def _nearest_similarity(x: np.ndarray) -> float:
    sims = x[:50] @ x.T
    np.fill_diagonal(sims[:, :50], -1)
    return float(np.median(sims.max(axis=1)))


def test_synthetic_embeddings_are_unit_rows_with_neighbourhoods():
    x = synthetic_embeddings(20_000, seed=0)
    assert x.shape == (20_000, EMBEDDING_DIM) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    uniform = np.random.default_rng(0).standard_normal((20_000, EMBEDDING_DIM)).astype(np.float32)
    uniform /= np.linalg.norm(uniform, axis=1, keepdims=True)
    # Clustered, as galaxies' embeddings are: a row's nearest neighbour is much closer than on the sphere.
    assert _nearest_similarity(x) > _nearest_similarity(uniform) + 0.2


def test_the_similarity_bench_records_build_latency_and_recall(tmp_path):
    summary = run_similar_bench(tmp_path, [1500, 3000], queries=10)
    assert [r["rows"] for r in summary["results"]] == [1500, 3000]
    for r in summary["results"]:
        for kind in ("exact", "hnsw"):
            assert 0 < r[f"{kind}_query_ms_median"] <= r[f"{kind}_query_ms_p95"]
        # A flat index only copies the vectors; HNSW links every one into its graph (100× or more).
        assert r["exact_build_seconds"] < r["hnsw_build_seconds"]
        assert 0.9 <= r["hnsw_recall_at_10"] <= 1.0
    assert json.loads((tmp_path / "similar.json").read_text()) == summary
    assert "| 3,000 |" in (tmp_path / "similar.md").read_text()
