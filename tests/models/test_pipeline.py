"""models/pipeline.py: what train_models checks before any training, in the words of its
parameters (the CLI's flags are its own), and the caption choice written through
models.artifacts."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("tensorflow")

from models.errors import TrainingError  # noqa: E402
from models.pipeline import model_config, train_models  # noqa: E402


def test_a_size_that_contradicts_the_pretrained_models_names_the_parameter(tiny_models):
    size = json.loads((tiny_models / "classifier.json").read_text())["config"]["image"]["size"]
    assert model_config(None, tiny_models, "pretrained")["image"]["size"] == size
    with pytest.raises(TrainingError, match=rf"^`image_size` {size + 16} differs from the pretrained models' "
                                            rf"input size {size} \(.*\); leave it out to use {size}$"):
        model_config(size + 16, tiny_models, "pretrained")


def test_backbone_from_is_refused_unless_the_captioner_trains_alone(tmp_path, tiny_models):
    with pytest.raises(TrainingError, match=r"^`backbone_from` gives the captioner .* \(`models` captioner\)"):
        train_models([tmp_path / "never-read.parquet"], tmp_path / "out", ["classifier", "captioner"],
                     backbone_from=tiny_models)
    with pytest.raises(ValueError, match=r"unknown models \['gan'\]"):
        train_models([tmp_path / "never-read.parquet"], tmp_path / "out", ["gan"])
    assert not (tmp_path / "out").exists()


def test_the_caption_choice_is_recorded_in_the_captioners_sidecar(tmp_path, tiny_models):
    from models.artifacts import load_sidecar, record_caption_choice

    models = shutil.copytree(tiny_models, tmp_path / "models")
    before = load_sidecar(models, "captioner")
    record_caption_choice(models, {"source": "template", "regressor_from": str(models)})
    after = load_sidecar(models, "captioner")
    assert after.pop("caption_choice") == {"source": "template", "regressor_from": str(models)}
    assert after == {k: v for k, v in before.items() if k != "caption_choice"}
