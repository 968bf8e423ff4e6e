import json
import math
import re

import numpy as np
import pytest
from sacrebleu.metrics import BLEU

from catalogs.captions import FACT_KEYS, facts_from_caption, template_captions
from catalogs.tree import GZ2_TREE
from models.metrics import (
    caption_agreement,
    caption_metrics,
    classification_metrics,
    normalise_caption,
    regression_metrics,
)
from tests.models.metrics.samples import N_OUT, REFS, Y_PRED, Y_TRUE, captions, pair

# ============================================================================================
# Classification
# ============================================================================================

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
# Regression
# ============================================================================================

REGRESSION_CASES = [
    pytest.param(pair(), 0.0, 74, {0: 0.0}, id="perfect"),
    pytest.param(
        pair(("p", 0, 0, 0.3), ("p", 1, 5, 0.4)),
        math.sqrt((0.09 + 0.16) / 74), 74, {0: math.sqrt(0.09 / 2), 5: math.sqrt(0.16 / 2), 1: 0.0},
        id="two-errors",
    ),
    pytest.param(
        pair(("t", 0, 3, 0.5), ("p", 1, 3, 0.5)),
        math.sqrt((0.25 + 0.25) / 74), 74, {3: 0.5},
        id="errors-of-both-signs",
    ),
    pytest.param(
        # Row 1's answer 0 is NaN: its huge prediction must not count, answer 0 has one value left.
        pair(("p", 0, 0, 0.3), ("t", 1, 0, np.nan), ("p", 1, 0, 10.0), ("p", 1, 5, 0.4)),
        math.sqrt((0.09 + 0.16) / 73), 73, {0: 0.3, 5: math.sqrt(0.16 / 2)},
        id="nan-target-masked",
    ),
    pytest.param(
        # A whole answer unanswered: no RMSE for it, the rest unaffected.
        pair(("t", 0, 36, np.nan), ("t", 1, 36, np.nan), ("p", 0, 2, 0.2)),
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
