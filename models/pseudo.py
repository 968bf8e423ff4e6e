"""Pseudo-labels: unlabelled galaxies trained on with a teacher model's vote fractions.

Self-training (Lee 2013; Xie et al. 2020's noisy student): a teacher trained on the volunteers'
labels predicts the 37 vote fractions of unlabelled galaxies; those fractions stand in for the
volunteers' in a catalog of the GZ2 contract (:func:`pseudo_catalog`), so its rows train the GZ2
class head (the seed's rule on the predicted fractions, blended with their class shares as any
voted row's) and the vote head; a student is then trained from scratch on both
(:func:`train_with_pseudo_labels`), with the loss on the pseudo-labels weighing
``TrainSettings.pseudo_weight`` of the loss on the volunteers'.

A pseudo-label is kept only where the predicted fractions *support* it (the cumulative share
behind the deciding answer ≥ ``SUPPORT_MAJORITY``, the bar the evaluation's supported stratum
uses): the teacher's uncertain galaxies still teach the vote head, not the class head. Pseudo
rows only ever train; the validation split, early stopping and the temperatures stay the
volunteers'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from catalogs.contract import Catalog, conform
from catalogs.labels import SUPPORT_MAJORITY, derive_labels, label_support
from catalogs.tree import GZ2_TREE
from models.config import ModelConfig, TrainSettings
from models.data import decode_images
from models.errors import TrainingError

PSEUDO_FORMAT = "pseudo-labels"
BATCH = 256


def predicted_votes(regressor, catalog: Catalog, config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """The regressor's 37 cumulative vote fractions for every row of ``catalog`` that decodes,
    and which rows those are."""
    decoded = decode_images(catalog, np.arange(catalog.table.num_rows), config.image)
    x = decoded.pixels
    scale = np.float32(config.image.scale)
    out = [np.asarray(regressor(x[i:i + BATCH].astype(np.float32) * scale, training=False))
           for i in range(0, len(x), BATCH)]
    return (np.concatenate(out) if out else np.zeros((0, 37), np.float32)), decoded.good_rows


def pseudo_catalog(regressor, catalog: Catalog, config: ModelConfig) -> Catalog:
    """``catalog``'s rows that decode, with the regressor's vote fractions as their debiased
    fractions, the rule's label where those fractions support it (else none) and no caption."""
    cumulative, rows = predicted_votes(regressor, catalog, config)
    fractions = GZ2_TREE.per_question(np.clip(cumulative, 0.0, 1.0))  # the contract's range, NaN kept
    labels = derive_labels({c: fractions[:, i] for i, c in enumerate(GZ2_TREE.debiased_columns)})
    support = label_support(cumulative, labels)
    kept = np.where(np.nan_to_num(support, nan=0.0) >= SUPPORT_MAJORITY, labels, None)
    table = catalog.table.select(["object_id", "image_path"]).take(pa.array(rows, pa.int64()))
    for i, column in enumerate(GZ2_TREE.debiased_columns):
        values = fractions[:, i]
        table = table.append_column(column, pa.array(values, pa.float64(), mask=np.isnan(values)))
    table = table.append_column("label", pa.array(kept.tolist(), pa.string()))
    table = table.append_column("caption", pa.nulls(len(rows), pa.string()))
    return Catalog(conform(table, "pseudo-labelled catalog"), catalog.root, PSEUDO_FORMAT)


def pseudo_summary(catalog: Catalog, source: Catalog) -> dict:
    """What a pseudo-labelled catalog holds: rows, labelled rows and their classes, and how many
    of its ``source`` catalog's rows were left out because their image could not be decoded."""
    labels = [x for x in catalog.table.column("label").to_pylist() if x is not None]
    return {"rows": catalog.table.num_rows, "labelled": len(labels),
            "classes": {c: labels.count(c) for c in sorted(set(labels))},
            "undecodable": source.table.num_rows - catalog.table.num_rows}


def train_with_pseudo_labels(catalogs: Sequence[Catalog], names: Sequence[str], unlabelled: Sequence[Catalog],
                             unlabelled_names: Sequence[str], config: ModelConfig, settings: TrainSettings,
                             heads: Sequence[str] = ("classifier", "regressor"),
                             callbacks: Callable[[str], Sequence] = lambda who: (),
                             test_masks: Sequence[np.ndarray] | None = None, init=None) -> list:
    """Train a teacher on ``catalogs`` (classifier and regressor, as ``train_morphology``), label
    ``unlabelled`` with its vote fractions, then train the student (``heads``) from scratch (or
    both from ``init``'s backbone) on both. ``callbacks``: "teacher" or "student" → the Keras
    callbacks of that training. The student's sidecars record what the pseudo-labels were."""
    from models.train import train_morphology

    if not unlabelled:
        raise ValueError("pseudo-labels need at least one unlabelled catalog")
    teacher = train_morphology(catalogs, names, config, settings, heads=("classifier", "regressor"), init=init,
                               callbacks=callbacks("teacher"), test_masks=test_masks)
    regressor = next(t for t in teacher if t.kind == "regressor")
    pseudo = [pseudo_catalog(regressor.model, c, config) for c in unlabelled]
    if not any(p.table.num_rows for p in pseudo):
        raise TrainingError("no unlabelled galaxy could be decoded: nothing to pseudo-label")
    pseudo_names = [f"{n} (pseudo)" for n in unlabelled_names]
    masks = None if test_masks is None else [*test_masks, *(np.zeros(p.table.num_rows, bool) for p in pseudo)]
    student = train_morphology([*catalogs, *pseudo], [*names, *pseudo_names], config, settings, heads=heads,
                               init=init, callbacks=callbacks("student"), test_masks=masks,
                               pseudo=[False] * len(catalogs) + [True] * len(pseudo))
    record = {"teacher_train_seconds": regressor.sidecar["train_seconds"], "weight": settings.pseudo_weight,
              "support": SUPPORT_MAJORITY,
              "catalogs": {n: pseudo_summary(p, c) for n, p, c in zip(pseudo_names, pseudo, unlabelled)}}
    for t in student:
        t.sidecar["pseudo_labels"] = record
    return student


def stage_name(stage: str, who: str | None) -> str:
    """A training stage's name on screen: ``stage``, or ``stage (teacher)`` / ``(student)``."""
    return stage if who is None else f"{stage} ({who})"


def train_heads(catalogs: Sequence[Catalog], names: Sequence[str], config: ModelConfig, settings: TrainSettings,
                heads: Sequence[str] = ("classifier", "regressor"),
                unlabelled: Sequence[tuple[str, Catalog]] = (),
                callbacks: Callable[[str | None], Sequence] = lambda who: (),
                test_masks: Sequence[np.ndarray] | None = None, init=None) -> list:
    """The classifier and/or regressor (``heads``) as ``train_morphology`` trains them, or, with
    ``unlabelled`` ((name, catalog) pairs), the students of :func:`train_with_pseudo_labels`: the
    one entry point of ``morphcat train`` and ``evaluate --cv``. ``callbacks``: None (a plain
    training), "teacher" or "student" → the Keras callbacks of that training."""
    from models.train import train_morphology

    if unlabelled:
        return train_with_pseudo_labels(catalogs, names, [c for _, c in unlabelled], [n for n, _ in unlabelled],
                                        config, settings, heads=heads, callbacks=callbacks, test_masks=test_masks,
                                        init=init)
    return train_morphology(catalogs, names, config, settings, heads=heads, init=init, callbacks=callbacks(None),
                            test_masks=test_masks)
