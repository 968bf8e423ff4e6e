import numpy as np
import pyarrow as pa
import pytest

from catalogs.labels import RULE
from catalogs.targets import kaggle_targets, vote_matrix, with_derived_targets
from catalogs.tree import GZ2_TREE

SPIRAL_COL = RULE[0][1]


def votes_table(rows: list[dict[str, float | None]], **extra) -> pa.Table:
    cols = {"object_id": [str(i) for i in range(len(rows))], "image_path": [f"{i}.jpg" for i in range(len(rows))]}
    for c in GZ2_TREE.debiased_columns:
        cols[c] = pa.array([r.get(c, 0.0) for r in rows], pa.float64())
    cols.update(extra)
    return pa.table(cols)


def test_label_and_caption_are_added_from_votes():
    out = with_derived_targets(votes_table([{SPIRAL_COL: 0.9}, {}]))
    assert out.column("label").to_pylist() == ["spiral", "ambiguous"]
    captions = out.column("caption").to_pylist()
    assert all(isinstance(c, str) and c for c in captions)


def test_a_missing_fraction_counts_as_below_threshold_but_no_votes_means_no_target():
    all_null = {c: None for c in GZ2_TREE.debiased_columns}
    one_null = {SPIRAL_COL: None, RULE[1][1]: 0.93}  # like a real Hart16 row with a gap
    out = with_derived_targets(votes_table([one_null, all_null]))
    assert out.column("label").to_pylist() == ["elliptical", None]
    assert out.column("caption").to_pylist()[1] is None


def test_source_labels_and_captions_are_kept():
    out = with_derived_targets(votes_table([{SPIRAL_COL: 0.9}], label=["mine"], caption=["given"]))
    assert out.column("label").to_pylist() == ["mine"]
    assert out.column("caption").to_pylist() == ["given"]


def test_table_without_votes_is_unchanged():
    t = pa.table({"object_id": ["1"], "image_path": ["a.jpg"]})
    assert with_derived_targets(t).equals(t)


def test_vote_matrix_and_kaggle_targets_follow_tree_order():
    row = {c: (i + 1) / 100 for i, c in enumerate(GZ2_TREE.debiased_columns)}
    t = votes_table([row])
    m = vote_matrix(t)
    assert m.shape == (1, 37) and m[0, 0] == pytest.approx(0.01) and m[0, 36] == pytest.approx(0.37)
    np.testing.assert_allclose(kaggle_targets(t), GZ2_TREE.cumulative(m))
