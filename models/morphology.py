"""The classifier and the vote regressor trained as one network.

Both read the same backbone and the same global-average-pooled features; only their heads
differ. Training them jointly computes the backbone once per image for both losses (half the
cost of two trainings on a 2-core machine) and lets the 37 vote fractions, from which the class
labels are derived, shape the features the classifier uses. The two standalone models are
sub-graphs of the joint one, so they share its trained weights exactly and are saved, exported
and served separately.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras

from models.backbone import build_backbone
from models.classifier import BACKBONE_LAYER, check_class_names, classifier_head, image_input
from models.config import ModelConfig
from models.regressor import regressor_head


@dataclass(frozen=True)
class MorphologyModels:
    joint: keras.Model  # image → {"probs", "votes"}, for training
    classifier: keras.Model  # image → probs
    regressor: keras.Model  # image → votes


def build_morphology(config: ModelConfig, class_names: Sequence[str]) -> MorphologyModels:
    names = check_class_names(class_names)
    inputs = image_input(config)
    features = build_backbone(config.image, config.backbone, name=BACKBONE_LAYER)(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    probs = classifier_head(pooled, config, len(names))
    votes = regressor_head(pooled, config)
    return MorphologyModels(
        joint=keras.Model(inputs, {"probs": probs, "votes": votes}, name="morphology"),
        classifier=keras.Model(inputs, probs, name="classifier"),
        regressor=keras.Model(inputs, votes, name="regressor"),
    )
