"""The parity batch: a catalog's held-out test split, any other catalog's first rows, or
synthetic galaxies."""

from __future__ import annotations

import json

import numpy as np
import pytest

from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.synthetic import render_survey
from export.builder.exporter import plan_export
from export.builder.images import synthetic_batch
from models.data import assign_splits
from catalogs.fingerprints import catalog_fingerprint
from tests.export.tiny_models import CFG, write_tiny_models

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    table = render_survey(root, n=20, seed=2, size=64, mix="balanced", workers=1)
    return write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")


def test_the_training_catalog_gives_its_held_out_test_split(survey, tmp_path):
    models = write_tiny_models(tmp_path / "models", kinds=("regressor",))
    catalog = read_catalog(survey)
    side = json.loads((models / "regressor.json").read_text())
    (models / "regressor.json").write_text(json.dumps({**side, "catalog_fingerprint": catalog_fingerprint(catalog),
                                                       "split": {"salt": "morphcat-split-v1", "val_fraction": 0.15,
                                                                 "test_fraction": 0.15}}))
    batch = plan_export(models, tmp_path / "out", catalog=survey).batch
    ids = catalog.table.column("object_id").to_pylist()
    test_rows = np.flatnonzero(assign_splits(ids) == "test")
    assert 0 < len(test_rows) == len(batch.images)
    assert "held-out test split of the training catalog" in batch.source
    labels = catalog.table.column("label").to_pylist()
    assert batch.labels == [labels[r] for r in test_rows]
    assert batch.images.dtype == np.float32 and batch.images.shape[1:] == (32, 32, 3)
    assert 0.0 <= batch.images.min() and batch.images.max() <= 1.0


def test_another_catalog_is_used_whole(survey, tmp_path):
    models = write_tiny_models(tmp_path / "models", kinds=("regressor",))
    batch = plan_export(models, tmp_path / "out", catalog=survey).batch
    assert len(batch.images) == 20 and "whole catalog" in batch.source


def test_synthetic_batches_are_deterministic_and_prepared_like_training():
    a, b = synthetic_batch(CFG.image, 5), synthetic_batch(CFG.image, 5)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.shape == (5, 32, 32, 3) and a.labels is None
    assert not np.array_equal(synthetic_batch(CFG.image, 5, seed=1).images, a.images)
    # Pixels are 8-bit values scaled by the input spec, as in training.
    np.testing.assert_allclose(a.images / CFG.image.scale, np.round(a.images / CFG.image.scale), atol=1e-3)
