"""bench labels: label support, the rule on raw votes, the morphometry baseline and the stacking."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from benchmarks.labels import (MORPHOMETRY, morphometry, raw_rule_agreement, run_labels_bench,
                               support_table)
from catalogs.tree import GZ2_TREE
from models.crossval import mean_vote_baseline


def test_support_table_counts_the_labels_a_majority_of_volunteers_supports():
    merger = GZ2_TREE.answer("t08", "a24").index
    smooth = GZ2_TREE.answer("t01", "a01").index
    c = np.zeros((4, 37))
    c[0, smooth], c[1, smooth] = 0.9, 0.7
    c[2, merger], c[3, merger] = 0.6, 0.1
    t = support_table(["elliptical", "elliptical", "merger", "merger"], c)
    assert t["elliptical"] == {"galaxies": 2, "supported": 1.0, "below_0_3": 0.0, "median_support": pytest.approx(0.8)}
    assert t["merger"]["supported"] == 0.5 and t["merger"]["below_0_3"] == 0.5
    assert t["all"]["galaxies"] == 4 and t["all"]["supported"] == 0.75


def test_the_rule_on_raw_votes_is_compared_with_the_catalog_labels(tmp_path):
    from catalogs.labels import RULE

    cols = [col.replace("_debiased", "_weighted_fraction") for _, col in RULE]  # spiral, elliptical, edge-on, merger
    rows = {"1": [0.9, 0.0, 0.0, 0.0], "2": [0.0, 0.8, 0.0, 0.0], "3": [0.0, 0.9, 0.0, 0.0], "4": [0.1, 0.1, 0.1, 0.1]}
    lines = ["objid," + ",".join(cols) + ",other"] + [f"{k}," + ",".join(map(str, v)) + ",x" for k, v in rows.items()]
    csv = tmp_path / "hart.csv"
    csv.write_text("\n".join(lines) + "\n")
    # "3" is a debiased spiral the volunteers called smooth; "9" is not in the CSV
    got = raw_rule_agreement(csv, ["1", "2", "3", "4", "9"], ["spiral", "elliptical", "spiral", "merger", "spiral"])
    assert got["galaxies"] == 4 and got["agreement"] == 0.5
    assert got["per_label"] == {"elliptical": 1.0, "merger": 0.0, "spiral": 0.5}
    assert got["raw_classes"] == {"ambiguous": 1, "elliptical": 2, "spiral": 1}
    with pytest.raises(ValueError, match="no object_id"):
        raw_rule_agreement(csv, ["7"], ["spiral"])


def test_the_vote_floor_predicts_the_other_folds_mean_fractions():
    smooth, featured = GZ2_TREE.answer("t01", "a01").index, GZ2_TREE.answer("t01", "a02").index
    t = np.full((3, 37), np.nan)  # only question 1 asked: a per-question and a Kaggle RMSE alike
    t[:, smooth] = [1.0, 0.0, 0.5]
    t[:, featured] = 1.0 - t[:, smooth]
    got = mean_vote_baseline(t, np.array([0, 0, 1]))
    # fold 0 is predicted 0.5 from galaxy 3 (errors 0.5, 0.5); fold 1 is predicted 0.5 (error 0)
    assert got["rmse_kaggle"]["folds"] == [0.5, 0.0]
    assert got["rmse_per_question"]["folds"] == [0.5, 0.0]
    assert got["rmse_kaggle"]["mean"] == pytest.approx(0.25)


def _disc(q: float, seed: int) -> np.ndarray:
    """A 64 px red-cored elliptical disc of axis ratio ``q`` on noisy sky."""
    y, x = np.mgrid[:64, :64] - 31.5
    core = np.exp(-np.hypot(x, y / q) / 4.0)
    rgb = np.stack([200 * core, 150 * core, 90 * core], axis=2) + 10
    return np.clip(rgb + np.random.default_rng(seed).normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)


def test_morphometry_measures_a_disc_and_finds_nothing_on_empty_sky():
    round_, flat = morphometry(_disc(1.0, 0)), morphometry(_disc(0.3, 1))
    assert np.isfinite(round_).all() and np.isfinite(flat).all()
    e = MORPHOMETRY.index("ellipticity_asymmetry")
    assert round_[e] < 0.15 < 0.5 < flat[e]
    assert round_[MORPHOMETRY.index("colour_ig")] > 0.2  # red: more flux in R (i) than in B (g)
    sky = np.clip(10 + np.random.default_rng(2).normal(0, 2, (64, 64, 3)), 0, 255).astype(np.uint8)
    assert np.isnan(morphometry(sky)).all()


@pytest.mark.slow
def test_the_bench_scores_the_morphometry_and_stacks_it_with_the_cv_predictions(tmp_path):
    from catalogs.contract import Catalog, read_catalog, write_catalog
    from catalogs.labels import RULE
    from catalogs.synthetic import render_survey
    from catalogs.targets import with_derived_targets
    from models.crossval import folds_of

    table = with_derived_targets(render_survey(tmp_path / "s", n=40, seed=3, size=96, mix="balanced", workers=1))
    path = write_catalog(Catalog(table, tmp_path / "s", "synthetic"), tmp_path / "s" / "catalog.parquet")
    catalog = read_catalog(path)
    ids = catalog.table.column("object_id").to_pylist()
    labels = catalog.table.column("label").to_pylist()
    folds = folds_of([catalog], ["catalog"], 2)[0]
    names = sorted(set(labels))
    # a "CNN" that knows the answer: stacked on rows joined right, the second level follows it (misjoined
    # rows would score near chance)
    probs = np.array([[0.9 if n == lab else 0.1 / (len(names) - 1) for n in names] for lab in labels])
    held = pl.DataFrame({"catalog": ["catalog"] * len(ids), "fold": folds.astype(np.int32), "object_id": ids,
                         "label": labels, **{f"p_{n}": probs[:, j] for j, n in enumerate(names)}})
    held.write_parquet(tmp_path / "predictions.parquet")
    s = run_labels_bench([path], tmp_path / "out", cv_predictions=tmp_path / "predictions.parquet", folds=2)
    e = s["catalogs"]["catalog"]
    assert e["rows"] == 40 and e["support"]["all"]["galaxies"] == sum(lab in dict(RULE) for lab in labels)
    assert len(e["morphometry"]["accuracy"]["folds"]) == 2
    assert e["cnn"]["accuracy"]["mean"] == 1.0 and e["stacked"]["accuracy"]["mean"] >= 0.9
    assert (tmp_path / "out" / "labels.md").read_text().count("|") > 20
    held.with_columns(fold=1 - pl.col("fold")).write_parquet(tmp_path / "shifted.parquet")
    with pytest.raises(ValueError, match="folds"):
        run_labels_bench([path], tmp_path / "out2", cv_predictions=tmp_path / "shifted.parquet", folds=2)


def _fractions(smooth: float) -> np.ndarray:
    """Per-question fractions: t01 smooth / features / artifact, every other question even."""
    from catalogs.tree import GZ2_TREE

    f = np.zeros(37)
    for _, sl in GZ2_TREE.question_slices:
        f[sl] = 1.0 / (sl.stop - sl.start)
    t01 = GZ2_TREE.question_slices[0][1]
    f[t01] = smooth, 1.0 - smooth, 0.0
    arms = GZ2_TREE.answer("t04", "a08").index
    f[arms], f[arms + 1] = 0.0, 1.0  # no volunteer sees arms: the rule's spiral (checked first) never fires
    return f


def test_the_noise_ceiling_is_one_for_unanimous_votes_and_falls_for_split_ones():
    from benchmarks.labels import noise_ceiling

    unanimous = noise_ceiling(np.array([_fractions(1.0)] * 3), np.array([40, 40, 40]), ["elliptical"] * 3, draws=50)
    assert unanimous["ceiling"] == 1.0 and unanimous["per_class"] == {"elliptical": 1.0}
    # smooth 0.62 over 40 volunteers: the 0.6 threshold is crossed again only about half the time
    split = noise_ceiling(np.array([_fractions(0.62)] * 3), np.array([40, 40, 40]), ["elliptical"] * 3, draws=200)
    assert 0.3 < split["ceiling"] < 0.8
    many = noise_ceiling(np.array([_fractions(0.7)]), np.array([400]), ["elliptical"], draws=100)
    few = noise_ceiling(np.array([_fractions(0.7)]), np.array([10]), ["elliptical"], draws=100)
    assert many["ceiling"] > few["ceiling"]  # more volunteers, a steadier label
