"""The web demo's pictures, all drawn by matplotlib: the Grad-CAM overlay, the class
probabilities, the vote fractions grouped by GZ2 question, class counts and the confidence
histogram. Figures are ``matplotlib.figure.Figure`` objects, never pyplot's global state, so
concurrent sessions of the app cannot draw into each other's figure.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from catalogs.tree import GZ2_TREE

CAM_COLORMAP = "jet"
# Opacity of the heat map over the image: the galaxy stays visible beneath it.
CAM_ALPHA = 0.45
_PREDICTED, _OTHER = "tab:orange", "tab:blue"


def normalised_cam(cam: np.ndarray, side: int) -> np.ndarray:
    """A raw Grad-CAM map (h, w), ≥ 0, upsampled bilinearly to ``side``×``side`` and divided by its
    maximum (all zeros when the map holds no heat)."""
    from PIL import Image

    m = np.asarray(cam, dtype=np.float32)
    if m.ndim != 2 or not np.isfinite(m).all() or (m < 0).any():
        raise ValueError(f"expected a finite, non-negative (h, w) Grad-CAM map, got shape {m.shape}")
    up = np.asarray(Image.fromarray(m).resize((side, side), Image.Resampling.BILINEAR))
    peak = float(up.max())
    return up / peak if peak > 0 else np.zeros_like(up)


def cam_overlay(rgb: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """The model's view ``rgb`` (S, S, 3) uint8 with its normalised Grad-CAM map drawn over it
    in ``CAM_COLORMAP`` at ``CAM_ALPHA`` opacity; uint8 (S, S, 3)."""
    image = np.asarray(rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
        raise ValueError(f"expected a square RGB image (S, S, 3), got {image.shape}")
    heat = normalised_cam(cam, image.shape[0])
    colours = colormaps[CAM_COLORMAP](heat)[..., :3]
    blended = image.astype(np.float32) / 255.0 * (1.0 - CAM_ALPHA) + colours * CAM_ALPHA
    return np.clip(np.rint(blended * 255.0), 0, 255).astype(np.uint8)


def probabilities_figure(class_names: Sequence[str], probs: np.ndarray) -> Figure:
    """Horizontal bars of the class probabilities, the predicted class highlighted."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(class_names),):
        raise ValueError(f"expected {len(class_names)} probabilities, got shape {p.shape}")
    fig = Figure(figsize=(5, 0.45 * len(class_names) + 0.8), layout="constrained")
    ax = fig.subplots()
    colours = [_PREDICTED if i == int(np.argmax(p)) else _OTHER for i in range(len(p))]
    y = np.arange(len(p))[::-1]  # first class on top
    ax.barh(y, p, color=colours)
    ax.set_yticks(y, list(class_names))
    ax.bar_label(ax.containers[0], labels=[f"{v:.2f}" for v in p], padding=3)
    ax.set_xlim(0, 1.15)
    ax.set_xlabel("probability")
    ax.set_title("Class probabilities")
    return fig


def votes_figure(votes: np.ndarray) -> Figure:
    """The 37 per-question vote fractions (tree order, NaN where not reached), one panel per GZ2
    question, titled with its question."""
    v = np.asarray(votes, dtype=np.float64)
    if v.shape != (len(GZ2_TREE),):
        raise ValueError(f"expected {len(GZ2_TREE)} vote fractions, got shape {v.shape}")
    columns = 3
    rows = -(-len(GZ2_TREE.questions) // columns)
    fig = Figure(figsize=(12, 2.3 * rows), layout="constrained")
    axes = fig.subplots(rows, columns).ravel()
    for ax, (question, sl) in zip(axes, GZ2_TREE.question_slices):
        block = v[sl]
        names = [a.text for a in question.answers]
        y = np.arange(len(names))[::-1]
        ax.set_title("\n".join(textwrap.wrap(f"{question.key}: {question.text}", 48)), fontsize=8, loc="left")
        ax.set_yticks(y, names, fontsize=8)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=7)
        if np.isnan(block).all():
            ax.text(0.5, 0.5, "not reached", transform=ax.transAxes, ha="center", va="center", color="grey")
            continue
        ax.barh(y, np.nan_to_num(block), color=_OTHER)
    for ax in axes[len(GZ2_TREE.questions):]:
        ax.set_axis_off()
    fig.suptitle("Predicted GZ2 vote fractions, per question", fontsize=10)
    return fig


def class_counts_figure(labels: Sequence[str], counts: Sequence[int]) -> Figure:
    """Bars of objects per predicted class."""
    if len(labels) != len(counts):
        raise ValueError(f"{len(labels)} labels but {len(counts)} counts")
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    bars = ax.bar(list(labels), list(counts), color=_OTHER)
    ax.bar_label(bars, padding=2)
    ax.set_ylabel("objects")
    ax.set_title("Objects per predicted class")
    ax.tick_params(axis="x", labelrotation=30)
    return fig


def confidence_figure(confidence: np.ndarray, bins: int = 20) -> Figure:
    """Histogram of the predicted class's probability over [0, 1]."""
    fig = Figure(figsize=(5, 3), layout="constrained")
    ax = fig.subplots()
    ax.hist(np.asarray(confidence, dtype=np.float64), bins=bins, range=(0, 1), color=_OTHER)
    ax.set_xlabel("confidence (probability of the predicted class)")
    ax.set_ylabel("objects")
    ax.set_title("Confidence")
    return fig
