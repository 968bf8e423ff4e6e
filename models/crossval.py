"""K-fold cross-validation over one or more catalogs: every galaxy tested exactly once.

The folds are stratified by (catalog, label) and follow a hash of ``object_id``
(``models.data.assign_folds``). For each fold the models are trained from scratch on the other
folds exactly as ``morphcat train`` trains them (validation split, early stopping, temperature,
OOD reference, caption-source choice all taken from the training folds only), then predict the
held-out fold. :func:`cv_report` scores the pooled predictions per catalog and fold: mean ± sd
over the folds, and the pooled confusion matrix and reliability curve.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from catalogs.atomic import atomic_path, write_text
from catalogs.captions import template_captions
from catalogs.contract import Catalog
from catalogs.inputs import dihedral_views
from catalogs.labels import ARTIFACT, SUPPORT_MAJORITY, label_support
from catalogs.outputs import ood_flags
from catalogs.sources import central_source_snr
from catalogs.targets import kaggle_targets, raw_vote_matrix
from catalogs.tokenizer import Tokenizer
from catalogs.tree import GZ2_TREE
from models.calibration import ece_floor, expected_calibration_error, reliability, softmax
from models.captioner import captioner_from_train, greedy_decode
from models.classifier import logits, pooled_features
from models.config import ModelConfig, TrainSettings, recorded_protocol
from models.provenance import code_commit
from models.data import assign_folds, decode_images
from models.embedding import EmbeddingProjection
from models.evaluate import choose_caption_source
from models.metrics import caption_metrics, classification_metrics, regression_metrics
from models.metrics.strata import STRATA, strata_scores, wilson_interval
from models.ood import OodReference

if TYPE_CHECKING:
    import pyarrow as pa

KNN_K = 10  # neighbours the embedding's quality is measured with


@dataclass
class HeldOut:
    """The predictions for one catalog's rows of one held-out fold."""

    catalog: str
    fold: int
    object_ids: list[str]
    labels: list[str | None]
    class_names: list[str]
    probs: np.ndarray | None = None  # (n, C) calibrated
    probs_uncalibrated: np.ndarray | None = None
    ood_flag: np.ndarray | None = None
    votes_true: np.ndarray | None = None  # (n, 37) cumulative, NaN where none
    votes_raw: np.ndarray | None = None  # (n, 37) cumulative from the raw (weighted) fractions
    votes_pred: np.ndarray | None = None
    captions: list[str | None] = field(default_factory=list)
    shipped_captions: list[str] | None = None  # what annotate would write (the chosen source)
    caption_source: str | None = None
    failures: int = 0
    embeddings: np.ndarray | None = None  # (n, EMBEDDING_DIM) models.embedding
    # the labels of each row's KNN_K nearest training galaxies of its catalog, by embedding
    knn_labels: list[list[str]] | None = None
    # an ensemble's (models.crossval.run_fold's members) own outputs, member by member: (M, n, …)
    member_probs: np.ndarray | None = None
    member_probs_uncalibrated: np.ndarray | None = None
    member_votes: np.ndarray | None = None


def training_summary(history: dict) -> dict:
    """How one training went, from its Keras history: epochs run, the epoch whose weights it kept
    (the lowest validation loss; early stopping restores them), that loss and the last one, and
    whether every loss stayed finite. A run that collapsed shows here, not only in its scores."""
    val = np.asarray(history.get("val_loss", []), dtype=np.float64)
    losses = np.asarray(history.get("loss", []), dtype=np.float64)
    finite = bool(np.isfinite(val).all() and np.isfinite(losses).all())
    if not len(val) or not np.isfinite(val).any():
        return {"epochs_run": int(len(losses)), "finite": finite}
    best = int(np.nanargmin(np.where(np.isfinite(val), val, np.nan)))
    return {"epochs_run": int(len(losses)), "best_epoch": best + 1, "best_val_loss": round(float(val[best]), 5),
            "last_val_loss": round(float(val[-1]), 5) if np.isfinite(val[-1]) else None, "finite": finite}


def member_view(h: HeldOut, m: int) -> HeldOut:
    """The predictions of an ensemble's member ``m`` alone (the embedding and OOD flag are the
    first member's either way)."""
    if h.member_probs is None and h.member_votes is None:
        raise ValueError(f"{h.catalog} fold {h.fold}: these predictions are not an ensemble's")

    def own(stack):
        return None if stack is None else stack[m]

    return replace(h, probs=own(h.member_probs), probs_uncalibrated=own(h.member_probs_uncalibrated),
                   votes_pred=own(h.member_votes), member_probs=None, member_probs_uncalibrated=None,
                   member_votes=None)


def folds_of(catalogs: Sequence[Catalog], names: Sequence[str], k: int) -> list[np.ndarray]:
    """Fold number per row of each catalog, stratified by its label (rows without one form
    their own stratum)."""
    out = []
    for name, catalog in zip(names, catalogs):
        table = catalog.table
        labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * table.num_rows
        out.append(assign_folds(table.column("object_id").to_pylist(), [f"{name}:{x}" for x in labels], k))
    return out


def run_fold(catalogs: Sequence[Catalog], names: Sequence[str], config: ModelConfig, settings: TrainSettings,
             folds: Sequence[np.ndarray], fold: int, kinds: Sequence[str],
             callbacks: Callable[[str], list] = lambda stage: [], views: int = 1,
             unlabelled: Sequence[tuple[str, Catalog]] = (), members: int = 1) -> tuple[list[HeldOut], list[dict]]:
    """Train ``kinds`` on every fold but ``fold`` and predict the rows of ``fold``; ``views`` = 8
    averages the classifier's and regressor's outputs over the 8 rotations/flips (test-time
    augmentation); ``unlabelled`` ((name, catalog) pairs): the classifier and regressor are the
    students of a teacher trained on the same folds (``models.pseudo``); ``members`` > 1: that
    many classifiers and regressors, trained alike from the seeds ``settings.seed + m``, average
    their calibrated probabilities and vote fractions (a deep ensemble; the embedding, the OOD
    flag and the captioner are the first member's). Returns the predictions and each member's
    trained models (by kind; the captioner with the first member's)."""
    from models.pseudo import stage_name, train_heads
    from models.train import train_captioner

    if members < 1:
        raise ValueError(f"members must be at least 1, got {members}")
    masks = [f == fold for f in folds]
    heads = [h for h in ("classifier", "regressor") if h in kinds]
    ensemble = []
    for m in range(members):
        msettings = replace(settings, seed=settings.seed + m)
        stage = "+".join(heads) + (f" member {m + 1}/{members}" if members > 1 else "")
        morphology = train_heads(catalogs, names, config, msettings, heads=heads, unlabelled=unlabelled,
                                 test_masks=masks, callbacks=lambda who: callbacks(stage_name(stage, who)))
        ensemble.append({t.kind: t for t in morphology})
    trained = ensemble[0]
    if "captioner" in kinds:
        backbone = trained["classifier"].model.get_layer("backbone") if "classifier" in trained else None
        trained["captioner"] = train_captioner(catalogs, names, config, settings, backbone=backbone,
                                               callbacks=callbacks("captioner"), test_masks=masks)
        if "regressor" in trained:
            trained["captioner"].sidecar["caption_choice"] = choose_caption_source(
                catalogs, names, trained["regressor"].model, trained["captioner"].model,
                trained["captioner"].sidecar, test_masks=masks)
    held_out = [_predict(ensemble, config, name, catalog, np.flatnonzero(mask), fold, views)
                for name, catalog, mask in zip(names, catalogs, masks)]
    if "classifier" in trained and "embedding" in trained["classifier"].sidecar:
        for h, catalog, mask in zip(held_out, catalogs, masks):
            _embedding_neighbours(h, trained["classifier"], config, catalog, np.flatnonzero(~mask))
    return held_out, ensemble


def _embed(classifier, config: ModelConfig, catalog: Catalog, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The embeddings (``models.embedding``) of ``rows`` that decode, and which rows those are."""
    decoded = decode_images(catalog, rows, config.image)
    x = decoded.pixels.astype(np.float32) * np.float32(config.image.scale)
    projection = EmbeddingProjection.from_dict(classifier.sidecar["embedding"])
    return projection.project(pooled_features(classifier.model, x)), decoded.good_rows


def _embedding_neighbours(h: HeldOut, classifier, config: ModelConfig, catalog: Catalog, train: np.ndarray) -> None:
    """``h.knn_labels``: for each held-out row, the labels of its ``KNN_K`` nearest labelled
    training galaxies of the same catalog (its labels follow that catalog's rule) by cosine
    similarity of the embeddings: the embedding alone, no classifier head."""
    from sklearn.neighbors import NearestNeighbors

    if "label" not in catalog.table.column_names:
        return
    labels = np.array(catalog.table.column("label").to_pylist(), dtype=object)
    train = train[labels[train] != None]  # noqa: E711 (an object array)
    if len(train) < KNN_K:
        return
    reference, kept = _embed(classifier, config, catalog, train)
    queries = h.embeddings  # the held-out rows' own, from _predict
    # Unit vectors: Euclidean order is cosine order.
    index = NearestNeighbors(n_neighbors=KNN_K).fit(reference)
    _, near = index.kneighbors(queries)
    h.knn_labels = [list(labels[kept][row]) for row in near]


def _views(x: np.ndarray, views: int) -> list[np.ndarray]:
    if views == 1:
        return [x]
    if views != 8:
        raise ValueError(f"views must be 1 or 8 (the dihedral group), got {views}")
    return dihedral_views(x)


def _predict(ensemble: Sequence[dict], config: ModelConfig, name: str, catalog: Catalog, rows: np.ndarray,
             fold: int, views: int = 1) -> HeldOut:
    """``ensemble``: the trained models (by kind) of each member; their class probabilities and
    vote fractions are averaged, everything else is the first member's."""
    trained = ensemble[0]
    spec = config.image
    decoded = decode_images(catalog, rows, spec)
    good = decoded.good_rows
    x = decoded.pixels.astype(np.float32) * np.float32(spec.scale)
    table = catalog.table
    ids = [table.column("object_id")[int(r)].as_py() for r in good]

    def column(c: str) -> list:
        return [table.column(c)[int(r)].as_py() for r in good]

    labels = column("label") if "label" in table.column_names else [None] * len(good)
    out = HeldOut(name, fold, ids, labels, [], failures=len(decoded.failures),
                  captions=column("caption") if "caption" in table.column_names else [None] * len(good))
    if catalog.has_raw_votes:
        out.votes_raw = GZ2_TREE.cumulative(raw_vote_matrix(table.take(good)))
    if "classifier" in trained:
        calibrated, uncalibrated = [], []  # per member, averaged over the views
        for member in ensemble:
            clf = member["classifier"]
            head, record = head_for(clf.sidecar, name)
            model = clf.model if head == 0 else clf.extra_models[record["output"]]
            zs = [logits(model, v, head) for v in _views(x, views)]
            t = record["calibration"]["temperature"]
            calibrated.append(np.mean([softmax(z) for z in zs], axis=0))
            uncalibrated.append(np.mean([softmax(z * t) for z in zs], axis=0))
        out.class_names = list(head_for(trained["classifier"].sidecar, name)[1]["class_names"])
        out.probs, out.probs_uncalibrated = np.mean(calibrated, axis=0), np.mean(uncalibrated, axis=0)
        if len(ensemble) > 1:
            out.member_probs, out.member_probs_uncalibrated = np.stack(calibrated), np.stack(uncalibrated)
        clf = trained["classifier"]
        ood = OodReference.from_dict(clf.sidecar["ood"])
        pooled = pooled_features(clf.model, x)
        out.ood_flag = ood_flags(ood.scores(pooled), central_source_snr(x), 1.0)
        if "embedding" in clf.sidecar:
            out.embeddings = EmbeddingProjection.from_dict(clf.sidecar["embedding"]).project(pooled)
    if "regressor" in trained:
        out.votes_true = kaggle_targets(table.take(good)) if catalog.has_votes else np.full((len(good), 37), np.nan)
        votes = np.stack([np.mean([np.concatenate([np.asarray(member["regressor"].model(v[i:i + 256], training=False))
                                                   for i in range(0, max(len(v), 1), 256)])[:len(v)]
                                   for v in _views(x, views)], axis=0) for member in ensemble])
        out.votes_pred = votes.mean(axis=0)
        if len(ensemble) > 1:
            out.member_votes = votes
    if "captioner" in trained and any(out.captions):
        cap = trained["captioner"]
        parts, tokenizer = captioner_from_train(cap.model), Tokenizer.from_dict(cap.sidecar["tokenizer"])
        learned = [c for i in range(0, len(x), 256) for c in greedy_decode(parts, x[i:i + 256], tokenizer,
                                                                          cap.sidecar["max_len"])]
        choice = cap.sidecar.get("caption_choice", {"source": "learned"})
        out.caption_source = choice["source"]
        if out.caption_source == "template":
            fractions = np.nan_to_num(GZ2_TREE.per_question(out.votes_pred), nan=0.0)
            out.shipped_captions = template_captions(np.asarray(ids, dtype=object), fractions)
        else:
            out.shipped_captions = learned
    return out


def head_for(sidecar: dict, catalog: str) -> tuple[int, dict]:
    """The class head that learnt ``catalog``'s labels (index, record), or the first (exported)
    one for a catalog no head learnt."""
    heads = sidecar.get("class_heads") or [{"class_names": sidecar["class_names"], "output": "probs",
                                            "calibration": sidecar["calibration"], "catalogs": []}]
    return next(((i, h) for i, h in enumerate(heads) if catalog in h["catalogs"]), (0, heads[0]))


def fold_scores(h: HeldOut) -> dict:
    """One catalog × fold: the classification scores over its galaxy classes, artifacts flagged,
    calibration, RMSE both ways, captions."""
    s: dict = {"rows": len(h.object_ids)}
    if h.probs is not None:
        pred = np.array(h.class_names, dtype=object)[h.probs.argmax(axis=1)]
        lab = np.array(h.labels, dtype=object)
        galaxy = np.array([x is not None and x != ARTIFACT for x in lab])
        if galaxy.any():
            classes = [c for c in h.class_names if c in set(lab[galaxy])]
            m = classification_metrics(list(lab[galaxy]), list(pred[galaxy]), h.class_names)
            s.update(accuracy=m["accuracy"], balanced_accuracy=m["balanced_accuracy"],
                     macro_f1=float(np.mean([m["per_class"][c]["f1"] for c in classes])),
                     recall={c: m["per_class"][c]["recall"] for c in classes})
            y = np.array([h.class_names.index(x) for x in lab[galaxy]])
            s["ece_before"] = expected_calibration_error(h.probs_uncalibrated[galaxy], y)
            s["ece_after"] = expected_calibration_error(h.probs[galaxy], y)
            s["ece_floor"] = ece_floor(h.probs[galaxy])
        if h.knn_labels is not None and galaxy.any():
            near = [h.knn_labels[i] for i in np.flatnonzero(galaxy)]
            # majority of the neighbours (ties: the nearest of the tied labels), as a kNN classifier
            voted = [max(dict.fromkeys(n), key=n.count) for n in near]
            truth = list(lab[galaxy])
            knn = classification_metrics(truth, voted, sorted(set(truth) | set(voted)))
            s.update(knn_label_agreement=float(np.mean([n.count(t) / len(n) for n, t in zip(near, truth)])),
                     knn_accuracy=knn["accuracy"], knn_balanced_accuracy=knn["balanced_accuracy"])
        artifact = lab == ARTIFACT
        if artifact.any():
            s["artifacts_flagged"] = float(np.mean((pred[artifact] == ARTIFACT) | h.ood_flag[artifact]))
            s["artifacts"] = int(artifact.sum())
    if h.probs is not None:
        s.update(_strata(h))
    if h.votes_pred is not None and not np.isnan(h.votes_true).all():
        has = ~np.isnan(h.votes_true).all(axis=1)
        r = regression_metrics(h.votes_true[has], h.votes_pred[has])
        s.update(rmse_per_question=r["rmse_per_question"], rmse_kaggle=r["rmse_kaggle"])
        if h.votes_raw is not None and not np.isnan(h.votes_raw).all():  # against what the pixels show
            raw = ~np.isnan(h.votes_raw).all(axis=1)
            s["rmse_kaggle_raw"] = regression_metrics(h.votes_raw[raw], h.votes_pred[raw])["rmse_kaggle"]
    if h.shipped_captions is not None:
        keep = [i for i, c in enumerate(h.captions) if c]
        c = caption_metrics([h.captions[i] for i in keep], [h.shipped_captions[i] for i in keep])
        s.update(bleu4=c["bleu4"], caption_agreement=c["caption_agreement"], caption_source=h.caption_source)
    return s


def _strata(h: HeldOut) -> dict:
    """Accuracy in strata of how well the volunteers back each label (``models.metrics.strata``),
    and the share of rated labels a majority supports: how far the label rule, not the model,
    limits the headline score."""
    pred = np.array(h.class_names, dtype=object)[h.probs.argmax(axis=1)]
    out: dict = {"strata": strata_scores(h.labels, pred, h.class_names, h.votes_true, h.votes_raw)}
    if h.votes_true is not None and not np.isnan(h.votes_true).all():
        support = label_support(h.votes_true, h.labels)
        rated = ~np.isnan(support)
        if rated.any():
            out["supported_share"] = float(np.mean(support[rated] >= SUPPORT_MAJORITY))
    return out


def held_out_table(held_out: Sequence[HeldOut]) -> "pa.Table":
    """Every held-out galaxy's prediction, one row each (catalog, fold, object_id, label,
    label_pred, confidence, ``p_<class>``, label_support): what the scores are computed from,
    for looking at the mistakes. Each catalog is scored by its own label scheme's head, so the
    ``p_<class>`` columns are every head's classes, null where a row's head has no such class."""
    import pyarrow as pa

    rows = [h for h in held_out if h.probs is not None]
    names = list(dict.fromkeys(c for h in rows for c in h.class_names))
    cols: dict = {
        "catalog": [h.catalog for h in rows for _ in h.object_ids],
        "fold": [h.fold for h in rows for _ in h.object_ids],
        "object_id": [i for h in rows for i in h.object_ids],
        "label": [x for h in rows for x in h.labels],
        "label_pred": [h.class_names[i] for h in rows for i in h.probs.argmax(axis=1)],
        "confidence": np.concatenate([h.probs.max(axis=1) for h in rows]) if rows else np.zeros(0),
    }
    for c in names:
        cols[f"p_{c}"] = np.concatenate([h.probs[:, h.class_names.index(c)] if c in h.class_names
                                         else np.full(len(h.object_ids), np.nan) for h in rows])
    support = [label_support(h.votes_true, h.labels) if h.votes_true is not None else np.full(len(h.labels), np.nan)
               for h in rows]
    cols["label_support"] = np.concatenate(support) if support else np.zeros(0)
    types = {"catalog": pa.string(), "fold": pa.int32(), "object_id": pa.string(), "label": pa.string(),
             "label_pred": pa.string()}
    return pa.table({k: pa.array(v, type=types.get(k, pa.float64()), from_pandas=True) for k, v in cols.items()})


def _mean_sd(values: list[float]) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "folds": v.round(4).tolist()}


def _pooled_strata(per_fold: list[dict]) -> dict:
    """Per stratum: galaxies pooled over the folds, accuracy and balanced accuracy as mean ± sd over
    the folds, and each class's recall pooled over the folds with its Wilson 95 % interval."""
    out: dict = {}
    for stratum in [k for k in STRATA if any(k in f for f in per_fold)]:
        folds = [f[stratum] for f in per_fold if stratum in f and f[stratum]["n"]]
        entry: dict = {"n": sum(f[stratum]["n"] for f in per_fold if stratum in f)}
        if folds:
            entry["accuracy"] = _mean_sd([f["accuracy"] for f in folds])
            entry["balanced_accuracy"] = _mean_sd([f["balanced_accuracy"] for f in folds])
            recall = {}
            for c in dict.fromkeys(c for f in folds for c in f["recall"]):
                n = sum(f["recall"][c]["n"] for f in folds if c in f["recall"])
                hits = int(round(sum(f["recall"][c]["recall"] * f["recall"][c]["n"] for f in folds if c in f["recall"])))
                low, high = wilson_interval(hits, n)
                recall[c] = {"recall": hits / n, "n": n, "low": low, "high": high}
            entry["recall"] = recall
        out[stratum] = entry
    return out


def mean_vote_baseline(targets: np.ndarray, folds: np.ndarray) -> dict:
    """RMSE (per question and Kaggle) of predicting the training folds' mean cumulative vote
    fractions for every galaxy of the held-out fold, mean ± sd over the folds: the floor a vote
    model must beat (``evaluate --cv`` and ``bench labels``)."""
    per_fold = []
    for k in np.unique(folds):
        test = folds == k
        mean = np.nanmean(targets[~test], axis=0)
        per_fold.append(regression_metrics(targets[test], np.broadcast_to(mean, targets[test].shape)))
    return {"rmse_per_question": _mean_sd([m["rmse_per_question"] for m in per_fold]),
            "rmse_kaggle": _mean_sd([m["rmse_kaggle"] for m in per_fold])}


def _mean_vote_floors(parts: Sequence[HeldOut]) -> dict:
    """:func:`mean_vote_baseline` over one catalog's held-out folds (the other folds are each
    fold's training galaxies), keyed as ``cv_report`` reports it."""
    voted = [h for h in parts if h.votes_true is not None and not np.isnan(h.votes_true).all()]
    if len(voted) < 2:
        return {}
    floor = mean_vote_baseline(np.concatenate([h.votes_true for h in voted]),
                               np.concatenate([np.full(len(h.votes_true), h.fold) for h in voted]))
    return {"rmse_per_question_floor": floor["rmse_per_question"], "rmse_kaggle_floor": floor["rmse_kaggle"]}


def aggregate_scores(scores: Sequence[dict]) -> dict:
    """One catalog's :func:`fold_scores` over its folds: every score as mean ± sd, recalls per
    class, the strata pooled (``_pooled_strata``), the caption source chosen per fold."""
    entry: dict = {"folds": len(scores), "rows": sum(s["rows"] for s in scores)}
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "ece_before", "ece_after", "ece_floor",
                "artifacts_flagged", "rmse_per_question", "rmse_kaggle", "bleu4", "caption_agreement", "knn_label_agreement",
                "knn_accuracy", "knn_balanced_accuracy", "supported_share", "rmse_kaggle_raw"):
        got = [s[key] for s in scores if s.get(key) is not None]
        if got:
            entry[key] = _mean_sd(got)
    recalls = [s["recall"] for s in scores if "recall" in s]
    if recalls:
        entry["recall"] = {c: _mean_sd([r[c] for r in recalls if c in r]) for c in recalls[0]}
    if any("strata" in s for s in scores):
        entry["strata"] = _pooled_strata([s["strata"] for s in scores if "strata" in s])
    sources = [s["caption_source"] for s in scores if "caption_source" in s]
    if sources:
        entry["caption_source"] = {src: sources.count(src) for src in sorted(set(sources))}
    return entry


def cv_report(held_out: Sequence[HeldOut]) -> dict:
    """Per catalog: every score as mean ± sd over the folds (:func:`aggregate_scores`), the
    mean-vote floors, the pooled confusion matrix (over all its labelled rows, artifacts included)
    and the pooled reliability curve before/after temperature scaling."""
    report: dict = {}
    for name in dict.fromkeys(h.catalog for h in held_out):
        parts = sorted((h for h in held_out if h.catalog == name), key=lambda h: h.fold)
        entry = aggregate_scores([fold_scores(h) for h in parts])
        entry["undecodable"] = sum(h.failures for h in parts)
        entry.update(_mean_vote_floors(parts))
        if parts[0].probs is not None:
            names = parts[0].class_names
            labels = [x for h in parts for x in h.labels]
            pred = [names[i] for h in parts for i in h.probs.argmax(axis=1)]
            keep = [i for i, x in enumerate(labels) if x is not None]
            present = names + sorted({labels[i] for i in keep} - set(names))
            pooled = classification_metrics([labels[i] for i in keep], [pred[i] for i in keep], present)
            entry["confusion_matrix"] = {"labels": present, "matrix": pooled["confusion_matrix"]}
            galaxy = [i for i in keep if labels[i] != ARTIFACT and labels[i] in names]
            y = np.array([names.index(labels[i]) for i in galaxy])
            probs = np.concatenate([h.probs for h in parts])[galaxy]
            raw = np.concatenate([h.probs_uncalibrated for h in parts])[galaxy]
            entry["reliability"] = {"before": {k: v.tolist() for k, v in reliability(raw, y).items()},
                                    "after": {k: v.tolist() for k, v in reliability(probs, y).items()}}
        report[name] = entry
    return report


FOLDS_DIR = "folds"  # under a cross-validation's output folder: one finished fold a file


def catalog_fingerprints(paths: Sequence[Path]) -> dict[str, str]:
    """Each catalog's name (``models.data.catalog_names``) and content fingerprint: what a kept
    fold was made from, wherever the files now are."""
    from catalogs.contract import read_catalog
    from catalogs.fingerprints import catalog_fingerprint
    from models.data import catalog_names

    return {n: catalog_fingerprint(read_catalog(p)) for n, p in zip(catalog_names(paths), paths)}


def fold_path(out: Path, fold: int) -> Path:
    return Path(out) / FOLDS_DIR / f"fold-{fold}.json"


def save_fold(out: Path, fold: int, protocol: dict, held_out: Sequence[HeldOut]) -> Path:
    """Keep one finished fold's predictions under ``out`` with the ``protocol`` they were made
    under: a cross-validation stopped later (hours on 2 cores) resumes from the folds it kept.
    JSON, not pickle: reading a checkpoint runs no code."""
    rows = [{f.name: _plain(getattr(h, f.name)) for f in fields(HeldOut)} for h in held_out]
    fold_path(out, fold).parent.mkdir(parents=True, exist_ok=True)
    # The commit is kept to trace the fold to its code, not compared: a change to the docs or to
    # code the fold never ran must not throw hours of training away.
    kept = {"protocol": protocol, "commit": code_commit(), "held_out": rows}
    return write_text(fold_path(out, fold), json.dumps(kept) + "\n")


def load_fold(out: Path, fold: int, protocol: dict) -> list[HeldOut] | None:
    """The fold :func:`save_fold` kept under ``out``, or None where there is none or it was made
    under another protocol (other catalogs, models, config or settings)."""
    path = fold_path(out, fold)
    if not path.is_file():
        return None
    kept = json.loads(path.read_text())
    # A kept fold written before a config field existed was made with that field's default.
    if recorded_protocol(kept["protocol"]) != recorded_protocol(json.loads(json.dumps(protocol))):
        return None
    return [HeldOut(**{k: _array(v) for k, v in row.items()}) for row in kept["held_out"]]


def fold_commit(out: Path, fold: int) -> str | None:
    """The commit of the code that made the fold kept under ``out`` (None: kept before commits
    were recorded, or no such fold)."""
    path = fold_path(out, fold)
    return json.loads(path.read_text()).get("commit") if path.is_file() else None


def _plain(value):
    """JSON for a HeldOut field: arrays as their dtype and values (NaN as null)."""
    if isinstance(value, np.ndarray):
        data = np.where(np.isnan(value), None, value) if value.dtype.kind == "f" else value
        return {"dtype": value.dtype.str, "data": data.tolist()}
    return value


def _array(value):
    if isinstance(value, dict) and set(value) == {"dtype", "data"}:
        return np.asarray(value["data"], dtype=np.dtype(value["dtype"]))  # null back to NaN
    return value


def write_cv_report(held_out: Sequence[HeldOut], out: Path, protocol: dict) -> dict:
    """Pool ``held_out`` (:func:`cv_report`) and write to ``out``: ``cv.json`` (the ``protocol``:
    k, catalogs, models, config, settings; and the report), ``cv.md``, every held-out prediction
    (``predictions.parquet``) and per catalog the pooled confusion matrix and reliability diagram
    (PNG). Returns what ``cv.json`` holds."""
    import pyarrow.parquet as pq

    from models.metrics import cv_markdown, plot_confusion_matrix, plot_reliability

    k, out = protocol["k"], Path(out)
    report = cv_report(held_out)
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in report.items():
        safe = name.replace("/", "_")
        if "confusion_matrix" in entry:
            cm = entry["confusion_matrix"]
            plot_confusion_matrix(cm["matrix"], cm["labels"], out / f"confusion_{safe}.png",
                                  f"{name}: {k}-fold cross-validation, pooled")
            plot_reliability(entry["reliability"], out / f"reliability_{safe}.png",
                             f"{name}: calibration of the classifier ({k}-fold, pooled)")
    summary = {**protocol, "report": report}
    write_text(out / "cv.json", json.dumps(summary, indent=2, default=float) + "\n")
    with atomic_path(out / "predictions.parquet") as tmp:
        pq.write_table(held_out_table(held_out), tmp)
    write_text(out / "cv.md", cv_markdown(report, k))
    return summary
