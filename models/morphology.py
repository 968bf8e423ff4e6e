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
from models.classifier import BACKBONE_LAYER, check_class_names, classifier_head, head_suffix, image_input
from models.config import ModelConfig
from models.regressor import regressor_head


@dataclass(frozen=True)
class MorphologyModels:
    joint: keras.Model  # image → {"probs", "probs_1", …, "votes"}, for training
    classifier: keras.Model  # image → probs (the first label scheme's head)
    regressor: keras.Model  # image → votes
    heads: tuple[keras.Model, ...] = ()  # image → probs_k, the further label schemes' heads


def build_morphology(config: ModelConfig, class_names: Sequence[str],
                     more_heads: Sequence[Sequence[str]] = (), raw_votes: bool = False) -> MorphologyModels:
    """``class_names``: the classes of the first class head; ``more_heads``: those of one more
    head per further label scheme (as zoobot gives each Galaxy Zoo campaign its own outputs), all
    on the same pooled features. ``raw_votes``: the joint (training) model also has a second
    vote head, ``votes_raw``, for the raw fractions; no saved model includes it."""
    names = [check_class_names(class_names)] + [check_class_names(n) for n in more_heads]
    inputs = image_input(config)
    features = build_backbone(config.image, config.backbone, name=BACKBONE_LAYER)(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    probs = [classifier_head(pooled, config, len(n), head=i) for i, n in enumerate(names)]
    votes = regressor_head(pooled, config)
    outputs = {f"probs{head_suffix(i)}": p for i, p in enumerate(probs)} | {"votes": votes}
    if raw_votes:
        outputs["votes_raw"] = regressor_head(pooled, config, name="votes_raw")
    return MorphologyModels(
        joint=keras.Model(inputs, outputs, name="morphology"),
        classifier=keras.Model(inputs, probs[0], name="classifier"),
        regressor=keras.Model(inputs, votes, name="regressor"),
        heads=tuple(keras.Model(inputs, p, name=f"classifier{head_suffix(i)}") for i, p in enumerate(probs) if i),
    )
