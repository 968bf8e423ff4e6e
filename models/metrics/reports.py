"""Metric dicts as reports: the layout of ``metrics.json``, the file itself, and a markdown table.

:func:`combine_metrics` puts the results of the functions in :mod:`models.metrics.scores` into one
dict — the :data:`HEADLINE_KEYS` first, then one detail section per model kind. It lives here, not
with the maths, because that order *is* the report layout that :func:`write_metrics_json` and
:func:`metrics_markdown` apply again to any dict they are given.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from catalogs.atomic import write_text

__all__ = [
    "HEADLINE_KEYS",
    "SECTIONS",
    "combine_metrics",
    "metrics_markdown",
    "write_metrics_json",
]

#: Top-level keys of ``metrics.json``, in this order, each written when its section is present.
HEADLINE_KEYS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "weighted_f1",
    "rmse",
    "bleu1",
    "bleu2",
    "bleu3",
    "bleu4",
    "caption_agreement",
)

#: Names of the detail sections of a combined metrics dict (see :func:`combine_metrics`).
SECTIONS: tuple[str, ...] = ("classification", "regression", "captions")


def combine_metrics(
    classification: Mapping | None = None,
    regression: Mapping | None = None,
    captions: Mapping | None = None,
) -> dict:
    """One metrics dict: the available :data:`HEADLINE_KEYS` at the top, then the full result of
    each given metric function under ``classification`` / ``regression`` / ``captions``."""
    metrics: dict[str, Any] = {}
    for name, section in zip(SECTIONS, (classification, regression, captions)):
        if section is not None:
            metrics[name] = dict(section)
    return _with_headline(metrics)


def _with_headline(metrics: Mapping) -> dict:
    """Headline keys first (in :data:`HEADLINE_KEYS` order; a top-level value wins, else the value
    found in a known section), then the known sections, then anything else in its given order."""
    out: dict[str, Any] = {}
    for key in HEADLINE_KEYS:
        if key in metrics:
            out[key] = metrics[key]
            continue
        for name in SECTIONS:
            section = metrics.get(name)
            if isinstance(section, Mapping) and key in section:
                out[key] = section[key]
                break
    for name in SECTIONS:
        if name in metrics:
            out[name] = metrics[name]
    for key, value in metrics.items():
        if key not in out:
            out[key] = value
    return out


# ============================================================================================
# metrics.json
# ============================================================================================


def _json_safe(value: Any) -> Any:
    """numpy scalars/arrays, tuples, sets and paths → JSON types; NaN/±inf → None."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_json_safe(v) for v in sorted(value, key=str)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot write {type(value).__name__} to metrics JSON: {value!r}")


def write_metrics_json(metrics: Mapping, path: str | Path) -> Path:
    """Write ``metrics`` as strict JSON (UTF-8, indented, NaN → null) and return the path.

    ``metrics`` is a :func:`combine_metrics` dict, or any dict with the sections
    ``classification`` / ``regression`` / ``captions`` and/or headline keys at the top; the file
    starts with every available key of :data:`HEADLINE_KEYS`, in that order, followed by the
    detail sections. Key order is deterministic (insertion order of the metric functions, e.g.
    per-class entries follow ``labels``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(_with_headline(metrics)), indent=2, allow_nan=False, ensure_ascii=False)
    write_text(path, text + "\n")
    return path


# ============================================================================================
# Markdown
# ============================================================================================


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, (float, np.floating)):
        return "–" if not math.isfinite(float(value)) else f"{float(value):.4f}"
    return str(value).replace("|", r"\|")


def metrics_markdown(metrics: Mapping) -> str:
    """A compact markdown report (for a Prefect artifact or a README): the headline numbers, then —
    when a classification section is present — per-class precision/recall/F1/support and the
    confusion matrix with labelled rows (true) and columns (predicted)."""
    metrics = _with_headline(metrics)
    lines: list[str] = []
    headline = [k for k in HEADLINE_KEYS if k in metrics]
    if headline:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {_cell(metrics[k])} |" for k in headline]
    cls = metrics.get("classification")
    if isinstance(cls, Mapping) and "per_class" in cls:
        labels = list(cls.get("labels", cls["per_class"]))
        lines += ["", "| class | precision | recall | f1 | support |", "|---|---:|---:|---:|---:|"]
        for label in labels:
            row = cls["per_class"][label]
            lines.append(
                f"| {_cell(label)} | {_cell(row['precision'])} | {_cell(row['recall'])} | "
                f"{_cell(row['f1'])} | {_cell(row['support'])} |"
            )
        if "confusion_matrix" in cls:
            lines += [
                "",
                "| true \\ predicted | " + " | ".join(_cell(label) for label in labels) + " |",
                "|---|" + "---:|" * len(labels),
            ]
            for label, counts in zip(labels, cls["confusion_matrix"]):
                lines.append(f"| {_cell(label)} | " + " | ".join(str(int(c)) for c in counts) + " |")
    return "\n".join(lines) + "\n"


# The cross-validated scores of ``models.crossval.cv_report``, in the order a reader wants them.
CV_ROWS = (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"), ("macro_f1", "macro F1"),
           ("artifacts_flagged", "artifacts flagged (class or ood_flag)"),
           ("rmse_per_question", "RMSE, per-question vote fractions"),
           ("rmse_kaggle", "RMSE, Kaggle definition (cumulative, 37 answers)"),
           ("bleu4", "BLEU-4 of the shipped captions"), ("caption_agreement", "caption agreement"),
           ("ece_before", "ECE (15 bins) before temperature scaling"), ("ece_after", "ECE after temperature scaling"),
           ("ece_floor", "ECE a perfectly calibrated model with these confidences shows on as many galaxies"),
           ("knn_label_agreement", "embedding: share of the 10 nearest training galaxies with the galaxy's label"),
           ("knn_accuracy", "embedding: 10-NN classifier accuracy"),
           ("knn_balanced_accuracy", "embedding: 10-NN classifier balanced accuracy"),
           ("supported_share", "share of labels a majority of volunteers supports (cumulative votes ≥ 0.5)"),
           ("rmse_per_question_floor", "mean-vote floor, RMSE per question"),
           ("rmse_kaggle_floor", "mean-vote floor, RMSE (Kaggle definition)"),
           ("rmse_kaggle_raw", "RMSE (Kaggle definition) against the raw, not debiased, votes"))
STRATA_LABELS = {"all": "all labels", "supported": "supported (debiased votes ≥ 0.5)",
                 "visible": "visible (raw and debiased votes ≥ 0.5)", "confident": "confident (debiased votes ≥ 0.8)"}


def _pm(entry: Mapping) -> str:
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def _strata_lines(strata: Mapping) -> list[str]:
    """Table rows per stratum: its galaxies, accuracy, balanced accuracy, and each class's pooled
    recall with its count and Wilson 95 % interval."""
    lines = []
    for stratum, e in strata.items():
        if "accuracy" not in e:
            continue
        recalls = ", ".join(f"{c} {r['recall']:.2f} [{r['low']:.2f}, {r['high']:.2f}] (n={r['n']})"
                            for c, r in e["recall"].items())
        lines += [f"| {STRATA_LABELS[stratum]}: accuracy (n = {e['n']}) | {_pm(e['accuracy'])} |",
                  f"| {STRATA_LABELS[stratum]}: balanced accuracy | {_pm(e['balanced_accuracy'])} |",
                  f"| {STRATA_LABELS[stratum]}: recall [Wilson 95 %] | {recalls} |"]
    return lines


def cv_markdown(report: Mapping, k: int) -> str:
    """One table per catalog: every cross-validated score as mean ± sd over the ``k`` folds, the
    per-class recalls, the shipped caption source per fold, then the pooled confusion matrix."""
    lines: list[str] = []
    for name, entry in report.items():
        lines += [f"### {name}: {entry['rows']} galaxies, {k}-fold cross-validation (every galaxy tested once)", "",
                  "| metric | mean ± sd over folds |", "|---|---:|"]
        lines += [f"| {label} | {_pm(entry[key])} |" for key, label in CV_ROWS if key in entry]
        lines += [f"| recall, {c} | {_pm(v)} |" for c, v in entry.get("recall", {}).items()]
        lines += _strata_lines(entry.get("strata", {}))
        if "caption_source" in entry:
            lines.append("| caption source chosen (folds) | "
                         + ", ".join(f"{s} {n}" for s, n in entry["caption_source"].items()) + " |")
        if "confusion_matrix" in entry:
            labels, matrix = entry["confusion_matrix"]["labels"], entry["confusion_matrix"]["matrix"]
            lines += ["", "| true \\ predicted (pooled) | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels)]
            lines += [f"| {label} | " + " | ".join(str(int(c)) for c in row) + " |" for label, row in zip(labels, matrix)]
        lines.append("")
    return "\n".join(lines)
