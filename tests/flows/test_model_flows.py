"""train → evaluate through the CLI and the Prefect flows, on a tiny synthetic catalog."""

import json
import shutil

import numpy as np
import pytest

from flows.cli import EXIT_BAD_INPUT
from models.artifacts import load_trained

pytestmark = pytest.mark.slow


def test_train_then_evaluate_writes_models_metrics_and_plots(tmp_path, morphcat):
    survey = tmp_path / "survey"
    proc = morphcat("synth", survey, "--n", "40", "--seed", "5", "--size", "64", "--mix", "balanced")
    assert proc.returncode == 0, proc.stderr
    tiny_survey = survey / "catalog.parquet"
    models = tmp_path / "models"
    proc = morphcat("train", tiny_survey, "--out", models, "--epochs", "1", "--image-size", "32")
    assert proc.returncode == 0, proc.stderr
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
    clf, _ = load_trained(models, "classifier")  # the project's loader: it registers the D4 layers
    capm, _ = load_trained(models, "captioner")
    a = clf.get_layer("backbone").get_weights()
    b = capm.get_layer("encoder").get_layer("backbone").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))

    # Fine-tuning from those models (synthetic pretraining): their config is reused and recorded.
    tuned = tmp_path / "tuned"
    proc = morphcat("train", tiny_survey, "--out", tuned, "--epochs", "1", "--models", "classifier,regressor",
                    "--init-from", models)
    assert proc.returncode == 0, proc.stderr
    side = json.loads((tuned / "regressor.json").read_text())
    assert side["config"]["image"]["size"] == 32
    assert side["pretrained_from"]["models_dir"] == str(models)
    proc = morphcat("train", tiny_survey, "--out", tmp_path / "bad", "--epochs", "1", "--image-size", "48",
                    "--init-from", models)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "--image-size 48 differs from the pretrained models' input size 32" in proc.stderr

    # The captioner trained alone reuses a backbone only when told to (--backbone-from), never
    # whatever classifier lies in its output folder, and refuses one that does not fit.
    alone = tmp_path / "alone"
    shutil.copytree(models, alone)
    proc = morphcat("train", tiny_survey, "--out", alone, "--epochs", "1", "--models", "captioner")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((alone / "captioner.json").read_text())["training_mode"] == "end to end on augmented images"
    reused = tmp_path / "reused"
    proc = morphcat("train", tiny_survey, "--out", reused, "--epochs", "1", "--models", "captioner",
                    "--backbone-from", models)
    assert proc.returncode == 0, proc.stderr
    cap = json.loads((reused / "captioner.json").read_text())
    assert "frozen trained backbone" in cap["training_mode"] and cap["backbone_from"]["models_dir"] == str(models)
    capm, _ = load_trained(reused, "captioner")
    b = capm.get_layer("encoder").get_layer("backbone").get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    other = tmp_path / "other"  # a classifier on 24 px inputs: its backbone fits no 32 px captioner
    assert morphcat("train", tiny_survey, "--out", other, "--epochs", "1", "--models", "classifier",
                    "--image-size", "24").returncode == 0
    proc = morphcat("train", tiny_survey, "--out", tmp_path / "bad2", "--epochs", "1", "--models", "captioner",
                    "--init-from", models, "--backbone-from", other)
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert f"cannot reuse the backbone of {other}" in proc.stderr and "'size': 32" in proc.stderr
    assert "'size': 24" in proc.stderr and "Traceback" not in proc.stderr

    report = tmp_path / "report"
    proc = morphcat("evaluate", models, tiny_survey, "--out", report)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((report / "metrics.json").read_text())
    # The headline figures are those of the sections, and the classifier's agree with its confusion matrix.
    for key, section in (("accuracy", "classification"), ("balanced_accuracy", "classification"),
                         ("macro_f1", "classification"), ("weighted_f1", "classification"), ("rmse", "regression"),
                         ("bleu1", "captions"), ("bleu4", "captions"), ("caption_agreement", "captions")):
        assert metrics[key] == metrics[section][key]
    cm = np.array(metrics["classification"]["confusion_matrix"])
    assert cm.sum() == metrics["classification"]["n_samples"]
    assert metrics["accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    support = cm.sum(axis=1) > 0
    assert metrics["balanced_accuracy"] == pytest.approx(np.mean(np.diag(cm)[support] / cm.sum(axis=1)[support]))
    assert isinstance(metrics["template_baseline"]["bleu4"], float)
    assert (report / "confusion_matrix.png").is_file()
    assert "held-out test split" in metrics["classification"]["scope"]


def test_train_refuses_a_catalog_without_targets(tmp_path, morphcat):
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (16, 16)).save(tmp_path / f"{i}.jpg")
    catalog = tmp_path / "c.parquet"
    assert morphcat("ingest", tmp_path, "--format", "folder", "--out", catalog).returncode == 0
    proc = morphcat("train", catalog, "--out", tmp_path / "m", "--epochs", "1")
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    assert "needs both a 'label' column" in proc.stderr and "Traceback" not in proc.stderr


def test_cross_validation_writes_its_report_and_every_held_out_prediction(tmp_path, morphcat):
    import polars as pl

    survey = tmp_path / "survey"
    assert morphcat("synth", survey, "--n", "60", "--seed", "7", "--size", "64", "--mix", "balanced").returncode == 0
    report = tmp_path / "cv"
    args = ("evaluate", "--cv", "2", survey / "catalog.parquet", "--out", report, "--models", "classifier,regressor",
            "--epochs", "1", "--image-size", "32")
    proc = morphcat(*args)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in report.iterdir()) == ["confusion_catalog.png", "cv.json", "cv.md", "folds",
                                                       "predictions.parquet", "reliability_catalog.png"]
    catalog = pl.read_parquet(survey / "catalog.parquet")
    held = pl.read_parquet(report / "predictions.parquet")
    # every galaxy tested exactly once, with the label it has in the catalog
    assert sorted(held["object_id"].to_list()) == sorted(catalog["object_id"].to_list())
    assert held.join(catalog.select("object_id", "label"), on="object_id").filter(
        pl.col("label") != pl.col("label_right")).height == 0
    assert set(held["fold"].to_list()) == {0, 1}
    summary = json.loads((report / "cv.json").read_text())
    from models.provenance import code_commit
    assert summary["fold_commits"] == [code_commit()] * 2  # which code made each fold
    entry = summary["report"]["catalog"]
    assert entry["rows"] == 60 and 0.0 <= entry["supported_share"]["mean"] <= 1.0
    assert "share of labels a majority of volunteers supports" in (report / "cv.md").read_text()

    # Stopped during fold 1, the same command resumes: fold 0 is read back, fold 1 trained again.
    kept, lost = report / "folds" / "fold-0.json", report / "folds" / "fold-1.json"
    kept_at = kept.stat().st_mtime_ns
    lost.unlink()
    assert morphcat(*args).returncode == 0
    assert kept.stat().st_mtime_ns == kept_at and lost.is_file()
    again = pl.read_parquet(report / "predictions.parquet")
    assert again.filter(pl.col("fold") == 0).equals(held.filter(pl.col("fold") == 0))
    assert sorted(again["object_id"].to_list()) == sorted(catalog["object_id"].to_list())



def test_cross_validation_of_an_ensemble_records_its_members_and_keeps_its_folds_apart(tmp_path, morphcat):
    survey, report = tmp_path / "survey", tmp_path / "cv"
    assert morphcat("synth", survey, "--n", "48", "--seed", "3", "--size", "48", "--mix", "balanced").returncode == 0
    args = ("evaluate", "--cv", "2", survey / "catalog.parquet", "--out", report, "--models", "classifier",
            "--epochs", "1", "--image-size", "32")
    proc = morphcat(*args, "--members", "2")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((report / "cv.json").read_text())
    assert summary["members"] == 2 and summary["report"]["catalog"]["rows"] == 48
    fold0 = (report / "folds" / "fold-0.json").stat().st_mtime_ns
    assert morphcat(*args, "--members", "2").returncode == 0  # resumed: the kept folds read back, members and all
    assert (report / "folds" / "fold-0.json").stat().st_mtime_ns == fold0
    assert json.loads((report / "cv.json").read_text())["report"] == summary["report"]
    assert morphcat(*args).returncode == 0  # one model: the ensemble's folds are not read back as its own
    assert (report / "folds" / "fold-0.json").stat().st_mtime_ns != fold0
    assert "members" not in json.loads((report / "cv.json").read_text())
