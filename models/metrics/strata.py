"""Accuracy in strata of how well the volunteers back each label (the field's protocol: zoobot and
Domínguez Sánchez et al. score galaxies the volunteers agree on).

The seed's GZ2 rule reads per-question debiased fractions, so a label can rest on a minority of
all volunteers. Per galaxy with votes, ``catalogs.labels.label_support`` is the cumulative
(tree-multiplied) share of volunteers behind the answer that decides its label:

* ``all``: every galaxy with a galaxy class (artifacts are scored as "flagged" elsewhere);
* ``supported``: debiased support ≥ 0.5 (a majority of all volunteers);
* ``visible``: supported, and ≥ 0.5 in the raw (user-weighted, not debiased) votes too: the
  debiasing corrects for redshift, so a debiased spiral may show no arms in its pixels;
* ``confident``: debiased support ≥ 0.8.

A catalog without votes has only ``all``. Recalls of few galaxies carry a Wilson 95 % interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from catalogs.labels import ARTIFACT, SUPPORT_MAJORITY, label_support
from models.metrics.scores import classification_metrics

STRATA = ("all", "supported", "visible", "confident")
SUPPORT_CONFIDENT = 0.8


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (scipy's ``binomtest``); (nan, nan) for n = 0."""
    if n == 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(successes), int(n)).proportion_ci(confidence, method="wilson")
    return float(ci.low), float(ci.high)


def strata_masks(labels: Sequence, votes: np.ndarray | None, raw_votes: np.ndarray | None) -> dict[str, np.ndarray]:
    """Row masks per stratum (``STRATA`` order; only ``all`` without votes, no ``visible``
    without raw votes). ``votes``/``raw_votes``: (N, 37) cumulative fractions, NaN rows where a
    galaxy has none."""
    lab = list(labels)
    galaxy = np.array([x is not None and x != ARTIFACT for x in lab], dtype=bool)
    masks = {"all": galaxy}
    if votes is None or np.isnan(votes).all():
        return masks
    support = label_support(votes, lab)
    supported = galaxy & (np.nan_to_num(support, nan=-1.0) >= SUPPORT_MAJORITY)
    masks["supported"] = supported
    if raw_votes is not None and not np.isnan(raw_votes).all():
        raw = np.nan_to_num(label_support(raw_votes, lab), nan=-1.0)
        masks["visible"] = supported & (raw >= SUPPORT_MAJORITY)
    masks["confident"] = galaxy & (np.nan_to_num(support, nan=-1.0) >= SUPPORT_CONFIDENT)
    return {k: masks[k] for k in STRATA if k in masks}


def stratum_scores(labels: Sequence, predicted: Sequence, class_names: Sequence[str]) -> dict:
    """``n``, accuracy, balanced accuracy and, per class present, recall with its count and
    Wilson 95 % interval."""
    lab, pred = list(labels), list(predicted)
    out: dict = {"n": len(lab)}
    if not lab:
        return out
    names = list(class_names) + sorted(set(lab) - set(class_names))
    m = classification_metrics(lab, pred, names)
    out.update(accuracy=m["accuracy"], balanced_accuracy=m["balanced_accuracy"], recall={})
    for c in names:
        n = int(m["per_class"][c]["support"])
        if n:
            hits = sum(1 for t, p in zip(lab, pred) if t == c and p == c)
            lo, hi = wilson_interval(hits, n)
            out["recall"][c] = {"recall": hits / n, "n": n, "low": lo, "high": hi}
    return out


def strata_scores(labels: Sequence, predicted: Sequence, class_names: Sequence[str],
                  votes: np.ndarray | None = None, raw_votes: np.ndarray | None = None) -> dict:
    """:func:`stratum_scores` for every stratum the data allow (:func:`strata_masks`)."""
    lab = np.asarray(list(labels), dtype=object)
    pred = np.asarray(list(predicted), dtype=object)
    return {k: stratum_scores(list(lab[m]), list(pred[m]), class_names)
            for k, m in strata_masks(list(lab), votes, raw_votes).items()}
