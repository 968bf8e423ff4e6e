"""The metric maths: pure functions on labels, arrays and captions that return plain dicts.

* :func:`classification_metrics` — scikit-learn accuracy, balanced accuracy, macro/weighted F1,
  per-class precision/recall/F1/support and the confusion matrix, all in the order of ``labels``.
* :func:`regression_metrics` — the RMSE over the 37 GZ2 answers both ways: ``rmse_kaggle`` (also
  ``rmse``) on the cumulative, tree-multiplied fractions of the Kaggle Galaxy Challenge, and
  ``rmse_per_question`` on the per-question fractions the output table holds; NaN targets
  masked; and the RMSE of each answer, keyed by ``GZ2_TREE.output_names``.
* :func:`caption_metrics` — sacreBLEU corpus BLEU-1..4 (0–1 scale) on captions normalised by one
  function (:func:`normalise_caption`), and *caption agreement*: how many of the reference
  caption's facts (:func:`catalogs.captions.facts_from_caption`) the generated caption repeats.

Every function reads only its arguments; nothing here writes files or draws.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from catalogs.captions import FACT_KEYS, facts_from_caption
from catalogs.tree import GZ2_TREE

__all__ = [
    "BLEU_ORDERS",
    "BLEU_SMOOTH_METHOD",
    "caption_agreement",
    "caption_metrics",
    "classification_metrics",
    "normalise_caption",
    "regression_metrics",
]

# ============================================================================================
# Classification
# ============================================================================================


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Classifier scores with every per-class quantity in the order of ``labels``.

    Returns ``labels``, ``n_samples``, ``accuracy``, ``balanced_accuracy`` (mean recall over the
    classes present in ``y_true``), ``macro_f1`` (unweighted mean F1 over *all* ``labels``, so a
    class that never occurs counts as F1 = 0), ``weighted_f1`` (support-weighted),
    ``per_class`` (label → precision, recall, f1, support) and ``confusion_matrix`` — a nested list,
    row *i* = true ``labels[i]``, column *j* = predicted ``labels[j]``.

    Undefined ratios (a class never predicted, or never present) are 0, never an error
    (``zero_division=0``). A value of ``y_true`` or ``y_pred`` that is not in ``labels`` is a
    ``ValueError``: the confusion matrix would silently drop it.
    """
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels must name at least one class")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    y_true = [str(y) for y in y_true]
    y_pred = [str(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"got {len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("classification metrics need at least one sample")
    unknown = sorted((set(y_true) | set(y_pred)) - set(labels))
    if unknown:
        raise ValueError(f"values {unknown} are not in labels {labels}")

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "labels": labels,
        "n_samples": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.astype(int).tolist(),
    }


def _balanced_accuracy(y_true: list[str], y_pred: list[str]) -> float:
    """sklearn's balanced accuracy; its warning about predicted classes that are absent from
    ``y_true`` (they are left out of the mean, as documented) is expected here, not news."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return balanced_accuracy_score(y_true, y_pred)


# ============================================================================================
# Regression (GZ2 vote fractions)
# ============================================================================================


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """RMSE of predicted GZ2 answers, the Kaggle Galaxy Challenge way.

    ``y_true`` and ``y_pred`` are (N, 37) in ``GZ2_TREE`` order. ``rmse`` is the square root of the
    mean of all squared errors over the N×37 values (not a mean of per-answer RMSEs);
    ``per_answer_rmse`` maps ``GZ2_TREE.output_names`` to each column's RMSE (``None`` for a
    column with no usable target). NaN targets — answers nobody was asked — are left out of both;
    ``n_used`` / ``n_total`` count the values used / given. A NaN or infinite *prediction* at a used
    position is a ``ValueError``, not something to average over.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    n_out = len(GZ2_TREE)
    if t.ndim != 2 or t.shape[1] != n_out:
        raise ValueError(f"y_true must have shape (N, {n_out}) in GZ2_TREE order, got {t.shape}")
    if p.shape != t.shape:
        raise ValueError(f"y_pred shape {p.shape} does not match y_true shape {t.shape}")
    used = ~np.isnan(t)
    if np.isinf(t[used]).any():
        raise ValueError("y_true contains infinite values")
    if not np.isfinite(p[used]).all():
        raise ValueError("y_pred has NaN or infinite values where the target is known")

    sq = np.where(used, p - np.where(used, t, 0.0), 0.0) ** 2
    n_col = used.sum(axis=0)
    col_sum = sq.sum(axis=0)
    n_used = int(n_col.sum())
    per_answer = {
        name: (float(math.sqrt(col_sum[j] / n_col[j])) if n_col[j] else None)
        for j, name in enumerate(GZ2_TREE.output_names)
    }
    rmse = float(math.sqrt(col_sum.sum() / n_used)) if n_used else None
    return {
        "rmse": rmse,
        "rmse_kaggle": rmse,
        "rmse_per_question": per_question_rmse(t, p),
        "n_used": n_used,
        "n_total": int(t.size),
        "n_samples": int(t.shape[0]),
        "per_answer_rmse": per_answer,
    }


def per_question_rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """RMSE of the per-question vote fractions (each question's answers summing to 1, what the
    ``…_pred`` columns of the predictions table hold), from (N, 37) Kaggle cumulative targets
    and predictions: both are turned back with ``GZ2_TREE.per_question``; a question whose
    parent answer is 0 in the target (nobody was asked) is left out."""
    t = GZ2_TREE.per_question(np.asarray(y_true, dtype=np.float64))
    p = np.nan_to_num(GZ2_TREE.per_question(np.asarray(y_pred, dtype=np.float64)), nan=0.0)
    used = ~np.isnan(t)
    if not used.any():
        return None
    return float(np.sqrt(np.mean((p[used] - t[used]) ** 2)))


# ============================================================================================
# Captions
# ============================================================================================

#: BLEU orders reported, each computed as its own BLEU with ``max_ngram_order = n`` (uniform
#: weights 1/n over 1..n-grams).
BLEU_ORDERS: tuple[int, ...] = (1, 2, 3, 4)

#: sacreBLEU's default smoothing (Chen & Cherry 2014's "exp", the NIST mteval scheme). At corpus
#: level it only acts when some n-gram order has *no* match in the whole corpus: the k-th such order
#: gets precision 1 / (2^k · total n-grams) instead of 0 — so a corpus without a single matching
#: 4-gram has a small non-zero BLEU-4 rather than exactly 0. Numbers are therefore comparable with
#: any score reported under sacreBLEU's default signature (``smooth:exp``).
BLEU_SMOOTH_METHOD = "exp"

# A word: letters/digits, with inner hyphens or apostrophes kept ("edge-on", "cigar-shaped").
_TOKEN_RE = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|[^\w\s]|_")
_WORD_RE = re.compile(r"[^\W_]")


def normalise_caption(text: str, *, keep_punctuation: bool = False) -> str:
    """The one tokeniser applied to references *and* hypotheses before BLEU.

    Lower-cases, splits punctuation off words into separate tokens ("galaxy," → "galaxy ,",
    "arms." → "arms ."; inner hyphens stay: "edge-on"), and joins the tokens with single spaces.
    By default the punctuation tokens are then dropped: commas and the final period only separate
    clauses of a template caption, and a captioner that emits none (or emits them as separate
    tokens) says the same thing — "a spiral galaxy, tight arms." and "a spiral galaxy tight arms ."
    both become "a spiral galaxy tight arms". With ``keep_punctuation=True`` they stay as tokens
    ("... galaxy , tight arms .").
    """
    tokens = _TOKEN_RE.findall(text.lower())
    if not keep_punctuation:
        tokens = [tok for tok in tokens if _WORD_RE.search(tok)]
    return " ".join(tokens)


def caption_agreement(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """How many of each reference caption's facts the hypothesis states with the same value.

    The facts of a caption are ``facts_from_caption(caption)`` over ``FACT_KEYS``; a reference
    *states* the facts that are not ``None`` (for yes/no features a template caption's silence is a
    stated "no", see :mod:`catalogs.captions`). Per caption the score is
    (#stated facts the hypothesis gives the same value) / (#stated facts) — a hypothesis that
    parses to nothing scores 0, facts the hypothesis adds beyond the reference's are not counted.

    Returns ``caption_agreement`` (mean score over the captions whose reference states at least one
    fact; ``None`` if none does), ``per_fact_agreement`` (per fact key: share of the captions whose
    reference states it where the hypothesis agrees; ``None`` where no reference states it),
    ``per_fact_support`` (how many references state each fact), ``n_captions`` and ``n_scored``.
    """
    references, hypotheses = _paired(references, hypotheses)
    scores: list[float] = []
    agree = dict.fromkeys(FACT_KEYS, 0)
    stated = dict.fromkeys(FACT_KEYS, 0)
    for ref, hyp in zip(references, hypotheses):
        ref_facts = facts_from_caption(ref)
        hyp_facts = facts_from_caption(hyp)
        keys = [k for k in FACT_KEYS if ref_facts.get(k) is not None]
        if not keys:
            continue
        same = [k for k in keys if hyp_facts.get(k) == ref_facts[k]]
        scores.append(len(same) / len(keys))
        for k in keys:
            stated[k] += 1
        for k in same:
            agree[k] += 1
    return {
        "caption_agreement": float(np.mean(scores)) if scores else None,
        "per_fact_agreement": {k: (agree[k] / stated[k] if stated[k] else None) for k in FACT_KEYS},
        "per_fact_support": stated,
        "n_captions": len(references),
        "n_scored": len(scores),
    }


def caption_metrics(
    references: Sequence[str],
    hypotheses: Sequence[str],
    *,
    keep_punctuation: bool = False,
    smooth_method: str = BLEU_SMOOTH_METHOD,
) -> dict:
    """Corpus BLEU-1..4 (0–1) and caption agreement of generated captions against references.

    One reference per hypothesis. Both sides go through :func:`normalise_caption` (same
    ``keep_punctuation``) and sacreBLEU then scores the already-tokenised strings with
    ``tokenize="none"``, so the two can never be split differently. BLEU-n is
    ``sacrebleu.metrics.BLEU(max_ngram_order=n)`` — geometric mean of the 1..n-gram precisions with
    uniform weights, times the brevity penalty, corpus-level (n-gram counts summed over all
    captions), smoothing ``smooth_method`` (default :data:`BLEU_SMOOTH_METHOD`), divided by 100.
    ``bleu_signatures`` keeps sacreBLEU's reproducibility signature of each order.
    """
    references, hypotheses = _paired(references, hypotheses)
    refs = [normalise_caption(r, keep_punctuation=keep_punctuation) for r in references]
    hyps = [normalise_caption(h, keep_punctuation=keep_punctuation) for h in hypotheses]
    out: dict[str, Any] = {}
    signatures: dict[str, str] = {}
    for n in BLEU_ORDERS:
        bleu = BLEU(max_ngram_order=n, tokenize="none", smooth_method=smooth_method, force=True)
        out[f"bleu{n}"] = float(bleu.corpus_score(hyps, [refs]).score / 100.0)
        signatures[f"bleu{n}"] = str(bleu.get_signature())
    agreement = caption_agreement(references, hypotheses)
    out["caption_agreement"] = agreement.pop("caption_agreement")
    out.update(agreement)
    out["tokenisation"] = "normalise_caption: lower-case, punctuation split off" + (
        " and kept as tokens" if keep_punctuation else " and dropped"
    )
    out["bleu_signatures"] = signatures
    return out


def _paired(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must be sequences of captions, not one string")
    refs, hyps = [str(r) for r in references], [str(h) for h in hypotheses]
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("caption metrics need at least one caption pair")
    return refs, hyps
