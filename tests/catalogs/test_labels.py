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


def _fractions(**answers):
    """A per-question (1, 37) vector: ``t06_a14=0.1`` sets that answer's fraction."""
    from catalogs.tree import GZ2_TREE

    f = np.zeros((1, len(GZ2_TREE)))
    for key, value in answers.items():
        q, a = key.split("_")
        f[0, GZ2_TREE.answer(q, a).index] = value
    return f


@pytest.mark.parametrize("label, answers, support", [
    # 90 % said smooth: the whole share supports "elliptical"
    ("elliptical", dict(t01_a01=0.9, t01_a02=0.1), 0.9),
    # features 0.8 × not edge-on 0.75 × arms 0.9
    ("spiral", dict(t01_a01=0.2, t01_a02=0.8, t02_a04=0.25, t02_a05=0.75, t04_a08=0.9, t04_a09=0.1), 0.54),
    # features 0.6 × edge-on 0.5
    ("edge-on", dict(t01_a01=0.4, t01_a02=0.6, t02_a04=0.5, t02_a05=0.5), 0.3),
    # the rule calls it a merger (0.7 of those who reached t08), but only 10 % saw anything odd
    ("merger", dict(t01_a01=1.0, t06_a14=0.1, t06_a15=0.9, t08_a24=0.7, t08_a22=0.3), 0.07),
])
def test_label_support_is_the_cumulative_share_of_the_deciding_answer(label, answers, support):
    from catalogs.labels import label_support
    from catalogs.tree import GZ2_TREE

    got = label_support(GZ2_TREE.cumulative(_fractions(**answers)), [label])
    assert got[0] == pytest.approx(support)


def test_label_support_is_nan_without_a_rule_class_or_votes():
    from catalogs.labels import label_support

    c = np.full((4, 37), 0.5)
    c[3] = np.nan
    got = label_support(c, ["ambiguous", "artifact", None, "spiral"])
    assert np.isnan(got).all()
    with pytest.raises(ValueError, match="shape"):
        label_support(np.zeros((2, 37)), ["spiral"])
