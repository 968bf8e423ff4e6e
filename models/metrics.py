"""Evaluation metrics for the three morphcat models, plus their plots and reports.

* :func:`classification_metrics` — scikit-learn accuracy, balanced accuracy, macro/weighted F1,
  per-class precision/recall/F1/support and the confusion matrix, all in the order of ``labels``.
* :func:`regression_metrics` — the Kaggle Galaxy Challenge RMSE over the 37 GZ2 answers (NaN
  targets masked) and the RMSE of each answer, keyed by ``GZ2_TREE.output_names``.
* :func:`caption_metrics` — sacreBLEU corpus BLEU-1..4 (0–1 scale) on captions normalised by one
  function (:func:`normalise_caption`), and *caption agreement*: how many of the reference
  caption's facts (:func:`catalogs.captions.facts_from_caption`) the generated caption repeats.

The metric functions are pure: they read only their arguments and return plain dicts. File output
lives apart, in :func:`plot_confusion_matrix`, :func:`plot_training_curves` and
:func:`write_metrics_json`; :func:`metrics_markdown` returns a string.

Plots are drawn on a :class:`matplotlib.figure.Figure` with the Agg canvas attached explicitly, so
nothing here touches ``pyplot``'s global state or needs a display. :func:`confusion_matrix_figure`
and :func:`training_curves_figure` return the figure unsaved, so that a caller (or a test) can
inspect the axes before it is written.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sacrebleu.metrics import BLEU
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from catalogs.captions import FACT_KEYS, facts_from_caption
from catalogs.tree import GZ2_TREE

__all__ = [
    "BLEU_ORDERS",
    "BLEU_SMOOTH_METHOD",
    "HEADLINE_KEYS",
    "SECTIONS",
    "caption_agreement",
    "caption_metrics",
    "classification_metrics",
    "combine_metrics",
    "confusion_matrix_figure",
    "metrics_markdown",
    "normalise_caption",
    "plot_confusion_matrix",
    "plot_training_curves",
    "regression_metrics",
    "training_curves_figure",
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

# ============================================================================================
# Classification
# ============================================================================================


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]) -> dict:
    """Classifier scores with every per-class quantity in the order of ``labels``.

    Returns ``labels``, ``n_samples``, ``accuracy``, ``balanced_accuracy`` (mean recall over the
    classes present in ``y_true``), ``macro_f1`` (unweighted mean F1 over *all* ``labels``, so a
    class that never occurs counts as F1 = 0), ``weighted_f1`` (support-weighted),
    ``per_class`` (label → precision, recall, f1, support) and ``confusion_matrix`` — a nested list,
    row *i* = true ``labels[i]``, column *j* = predicted ``labels[j]``.

    Undefined ratios (a class never predicted, or never present) are 0, never an error
    (``zero_division=0``). A value of ``y_true`` or ``y_pred`` that is not in ``labels`` is a
    ``ValueError``: the confusion matrix would silently drop it.
    """
    labels = [str(label) for label in labels]
    if not labels:
        raise ValueError("labels must name at least one class")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be unique, got {labels}")
    y_true = [str(y) for y in y_true]
    y_pred = [str(y) for y in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"got {len(y_true)} true labels but {len(y_pred)} predictions")
    if not y_true:
        raise ValueError("classification metrics need at least one sample")
    unknown = sorted((set(y_true) | set(y_pred)) - set(labels))
    if unknown:
        raise ValueError(f"values {unknown} are not in labels {labels}")

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels)
    return {
        "labels": labels,
        "n_samples": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": float(_balanced_accuracy(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0)),
        "per_class": {
            label: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.astype(int).tolist(),
    }


def _balanced_accuracy(y_true: list[str], y_pred: list[str]) -> float:
    """sklearn's balanced accuracy; its warning about predicted classes that are absent from
    ``y_true`` (they are left out of the mean, as documented) is expected here, not news."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        return balanced_accuracy_score(y_true, y_pred)


# ============================================================================================
# Regression (GZ2 vote fractions)
# ============================================================================================


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """RMSE of predicted GZ2 answers, the Kaggle Galaxy Challenge way.

    ``y_true`` and ``y_pred`` are (N, 37) in ``GZ2_TREE`` order. ``rmse`` is the square root of the
    mean of all squared errors over the N×37 values (not a mean of per-answer RMSEs);
    ``per_answer_rmse`` maps ``GZ2_TREE.output_names`` to each column's RMSE (``None`` for a
    column with no usable target). NaN targets — answers nobody was asked — are left out of both;
    ``n_used`` / ``n_total`` count the values used / given. A NaN or infinite *prediction* at a used
    position is a ``ValueError``, not something to average over.
    """
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    n_out = len(GZ2_TREE)
    if t.ndim != 2 or t.shape[1] != n_out:
        raise ValueError(f"y_true must have shape (N, {n_out}) in GZ2_TREE order, got {t.shape}")
    if p.shape != t.shape:
        raise ValueError(f"y_pred shape {p.shape} does not match y_true shape {t.shape}")
    used = ~np.isnan(t)
    if np.isinf(t[used]).any():
        raise ValueError("y_true contains infinite values")
    if not np.isfinite(p[used]).all():
        raise ValueError("y_pred has NaN or infinite values where the target is known")

    sq = np.where(used, p - np.where(used, t, 0.0), 0.0) ** 2
    n_col = used.sum(axis=0)
    col_sum = sq.sum(axis=0)
    n_used = int(n_col.sum())
    per_answer = {
        name: (float(math.sqrt(col_sum[j] / n_col[j])) if n_col[j] else None)
        for j, name in enumerate(GZ2_TREE.output_names)
    }
    return {
        "rmse": float(math.sqrt(col_sum.sum() / n_used)) if n_used else None,
        "n_used": n_used,
        "n_total": int(t.size),
        "n_samples": int(t.shape[0]),
        "per_answer_rmse": per_answer,
    }


# ============================================================================================
# Captions
# ============================================================================================

#: BLEU orders reported, each computed as its own BLEU with ``max_ngram_order = n`` (uniform
#: weights 1/n over 1..n-grams).
BLEU_ORDERS: tuple[int, ...] = (1, 2, 3, 4)

#: sacreBLEU's default smoothing (Chen & Cherry 2014's "exp", the NIST mteval scheme). At corpus
#: level it only acts when some n-gram order has *no* match in the whole corpus: the k-th such order
#: gets precision 1 / (2^k · total n-grams) instead of 0 — so a corpus without a single matching
#: 4-gram has a small non-zero BLEU-4 rather than exactly 0. Numbers are therefore comparable with
#: any score reported under sacreBLEU's default signature (``smooth:exp``).
BLEU_SMOOTH_METHOD = "exp"

# A word: letters/digits, with inner hyphens or apostrophes kept ("edge-on", "cigar-shaped").
_TOKEN_RE = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*|[^\w\s]|_")
_WORD_RE = re.compile(r"[^\W_]")


def normalise_caption(text: str, *, keep_punctuation: bool = False) -> str:
    """The one tokeniser applied to references *and* hypotheses before BLEU.

    Lower-cases, splits punctuation off words into separate tokens ("galaxy," → "galaxy ,",
    "arms." → "arms ."; inner hyphens stay: "edge-on"), and joins the tokens with single spaces.
    By default the punctuation tokens are then dropped: commas and the final period only separate
    clauses of a template caption, and a captioner that emits none (or emits them as separate
    tokens) says the same thing — "a spiral galaxy, tight arms." and "a spiral galaxy tight arms ."
    both become "a spiral galaxy tight arms". With ``keep_punctuation=True`` they stay as tokens
    ("... galaxy , tight arms .").
    """
    tokens = _TOKEN_RE.findall(text.lower())
    if not keep_punctuation:
        tokens = [tok for tok in tokens if _WORD_RE.search(tok)]
    return " ".join(tokens)


def caption_agreement(references: Sequence[str], hypotheses: Sequence[str]) -> dict:
    """How many of each reference caption's facts the hypothesis states with the same value.

    The facts of a caption are ``facts_from_caption(caption)`` over ``FACT_KEYS``; a reference
    *states* the facts that are not ``None`` (for yes/no features a template caption's silence is a
    stated "no", see :mod:`catalogs.captions`). Per caption the score is
    (#stated facts the hypothesis gives the same value) / (#stated facts) — a hypothesis that
    parses to nothing scores 0, facts the hypothesis adds beyond the reference's are not counted.

    Returns ``caption_agreement`` (mean score over the captions whose reference states at least one
    fact; ``None`` if none does), ``per_fact_agreement`` (per fact key: share of the captions whose
    reference states it where the hypothesis agrees; ``None`` where no reference states it),
    ``per_fact_support`` (how many references state each fact), ``n_captions`` and ``n_scored``.
    """
    references, hypotheses = _paired(references, hypotheses)
    scores: list[float] = []
    agree = dict.fromkeys(FACT_KEYS, 0)
    stated = dict.fromkeys(FACT_KEYS, 0)
    for ref, hyp in zip(references, hypotheses):
        ref_facts = facts_from_caption(ref)
        hyp_facts = facts_from_caption(hyp)
        keys = [k for k in FACT_KEYS if ref_facts.get(k) is not None]
        if not keys:
            continue
        same = [k for k in keys if hyp_facts.get(k) == ref_facts[k]]
        scores.append(len(same) / len(keys))
        for k in keys:
            stated[k] += 1
        for k in same:
            agree[k] += 1
    return {
        "caption_agreement": float(np.mean(scores)) if scores else None,
        "per_fact_agreement": {k: (agree[k] / stated[k] if stated[k] else None) for k in FACT_KEYS},
        "per_fact_support": stated,
        "n_captions": len(references),
        "n_scored": len(scores),
    }


def caption_metrics(
    references: Sequence[str],
    hypotheses: Sequence[str],
    *,
    keep_punctuation: bool = False,
    smooth_method: str = BLEU_SMOOTH_METHOD,
) -> dict:
    """Corpus BLEU-1..4 (0–1) and caption agreement of generated captions against references.

    One reference per hypothesis. Both sides go through :func:`normalise_caption` (same
    ``keep_punctuation``) and sacreBLEU then scores the already-tokenised strings with
    ``tokenize="none"``, so the two can never be split differently. BLEU-n is
    ``sacrebleu.metrics.BLEU(max_ngram_order=n)`` — geometric mean of the 1..n-gram precisions with
    uniform weights, times the brevity penalty, corpus-level (n-gram counts summed over all
    captions), smoothing ``smooth_method`` (default :data:`BLEU_SMOOTH_METHOD`), divided by 100.
    ``bleu_signatures`` keeps sacreBLEU's reproducibility signature of each order.
    """
    references, hypotheses = _paired(references, hypotheses)
    refs = [normalise_caption(r, keep_punctuation=keep_punctuation) for r in references]
    hyps = [normalise_caption(h, keep_punctuation=keep_punctuation) for h in hypotheses]
    out: dict[str, Any] = {}
    signatures: dict[str, str] = {}
    for n in BLEU_ORDERS:
        bleu = BLEU(max_ngram_order=n, tokenize="none", smooth_method=smooth_method, force=True)
        out[f"bleu{n}"] = float(bleu.corpus_score(hyps, [refs]).score / 100.0)
        signatures[f"bleu{n}"] = str(bleu.get_signature())
    agreement = caption_agreement(references, hypotheses)
    out["caption_agreement"] = agreement.pop("caption_agreement")
    out.update(agreement)
    out["tokenisation"] = "normalise_caption: lower-case, punctuation split off" + (
        " and kept as tokens" if keep_punctuation else " and dropped"
    )
    out["bleu_signatures"] = signatures
    return out


def _paired(references: Sequence[str], hypotheses: Sequence[str]) -> tuple[list[str], list[str]]:
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError("references and hypotheses must be sequences of captions, not one string")
    refs, hyps = [str(r) for r in references], [str(h) for h in hypotheses]
    if len(refs) != len(hyps):
        raise ValueError(f"got {len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("caption metrics need at least one caption pair")
    return refs, hyps


# ============================================================================================
# Combining, JSON and markdown
# ============================================================================================


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
    path.write_text(text + "\n", encoding="utf-8")
    return path


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


# ============================================================================================
# Plots
# ============================================================================================


def _new_figure(**kwargs) -> Figure:
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # draw with Agg; pyplot and its display backends are never involved
    return fig


def confusion_matrix_figure(matrix: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], title: str = "") -> Figure:
    """The confusion matrix drawn, unsaved: x = predicted, y = true, tick labels exactly
    ``labels`` (the list the matrix was computed with), cells coloured by the row-normalised share
    (fraction of each true class) and annotated with the counts."""
    counts = np.asarray(matrix)
    labels = [str(label) for label in labels]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {counts.shape}")
    if counts.shape[0] != len(labels):
        raise ValueError(f"{len(labels)} labels for a {counts.shape[0]}×{counts.shape[1]} confusion matrix")
    rows = counts.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)

    k = len(labels)
    size = max(4.0, 1.0 + 0.9 * k)
    fig = _new_figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label="share of true class")
    ax.set_xticks(np.arange(k), labels=labels, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(k), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    return fig


def plot_confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[str], path: str | Path, title: str = ""
) -> Path:
    """Save :func:`confusion_matrix_figure` as a PNG at ``path`` and return the path."""
    return _save(confusion_matrix_figure(matrix, labels, title), path)


def _families(history: Mapping[str, Sequence[float]]) -> dict[str, dict[str, Sequence[float]]]:
    """Group Keras-style history keys by metric: ``loss``/``val_loss`` → family ``loss``."""
    families: dict[str, dict[str, Sequence[float]]] = {}
    for key, values in history.items():
        split = "val" if key.startswith("val_") else "train"
        family = key[4:] if split == "val" else key
        families.setdefault(family, {})[split] = values
    return families


def training_curves_figure(history: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Training curves, unsaved: one subplot per metric family (``loss``, ``accuracy``, ...), the
    train series (``<name>``) and validation series (``val_<name>``) against epoch 1..n."""
    families = {name: series for name, series in _families(history).items() if any(len(v) for v in series.values())}
    if not families:
        raise ValueError("history has no values to plot")
    n = len(families)
    fig = _new_figure(figsize=(4.5 * n, 3.6), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (name, series) in zip(axes, families.items()):
        for split in ("train", "val"):
            values = series.get(split)
            if values is None or not len(values):
                continue
            epochs = np.arange(1, len(values) + 1)
            ax.plot(epochs, np.asarray(values, dtype=np.float64), marker="o", markersize=3,
                    label=split, linestyle="-" if split == "train" else "--")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_training_curves(history: Mapping[str, Sequence[float]], path: str | Path, title: str = "") -> Path:
    """Save :func:`training_curves_figure` as a PNG at ``path`` and return the path."""
    return _save(training_curves_figure(history, title), path)


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=120)
    return path
