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
    # Two of the four strategies: the baseline and the one that samples the model most (each
    # strategy's picking itself is tested in tests/export/serve/test_discovery.py).
    strategies = ("random", "bald")
    s = run_active_bench(tmp_path / "s" / "catalog.parquet", tmp_path / "out", strategies=strategies, start=20, step=10,
                         rounds=1, epochs=1, folds=3)
    assert list(s["curves"]) == list(strategies)
    for curve in s["curves"].values():
        assert [p["labels"] for p in curve] == [20, 30]
        assert all(0.0 <= p["accuracy"] <= 1.0 and 0.0 <= p["balanced_accuracy"] <= 1.0 for p in curve)
    # One start model for every strategy: the same first point (a re-train would not be bit-identical).
    assert s["curves"]["random"][0] == s["curves"]["bald"][0]
    # One seeded start for every strategy, drawn from the pool, never from the test fold.
    assert len(set(s["start_ids"])) == 20 and not set(s["start_ids"]) & set(s["test_ids"])
    assert s["test_rows"] == len(s["test_ids"]) and s["test_rows"] + s["pool"] == 90
    assert json.loads((tmp_path / "out" / "active.json").read_text()) == s
    assert "| 30 |" in (tmp_path / "out" / "active.md").read_text()
    assert (tmp_path / "out" / "active.png").read_bytes()[:4] == b"\x89PNG"


def _survey_and_pretrained(tmp_path, n: int, seed: int, size: int):
    """A synthetic survey's catalog path, and a classifier pretrained on it at ``size`` px (not the
    default size: the benches must take the config from the models) saved in ``tmp_path/pre``."""
    from catalogs.contract import Catalog, write_catalog
    from catalogs.inputs import ImageSpec
    from catalogs.synthetic import render_survey
    from models.artifacts import save_trained
    from models.config import ModelConfig, TrainSettings
    from models.train import train_morphology

    table = render_survey(tmp_path / "s", n=n, seed=seed, size=48, mix="balanced", workers=1)
    catalog = Catalog(table, tmp_path / "s", "synthetic")
    write_catalog(catalog, tmp_path / "s" / "catalog.parquet")
    (pretrained,) = train_morphology([catalog], ["s"], ModelConfig(image=ImageSpec(size=size)),
                                     TrainSettings(epochs=1), heads=("classifier",))
    save_trained(pretrained, tmp_path / "pre")
    return tmp_path / "s" / "catalog.parquet"


def test_the_active_learning_bench_starts_each_round_from_a_pretrained_backbone(tmp_path):
    catalog = _survey_and_pretrained(tmp_path, n=60, seed=4, size=48)
    s = run_active_bench(catalog, tmp_path / "out", strategies=("random", "entropy"),
                         start=20, step=10, rounds=1, epochs=1, folds=3, init_from=tmp_path / "pre")
    assert s["init_from"] == str(tmp_path / "pre") and s["image_size"] == 48
    assert f"from the backbone of {tmp_path / 'pre'}" in (tmp_path / "out" / "active.md").read_text()
    assert [p["labels"] for p in s["curves"]["entropy"]] == [20, 30]


def _point(accuracy, balanced):
    return {"labels": 0, "accuracy": accuracy, "balanced_accuracy": balanced}


def test_the_head_only_summary_pairs_each_strategy_with_random_on_the_same_run():
    from benchmarks.active_probe import labels_to_reach, summarise

    # Two runs, two rounds: entropy gains 0.1 then 0.3 over random at round 2 → mean 0.2, SE 0.1.
    runs = [{"curves": {"random": [_point(0.5, 0.4), _point(0.6, 0.5)],
                        "entropy": [_point(0.5, 0.4), _point(0.7, 0.4)]}},
            {"curves": {"random": [_point(0.3, 0.2), _point(0.4, 0.3)],
                        "entropy": [_point(0.3, 0.2), _point(0.7, 0.3)]}}]
    for run in runs:
        for strategy in run["curves"]:
            run["curves"][strategy][1]["labels"] = 10
    table = summarise(runs, ("random", "entropy"))
    assert [row["labels"] for row in table] == [0, 10]
    assert table[0]["entropy"]["accuracy_gain"] == 0.0
    last = table[1]
    assert last["random"]["accuracy"] == 0.5 and last["entropy"]["accuracy"] == 0.7
    assert last["entropy"]["accuracy_gain"] == 0.2 and last["entropy"]["accuracy_gain_se"] == 0.1
    assert last["entropy"]["balanced_accuracy_gain"] == -0.05 and last["random"]["balanced_accuracy_gain"] == 0.0
    assert labels_to_reach(table, "entropy", "accuracy") == 10
    assert labels_to_reach(table, "entropy", "balanced_accuracy") is None  # 0.35 < random's 0.4
    assert labels_to_reach(table, "random", "balanced_accuracy") == 10


def test_the_head_only_bench_runs_every_fold_and_start_from_a_frozen_backbone(tmp_path):
    from benchmarks.active_probe import run_probe_bench

    catalog = _survey_and_pretrained(tmp_path, n=90, seed=5, size=40)
    strategies = ("random", "entropy", "margin", "bald", "diverse")
    s = run_probe_bench(catalog, tmp_path / "out", tmp_path / "pre", strategies,
                        start=20, step=10, rounds=2, folds=3, repeats=2)
    assert s["image_size"] == 40 and s["galaxies"] == 90
    assert [(r["fold"], r["repeat"]) for r in s["runs"]] == [(f, k) for f in range(3) for k in range(2)]
    assert sum(r["test_rows"] for r in s["runs"]) == 2 * 90  # each galaxy in one test fold, per repeat
    for run in s["runs"]:
        assert run["test_rows"] + run["pool"] == 90
        firsts = {strategy: curve[0] for strategy, curve in run["curves"].items()}
        assert len({(p["accuracy"], p["balanced_accuracy"]) for p in firsts.values()}) == 1  # one start for all
        assert all([p["labels"] for p in curve] == [20, 30, 40] for curve in run["curves"].values())
    assert [row["labels"] for row in s["table"]] == [20, 30, 40]
    assert all(row["random"]["accuracy_gain"] == 0.0 for row in s["table"])
    assert json.loads((tmp_path / "out" / "active.json").read_text()) == s
    md = (tmp_path / "out" / "active.md").read_text()
    assert "3 folds × 2 random starts" in md and "| 40 |" in md
    assert (tmp_path / "out" / "active.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="include it"):
        run_probe_bench(catalog, tmp_path / "o2", tmp_path / "pre", ("entropy",),
                        start=20, step=10, rounds=1, folds=3, repeats=1)
