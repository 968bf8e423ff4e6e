"""train → evaluate through the CLI and the Prefect flows, on a tiny synthetic catalog."""

import json

import keras
import numpy as np
import pytest

from flows.cli import EXIT_BAD_INPUT, main

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]


@pytest.fixture(scope="module")
def tiny_survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("survey")
    assert main(["synth", str(out), "--n", "40", "--seed", "5", "--size", "64", "--mix", "balanced"]) == 0
    return out / "catalog.parquet"


def test_train_then_evaluate_writes_models_metrics_and_plots(tiny_survey, tmp_path):
    models = tmp_path / "models"
    assert main(["train", str(tiny_survey), "--out", str(models), "--epochs", "1", "--image-size", "32"]) == 0
    for kind in ("classifier", "regressor", "captioner"):
        assert (models / f"{kind}.keras").is_file()
        assert (models / f"{kind}_curves.png").is_file()
    side = json.loads((models / "classifier.json").read_text())
    assert side["class_names"] == ["spiral", "elliptical", "edge-on", "merger", "ambiguous"][: len(side["class_names"])]
    assert side["config"]["image"]["size"] == 32
    assert side["trained_jointly"] is True
    assert {"tensorflow", "keras"} <= set(side["versions"])
    cap = json.loads((models / "captioner.json").read_text())
    assert cap["tokenizer"]["tokens"][:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    assert "frozen trained backbone" in cap["training_mode"]
    # The captioner's backbone is a frozen copy of the classifier's.
    clf = keras.saving.load_model(models / "classifier.keras", safe_mode=True, compile=False)
    capm = keras.saving.load_model(models / "captioner.keras", safe_mode=True, compile=False)
    a = clf.get_layer("backbone").get_weights()
    b = capm.get_layer("encoder").get_layer("backbone").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))

    report = tmp_path / "report"
    assert main(["evaluate", str(models), str(tiny_survey), "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "rmse",
                "bleu1", "bleu2", "bleu3", "bleu4", "caption_agreement"):
        assert key in metrics and metrics[key] is not None
    assert metrics["template_baseline"]["bleu4"] is not None
    assert (report / "confusion_matrix.png").is_file()
    assert "held-out test split" in metrics["classification"]["scope"]


def test_train_refuses_a_catalog_without_targets(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (16, 16)).save(tmp_path / f"{i}.jpg")
    catalog = tmp_path / "c.parquet"
    assert main(["ingest", str(tmp_path), "--format", "folder", "--out", str(catalog)]) == 0
    assert main(["train", str(catalog), "--out", str(tmp_path / "m"), "--epochs", "1"]) == EXIT_BAD_INPUT
