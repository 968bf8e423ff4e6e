"""benchmarks/unusual.py end to end on a tiny survey: the rare class is kept out of training,
the ranked survey has it, and precision is computed against the truth."""

from __future__ import annotations

import json

import polars as pl
import pytest

from benchmarks.unusual import RARE, run_unusual_bench

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def test_the_unusual_bench_trains_without_the_rare_class_and_scores_the_ranking(tmp_path, prefect_harness):
    r = run_unusual_bench(tmp_path, n=60, train_n=40, epochs=1, size=48)
    trained_on = pl.read_parquet(tmp_path / "train-survey" / "without-rare.parquet")
    assert not trained_on["truth_class"].is_in(list(RARE)).any() and trained_on.height == r["trained_on"]
    truth = pl.read_parquet(tmp_path / "survey" / "catalog.parquet")["truth_class"]
    assert r["n"] == 60 and r["rare"] == int(truth.is_in(list(RARE)).sum())
    assert r["base_rate"] == pytest.approx(r["rare"] / 60, abs=1e-4)
    for name in ("score", "isolation", "ood_score", "maximum"):
        for k in (20, 100):
            assert 0.0 <= r[f"precision_at_{k}_{name}"] <= 1.0
    assert json.loads((tmp_path / "unusual.json").read_text()) == r
    assert "| the combined score (morphcat unusual)" in (tmp_path / "unusual.md").read_text()
