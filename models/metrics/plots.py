"""Plots of the metrics: the confusion matrix, the reliability diagram and Keras training curves,
as PNG files.

Figures are :class:`matplotlib.figure.Figure` objects with the Agg canvas attached explicitly, so
nothing here touches ``pyplot``'s global state or needs a display. :func:`confusion_matrix_figure`
and :func:`training_curves_figure` return the figure unsaved, so that a caller (or a test) can
inspect the axes before :func:`plot_confusion_matrix` / :func:`plot_training_curves` write it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from catalogs.atomic import atomic_path

__all__ = [
    "confusion_matrix_figure",
    "plot_confusion_matrix",
    "plot_reliability",
    "plot_training_curves",
    "reliability_figure",
    "training_curves_figure",
]


def _new_figure(**kwargs) -> Figure:
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)  # draw with Agg; pyplot and its display backends are never involved
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


# ============================================================================================
# Confusion matrix
# ============================================================================================


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


# ============================================================================================
# Training curves
# ============================================================================================


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


# ============================================================================================
# Reliability diagram
# ============================================================================================


def reliability_figure(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> Figure:
    """Accuracy against mean confidence per confidence bin, one line per curve (e.g. ``before``
    and ``after`` temperature scaling: ``models.calibration.reliability`` dicts), beside the
    diagonal of perfect calibration, with the rows per bin below."""
    fig = _new_figure(figsize=(5.5, 6.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfectly calibrated")
    width = None
    for name, curve in curves.items():
        conf = np.asarray(curve["confidence"], dtype=np.float64)
        acc = np.asarray(curve["accuracy"], dtype=np.float64)
        used = np.asarray(curve["count"]) > 0
        top.plot(conf[used], acc[used], marker="o", label=name)
        edges = np.asarray(curve["edges"], dtype=np.float64)
        width = np.diff(edges)
        centres = edges[:-1] + width / 2
        bottom.bar(centres, curve["count"], width=width, alpha=0.5, label=name)
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left")
    bottom.set_xlabel("confidence (top probability)")
    bottom.set_ylabel("rows")
    if title:
        top.set_title(title)
    return fig


def plot_reliability(curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | Path, title: str = "") -> Path:
    return _save(reliability_figure(curves, title), path)
