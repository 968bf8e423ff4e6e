"""``morphcat bench ablation``'s declared variants and its table (the runs themselves are hours of
training: a benchmark, never a test)."""

from __future__ import annotations

import pytest

from benchmarks.ablation import REFERENCE, VARIANTS, ablation_markdown, variant_config
from models.config import ModelConfig, TrainSettings


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_a_valid_configuration_that_differs_from_the_default(name):
    base, settings = ModelConfig(), TrainSettings()
    config, vsettings = variant_config(VARIANTS[name], base, settings)
    ModelConfig.from_dict(config.to_dict())  # valid and serialisable, as the sidecars store it
    changed = (config, vsettings, VARIANTS[name].views, VARIANTS[name].votes) != (base, settings, 1, True)
    assert changed == (name != REFERENCE), name


def test_the_table_has_a_row_per_variant_and_a_column_set_per_catalog():
    entry = {"accuracy": {"mean": 0.8, "sd": 0.01}, "balanced_accuracy": {"mean": 0.75, "sd": 0.02},
             "recall": {"merger": {"mean": 0.5, "sd": 0.1}}, "rmse_per_question": {"mean": 0.12, "sd": 0.004}}
    results = [{"variant": n, "what": VARIANTS[n].what, "report": {"gz2": entry, "gz1": {**entry}},
                "train_minutes_per_fold": {"mean": 3.25}, "annotate_images_per_s": 150.0} for n in ("default", "wide")]
    md = ablation_markdown(results, {"folds": 3, "epochs": 20, "models": ["classifier"], "machine": "x"})
    assert "gz2 accuracy" in md and "gz1 merger recall" in md
    assert "| default |" in md and "| wide |" in md and "0.800 ± 0.010" in md and "| 3.2 | 150 |" in md
