import json
import math
import re

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from catalogs.captions import FACT_KEYS, facts_from_caption, template_captions
from catalogs.tree import GZ2_TREE
from models.metrics import (
    HEADLINE_KEYS,
    caption_agreement,
    caption_metrics,
    classification_metrics,
    combine_metrics,
    confusion_matrix_figure,
    metrics_markdown,
    normalise_caption,
    plot_confusion_matrix,
    plot_training_curves,
    regression_metrics,
    training_curves_figure,
    write_metrics_json,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# ============================================================================================
# Classification
# ============================================================================================

# 6 galaxies, 3 classes. In the order spiral, elliptical, merger the confusion matrix is
#   spiral     [2, 1, 0]   recall 2/3, precision 2/2 → F1 4/5
#   elliptical [0, 1, 1]   recall 1/2, precision 1/2 → F1 1/2
#   merger     [0, 0, 1]   recall 1,   precision 1/2 → F1 2/3
Y_TRUE = ["spiral", "spiral", "spiral", "elliptical", "elliptical", "merger"]
Y_PRED = ["spiral", "spiral", "elliptical", "elliptical", "merger", "merger"]

CLASSIFICATION_CASES = [
    pytest.param(
        Y_TRUE, Y_PRED, ["spiral", "elliptical", "merger"],
        {"accuracy": 4 / 6, "balanced_accuracy": (2 / 3 + 1 / 2 + 1) / 3,
         "macro_f1": (4 / 5 + 1 / 2 + 2 / 3) / 3, "weighted_f1": (3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6},
        [[2, 1, 0], [0, 1, 1], [0, 0, 1]],
        {"spiral": (1.0, 2 / 3, 4 / 5, 3), "elliptical": (1 / 2, 1 / 2, 1 / 2, 2), "merger": (1 / 2, 1.0, 2 / 3, 1)},
        id="3-class",
    ),
    pytest.param(
        Y_TRUE, Y_PRED, ["merger", "spiral", "elliptical"],
        {"accuracy": 4 / 6, "balanced_accuracy": (2 / 3 + 1 / 2 + 1) / 3,
         "macro_f1": (4 / 5 + 1 / 2 + 2 / 3) / 3, "weighted_f1": (3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6},
        [[1, 0, 0], [0, 2, 1], [1, 0, 1]],  # rows/cols merger, spiral, elliptical
        {"spiral": (1.0, 2 / 3, 4 / 5, 3), "elliptical": (1 / 2, 1 / 2, 1 / 2, 2), "merger": (1 / 2, 1.0, 2 / 3, 1)},
        id="order-follows-labels",
    ),
    pytest.param(
        Y_TRUE, Y_PRED, ["spiral", "elliptical", "merger", "edge-on"],
        # edge-on never occurs: F1 0 in the macro mean (4 classes), weight 0 in the weighted mean,
        # and no recall to average in balanced accuracy.
        {"accuracy": 4 / 6, "balanced_accuracy": (2 / 3 + 1 / 2 + 1) / 3,
         "macro_f1": (4 / 5 + 1 / 2 + 2 / 3) / 4, "weighted_f1": (3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6},
        [[2, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 0], [0, 0, 0, 0]],
        {"edge-on": (0.0, 0.0, 0.0, 0), "merger": (1 / 2, 1.0, 2 / 3, 1)},
        id="class-without-support",
    ),
    pytest.param(
        ["a", "a", "b"], ["a", "c", "b"], ["a", "b", "c"],
        # c is predicted but never true: precision 0, recall 0 (zero_division), left out of the
        # balanced-accuracy mean (recalls a 1/2, b 1).
        {"accuracy": 2 / 3, "balanced_accuracy": 3 / 4, "macro_f1": (2 / 3 + 1 + 0) / 3,
         "weighted_f1": (2 * 2 / 3 + 1) / 3},
        [[1, 0, 1], [0, 1, 0], [0, 0, 0]],
        {"a": (1.0, 1 / 2, 2 / 3, 2), "c": (0.0, 0.0, 0.0, 0)},
        id="predicted-class-never-true",
    ),
]


@pytest.mark.parametrize("y_true, y_pred, labels, scores, matrix, per_class", CLASSIFICATION_CASES)
def test_classification_metrics_match_hand_computation(y_true, y_pred, labels, scores, matrix, per_class):
    m = classification_metrics(y_true, y_pred, labels)
    for key, expected in scores.items():
        assert m[key] == pytest.approx(expected, abs=1e-12), key
    assert m["confusion_matrix"] == matrix
    assert m["labels"] == labels
    assert list(m["per_class"]) == labels
    assert m["n_samples"] == len(y_true)
    for label, (p, r, f, s) in per_class.items():
        row = m["per_class"][label]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p, r, f), abs=1e-12), label
        assert row["support"] == s
    json.dumps(m)  # plain Python types only


@pytest.mark.parametrize(
    "y_true, y_pred, labels, message",
    [
        (["spiral"], ["bar"], ["spiral", "merger"], "not in labels"),
        (["spiral", "merger"], ["spiral"], ["spiral", "merger"], "predictions"),
        ([], [], ["spiral"], "at least one sample"),
        (["spiral"], ["spiral"], ["spiral", "spiral"], "unique"),
    ],
)
def test_classification_metrics_reject_bad_input(y_true, y_pred, labels, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y_true, y_pred, labels)


# ============================================================================================
# Confusion-matrix plot
# ============================================================================================


def test_confusion_matrix_plot_tick_labels_follow_matrix_order(tmp_path):
    labels = ["merger", "spiral", "elliptical"]
    m = classification_metrics(Y_TRUE, Y_PRED, labels)
    fig = confusion_matrix_figure(m["confusion_matrix"], m["labels"], "test")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")
    # Cell (row i, column j) sits at x = j, y = i, annotated with the count ...
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(i, j): str(c) for i, r in enumerate(m["confusion_matrix"]) for j, c in enumerate(r)}
    # ... and coloured by the share of its true class (rows merger, spiral, elliptical).
    np.testing.assert_allclose(ax.images[0].get_array(), [[1, 0, 0], [0, 2 / 3, 1 / 3], [1 / 2, 0, 1 / 2]])

    path = plot_confusion_matrix(m["confusion_matrix"], labels, tmp_path / "plots" / "cm.png", "test")
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("matrix, labels", [([[1, 2], [3, 4]], ["a", "b", "c"]), ([[1, 2, 3]], ["a"])])
def test_confusion_matrix_plot_rejects_mismatched_labels(matrix, labels):
    with pytest.raises(ValueError):
        confusion_matrix_figure(matrix, labels)


def test_confusion_matrix_plot_survives_an_empty_row():
    fig = confusion_matrix_figure([[0, 0], [1, 3]], ["a", "b"])
    np.testing.assert_allclose(fig.axes[0].images[0].get_array(), [[0, 0], [1 / 4, 3 / 4]])


# ============================================================================================
# Regression
# ============================================================================================

N_OUT = len(GZ2_TREE)


def _pair(*edits):
    """(y_true, y_pred) of shape (2, 37), zeros except the given (array, row, col, value) edits."""
    arrays = {"t": np.zeros((2, N_OUT)), "p": np.zeros((2, N_OUT))}
    for which, i, j, value in edits:
        arrays[which][i, j] = value
    return arrays["t"], arrays["p"]


REGRESSION_CASES = [
    pytest.param(_pair(), 0.0, 74, {0: 0.0}, id="perfect"),
    pytest.param(
        _pair(("p", 0, 0, 0.3), ("p", 1, 5, 0.4)),
        math.sqrt((0.09 + 0.16) / 74), 74, {0: math.sqrt(0.09 / 2), 5: math.sqrt(0.16 / 2), 1: 0.0},
        id="two-errors",
    ),
    pytest.param(
        _pair(("t", 0, 3, 0.5), ("p", 1, 3, 0.5)),
        math.sqrt((0.25 + 0.25) / 74), 74, {3: 0.5},
        id="errors-of-both-signs",
    ),
    pytest.param(
        # Row 1's answer 0 is NaN: its huge prediction must not count, answer 0 has one value left.
        _pair(("p", 0, 0, 0.3), ("t", 1, 0, np.nan), ("p", 1, 0, 10.0), ("p", 1, 5, 0.4)),
        math.sqrt((0.09 + 0.16) / 73), 73, {0: 0.3, 5: math.sqrt(0.16 / 2)},
        id="nan-target-masked",
    ),
    pytest.param(
        # A whole answer unanswered: no RMSE for it, the rest unaffected.
        _pair(("t", 0, 36, np.nan), ("t", 1, 36, np.nan), ("p", 0, 2, 0.2)),
        math.sqrt(0.04 / 72), 72, {36: None, 2: math.sqrt(0.04 / 2)},
        id="nan-column",
    ),
]


@pytest.mark.parametrize("arrays, rmse, n_used, per_answer", REGRESSION_CASES)
def test_regression_metrics_match_hand_computation(arrays, rmse, n_used, per_answer):
    y_true, y_pred = arrays
    m = regression_metrics(y_true, y_pred)
    assert m["rmse"] == pytest.approx(rmse, abs=1e-12)
    assert (m["n_used"], m["n_total"], m["n_samples"]) == (n_used, 74, 2)
    assert list(m["per_answer_rmse"]) == list(GZ2_TREE.output_names)
    for j, expected in per_answer.items():
        got = m["per_answer_rmse"][GZ2_TREE.output_names[j]]
        assert got is None if expected is None else got == pytest.approx(expected, abs=1e-12)


def test_rmse_is_the_kaggle_metric_not_a_mean_of_per_answer_rmses():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.random((50, N_OUT)), rng.random((50, N_OUT))
    m = regression_metrics(y_true, y_pred)
    assert m["rmse"] == pytest.approx(float(np.sqrt(np.mean((y_true - y_pred) ** 2))), rel=1e-12)
    assert m["rmse"] != pytest.approx(float(np.mean(list(m["per_answer_rmse"].values()))), rel=1e-6)


@pytest.mark.parametrize(
    "y_true, y_pred, message",
    [
        (np.zeros((2, 36)), np.zeros((2, 36)), "shape"),
        (np.zeros((2, N_OUT)), np.zeros((3, N_OUT)), "does not match"),
        (np.zeros((1, N_OUT)), np.full((1, N_OUT), np.nan), "NaN"),
    ],
)
def test_regression_metrics_reject_bad_input(y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        regression_metrics(y_true, y_pred)


# ============================================================================================
# Captions: BLEU
# ============================================================================================

SLICES = {q.key: sl for q, sl in GZ2_TREE.question_slices}
UNIFORM = {q.key: np.full(sl.stop - sl.start, 1 / (sl.stop - sl.start)) for q, sl in GZ2_TREE.question_slices}


def row(**questions) -> np.ndarray:
    """One (37,) per-question fraction vector; unspecified questions get uniform votes."""
    f = np.concatenate([UNIFORM[q.key] for q in GZ2_TREE.questions])
    for q, values in questions.items():
        f[SLICES[q]] = values
    return f


SPIRAL = row(t01=(0.05, 0.93, 0.02), t02=(0.03, 0.97), t03=(0.8, 0.2), t04=(0.92, 0.08),
             t05=(0.1, 0.7, 0.15, 0.05), t06=(0.1, 0.9), t10=(0.8, 0.15, 0.05),
             t11=(0.02, 0.9, 0.04, 0.02, 0.01, 0.01))  # 12 stated facts
ELLIPTICAL = row(t01=(0.9, 0.08, 0.02), t05=(0.0, 0.0, 0.0, 1.0), t06=(0.05, 0.95), t07=(0.05, 0.1, 0.85),
                 t09=(0.0, 1.0, 0.0))  # type, shape + 6 odd features = 8 stated facts
EDGE_ON = row(t01=(0.04, 0.94, 0.02), t02=(0.9, 0.1), t03=(0.7, 0.3), t04=(0.8, 0.2), t05=(0.0, 0.0, 0.5, 0.5),
              t06=(0.6, 0.4), t08=(0.05, 0.0, 0.05, 0.0, 0.05, 0.05, 0.8), t09=(0.2, 0.75, 0.05),
              t10=(1.0, 0.0, 0.0), t11=(0.0, 1.0, 0.0, 0.0, 0.0, 0.0))  # type, edge_on, bulge_shape + 6 = 9


def captions(*rows, ids=None) -> list[str]:
    ids = ids or [f"5877{i:014d}" for i in range(len(rows))]
    return template_captions(ids, np.array(rows))


REFS = captions(SPIRAL, ELLIPTICAL, EDGE_ON, ids=["587700000000000001"] * 3)
# The variants these ids choose (pinned so the hand counts below stay honest).
assert REFS == [
    "a spiral galaxy with a bar, two tight spiral arms and a small bulge.",
    "a cigar-shaped elliptical galaxy.",
    "an edge-on disk galaxy with a boxy central bulge and a dark dust lane.",
]


@pytest.mark.parametrize(
    "text, expected, expected_kept",
    [
        ("a spiral galaxy, tight arms.", "a spiral galaxy tight arms", "a spiral galaxy , tight arms ."),
        ("a spiral galaxy tight arms .", "a spiral galaxy tight arms", "a spiral galaxy tight arms ."),
        ("An Edge-on disk galaxy,with a  DUST lane!", "an edge-on disk galaxy with a dust lane",
         "an edge-on disk galaxy , with a dust lane !"),
        ("(cigar-shaped)", "cigar-shaped", "( cigar-shaped )"),
    ],
)
def test_normalise_caption(text, expected, expected_kept):
    assert normalise_caption(text) == expected
    assert normalise_caption(text, keep_punctuation=True) == expected_kept


def bleus(m: dict) -> list[float]:
    return [m[f"bleu{n}"] for n in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    "references",
    [REFS, ["a barred spiral galaxy with two arms."], captions(*np.random.default_rng(1).dirichlet(np.ones(N_OUT), size=20))],
)
def test_identical_captions_score_one_for_every_order(references):
    # (A corpus needs at least one caption of >= 4 tokens, or it has no 4-gram and BLEU-4 is 0.)
    assert bleus(caption_metrics(references, list(references))) == pytest.approx([1.0] * 4, abs=1e-12)


@pytest.mark.parametrize("keep_punctuation", [False, True])
def test_punctuation_and_spacing_are_tokenised_the_same_on_both_sides(keep_punctuation):
    refs = ["a spiral galaxy with two tight arms, a bar and a small bulge.", "an elliptical galaxy."]
    hyps = ["a spiral galaxy with two tight arms , a bar and a small bulge .", "An elliptical galaxy ."]
    assert bleus(caption_metrics(refs, hyps, keep_punctuation=keep_punctuation)) == pytest.approx([1.0] * 4)


def test_comma_and_no_comma_score_as_identical():
    ref, hyp = "a spiral galaxy, tight arms.", "a spiral galaxy tight arms ."
    assert normalise_caption(ref) == normalise_caption(hyp)
    assert bleus(caption_metrics([ref], [hyp])) == bleus(caption_metrics([ref], [ref])) == pytest.approx([1.0] * 4)


def test_bleu_matches_a_hand_computation():
    # hyp 5 tokens, ref 6: BP = exp(1 - 6/5). n-gram precisions 5/5, 3/4, 2/3, 1/2.
    m = caption_metrics(["a spiral galaxy with two arms."], ["a spiral galaxy with arms"])
    bp = math.exp(-0.2)
    expected = [bp, bp * (3 / 4) ** (1 / 2), bp * (3 / 4 * 2 / 3) ** (1 / 3), bp * (3 / 4 * 2 / 3 * 1 / 2) ** (1 / 4)]
    assert bleus(m) == pytest.approx(expected, abs=1e-12)


def test_bleu_matches_sacrebleu_computed_directly():
    rng = np.random.default_rng(7)
    f = rng.dirichlet(np.full(N_OUT, 0.5), size=30)
    ids = [f"5877{i:014d}" for i in range(30)]
    refs = template_captions(ids, f)
    hyps = template_captions(ids[::-1], f[np.r_[1:30, 0]])  # other galaxies, other variants
    ours = caption_metrics(refs, hyps, keep_punctuation=True)
    # Template captions are lower case and only use ", ." as punctuation: sacreBLEU's own 13a
    # tokenizer splits them exactly like normalise_caption(keep_punctuation=True).
    direct = [BLEU(max_ngram_order=n, tokenize="13a").corpus_score(hyps, [refs]).score / 100 for n in (1, 2, 3, 4)]
    assert bleus(ours) == pytest.approx(direct, abs=1e-12)
    assert 0.0 < ours["bleu4"] < ours["bleu1"] < 1.0
    # Without punctuation: the same as sacreBLEU on the captions with ", ." deleted.
    strip = [re.sub(r"[,.]", "", c) for c in refs], [re.sub(r"[,.]", "", c) for c in hyps]
    direct = [BLEU(max_ngram_order=n).corpus_score(strip[1], [strip[0]]).score / 100 for n in (1, 2, 3, 4)]
    assert bleus(caption_metrics(refs, hyps)) == pytest.approx(direct, abs=1e-12)
    assert "smooth:exp" in ours["bleu_signatures"]["bleu4"] and "tok:none" in ours["bleu_signatures"]["bleu4"]


@pytest.mark.parametrize(
    "ref, hyp",
    [
        ("a spiral galaxy with two tight spiral arms and a small bulge.", "a spiral galaxy with two loose arms."),
        ("an edge-on disk galaxy with a boxy bulge and a dust lane.", "a disk galaxy seen edge-on with a dust lane."),
        ("a cigar-shaped elliptical galaxy.", "a round elliptical galaxy."),
    ],
)
def test_bleu4_not_above_bleu1_for_partial_matches(ref, hyp):
    b1, b2, b3, b4 = bleus(caption_metrics([ref], [hyp]))
    assert 0.0 < b1 < 1.0
    assert b4 <= b3 <= b2 <= b1


@pytest.mark.parametrize("refs, hyps, error", [(["a"], ["a", "b"], ValueError), ([], [], ValueError),
                                               ("a spiral galaxy.", ["x"], TypeError)])
def test_caption_metrics_reject_bad_input(refs, hyps, error):
    with pytest.raises(error):
        caption_metrics(refs, hyps)


# ============================================================================================
# Captions: agreement
# ============================================================================================


def edited(ref: str, pattern: str, repl: str, changed: dict) -> str:
    """``ref`` with ``pattern`` replaced; checks the parsed facts change exactly as ``changed``."""
    hyp = re.sub(pattern, repl, ref)
    assert hyp != ref
    ref_facts, hyp_facts = facts_from_caption(ref), facts_from_caption(hyp)
    assert {k: hyp_facts[k] for k in FACT_KEYS if hyp_facts[k] != ref_facts[k]} == changed
    return hyp


SPIRAL_REF, ELLIPTICAL_REF, EDGE_REF = REFS

AGREEMENT_CASES = [
    pytest.param(SPIRAL_REF, SPIRAL_REF, 1.0, id="identical"),
    pytest.param(SPIRAL_REF, edited(SPIRAL_REF, r"\btight\b", "loose", {"winding": "loose"}), 11 / 12, id="winding-wrong"),
    pytest.param(SPIRAL_REF, edited(SPIRAL_REF, r"\.$", " and a ring.", {"ring": "yes"}), 11 / 12, id="ring-added"),
    pytest.param(SPIRAL_REF, edited(SPIRAL_REF, r"two tight spiral arms", "more than four loosely wound arms",
                                    {"arms": "more than four", "winding": "loose"}), 10 / 12, id="arms-and-winding-wrong"),
    # Wrong type: the six odd-feature "no"s still agree; type, arms, winding, bar, bulge and edge_on don't.
    pytest.param(SPIRAL_REF, "an elliptical galaxy.", 6 / 12, id="wrong-type"),
    pytest.param(SPIRAL_REF, "a blurry smudge of light.", 0.0, id="unparseable"),
    pytest.param(SPIRAL_REF, "", 0.0, id="empty"),
    pytest.param(ELLIPTICAL_REF, edited(ELLIPTICAL_REF, r"cigar-shaped", "round", {"shape": "round"}), 7 / 8,
                 id="shape-wrong"),
    pytest.param(EDGE_REF, edited(EDGE_REF, r" and a dark dust lane", "", {"dust_lane": "no"}), 8 / 9,
                 id="dust-lane-dropped"),
    # Extra facts in the hypothesis are not penalised unless the reference states them.
    pytest.param(EDGE_REF, EDGE_REF.replace("an edge-on disk galaxy", "a disk galaxy seen edge-on"), 1.0,
                 id="other-variant"),
]


@pytest.mark.parametrize("ref, hyp, expected", AGREEMENT_CASES)
def test_caption_agreement_single_pair(ref, hyp, expected):
    m = caption_agreement([ref], [hyp])
    assert m["caption_agreement"] == pytest.approx(expected, abs=1e-12)
    assert (m["n_captions"], m["n_scored"]) == (1, 1)


def test_caption_agreement_over_a_corpus_and_per_fact():
    hyps = [
        edited(SPIRAL_REF, r"\btight\b", "loose", {"winding": "loose"}),  # 11/12
        ELLIPTICAL_REF,  # 8/8
        "a blurry smudge.",  # 0/9
    ]
    m = caption_metrics(REFS, hyps)
    assert m["caption_agreement"] == pytest.approx((11 / 12 + 1 + 0) / 3, abs=1e-12)
    per_fact = m["per_fact_agreement"]
    assert list(per_fact) == list(FACT_KEYS)
    expected = {
        "type": 2 / 3, "arms": 1.0, "winding": 0.0, "bar": 1.0, "bulge": 1.0, "edge_on": 1 / 2,
        "merger": 2 / 3, "ring": 2 / 3, "dust_lane": 2 / 3, "shape": 1.0, "bulge_shape": 0.0,
        "lens": 2 / 3, "disturbed": 2 / 3, "irregular": 2 / 3,
    }
    assert per_fact == pytest.approx(expected, abs=1e-12)
    assert m["per_fact_support"] == {
        "type": 3, "arms": 1, "winding": 1, "bar": 1, "bulge": 1, "edge_on": 2, "merger": 3, "ring": 3,
        "dust_lane": 3, "shape": 1, "bulge_shape": 1, "lens": 3, "disturbed": 3, "irregular": 3,
    }


def test_references_without_facts_are_not_scored():
    m = caption_agreement(["no head phrase here.", SPIRAL_REF], ["anything", SPIRAL_REF])
    assert (m["caption_agreement"], m["n_captions"], m["n_scored"]) == (1.0, 2, 1)
    m = caption_agreement(["no head phrase here."], [SPIRAL_REF])
    assert m["caption_agreement"] is None
    assert set(m["per_fact_agreement"].values()) == {None}


# ============================================================================================
# metrics.json and markdown
# ============================================================================================


def full_metrics() -> dict:
    return combine_metrics(
        classification=classification_metrics(Y_TRUE, Y_PRED, ["merger", "spiral", "elliptical"]),
        regression=regression_metrics(*_pair(("p", 0, 0, 0.3), ("t", 1, 36, np.nan))),
        captions=caption_metrics(REFS, REFS[::-1]),
    )


def test_metrics_json_has_the_required_keys_first_and_loads_back(tmp_path):
    metrics = full_metrics()
    metrics["extra"] = {"np_float": np.float32(0.5), "np_int": np.int64(3), "array": np.arange(3),
                        "nan": float("nan"), "tuple": (1, 2), "flag": np.bool_(True)}
    path = write_metrics_json(metrics, tmp_path / "out" / "metrics.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert list(loaded)[: len(HEADLINE_KEYS)] == list(HEADLINE_KEYS)
    assert list(loaded)[len(HEADLINE_KEYS):] == ["classification", "regression", "captions", "extra"]
    assert loaded["accuracy"] == pytest.approx(4 / 6)
    assert loaded["rmse"] == pytest.approx(math.sqrt(0.09 / 73))
    assert loaded["bleu1"] == metrics["captions"]["bleu1"]
    assert loaded["caption_agreement"] == metrics["captions"]["caption_agreement"]
    assert loaded["classification"]["labels"] == ["merger", "spiral", "elliptical"]
    assert loaded["classification"]["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [1, 0, 1]]
    assert loaded["regression"]["per_answer_rmse"][GZ2_TREE.output_names[36]] == pytest.approx(0.0)
    assert loaded["extra"] == {"np_float": 0.5, "np_int": 3, "array": [0, 1, 2], "nan": None, "tuple": [1, 2],
                               "flag": True}
    # Deterministic: the same metrics give the same bytes.
    again = write_metrics_json(metrics, tmp_path / "again.json")
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "sections, present",
    [
        ({"classification": classification_metrics(Y_TRUE, Y_PRED, ["spiral", "elliptical", "merger"])},
         ["accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"]),
        ({"regression": regression_metrics(*_pair())}, ["rmse"]),
        ({"captions": caption_metrics(REFS, REFS)}, ["bleu1", "bleu2", "bleu3", "bleu4", "caption_agreement"]),
    ],
)
def test_metrics_json_writes_only_available_headline_keys(tmp_path, sections, present):
    loaded = json.loads(write_metrics_json(sections, tmp_path / "m.json").read_text())
    assert [k for k in loaded if k in HEADLINE_KEYS] == present


def test_metrics_json_rejects_unknown_types(tmp_path):
    with pytest.raises(TypeError):
        write_metrics_json({"accuracy": object()}, tmp_path / "m.json")


def test_metrics_markdown_tables():
    md = metrics_markdown(full_metrics())
    lines = md.splitlines()
    assert "| accuracy | 0.6667 |" in lines
    assert "| rmse | 0.0351 |" in lines  # sqrt(0.09 / 73)
    assert "| spiral | 1.0000 | 0.6667 | 0.8000 | 3 |" in lines
    start = lines.index("| true \\ predicted | merger | spiral | elliptical |")
    assert lines[start + 2 : start + 5] == ["| merger | 1 | 0 | 0 |", "| spiral | 0 | 2 | 1 |", "| elliptical | 1 | 0 | 1 |"]
    # Only the sections given are reported.
    md = metrics_markdown({"regression": regression_metrics(*_pair())})
    assert "| rmse | 0.0000 |" in md and "accuracy" not in md and "predicted" not in md


# ============================================================================================
# Training curves
# ============================================================================================


def test_training_curves_one_subplot_per_metric_family(tmp_path):
    history = {"loss": [1.0, 0.6, 0.4], "accuracy": [0.5, 0.7, 0.8], "val_loss": [1.1, 0.8, 0.7],
               "val_accuracy": [0.4, 0.6, 0.65], "rmse": [0.2, 0.15, 0.12]}
    fig = training_curves_figure(history, "run")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy", "rmse"]
    loss_ax = fig.axes[0]
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "val"]
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), history["val_loss"])
    np.testing.assert_allclose(loss_ax.get_lines()[0].get_xdata(), [1, 2, 3])
    assert [line.get_label() for line in fig.axes[2].get_lines()] == ["train"]

    path = plot_training_curves(history, tmp_path / "curves.png", "run")
    assert path.read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("history", [{}, {"loss": [], "val_loss": []}])
def test_training_curves_need_values(history):
    with pytest.raises(ValueError):
        training_curves_figure(history)
