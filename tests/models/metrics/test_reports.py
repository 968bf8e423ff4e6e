import json
import math

import numpy as np
import pytest

from catalogs.tree import GZ2_TREE
from models.metrics import (
    HEADLINE_KEYS,
    caption_metrics,
    classification_metrics,
    combine_metrics,
    metrics_markdown,
    regression_metrics,
    write_metrics_json,
)
from tests.models.metrics.samples import REFS, Y_PRED, Y_TRUE, pair

# ============================================================================================
# metrics.json and markdown
# ============================================================================================


def full_metrics() -> dict:
    return combine_metrics(
        classification=classification_metrics(Y_TRUE, Y_PRED, ["merger", "spiral", "elliptical"]),
        regression=regression_metrics(*pair(("p", 0, 0, 0.3), ("t", 1, 36, np.nan))),
        captions=caption_metrics(REFS, REFS[::-1]),
    )


def test_metrics_json_has_the_required_keys_first_and_loads_back(tmp_path):
    metrics = full_metrics()
    metrics["extra"] = {"np_float": np.float32(0.5), "np_int": np.int64(3), "array": np.arange(3),
                        "nan": float("nan"), "tuple": (1, 2), "flag": np.bool_(True)}
    path = write_metrics_json(metrics, tmp_path / "out" / "metrics.json")
    loaded = json.loads(path.read_text(encoding="utf-8"))
    assert list(loaded)[: len(HEADLINE_KEYS)] == list(HEADLINE_KEYS)
    assert list(loaded)[len(HEADLINE_KEYS):] == ["classification", "regression", "captions", "extra"]
    assert loaded["accuracy"] == pytest.approx(4 / 6)
    assert loaded["rmse"] == pytest.approx(math.sqrt(0.09 / 73))
    assert loaded["bleu1"] == metrics["captions"]["bleu1"]
    assert loaded["caption_agreement"] == metrics["captions"]["caption_agreement"]
    assert loaded["classification"]["labels"] == ["merger", "spiral", "elliptical"]
    assert loaded["classification"]["confusion_matrix"] == [[1, 0, 0], [0, 2, 1], [1, 0, 1]]
    assert loaded["regression"]["per_answer_rmse"][GZ2_TREE.output_names[36]] == pytest.approx(0.0)
    assert loaded["extra"] == {"np_float": 0.5, "np_int": 3, "array": [0, 1, 2], "nan": None, "tuple": [1, 2],
                               "flag": True}
    # Deterministic: the same metrics give the same bytes.
    again = write_metrics_json(metrics, tmp_path / "again.json")
    assert again.read_bytes() == path.read_bytes()


@pytest.mark.parametrize(
    "sections, present",
    [
        ({"classification": classification_metrics(Y_TRUE, Y_PRED, ["spiral", "elliptical", "merger"])},
         ["accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"]),
        ({"regression": regression_metrics(*pair())}, ["rmse"]),
        ({"captions": caption_metrics(REFS, REFS)}, ["bleu1", "bleu2", "bleu3", "bleu4", "caption_agreement"]),
    ],
)
def test_metrics_json_writes_only_available_headline_keys(tmp_path, sections, present):
    loaded = json.loads(write_metrics_json(sections, tmp_path / "m.json").read_text())
    assert [k for k in loaded if k in HEADLINE_KEYS] == present


def test_metrics_json_rejects_unknown_types(tmp_path):
    with pytest.raises(TypeError):
        write_metrics_json({"accuracy": object()}, tmp_path / "m.json")


def test_metrics_markdown_tables():
    md = metrics_markdown(full_metrics())
    lines = md.splitlines()
    assert "| accuracy | 0.6667 |" in lines
    assert "| rmse | 0.0351 |" in lines  # sqrt(0.09 / 73)
    assert "| spiral | 1.0000 | 0.6667 | 0.8000 | 3 |" in lines
    start = lines.index("| true \\ predicted | merger | spiral | elliptical |")
    assert lines[start + 2 : start + 5] == ["| merger | 1 | 0 | 0 |", "| spiral | 0 | 2 | 1 |", "| elliptical | 1 | 0 | 1 |"]
    # Only the sections given are reported.
    md = metrics_markdown({"regression": regression_metrics(*pair())})
    assert "| rmse | 0.0000 |" in md and "accuracy" not in md and "predicted" not in md
