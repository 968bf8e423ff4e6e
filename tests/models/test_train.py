"""Training helpers that need no training run: starting a backbone from pretrained weights."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from catalogs.inputs import ImageSpec  # noqa: E402
from models.classifier import BACKBONE_LAYER  # noqa: E402
from models.config import BackboneConfig, ModelConfig
from models.errors import TrainingError  # noqa: E402
from models.morphology import build_morphology  # noqa: E402
from models.train import init_backbone  # noqa: E402

CFG = ModelConfig(image=ImageSpec(size=32), backbone=BackboneConfig(name="small_cnn", widths=(8, 16)))
CLASSES = ("spiral", "elliptical", "edge-on", "merger", "ambiguous")


def _backbone_weights(model) -> list[np.ndarray]:
    return model.get_layer(BACKBONE_LAYER).get_weights()


def test_init_backbone_copies_every_backbone_weight_and_leaves_the_heads_alone():
    keras.utils.set_random_seed(1)
    source = build_morphology(CFG, CLASSES).classifier.get_layer(BACKBONE_LAYER)
    for w in source.weights:  # non-default values everywhere, BN statistics included
        w.assign(np.random.default_rng(0).uniform(0.5, 1.5, tuple(w.shape)).astype(np.float32))
    keras.utils.set_random_seed(2)
    target = build_morphology(CFG, CLASSES[:4]).joint
    backbone_vars = {id(w) for w in target.get_layer(BACKBONE_LAYER).weights}
    heads = [w for w in target.weights if id(w) not in backbone_vars]
    heads_before = [w.numpy().copy() for w in heads]
    assert not all(np.array_equal(a, b) for a, b in zip(_backbone_weights(target), source.get_weights()))

    init_backbone(target, source)

    assert all(np.array_equal(a, b) for a, b in zip(_backbone_weights(target), source.get_weights()))
    heads_after = [w.numpy() for w in heads]
    assert heads_before and all(np.array_equal(a, b) for a, b in zip(heads_before, heads_after))


def test_init_backbone_without_a_source_changes_nothing():
    model = build_morphology(CFG, CLASSES).classifier
    before = [w.copy() for w in _backbone_weights(model)]
    init_backbone(model, None)
    assert all(np.array_equal(a, b) for a, b in zip(before, _backbone_weights(model)))


@pytest.mark.parametrize("other", [
    ModelConfig(image=ImageSpec(size=32), backbone=BackboneConfig(name="small_cnn", widths=(8, 32))),
    ModelConfig(image=ImageSpec(size=32), backbone=BackboneConfig(name="small_cnn", widths=(8, 16, 16))),
], ids=["wider", "deeper"])
def test_init_backbone_refuses_a_backbone_of_another_shape(other):
    source = build_morphology(other, CLASSES).classifier.get_layer(BACKBONE_LAYER)
    with pytest.raises(TrainingError, match="does not fit"):
        init_backbone(build_morphology(CFG, CLASSES).classifier, source)
