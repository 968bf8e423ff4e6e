"""Evaluation metrics for the three morphcat models, plus their reports and plots.

* :mod:`~models.metrics.scores` — the maths: classification, regression RMSE and caption
  BLEU/agreement, as pure functions returning plain dicts.
* :mod:`~models.metrics.reports` — those dicts combined and written as ``metrics.json`` or markdown.
* :mod:`~models.metrics.plots` — confusion-matrix, reliability and training-curve figures (matplotlib, Agg).

Every name is re-exported here. The plotting names load :mod:`~models.metrics.plots` on first
use, so that scoring alone never pays for importing matplotlib.
"""

from __future__ import annotations

import importlib

from models.metrics.reports import (
    HEADLINE_KEYS,
    SECTIONS,
    combine_metrics,
    cv_markdown,
    metrics_markdown,
    write_metrics_json,
)
from models.metrics.scores import (
    BLEU_ORDERS,
    BLEU_SMOOTH_METHOD,
    caption_agreement,
    caption_metrics,
    classification_metrics,
    normalise_caption,
    regression_metrics,
)

_PLOTS = ("confusion_matrix_figure", "plot_confusion_matrix", "plot_reliability", "plot_training_curves",
          "reliability_figure", "training_curves_figure")

__all__ = [
    "BLEU_ORDERS",
    "BLEU_SMOOTH_METHOD",
    "HEADLINE_KEYS",
    "SECTIONS",
    "caption_agreement",
    "caption_metrics",
    "classification_metrics",
    "combine_metrics",
    "cv_markdown",
    "metrics_markdown",
    "normalise_caption",
    "regression_metrics",
    "write_metrics_json",
    *_PLOTS,
]


def __getattr__(name: str):
    # PEP 562: `from models.metrics import plot_confusion_matrix` lands here the first time.
    if name in _PLOTS:
        return getattr(importlib.import_module("models.metrics.plots"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
