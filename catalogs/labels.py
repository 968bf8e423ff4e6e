"""Morphology labels derived from GZ2 vote fractions.

The seed project's 5-class rule, reproduced exactly: debiased fraction ≥ 0.6, first match wins
in the order spiral → elliptical → edge-on → merger, else ambiguous.
"""

from __future__ import annotations

import numpy as np

from catalogs.tree import GZ2_TREE

THRESHOLD = 0.6
AMBIGUOUS = "ambiguous"
# The class of cutouts that hold no galaxy (stars, artefacts), as the GZ1 set names its "don't
# know" class: evaluation scores it as "flagged" (this class or ood_flag), not as a galaxy class.
ARTIFACT = "artifact"

# (class name, the answer whose debiased fraction decides it), in rule order.
RULE: tuple[tuple[str, str], ...] = (
    ("spiral", GZ2_TREE.answer("t04", "a08").debiased),
    ("elliptical", GZ2_TREE.answer("t01", "a01").debiased),
    ("edge-on", GZ2_TREE.answer("t02", "a04").debiased),
    ("merger", GZ2_TREE.answer("t08", "a24").debiased),
)
CLASSES: tuple[str, ...] = tuple(name for name, _ in RULE) + (AMBIGUOUS,)


def derive_labels(columns: dict[str, np.ndarray]) -> np.ndarray:
    """Vectorised rule over the four deciding columns (missing values count as below threshold).

    ``columns`` maps Hart16 debiased column names to float arrays of equal length (a
    ``pyarrow.Table``/``polars.DataFrame`` converted column-wise works). Returns an object array of
    class names.
    """
    missing = [col for _, col in RULE if col not in columns]
    if missing:
        raise KeyError(f"labels need the vote-fraction columns {missing}")
    n = len(columns[RULE[0][1]])
    labels = np.full(n, AMBIGUOUS, dtype=object)
    decided = np.zeros(n, dtype=bool)
    for name, col in RULE:
        values = np.nan_to_num(np.asarray(columns[col], dtype=np.float64), nan=-np.inf)
        hit = (values >= THRESHOLD) & ~decided
        labels[hit] = name
        decided |= hit
    return labels


# A label is *supported* when at least this cumulative share of all volunteers (debiased) reached
# its deciding answer through the tree and chose it. The rule above reads per-question fractions,
# so a "merger" can rest on the few volunteers who reached the odd-feature question.
SUPPORT_MAJORITY = 0.5
_DECIDING_INDEX = {name: GZ2_TREE.debiased_columns.index(col) for name, col in RULE}


def label_support(cumulative: np.ndarray, labels) -> np.ndarray:
    """Per row, the cumulative (tree-multiplied, ``GZ2_TREE.cumulative``) vote fraction of the
    answer that decides its label under the rule: the share of all volunteers who said so.
    NaN where the label is not a rule class (ambiguous, artifact, None) or the row has no votes."""
    c = np.asarray(cumulative, dtype=np.float64)
    labels = list(labels)
    if c.ndim != 2 or c.shape != (len(labels), len(GZ2_TREE)):
        raise ValueError(f"expected cumulative fractions of shape ({len(labels)}, {len(GZ2_TREE)}), got {c.shape}")
    out = np.full(len(labels), np.nan)
    for i, label in enumerate(labels):
        j = _DECIDING_INDEX.get(label)
        if j is not None and not np.isnan(c[i]).all():
            out[i] = c[i, j]
    return out


def class_shares(cumulative: np.ndarray, class_names) -> np.ndarray:
    """(N, C) the volunteers' shares behind each of ``class_names`` as a distribution: a rule
    class gets the cumulative fraction of its deciding answer, ``ambiguous`` what the rule classes
    leave of 1, any other class 0; each row normalised to sum 1 (uniform where all are 0). A soft
    target: how the volunteers split, where the rule keeps only the winner. NaN rows for rows
    without votes."""
    c = np.asarray(cumulative, dtype=np.float64)
    names = list(class_names)
    if c.ndim != 2 or c.shape[1] != len(GZ2_TREE):
        raise ValueError(f"expected cumulative fractions of shape (N, {len(GZ2_TREE)}), got {c.shape}")
    out = np.zeros((len(c), len(names)))
    for j, name in enumerate(names):
        if name in _DECIDING_INDEX:
            out[:, j] = np.clip(c[:, _DECIDING_INDEX[name]], 0.0, 1.0)
    if AMBIGUOUS in names:
        rule = [j for j, n in enumerate(names) if n in _DECIDING_INDEX]
        out[:, names.index(AMBIGUOUS)] = np.clip(1.0 - out[:, rule].sum(axis=1), 0.0, 1.0)
    total = out.sum(axis=1, keepdims=True)
    out = np.where(total > 0, out / np.where(total > 0, total, 1.0), 1.0 / len(names))
    out[np.isnan(c).all(axis=1)] = np.nan
    return out
