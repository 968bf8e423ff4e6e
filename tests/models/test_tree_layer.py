"""The decision-tree output layer of the vote regressor: every question's answers sum to its
parent answer's vote, as the Kaggle cumulative targets do."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("keras")

from catalogs.tree import GZ2_TREE  # noqa: E402
from models.regressor import DecisionTreeLayer, tree_structure  # noqa: E402


def assert_obeys_tree(votes: np.ndarray) -> None:
    assert votes.shape[1] == 37
    assert (votes >= 0).all()
    for (q, sl), parent in zip(GZ2_TREE.question_slices, GZ2_TREE.parent_index):
        total = votes[:, sl].sum(axis=1)
        expected = np.ones(len(votes)) if parent is None else votes[:, parent]
        np.testing.assert_allclose(total, expected, rtol=1e-5, atol=1e-6, err_msg=q.key)


def test_tree_layer_obeys_the_tree_for_random_inputs():
    layer = DecisionTreeLayer()
    rng = np.random.default_rng(8)
    raw = rng.normal(0, 2, (64, 37)).astype(np.float32)
    raw[0, :3] = -1.0  # Q1 all negative → uniform
    raw[1, :] = -5.0  # everything negative → uniform everywhere
    votes = np.asarray(layer(raw))
    assert_obeys_tree(votes)
    np.testing.assert_allclose(votes[0, :3], 1 / 3, atol=1e-6)
    np.testing.assert_allclose(votes[1, 3:5], votes[1, 1] / 2, atol=1e-6)
    assert np.isfinite(votes).all()


def test_tree_layer_matches_kaggle_cumulative_on_fractions():
    """Per-question fractions in → exactly the Kaggle targets of ``GZ2_TREE.cumulative``."""
    rng = np.random.default_rng(9)
    fractions = np.zeros((16, 37))
    for _, sl in GZ2_TREE.question_slices:
        block = rng.random((16, sl.stop - sl.start))
        fractions[:, sl] = block / block.sum(axis=1, keepdims=True)
    votes = np.asarray(DecisionTreeLayer()(fractions.astype(np.float32)))
    np.testing.assert_allclose(votes, GZ2_TREE.cumulative(fractions), atol=1e-5)


def test_tree_layer_config_round_trip_and_validation():
    layer = DecisionTreeLayer(epsilon=1e-6, name="votes")
    config = layer.get_config()
    slices, parents = tree_structure()
    assert config["slices"] == slices and config["parents"] == parents
    assert parents[0] == -1 and parents[5] == -1 and parents[1] == 1  # Q2 hangs off "features or disk"
    clone = DecisionTreeLayer.from_config(config)
    raw = np.random.default_rng(10).normal(size=(4, 37)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(clone(raw)), np.asarray(layer(raw)))
    with pytest.raises(ValueError, match="precede"):
        DecisionTreeLayer(slices=[[0, 2], [2, 4]], parents=[-1, 3])
    with pytest.raises(ValueError, match="contiguously"):
        DecisionTreeLayer(slices=[[0, 2], [3, 4]], parents=[-1, 0])
