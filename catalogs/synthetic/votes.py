"""Simulated Galaxy Zoo 2 volunteer votes: an object's truth → its 37 per-question fractions.

Vote model
----------
For every question the object has a *truth* answer distribution (what an attentive volunteer
who sees the feature would answer) and a *confused* one (what volunteers answer when they
cannot see it). They are blended with a weight equal to the visibility of the feature the
question asks about (arms for Q4/Q10/Q11, the bar for Q3, the odd feature for Q6/Q8, the
object's overall visibility otherwise). The blend is jittered per object with a Dirichlet draw
whose concentration grows with visibility (so two similar objects do not get identical
fractions).

Then 30-50 volunteers walk the decision tree ``GZ2_TREE``, question by question in tree order:
a volunteer answers a question exactly when they gave its parent answer (``Question.parent``),
and every volunteer answers the questions without a parent, Q1 and Q6 ("anything odd?"). With
today's tree, "features or disk" leads to Q2, Q2 "yes" to Q9 and "no" to Q3, Q4 and Q5, Q4
"spiral" to Q10 and Q11, "smooth" to Q7 and Q6 "yes" to Q8; the branching lives in the tree
only. As Q6 has no parent there, a "star or artifact" answer does not end a classification
before Q6 as it did in GZ2 (the Kaggle targets, too, keep Q6 as asked of everyone). Each
volunteer is careless with a personal probability of up to 8% per question and then answers
uniformly at random. Fractions are per question among the volunteers who reached it, summing to
1; questions nobody reached are all 0 (as in Hart16).

The truth distributions are chosen so that the 0.6-threshold rule of ``catalogs.labels`` gives
back the truth class for the large majority of objects: a spiral gets a Q4 "spiral" fraction of
~0.8-1, an elliptical a Q1 "smooth" fraction of ~0.8-1, an edge-on a Q2 "yes" fraction of
~0.85-1, a merger a Q6 "yes" and then Q8 "merger" fraction of ~0.7-0.9. "Ambiguous" objects
are lenticular-like disks without arms (votes split between smooth and features, Q4 "no
spiral"), clumpy irregulars (Q8 "irregular") and faint, poorly resolved objects whose votes split
on every question. Some objects end up with a label other than their truth, as in real data.
"""

from __future__ import annotations

import numpy as np

from catalogs.labels import AMBIGUOUS
from catalogs.tree import GZ2_TREE


def _blend(truth_p, confused_p, w):
    p = w * np.asarray(truth_p, float) + (1.0 - w) * np.asarray(confused_p, float)
    return p / p.sum()


def _smear(n_answers: int, k0: int, sharpness: float) -> np.ndarray:
    """Mostly the true ordinal answer, some neighbours: confusion between adjacent answers."""
    p = np.exp(-sharpness * np.abs(np.arange(n_answers) - k0))
    return p / p.sum()


def _answer_slugs(question_slug: str) -> list[str]:
    """A question's answer slugs in tree order: the vectors below are laid out like the tree."""
    (question,) = [q for q in GZ2_TREE.questions if q.slug == question_slug]
    return [a.slug for a in question.answers]


_BULGE = _answer_slugs("bulge_prominence")
_ROUND = _answer_slugs("rounded")
_WIND = _answer_slugs("arms_winding")
_BSHAPE = _answer_slugs("bulge_shape")
_ODD = _answer_slugs("odd_feature")  # ring … merger, dust_lane


def _ordered(slugs: list[str], p: dict[str, float]) -> np.ndarray:
    """A probability per answer slug → a vector in tree order."""
    return np.array([p[slug] for slug in slugs])


def _question_probs(t: dict) -> dict[str, np.ndarray]:
    """Per question slug, the answer distribution of this object's volunteers (before per-object
    jitter and per-volunteer carelessness)."""
    kind = t.get("kind", t.get("class", AMBIGUOUS))
    vis = float(t.get("vis", 1.0))
    arm_vis = float(t.get("arm_vis", 0.0))
    odd_vis = float(t.get("odd_vis", vis))
    q = float(t.get("q", 1.0))
    if kind == "faint":  # the underlying shape shows through only faintly
        kind_w, kind = 0.6 * vis, t.get("underlying", "elliptical")
    else:
        kind_w = 0.75 + 0.25 * vis
    cigar = t.get("roundness") == "cigar_shaped"

    q1 = {"elliptical": [0.86, 0.135, 0.005] if cigar else [0.97, 0.025, 0.005],
          "spiral": [0.12, 0.875, 0.005] if t.get("bulge") == "dominant" else [0.04, 0.955, 0.005],
          "edge-on": [0.10, 0.895, 0.005], "merger": [0.22, 0.77, 0.01],
          "lenticular": [0.38, 0.615, 0.005], "irregular": [0.12, 0.83, 0.05]}[kind]
    edge_yes = {"edge-on": 0.95, "elliptical": 0.6 if cigar else 0.05, "merger": 0.1,
                "irregular": 0.06}.get(kind, 0.03 + 0.5 * float(np.clip((0.45 - q) / 0.35, 0, 1)))
    # Few volunteers reach Q4 for smooth or edge-on objects, and the label rule checks spiral
    # first: those few must rarely say "spiral", or a handful of votes would make a spiral.
    spiral_yes = {"spiral": 0.97, "elliptical": 0.03, "edge-on": 0.08, "merger": 0.3,
                  "lenticular": 0.12, "irregular": 0.28}[kind]
    odd = t.get("odd")
    odd_yes = {None: 0.08 + 0.03 * min(int(t.get("neighbours", 0)), 3), "ring": 0.75, "dust_lane": 0.6,
               "merger": 0.95, "irregular": 0.85, "lens_or_arc": 0.5}.get(odd, 0.6)
    odd_truth = _ordered(_ODD, {
        None: {"disturbed": 0.2, "irregular": 0.15, "other": 0.45, "ring": 0.05, "lens_or_arc": 0.05,
               "merger": 0.05, "dust_lane": 0.05},
        "ring": {"ring": 0.85, "lens_or_arc": 0.05, "other": 0.04, "disturbed": 0.02, "irregular": 0.02,
                 "merger": 0.01, "dust_lane": 0.01},
        "dust_lane": {"dust_lane": 0.77, "other": 0.08, "lens_or_arc": 0.05, "disturbed": 0.05,
                      "ring": 0.02, "irregular": 0.02, "merger": 0.01},
        "merger": {"merger": 0.84, "disturbed": 0.09, "lens_or_arc": 0.02, "irregular": 0.02,
                   "ring": 0.01, "other": 0.01, "dust_lane": 0.01},
        "irregular": {"irregular": 0.60, "disturbed": 0.22, "other": 0.08, "merger": 0.05,
                      "ring": 0.02, "lens_or_arc": 0.02, "dust_lane": 0.01},
        "lens_or_arc": {"lens_or_arc": 0.6, "other": 0.15, "ring": 0.1, "disturbed": 0.05,
                        "irregular": 0.05, "dust_lane": 0.03, "merger": 0.02},
    }[odd])
    arms = int(t.get("arms", 0))
    if arms > 0:
        arms_truth = np.append(_smear(5, min(arms, 5) - 1, 1.8) * 0.92, 0.08)
    else:
        arms_truth = np.array([0.05, 0.2, 0.05, 0.03, 0.02, 0.65])
    winding = t.get("winding")
    wind_truth = _smear(3, _WIND.index(winding), 1.8) if winding else np.array([0.3, 0.45, 0.25])
    bar = bool(t.get("bar", False))

    return {
        "smooth_or_features": _blend(q1, [0.40, 0.48, 0.12], kind_w),
        "edgeon": _blend([edge_yes, 1 - edge_yes], [0.3, 0.7], kind_w),
        "bar": _blend([0.9, 0.1] if bar else [0.04, 0.96], [0.25, 0.75],
                      float(t.get("bar_vis", 0.0)) if bar else kind_w),
        "spiral": _blend([spiral_yes, 1 - spiral_yes], [0.35, 0.65], arm_vis if kind == "spiral" else kind_w),
        "bulge_prominence": _blend(_smear(4, _BULGE.index(t.get("bulge", "no_bulge")), 1.6),
                                   [0.2, 0.35, 0.3, 0.15], kind_w),
        "odd": _blend([odd_yes, 1 - odd_yes], [0.2, 0.8], odd_vis),
        "rounded": _blend(_smear(3, _ROUND.index(t.get("roundness", "in_between")), 2.0), [0.3, 0.5, 0.2], kind_w),
        "odd_feature": _blend(odd_truth, _ordered(_ODD, {"ring": 0.08, "lens_or_arc": 0.08, "disturbed": 0.22,
                                                         "irregular": 0.2, "other": 0.3, "merger": 0.07,
                                                         "dust_lane": 0.05}), odd_vis),
        "bulge_shape": _blend(_smear(3, _BSHAPE.index(t.get("bulge_shape", "no_bulge")), 2.2),
                              [0.45, 0.15, 0.4], kind_w),
        "arms_winding": _blend(wind_truth, [0.3, 0.45, 0.25], arm_vis),
        "arms_number": _blend(arms_truth, [0.05, 0.25, 0.1, 0.05, 0.05, 0.5], arm_vis),
    }


def _walk_tree(probs: dict[str, np.ndarray], careless: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every volunteer's answers → (volunteers, 37) bool, True where a volunteer gave that answer.

    A volunteer reaches a question exactly when they gave its parent answer, read from
    ``GZ2_TREE.parent_index`` (parents precede children in tree order, so that answer is already
    known); questions without a parent are reached by everyone. Every question draws for every
    volunteer, reached or not, so one answer's draws do not shift the next question's.
    """
    n_vol = len(careless)
    gave = np.zeros((n_vol, len(GZ2_TREE)), dtype=bool)
    for (q, sl), parent in zip(GZ2_TREE.question_slices, GZ2_TREE.parent_index):
        reached = np.ones(n_vol, dtype=bool) if parent is None else gave[:, parent]
        p = probs[q.slug]
        picked = np.minimum(np.searchsorted(np.cumsum(p), rng.random(n_vol) * p.sum(), side="right"), len(p) - 1)
        random_pick = rng.integers(0, len(p), n_vol)
        answer = np.where(rng.random(n_vol) < careless, random_pick, picked)
        gave[reached, sl.start + answer[reached]] = True
    return gave


def simulate_votes(truth: dict, rng: np.random.Generator | int) -> np.ndarray:
    """Simulated GZ2 volunteer votes for one object → the 37 per-question fractions, in
    ``GZ2_TREE`` order (the ``..._debiased`` columns). See the module docstring for the model.

    ``truth`` needs at least ``"class"`` (or ``"kind"``); the features it lacks take neutral
    defaults.
    """
    rng = np.random.default_rng(rng)
    base = _question_probs(truth)
    kappa = 25.0 + 75.0 * float(truth.get("vis", 1.0))  # how much objects alike get alike fractions
    probs = {q.slug: rng.dirichlet(kappa * base[q.slug] + 1e-3) for q in GZ2_TREE.questions}

    n_vol = int(rng.integers(30, 51))
    gave = _walk_tree(probs, rng.uniform(0.0, 0.08, n_vol), rng)

    out = np.zeros(len(GZ2_TREE), dtype=np.float64)
    for _, sl in GZ2_TREE.question_slices:
        votes = gave[:, sl].sum(axis=0)
        if votes.sum():  # each volunteer who reached the question gave one of its answers
            out[sl] = votes / votes.sum()
    return out
