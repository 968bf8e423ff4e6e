"""Which galaxies volunteers should label next: choose ``n`` of an annotation run's galaxies
whose labels would help the next model most, and write them as a Zooniverse Panoptes subject
manifest.

Strategies (``score`` is higher for a better pick):

- ``entropy``: the entropy of the class probabilities (the model's uncertainty over all classes);
- ``margin``: 1 − (top-1 − top-2 probability): a toss-up between two classes;
- ``bald``: the mutual information between the prediction and the view of the galaxy, over its 8
  rotations/flips (``H(mean_v p_v) − mean_v H(p_v)``): high where the model answers differently
  for the same galaxy turned, i.e. where it is unsure for want of knowledge rather than because
  the galaxy is ambiguous. It runs the bundle on the 8 views of a pool of the ``POOL_FACTOR·n``
  highest-entropy candidates (the views are not in the output table);
- ``diverse``: from the same high-entropy pool, ``n`` picks spread over the embedding by k-means++
  seeding (scikit-learn), so that a batch of labels is not spent on ``n`` near-copies;
- ``random``: the baseline every strategy must beat.

Rows flagged ``ood_flag`` (probably not a galaxy like those the models learnt) are left out
unless asked for, and so are galaxies the catalog already labels (its ``label`` column): a
volunteer's time goes to galaxies whose label is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from catalogs.annotations import locate_catalog, open_annotations
from catalogs.errors import MorphcatError
from catalogs.inputs import dihedral_views
from catalogs.outputs import CLASS_PREFIX, EMBEDDING, EMBEDDING_DIM, class_entropy

STRATEGIES = ("entropy", "margin", "bald", "diverse", "random")
POOL_FACTOR = 10
DEFAULT_N = 500
VIEWS = 8


class SelectionError(MorphcatError):
    """A selection this run cannot make (unknown strategy, nothing left to choose, no bundle for
    ``bald``)."""


@dataclass(frozen=True)
class Selection:
    run_id: str
    subjects: pl.DataFrame  # the manifest's rows, best first
    candidates: int  # rows it chose from (after leaving out flagged and labelled ones)


def bald_scores(view_probs: np.ndarray) -> np.ndarray:
    """(V, N, C) class probabilities of V views of N galaxies → (N,) mutual information."""
    p = np.asarray(view_probs, dtype=np.float64)
    return class_entropy(p.mean(axis=0)) - class_entropy(p).mean(axis=0)


def _view_probs(bundle, paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(8, M, C) probabilities of the decodable ``paths`` and which of them decoded."""
    from catalogs.decoding import to_model_floats
    from catalogs.imaging import ImageError
    from catalogs.inputs import model_input

    pixels, ok = [], []
    for path in paths:
        try:
            pixels.append(model_input(path, bundle.image).pixels)
            ok.append(True)
        except ImageError:  # annotated once, unreadable now: it cannot be shown to volunteers either
            ok.append(False)
    if not pixels:
        return np.zeros((VIEWS, 0, len(bundle.class_names))), np.array(ok, bool)
    views = dihedral_views(to_model_floats(np.stack(pixels), bundle.image))
    probs = np.stack([np.concatenate([bundle.infer(v[i:i + 64])["probs"] for i in range(0, len(v), 64)])
                      for v in views])
    return probs, np.array(ok, bool)


def choose(strategy: str, probs: np.ndarray, n: int, *, seed: int = 0, embeddings: np.ndarray | None = None,
           view_probs=None) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` candidates ``strategy`` picks, best first, and every candidate's score (NaN
    where it was not scored). ``probs`` (N, C); ``embeddings`` (N, d) for ``diverse``;
    ``view_probs(rows)`` → ((8, m, C) probabilities of the 8 views of those rows, which decoded)
    for ``bald``. The one choice ``morphcat select`` and the active-learning benchmark share."""
    if strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    probs = np.asarray(probs, dtype=np.float64)
    entropy = class_entropy(probs)
    if strategy == "random":
        return np.random.default_rng(seed).permutation(len(probs))[:n], np.full(len(probs), np.nan)
    if strategy == "entropy":
        return np.argsort(-entropy, kind="stable")[:n], entropy
    if strategy == "margin":
        top2 = np.sort(probs, axis=1)[:, -2:] if probs.shape[1] > 1 else np.c_[np.zeros(len(probs)), probs]
        score = 1.0 - (top2[:, 1] - top2[:, 0])
        return np.argsort(-score, kind="stable")[:n], score
    pool = np.argsort(-entropy, kind="stable")[:POOL_FACTOR * n]
    score = np.full(len(probs), np.nan)
    if strategy == "bald":
        if view_probs is None:
            raise SelectionError("bald needs the probabilities of each candidate's 8 views")
        views, ok = view_probs(pool)
        decoded = pool[ok]
        score[decoded] = bald_scores(views)
        return decoded[np.argsort(-score[decoded], kind="stable")][:n], score
    from sklearn.cluster import kmeans_plusplus

    if embeddings is None:
        raise SelectionError("diverse needs the candidates' embeddings")
    has = np.isfinite(embeddings[pool]).all(axis=1)
    pool = pool[has]
    if len(pool) == 0:
        raise SelectionError("diverse needs embeddings: annotate with a bundle of format 4 or later")
    if len(pool) <= n:
        chosen = pool
    else:  # k-means++ seeding weighs a candidate by its squared distance to the picks so far
        _, picks = kmeans_plusplus(np.asarray(embeddings[pool], np.float64), n_clusters=n, random_state=seed)
        chosen = pool[picks]
    score[chosen] = entropy[chosen]
    return chosen, score


def select_subjects(out: Path, n: int = DEFAULT_N, strategy: str = "entropy", *, run_id: str | None = None,
                    bundle: Path | None = None, catalog: Path | None = None, include_flagged: bool = False,
                    include_labelled: bool = False, seed: int = 0) -> Selection:
    """``n`` galaxies of the run (default: the folder's latest) chosen by ``strategy``, as
    Panoptes manifest rows: ``subject_id``, ``image`` (the cutout's path), ``ra``, ``dec`` and
    hidden (``#``) metadata: ``#image_path``, ``#label_pred``, ``#confidence``, ``#strategy``,
    ``#score``, ``#run_id``."""
    if strategy not in STRATEGIES:
        raise SelectionError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if n < 1:
        raise SelectionError(f"n must be ≥ 1, got {n}")
    if strategy == "bald" and bundle is None:
        raise SelectionError("`strategy` bald needs `bundle`: the bundle that annotated the run computes the "
                             "8 views' probabilities")
    folder = open_annotations(Path(out))
    run = run_id or folder.runs[-1]
    pred = folder.scan(run).collect()
    found = locate_catalog(folder, catalog)
    table = pl.from_arrow(found.table.select(["object_id", "image_path"]
                                             + (["label"] if "label" in found.table.column_names else [])))
    rows = pred.join(table, on="object_id", how="left")
    if not include_flagged:
        rows = rows.filter(~pl.col("ood_flag").fill_null(False))
    if not include_labelled and "label" in rows.columns:
        rows = rows.filter(pl.col("label").is_null())
    rows = rows.sort("object_id")  # a stable order: the same run and seed choose the same galaxies
    if rows.height == 0:
        raise SelectionError(f"run {run} has no galaxy left to choose from (flagged and already labelled galaxies "
                             "are left out; see `include_flagged`, `include_labelled`)")
    probs = rows.select([c for c in rows.columns if c.startswith(CLASS_PREFIX)]).to_numpy()
    embeddings = np.stack([np.full(EMBEDDING_DIM, np.nan) if e is None else np.asarray(e)
                           for e in rows[EMBEDDING].to_list()])
    view_probs = None
    if strategy == "bald":
        view_probs = _run_view_probs(rows, bundle, found.root, folder.bundle_id(run))
    order, score = choose(strategy, probs, n, seed=seed, embeddings=embeddings, view_probs=view_probs)
    picked = rows[order]
    subjects = pl.DataFrame({
        "subject_id": picked["object_id"],
        "image": [str(found.root / p) for p in picked["image_path"]],
        "ra": picked["ra"], "dec": picked["dec"],
        "#image_path": picked["image_path"], "#label_pred": picked["label_pred"],
        "#confidence": picked["confidence"], "#strategy": [strategy] * picked.height,
        "#score": pl.Series(score[order], dtype=pl.Float64), "#run_id": [run] * picked.height})
    return Selection(run, subjects, rows.height)


def _run_view_probs(rows: pl.DataFrame, bundle_path: Path, root: Path, bundle_id: str):
    from export.serve.runtime import open_bundle

    bundle = open_bundle(bundle_path, device="cpu")
    if bundle.bundle_id != bundle_id:
        raise SelectionError(f"bundle {bundle_path} ({bundle.bundle_id}) did not annotate this run (bundle "
                             f"{bundle_id}): its views would not be the run's model's")
    paths = rows["image_path"].to_list()
    return lambda pool: _view_probs(bundle, [root / paths[i] for i in pool])
