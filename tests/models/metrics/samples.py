"""Inputs shared by the metric tests, whose scores the tests work out by hand: class labels,
(2, 37) regression arrays and template captions."""

import numpy as np

from catalogs.captions import template_captions
from catalogs.tree import GZ2_TREE

# 6 galaxies, 3 classes. In the order spiral, elliptical, merger the confusion matrix is
#   spiral     [2, 1, 0]   recall 2/3, precision 2/2 → F1 4/5
#   elliptical [0, 1, 1]   recall 1/2, precision 1/2 → F1 1/2
#   merger     [0, 0, 1]   recall 1,   precision 1/2 → F1 2/3
Y_TRUE = ["spiral", "spiral", "spiral", "elliptical", "elliptical", "merger"]
Y_PRED = ["spiral", "spiral", "elliptical", "elliptical", "merger", "merger"]

N_OUT = len(GZ2_TREE)


def pair(*edits):
    """(y_true, y_pred) of shape (2, 37), zeros except the given (array, row, col, value) edits."""
    arrays = {"t": np.zeros((2, N_OUT)), "p": np.zeros((2, N_OUT))}
    for which, i, j, value in edits:
        arrays[which][i, j] = value
    return arrays["t"], arrays["p"]


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
# The variants these ids choose (pinned so the hand counts in the tests stay honest).
assert REFS == [
    "a spiral galaxy with a bar, two tight spiral arms and a small bulge.",
    "a cigar-shaped elliptical galaxy.",
    "an edge-on disk galaxy with a boxy central bulge and a dark dust lane.",
]
