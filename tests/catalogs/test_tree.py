import numpy as np
import pytest

from catalogs.tree import GZ2_TREE, Answer, DecisionTree, Question


def test_tree_has_37_answers_in_kaggle_order():
    assert len(GZ2_TREE.questions) == 11
    assert len(GZ2_TREE) == 37
    assert GZ2_TREE.kaggle_columns[:4] == ("Class1.1", "Class1.2", "Class1.3", "Class2.1")
    assert GZ2_TREE.kaggle_columns[-1] == "Class11.6"
    assert GZ2_TREE.answer("t08", "a38").kaggle == "Class8.7"
    assert GZ2_TREE.answer("t11", "a36").debiased == "t11_arms_number_a36_more_than_4_debiased"
    assert len(set(GZ2_TREE.debiased_columns)) == 37


def test_hart16_names_match_the_real_release(shared_data):
    header = (shared_data / "gz2-sample" / "gz2_sample_labels.csv").read_text().splitlines()[0].split(",")
    assert [c for c in header if c.endswith("_debiased")] == list(GZ2_TREE.debiased_columns)


@pytest.mark.parametrize(
    "question, parent",
    [("t02", "Class1.2"), ("t03", "Class2.2"), ("t04", "Class2.2"), ("t05", "Class2.2"),
     ("t07", "Class1.1"), ("t08", "Class6.1"), ("t09", "Class2.1"), ("t10", "Class4.1"),
     ("t11", "Class4.1")],
)
def test_each_question_sums_to_its_parent(question, parent):
    rng = np.random.default_rng(1)
    fractions = np.concatenate(
        [rng.dirichlet(np.ones(len(q.answers)), size=50) for q, _ in GZ2_TREE.question_slices], axis=1
    )
    targets = GZ2_TREE.cumulative(fractions)
    sl = dict((q.key, s) for q, s in GZ2_TREE.question_slices)[question]
    parent_idx = GZ2_TREE.kaggle_columns.index(parent)
    np.testing.assert_allclose(targets[:, sl].sum(axis=1), targets[:, parent_idx], atol=1e-12)


def test_q1_and_q6_are_kept_as_is():
    f = np.full((1, 37), 0.1)
    t = GZ2_TREE.cumulative(f)
    np.testing.assert_allclose(t[0, :3], [0.1, 0.1, 0.1])  # not renormalised to 1/3
    q6 = dict((q.key, s) for q, s in GZ2_TREE.question_slices)["t06"]
    np.testing.assert_allclose(t[0, q6], [0.1, 0.1])


def test_hand_computed_example():
    f = np.zeros((1, 37))
    idx = {(r.question.key, r.answer.key): r.index for r in GZ2_TREE.answers}
    f[0, idx["t01", "a01"]], f[0, idx["t01", "a02"]] = 0.2, 0.8
    f[0, idx["t02", "a04"]], f[0, idx["t02", "a05"]] = 1.0, 3.0  # unnormalised on purpose
    f[0, idx["t04", "a08"]], f[0, idx["t04", "a09"]] = 0.5, 0.5
    f[0, idx["t10", "a28"]] = 2.0
    t = GZ2_TREE.cumulative(f)[0]
    assert t[idx["t02", "a04"]] == pytest.approx(0.8 * 0.25)
    assert t[idx["t02", "a05"]] == pytest.approx(0.8 * 0.75)
    assert t[idx["t04", "a08"]] == pytest.approx(0.6 * 0.5)
    assert t[idx["t10", "a28"]] == pytest.approx(0.3)
    assert t[idx["t07", "a16"]] == 0.0  # nobody answered Q7


def test_per_question_inverts_cumulative_where_defined():
    rng = np.random.default_rng(2)
    f = np.concatenate([rng.dirichlet(np.ones(len(q.answers)), size=20) for q, _ in GZ2_TREE.question_slices], axis=1)
    back = GZ2_TREE.per_question(GZ2_TREE.cumulative(f))
    np.testing.assert_allclose(back, f, atol=1e-9)
    zero = GZ2_TREE.per_question(np.zeros((1, 37)))
    assert np.isnan(zero[0, 3:5]).all()  # Q2 unreached: undefined, not 0


def test_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"shape \(N, 37\)"):
        GZ2_TREE.cumulative(np.zeros((2, 36)))


def test_tree_refuses_a_parent_that_comes_later():
    a = (Answer("a1", "x", "X"), Answer("a2", "y", "Y"))
    with pytest.raises(ValueError, match="must come earlier"):
        DecisionTree((Question("t1", "q1", "?", a, parent=("t2", "a1")), Question("t2", "q2", "?", a)))
