import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from PIL import Image

from catalogs.contract import Catalog
from catalogs.inputs import ImageSpec, dihedral_views
from models.config import ModelConfig
from models.data import assign_splits, augment, class_weights, decode_images
from models.morphology import build_morphology


def test_splits_follow_the_id_not_the_row_order():
    ids = [f"obj{i}" for i in range(2000)]
    a = assign_splits(ids)
    b = assign_splits(ids[::-1])[::-1]
    assert (a == b).all()
    share = {s: (a == s).mean() for s in ("train", "val", "test")}
    assert share["test"] == pytest.approx(0.15, abs=0.03) and share["val"] == pytest.approx(0.15, abs=0.03)
    assert not (assign_splits(ids, salt="other") == a).all()
    with pytest.raises(ValueError, match="bad split fractions"):
        assign_splits(ids, 0.6, 0.5)


def test_augment_is_a_rotation_or_flip():
    x = tf.constant(np.arange(4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3))
    views = np.concatenate(dihedral_views(x.numpy()[None]))
    tf.random.set_seed(0)
    seen = set()
    for _ in range(60):
        y = augment(x).numpy()
        match = [i for i, v in enumerate(views) if np.array_equal(v, y)]
        assert len(match) == 1
        seen.add(match[0])
    assert len(seen) == 8


def test_class_weights_balance_the_classes():
    labels = np.array(["a"] * 6 + ["b"] * 2)
    w = class_weights(labels, ["a", "b", "c"])
    assert w[labels == "a"].sum() == pytest.approx(w[labels == "b"].sum())


def test_decode_reports_broken_images_and_keeps_the_rest(tmp_path):
    Image.new("RGB", (40, 40), (255, 0, 0)).save(tmp_path / "good.jpg")
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    table = pa.table({"object_id": ["g", "b", "m"], "image_path": ["good.jpg", "bad.jpg", "missing.jpg"]})
    dec = decode_images(Catalog(table, tmp_path, "folder"), np.array([0, 1, 2]), ImageSpec(size=16))
    assert dec.good_rows.tolist() == [0]
    assert set(dec.failures) == {"b", "m"}
    (img,) = list(dec.dataset)
    assert img.shape == (16, 16, 3) and float(img[8, 8, 0]) > 0.9 and float(img[8, 8, 2]) < 0.1


def test_joint_model_shares_weights_with_the_standalone_models():
    cfg = ModelConfig.from_dict({"image": {"size": 32}, "backbone": {"name": "small_cnn", "widths": [4, 8]}})
    m = build_morphology(cfg, ["a", "b"])
    x = np.random.default_rng(0).random((2, 32, 32, 3)).astype("float32")
    joint = m.joint(x, training=False)
    np.testing.assert_allclose(joint["probs"], m.classifier(x, training=False), atol=1e-6)
    np.testing.assert_allclose(joint["votes"], m.regressor(x, training=False), atol=1e-6)
    assert m.classifier.get_layer("backbone") is m.regressor.get_layer("backbone")


def _voted_catalog(tmp_path, raw: bool) -> Catalog:
    from catalogs.tree import GZ2_TREE

    (tmp_path / "img").mkdir(exist_ok=True)
    for i in range(4):
        Image.fromarray(np.full((40, 40, 3), 40 * i, np.uint8)).save(tmp_path / "img" / f"{i}.jpg")
    columns = {"object_id": [f"o{i}" for i in range(4)], "image_path": [f"img/{i}.jpg" for i in range(4)],
               "label": ["elliptical"] * 4}
    columns.update({c: [0.5] * 4 for c in GZ2_TREE.debiased_columns})
    if raw:
        columns.update({c: [0.25] * 4 for c in GZ2_TREE.weighted_columns})
    return Catalog(pa.table(columns), tmp_path, "gz2")


@pytest.mark.parametrize("targets,raw,first,second", [("debiased", False, 0.5, None), ("debiased", True, 0.5, None),
                                                      ("raw", True, 0.25, None), ("both", True, 0.5, 0.25)])
def test_the_vote_targets_come_from_the_fractions_asked_for(tmp_path, targets, raw, first, second):
    from models.data import training_set

    tset = training_set([_voted_catalog(tmp_path, raw)], ["gz2"], ImageSpec(size=16, framing="fixed"), 0.0, 0.0,
                        vote_targets=targets)
    assert tset.votes[:, 0] == pytest.approx([first] * 4)  # t01 a01 is a root answer: cumulative = fraction
    if second is None:
        assert tset.votes_raw is None
    else:  # the second vote head's targets: the raw fractions
        assert tset.votes_raw[:, 0] == pytest.approx([second] * 4)


@pytest.mark.parametrize("targets", ["raw", "both"])
def test_raw_vote_targets_refuse_a_catalog_without_raw_fractions(tmp_path, targets):
    from catalogs.errors import CatalogError
    from models.data import training_set

    with pytest.raises(CatalogError, match="weighted_fraction"):
        training_set([_voted_catalog(tmp_path, False)], ["gz2"], ImageSpec(size=16, framing="fixed"), 0.0, 0.0,
                     vote_targets=targets)
