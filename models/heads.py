"""Class heads: one softmax per label scheme over the shared backbone, and their targets.

Catalogs label the same pixels by different rules: the seed's GZ2 rule on per-question debiased
fractions, Galaxy Zoo 1's classes, the Kaggle set's thresholds on cumulative shares. Forced into one
softmax they contradict each other (a GZ1 "elliptical" is often a GZ2-rule "spiral"); zoobot gives
each Galaxy Zoo campaign its own outputs instead. Here a catalog's scheme is ``gz2`` when it carries
the GZ2 vote fractions (its labels follow the seed's rule) and its own name otherwise; every
scheme gets a head with its own classes and, after training, its own temperature. ``union`` (one
softmax over every catalog's classes) is the earlier behaviour, kept for the ablation.

A row trains only its own scheme's head. Where a row has votes, ``soft_targets`` = α blends the
volunteers' class shares (``catalogs.labels.class_shares``) into its one-hot label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from catalogs.labels import CLASSES, class_shares
from models.classifier import head_suffix
from models.data import TrainingSet, class_weights

CLASS_HEADS = ("scheme", "union")
GZ2_SCHEME = "gz2"


@dataclass(frozen=True)
class ClassHead:
    scheme: str
    catalogs: tuple[str, ...]  # the catalog names whose labels it learns
    class_names: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"scheme": self.scheme, "catalogs": list(self.catalogs), "class_names": list(self.class_names)}


def classes_present(labels) -> list[str]:
    """The union of the labels present, morphcat's own classes first in their order."""
    present = {x for x in labels if x is not None}
    canonical = [c for c in CLASSES if c in present]
    return canonical + sorted(present - set(canonical))


def scheme_of(catalog, name: str) -> str:
    """``gz2`` for a catalog with the GZ2 vote fractions (labels by the seed's rule), else its name."""
    return GZ2_SCHEME if catalog.has_votes else name


def class_heads(tset: TrainingSet, mode: str = "scheme") -> tuple[list[ClassHead], np.ndarray]:
    """The heads, in order of first appearance among the labelled catalogs (the first is the one
    exported), and each row's head index (-1 for rows without a label)."""
    if mode not in CLASS_HEADS:
        raise ValueError(f"class_heads must be one of {CLASS_HEADS}, got {mode!r}")
    labelled = tset.has_label
    schemes: dict[str, list[int]] = {}
    for i, (name, catalog) in enumerate(zip(tset.names, tset.catalogs)):
        if labelled[tset.source == i].any():
            key = "union" if mode == "union" else scheme_of(catalog, name)
            schemes.setdefault(key, []).append(i)
    heads, row_head = [], np.full(len(tset.labels), -1, np.int64)
    for h, (key, members) in enumerate(schemes.items()):
        rows = np.isin(tset.source, members) & labelled
        heads.append(ClassHead(key, tuple(tset.names[i] for i in members), tuple(classes_present(tset.labels[rows]))))
        row_head[rows] = h
    return heads, row_head


def head_targets(tset: TrainingSet, idx: np.ndarray, heads: Sequence[ClassHead], row_head: np.ndarray,
                 class_balance: float, soft_targets: float, balanced: bool) -> tuple[dict, dict]:
    """Per head output (``probs``, ``probs_1``, …): (N, C) target distributions and per-row loss
    weights for rows ``idx``. A row weighs 0 in every head but its own; within a head the weights
    balance its classes to the power ``class_balance`` (training rows, ``balanced``), and each
    head's loss is the mean over its own rows."""
    if not 0.0 <= soft_targets <= 1.0:
        raise ValueError(f"soft_targets must be in [0, 1], got {soft_targets}")
    y, w = {}, {}
    for h, head in enumerate(heads):
        out = f"probs{head_suffix(h)}"
        index = {c: i for i, c in enumerate(head.class_names)}
        mine = row_head[idx] == h
        target = np.zeros((len(idx), len(head.class_names)), np.float32)
        for k in np.flatnonzero(mine):
            target[k, index[tset.labels[idx[k]]]] = 1.0
        if soft_targets > 0:
            shares = class_shares(tset.votes[idx], head.class_names)
            voted = mine & ~np.isnan(shares).any(axis=1)
            target[voted] = (1 - soft_targets) * target[voted] + soft_targets * shares[voted]
        weight = mine.astype(np.float32)
        if balanced and mine.any():
            weight[mine] = class_weights(tset.labels[idx][mine], list(head.class_names), class_balance)
        # Keras averages over the whole batch: scaled so each head's loss is the mean over its own
        # rows (as the vote loss), and a small catalog's scheme is not drowned by a large one's.
        y[out], w[out] = target, weight / max(float(mine.mean()), 1e-6)
    return y, w
