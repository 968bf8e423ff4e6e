"""Strata of volunteer support on tiny hand-made frames (table-driven)."""

import numpy as np
import pytest

from catalogs.tree import GZ2_TREE
from models.metrics.strata import strata_masks, strata_scores, wilson_interval

SMOOTH = GZ2_TREE.answer("t01", "a01").index
FEATURES = GZ2_TREE.answer("t01", "a02").index
NOT_EDGE = GZ2_TREE.answer("t02", "a05").index
ARMS = GZ2_TREE.answer("t04", "a08").index


def _votes(rows):
    """(N, 37) cumulative fractions from (smooth, spiral arms) shares per row."""
    v = np.zeros((len(rows), 37))
    for i, (smooth, arms) in enumerate(rows):
        v[i, SMOOTH], v[i, FEATURES], v[i, NOT_EDGE], v[i, ARMS] = smooth, 1 - smooth, 1 - smooth, arms
    return v


# label, debiased (smooth, arms), raw (smooth, arms), expected strata
CASES = [
    ("elliptical", (0.9, 0.0), (0.9, 0.0), {"all", "supported", "visible", "confident"}),
    ("elliptical", (0.6, 0.0), (0.6, 0.0), {"all", "supported", "visible"}),
    ("spiral", (0.1, 0.85), (0.7, 0.2), {"all", "supported", "confident"}),  # arms only after debiasing
    ("spiral", (0.6, 0.3), (0.6, 0.3), {"all"}),  # the rule's spiral on a minority of all votes
    ("artifact", (0.9, 0.0), (0.9, 0.0), set()),  # not a galaxy class: in no stratum
]


def test_each_galaxy_lands_in_the_strata_its_votes_allow():
    labels = [c[0] for c in CASES]
    masks = strata_masks(labels, _votes([c[1] for c in CASES]), _votes([c[2] for c in CASES]))
    assert list(masks) == ["all", "supported", "visible", "confident"]
    for i, case in enumerate(CASES):
        assert {k for k, m in masks.items() if m[i]} == case[3], case


def test_without_votes_only_all_and_without_raw_votes_no_visible():
    labels = [c[0] for c in CASES]
    assert list(strata_masks(labels, None, None)) == ["all"]
    assert list(strata_masks(labels, _votes([c[1] for c in CASES]), None)) == ["all", "supported", "confident"]


def test_stratum_scores_count_and_recall_with_wilson_intervals():
    labels = [c[0] for c in CASES]
    pred = ["elliptical", "spiral", "spiral", "elliptical", "artifact"]
    s = strata_scores(labels, pred, ["spiral", "elliptical"], _votes([c[1] for c in CASES]),
                      _votes([c[2] for c in CASES]))
    assert s["all"]["n"] == 4 and s["all"]["accuracy"] == pytest.approx(0.5)
    assert s["supported"]["n"] == 3 and s["supported"]["accuracy"] == pytest.approx(2 / 3)
    rec = s["supported"]["recall"]["elliptical"]
    assert (rec["recall"], rec["n"]) == (0.5, 2)
    assert rec["low"] < 0.5 < rec["high"] and (rec["low"], rec["high"]) == pytest.approx(wilson_interval(1, 2))
    assert s["confident"]["balanced_accuracy"] == pytest.approx(1.0)


@pytest.mark.parametrize("k,n,low,high", [(5, 10, 0.2366, 0.7634), (10, 10, 0.7225, 1.0), (0, 4, 0.0, 0.4899)])
def test_wilson_interval_matches_published_values(k, n, low, high):
    assert wilson_interval(k, n) == pytest.approx((low, high), abs=1e-4)
