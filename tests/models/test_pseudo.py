"""Pseudo-labels (``models.pseudo``): the teacher's fractions become a GZ2-contract catalog, its
rows weigh what the setting says and only ever train."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from catalogs.contract import Catalog
from catalogs.labels import derive_labels
from catalogs.tree import GZ2_TREE
from models.data import weigh_pseudo


@pytest.mark.parametrize("weight,pseudo,share,expected", [
    ([1, 1, 1, 1], [0, 0, 1, 1], 1.0, [1, 1, 1, 1]),
    ([1, 1, 1, 1], [0, 0, 0, 1], 1.0, [1, 1, 1, 3]),  # one pseudo row weighs as much as the three others
    ([2, 0, 1, 1], [0, 0, 1, 1], 0.5, [2, 0, 0.5, 0.5]),  # a row without the target stays at 0
    ([1, 1, 0, 0], [0, 0, 1, 1], 1.0, [1, 1, 0, 0]),  # pseudo rows without the target: nothing to scale
    ([1, 1, 1, 1], [0, 0, 1, 1], 0.0, [1, 1, 0, 0]),
])
def test_pseudo_rows_weigh_the_share_asked_for_in_all(weight, pseudo, share, expected):
    out = weigh_pseudo(np.array(weight, np.float32), np.array(pseudo, bool), share)
    assert out.tolist() == pytest.approx(expected)
    real = ~np.array(pseudo, bool)
    if np.array(weight)[~real].sum() > 0:
        assert out[~real].sum() == pytest.approx(share * out[real].sum())


def test_every_loss_weighs_the_pseudo_rows_by_the_setting():
    from models.config import TrainSettings
    from models.data import TrainingSet
    from models.heads import ClassHead
    from models.train import targets_and_weights

    # Catalog 0: two volunteer-labelled rows; catalog 1: three pseudo-labelled ones.
    tset = TrainingSet(("gz2", "u (pseudo)"), (None, None), np.array([0, 0, 1, 1, 1]), np.arange(5),
                       np.array([f"o{i}" for i in range(5)], dtype=object), np.array(["train"] * 5),
                       np.array(["spiral", "elliptical", "spiral", "spiral", "elliptical"], dtype=object),
                       np.full((5, 37), 0.5, np.float32), np.array([None] * 5, dtype=object),
                       np.zeros((5, 4, 4, 3), np.uint8), {}, pseudo=(False, True))
    heads = [ClassHead("gz2", ("gz2", "u (pseudo)"), ("spiral", "elliptical"))]
    for share in (1.0, 0.25):
        _, w = targets_and_weights(tset, np.arange(5), ("classifier", "regressor"), heads, np.zeros(5, np.int64),
                                   TrainSettings(soft_targets=0.0, pseudo_weight=share), balanced=True)
        for output in ("probs", "votes"):
            assert w[output][2:].sum() == pytest.approx(share * w[output][:2].sum()), (output, share)


def _teacher(by_brightness: dict[int, np.ndarray]):
    """A stand-in regressor: each test image is one flat grey level, mapped to its fractions."""
    def predict(x, training=False):
        levels = np.rint(np.asarray(x).mean(axis=(1, 2, 3)) * 255).astype(int)
        return np.stack([by_brightness[min(by_brightness, key=lambda k: abs(k - v))] for v in levels])
    return predict


def test_pseudo_labels_are_the_rule_on_the_teachers_fractions_where_they_support_it(tmp_path):
    from catalogs.inputs import ImageSpec
    from models.config import ModelConfig
    from models.pseudo import pseudo_catalog, pseudo_summary

    def teacher_says(features: float, not_edge_on: float, spiral: float) -> np.ndarray:
        p = np.concatenate([np.full(sl.stop - sl.start, 1.0 / (sl.stop - sl.start)) for _, sl in GZ2_TREE.question_slices])
        p[[0, 1, 2]] = [0.98 - features, features, 0.02]
        p[[3, 4]] = [1 - not_edge_on, not_edge_on]
        p[[7, 8]] = [spiral, 1 - spiral]
        return GZ2_TREE.cumulative(p[None])[0]

    # Both spirals by the rule (spiral answer ≥ 0.6 of those who reached it), but 0.9·0.9·0.9 = 73 %
    # of the volunteers stand behind the first and 0.6·0.8·0.7 = 34 % behind the second.
    levels = {40: teacher_says(0.9, 0.9, 0.9), 160: teacher_says(0.6, 0.8, 0.7)}
    (tmp_path / "img").mkdir()
    for i, level in enumerate([40, 160, 40]):
        Image.fromarray(np.full((32, 32, 3), level, np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
    (tmp_path / "img" / "3.jpg").write_bytes(b"not a jpeg")
    unlabelled = Catalog(pa.table({"object_id": [f"u{i}" for i in range(4)],
                                   "image_path": [f"img/{i}.jpg" for i in range(4)]}), tmp_path, "folder")
    config = ModelConfig(image=ImageSpec(size=16, framing="fixed"))
    pseudo = pseudo_catalog(_teacher(levels), unlabelled, config)
    table = pseudo.table
    assert table.column("object_id").to_pylist() == ["u0", "u1", "u2"]  # the broken image is left out
    fractions = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in GZ2_TREE.debiased_columns])
    rule = derive_labels({c: fractions[:, i] for i, c in enumerate(GZ2_TREE.debiased_columns)})
    assert rule.tolist() == ["spiral"] * 3 and fractions[1, 7] == pytest.approx(0.7)
    assert table.column("label").to_pylist() == ["spiral", None, "spiral"]  # no class target unsupported
    assert table.column("caption").null_count == 3 and pseudo.has_votes
    assert pseudo_summary(pseudo, unlabelled) == {"rows": 3, "labelled": 2, "classes": {"spiral": 2},
                                                   "undecodable": 1}


def test_a_student_trains_on_pseudo_labelled_rows_that_never_validate(tmp_path):
    pytest.importorskip("tensorflow")
    import json

    from catalogs.contract import write_catalog
    from catalogs.synthetic import render_survey
    from models.pipeline import train_models

    labelled = render_survey(tmp_path / "a", n=40, seed=1, size=48, mix="balanced", workers=1)
    unlabelled = render_survey(tmp_path / "u", n=16, seed=2, size=48, mix="balanced", workers=1)
    paths = [write_catalog(Catalog(labelled, tmp_path / "a", "synthetic"), tmp_path / "a.parquet"),
             write_catalog(Catalog(unlabelled.select(["object_id", "image_path"]), tmp_path / "u", "folder"),
                           tmp_path / "u.parquet")]
    stages = []
    train_models(paths[:1], tmp_path / "models", ["classifier", "regressor"], epochs=1, image_size=24,
                 unlabelled=paths[1:], callbacks=lambda stage, epochs: stages.append(stage) or [])
    assert stages == ["classifier + regressor (teacher)", "classifier + regressor (student)"]
    clf, reg = (json.loads((tmp_path / "models" / f"{k}.json").read_text()) for k in ("classifier", "regressor"))
    rows = clf["split"]["rows"]
    assert rows["u (pseudo)"] == {"train": 16, "val": 0, "test": 0} and rows["a"]["val"] > 0
    record = clf["pseudo_labels"]
    assert record["catalogs"]["u (pseudo)"]["rows"] == 16 and record["weight"] == 1.0
    assert record["catalogs"]["u (pseudo)"]["undecodable"] == 0
    assert reg["pseudo_labels"] == record
    gz2 = clf["class_heads"][0]  # the pseudo rows join the GZ2 head (they carry GZ2 fractions)
    assert gz2["scheme"] == "gz2" and gz2["catalogs"][0] == "a"
    assert gz2["calibration"]["val_rows"] == rows["a"]["val"]  # the temperature is the volunteers' alone
