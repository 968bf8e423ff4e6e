"""benchmarks/active.py on a tiny synthetic survey: every strategy starts from the same labels,
adds its picks each round, and is scored on the same test fold."""

from __future__ import annotations

import json

import pytest

from benchmarks.active import run_active_bench

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]


def test_the_active_learning_bench_runs_each_strategy_from_the_same_start(tmp_path):
    from catalogs.contract import Catalog, write_catalog
    from catalogs.synthetic import render_survey

    table = render_survey(tmp_path / "s", n=90, seed=3, size=48, mix="balanced", workers=1)
    write_catalog(Catalog(table, tmp_path / "s", "synthetic"), tmp_path / "s" / "catalog.parquet")
    strategies = ("random", "entropy", "bald", "diverse")
    s = run_active_bench(tmp_path / "s" / "catalog.parquet", tmp_path / "out", strategies=strategies, start=20, step=10,
                         rounds=1, epochs=1, folds=3)
    assert list(s["curves"]) == list(strategies)
    for curve in s["curves"].values():
        assert [p["labels"] for p in curve] == [20, 30]
        assert all(0.0 <= p["accuracy"] <= 1.0 and 0.0 <= p["balanced_accuracy"] <= 1.0 for p in curve)
    # One seeded start for every strategy, drawn from the pool, never from the test fold.
    assert len(set(s["start_ids"])) == 20 and not set(s["start_ids"]) & set(s["test_ids"])
    assert s["test_rows"] == len(s["test_ids"]) and s["test_rows"] + s["pool"] == 90
    assert json.loads((tmp_path / "out" / "active.json").read_text()) == s
    assert "| 30 |" in (tmp_path / "out" / "active.md").read_text()
    assert (tmp_path / "out" / "active.png").read_bytes()[:4] == b"\x89PNG"


def test_the_active_learning_bench_starts_each_round_from_a_pretrained_backbone(tmp_path):
    from catalogs.contract import Catalog, write_catalog
    from catalogs.inputs import ImageSpec
    from catalogs.synthetic import render_survey
    from models.artifacts import save_trained
    from models.config import ModelConfig, TrainSettings
    from models.train import train_morphology

    table = render_survey(tmp_path / "s", n=60, seed=4, size=48, mix="balanced", workers=1)
    catalog = Catalog(table, tmp_path / "s", "synthetic")
    write_catalog(catalog, tmp_path / "s" / "catalog.parquet")
    # Pretrained at 48 px, not the default size: the bench must take the config from the models.
    (pretrained,) = train_morphology([catalog], ["s"], ModelConfig(image=ImageSpec(size=48)),
                                     TrainSettings(epochs=1), heads=("classifier",))
    save_trained(pretrained, tmp_path / "pre")
    s = run_active_bench(tmp_path / "s" / "catalog.parquet", tmp_path / "out", strategies=("random", "entropy"),
                         start=20, step=10, rounds=1, epochs=1, folds=3, init_from=tmp_path / "pre")
    assert s["init_from"] == str(tmp_path / "pre") and s["image_size"] == 48
    assert f"from the backbone of {tmp_path / 'pre'}" in (tmp_path / "out" / "active.md").read_text()
    assert [p["labels"] for p in s["curves"]["entropy"]] == [20, 30]
