import numpy as np
import polars as pl
import pytest

from catalogs.labels import CLASSES, RULE, derive_labels

SPIRAL, SMOOTH, EDGE, MERGER = (col for _, col in RULE)


@pytest.mark.parametrize(
    "spiral, smooth, edge, merger, expected",
    [
        (0.9, 0.0, 0.0, 0.0, "spiral"),
        (0.6, 0.9, 0.9, 0.9, "spiral"),  # first match wins
        (0.59, 0.6, 0.0, 0.0, "elliptical"),  # threshold is inclusive
        (0.1, 0.5, 0.7, 0.7, "edge-on"),
        (0.1, 0.5, 0.5, 0.61, "merger"),
        (0.5, 0.5, 0.5, 0.5, "ambiguous"),
        (np.nan, np.nan, np.nan, 0.8, "merger"),  # missing counts as below threshold
    ],
)
def test_rule_order_and_threshold(spiral, smooth, edge, merger, expected):
    cols = {SPIRAL: [spiral], SMOOTH: [smooth], EDGE: [edge], MERGER: [merger]}
    assert derive_labels(cols).tolist() == [expected]


def test_classes_are_the_seed_five():
    assert CLASSES == ("spiral", "elliptical", "edge-on", "merger", "ambiguous")


def test_missing_deciding_column_is_named():
    with pytest.raises(KeyError, match="t08_odd_feature_a24_merger_debiased"):
        derive_labels({SPIRAL: [0.1], SMOOTH: [0.1], EDGE: [0.1]})


def test_agrees_with_derived_label_on_all_700_shared_galaxies(shared_data):
    df = pl.read_csv(shared_data / "gz2-sample" / "gz2_sample_labels.csv", infer_schema=False)
    cols = {col: df[col].cast(pl.Float64).to_numpy() for _, col in RULE}
    labels = derive_labels(cols)
    assert len(labels) == 700
    mismatched = np.flatnonzero(labels != df["derived_label"].to_numpy())
    assert mismatched.size == 0, f"rows {mismatched[:10]} disagree"
