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
