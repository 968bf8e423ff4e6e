"""Evaluating trained models on a catalog: predictions in Keras, scores from ``models.metrics``.

When the catalog is the one the models were trained on (same fingerprint), only its held-out
``test`` split is scored; any other catalog is scored whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from catalogs.captions import template_captions
from catalogs.atomic import write_text
from catalogs.contract import Catalog, read_catalog
from catalogs.fingerprints import catalog_fingerprint
from catalogs.targets import kaggle_targets
from catalogs.tokenizer import Tokenizer
from catalogs.tree import GZ2_TREE
from models.artifacts import catalogs_trained_on, load_trained
from models.calibration import expected_calibration_error, reliability, softmax
from models.captioner import captioner_from_train, greedy_decode
from models.config import ModelConfig
from models.data import assign_splits, decode_images
from models.errors import ArtifactError
from models.train import MODEL_KINDS
from models.metrics import (
    caption_metrics,
    classification_metrics,
    combine_metrics,
    metrics_markdown,
    plot_confusion_matrix,
    plot_reliability,
    regression_metrics,
    write_metrics_json,
)


def trained_on(catalog: Catalog, sidecar: dict) -> bool:
    """Whether the model of ``sidecar`` was trained on ``catalog`` (by fingerprint)."""
    return catalog_fingerprint(catalog) in [c["fingerprint"] for c in catalogs_trained_on(sidecar)]


def split_rows(catalog: Catalog, sidecar: dict, which: str) -> np.ndarray:
    """The rows of ``catalog`` in split ``which`` (``train``, ``val``, ``test``) of the training
    recorded in ``sidecar``."""
    split = sidecar["split"]
    ids = catalog.table.column("object_id").to_pylist()
    return np.flatnonzero(assign_splits(ids, split["val_fraction"], split["test_fraction"], split["salt"]) == which)


def evaluation_rows(catalog: Catalog, sidecar: dict) -> tuple[np.ndarray, str]:
    """Rows to score and a word on why: the test split of a catalog the models trained on, else all."""
    if trained_on(catalog, sidecar):
        return split_rows(catalog, sidecar, "test"), "held-out test split of the training catalog"
    return np.arange(len(catalog)), "whole catalog (not the training catalog)"


def _images(catalog: Catalog, rows: np.ndarray, sidecar: dict):
    spec = ModelConfig.from_dict(sidecar["config"]).image
    return decode_images(catalog, rows, spec)


def evaluate_classifier(model, sidecar: dict, catalog: Catalog) -> dict:
    rows, scope = evaluation_rows(catalog, sidecar)
    labels = catalog.table.column("label").to_pylist()
    rows = np.array([r for r in rows if labels[r] is not None], dtype=np.int64)
    dec = _images(catalog, rows, sidecar)
    names = list(sidecar["class_names"])
    probs = model.predict(dec.dataset.batch(64), verbose=0)
    y_true = [labels[r] for r in dec.good_rows]
    y_pred = [names[i] for i in probs.argmax(axis=1)]
    # Classes the catalog has but the model does not predict still get their row of the matrix.
    all_labels = names + sorted(set(y_true) - set(names))
    out = classification_metrics(y_true, y_pred, all_labels)
    out.update(scope=scope, undecodable=len(dec.failures))
    known = np.array([t in names for t in y_true])
    if known.any():  # calibration: the probabilities as shipped, and before the temperature
        y = np.array([names.index(t) for t in np.asarray(y_true, dtype=object)[known]])
        temperature = (sidecar.get("calibration") or {}).get("temperature", 1.0)
        raw = softmax(np.log(np.clip(probs[known], 1e-30, None)) * temperature)
        out.update(ece=expected_calibration_error(probs[known], y), ece_before_temperature=expected_calibration_error(raw, y),
                   reliability={"before": {k: v.tolist() for k, v in reliability(raw, y).items()},
                                "after": {k: v.tolist() for k, v in reliability(probs[known], y).items()}})
    return out


def evaluate_regressor(model, sidecar: dict, catalog: Catalog) -> tuple[dict, np.ndarray, np.ndarray]:
    """Scores plus the rows and predicted cumulative vote fractions (for the caption baseline)."""
    rows, scope = evaluation_rows(catalog, sidecar)
    targets = kaggle_targets(catalog.table)
    dec = _images(catalog, rows, sidecar)
    pred = model.predict(dec.dataset.batch(64), verbose=0)
    out = regression_metrics(targets[dec.good_rows], pred)
    out.update(scope=scope, undecodable=len(dec.failures))
    return out, dec.good_rows, pred


def evaluate_captioner(model, sidecar: dict, catalog: Catalog) -> tuple[dict, list[str], list[str], np.ndarray]:
    rows, scope = evaluation_rows(catalog, sidecar)
    captions = catalog.table.column("caption").to_pylist()
    rows = np.array([r for r in rows if captions[r]], dtype=np.int64)
    dec = _images(catalog, rows, sidecar)
    models = captioner_from_train(model)
    tokenizer = Tokenizer.from_dict(sidecar["tokenizer"])
    hyps: list[str] = []
    for batch in dec.dataset.batch(64):
        hyps += greedy_decode(models, batch.numpy(), tokenizer, sidecar["max_len"])
    refs = [captions[r] for r in dec.good_rows]
    out = caption_metrics(refs, hyps)
    out.update(scope=scope, undecodable=len(dec.failures))
    return out, refs, hyps, dec.good_rows


def template_baseline(catalog: Catalog, rows: np.ndarray, predicted_cumulative: np.ndarray) -> dict:
    """The honest baseline: template captions written from the regressor's predicted votes,
    scored against the reference captions of the same rows."""
    ids = np.asarray(catalog.table.column("object_id").to_pylist(), dtype=object)[rows]
    fractions = np.nan_to_num(GZ2_TREE.per_question(predicted_cumulative), nan=0.0)
    hyps = template_captions(ids, fractions)
    refs = catalog.table.column("caption").to_pylist()
    keep = [i for i, r in enumerate(rows) if refs[r]]
    return caption_metrics([refs[rows[i]] for i in keep], [hyps[i] for i in keep])


def pick_caption_source(scores: dict) -> str:
    """The caption source with the higher BLEU-4; caption agreement breaks a tie, then the
    learned captioner (it was trained to describe these pixels)."""
    order = ("learned", "template")
    return max(order, key=lambda k: (scores[k]["bleu4"], scores[k]["caption_agreement"], -order.index(k)))


def choose_caption_source(catalogs, names, regressor, captioner, captioner_sidecar: dict,
                          test_masks=None) -> dict:
    """Which captions annotation should write, measured on the validation galaxies the captioner
    was trained beside (never its training rows): the learned captioner's, or the templates
    written from the regressor's predicted votes. The higher BLEU-4 wins (caption agreement
    breaks a tie); both scores are kept, so the choice can be checked and follows the data."""
    settings = captioner_sidecar["settings"]
    spec = ModelConfig.from_dict(captioner_sidecar["config"]).image
    parts = captioner_from_train(captioner)
    tokenizer = Tokenizer.from_dict(captioner_sidecar["tokenizer"])
    refs, learned, template = [], [], []
    for i, catalog in enumerate(catalogs):
        table = catalog.table
        if "caption" not in table.column_names:
            continue
        ids = table.column("object_id").to_pylist()
        split = assign_splits(ids, settings["val_fraction"], settings["test_fraction"] if test_masks is None else 0.0)
        if test_masks is not None:
            split = np.where(test_masks[i], "test", split)
        captions = table.column("caption").to_pylist()
        rows = np.array([r for r in np.flatnonzero(split == "val") if captions[r]], dtype=np.int64)
        dec = decode_images(catalog, rows, spec)
        x = dec.pixels.astype(np.float32) * np.float32(spec.scale)
        for start in range(0, len(x), 256):
            batch = x[start:start + 256]
            learned += greedy_decode(parts, batch, tokenizer, captioner_sidecar["max_len"])
            votes = np.asarray(regressor(batch, training=False))
            fractions = np.nan_to_num(GZ2_TREE.per_question(votes), nan=0.0)
            template += template_captions(np.asarray(ids, dtype=object)[dec.good_rows[start:start + 256]], fractions)
        refs += [captions[r] for r in dec.good_rows]
    if not refs:
        return {"source": "learned", "reason": "no validation galaxies with captions to compare on", "rows": 0}
    scores = {name: caption_metrics(refs, hyps) for name, hyps in (("learned", learned), ("template", template))}
    source = pick_caption_source(scores)
    return {"source": source, "rows": len(refs), "split": "validation",
            "scores": {k: {"bleu4": round(v["bleu4"], 4), "caption_agreement": round(v["caption_agreement"], 4)}
                       for k, v in scores.items()}}


def score_models(models_dir: Path, catalog_path: Path, out: Path) -> dict:
    """Score every trained model in ``models_dir`` that ``catalog_path`` has targets for (its
    held-out split when it trained them); writes ``metrics.json``, the confusion matrix and
    reliability diagram (PNG) and the captions beside their references (``captions.tsv``) to
    ``out``; returns the metrics."""
    out = Path(out)
    catalog = read_catalog(catalog_path)
    present = [k for k in MODEL_KINDS if (Path(models_dir) / f"{k}.keras").is_file()]
    if not present:
        raise ArtifactError(f"no trained models (classifier/regressor/captioner .keras) in {models_dir}")
    out.mkdir(parents=True, exist_ok=True)
    parts: dict = {}
    predicted_votes = None
    if "classifier" in present and "label" in catalog.table.column_names:
        parts["classification"] = evaluate_classifier(*load_trained(models_dir, "classifier"), catalog)
        c = parts["classification"]
        plot_confusion_matrix(c["confusion_matrix"], c["labels"], out / "confusion_matrix.png",
                              f"classifier on {Path(catalog_path).name} ({c['scope']})")
        if "reliability" in c:
            plot_reliability(c.pop("reliability"), out / "reliability.png",
                             f"calibration of the classifier on {Path(catalog_path).name}")
    if "regressor" in present and catalog.has_votes:
        parts["regression"], rows, pred = evaluate_regressor(*load_trained(models_dir, "regressor"), catalog)
        predicted_votes = (rows, pred)
    if "caption" in catalog.table.column_names:
        if "captioner" in present:
            parts["captions"], refs, hyps, _ = evaluate_captioner(*load_trained(models_dir, "captioner"), catalog)
            write_text(out / "captions.tsv",
                       "reference\thypothesis\n" + "".join(f"{r}\t{h}\n" for r, h in zip(refs, hyps)))
        if predicted_votes is not None:
            parts["template_baseline"] = template_baseline(catalog, *predicted_votes)
    metrics = combine_metrics(**{k: v for k, v in parts.items() if k in ("classification", "regression", "captions")})
    if "template_baseline" in parts:
        metrics["template_baseline"] = parts["template_baseline"]
    write_metrics_json(metrics, out / "metrics.json")
    return metrics


def evaluation_markdown(metrics: dict) -> str:
    """The report of :func:`score_models` (``metrics.md``)."""
    markdown = metrics_markdown(metrics)
    cls, reg = metrics.get("classification", {}), metrics.get("regression", {})
    if "ece" in cls:
        markdown += (f"\nExpected calibration error (15 bins): {cls['ece']:.3f} "
                     f"({cls['ece_before_temperature']:.3f} before the temperature)\n")
    if reg.get("rmse_per_question") is not None:
        markdown += (f"\nRMSE of the per-question vote fractions: {reg['rmse_per_question']:.4f}; Kaggle definition "
                     f"(cumulative, 37 answers): {reg['rmse_kaggle']:.4f}\n")
    baseline = metrics.get("template_baseline")
    if baseline:
        markdown += (f"\n\nTemplate captions from the regressor's predicted votes (baseline): "
                     f"BLEU-4 {baseline['bleu4']:.3f}, feature agreement {baseline['caption_agreement']:.3f}")
    return markdown
