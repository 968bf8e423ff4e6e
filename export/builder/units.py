"""What each trained model becomes in a bundle.

A :class:`Source` is one trained model ready for export: its ONNX files (a spec plus the
``tf.function`` tf2onnx converts, as :class:`Unit`), the Keras reference every file is checked
against, the feeds parity uses, the model-level agreement checks, and the facts the bundle records
(class names, answer names, tokenizer…). Everything is read back from the model and its sidecar.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from catalogs.inputs import ImageSpec
from catalogs.outputs import EMBEDDING, EMBEDDING_DIM
from catalogs.tokenizer import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Tokenizer
from catalogs.tree import GZ2_TREE
from export.builder.convert import tf_signature
from export.builder.errors import ExportError, ParityFailure
from export.builder.gradcam import classifier_with_cam
from export.builder.parity import row_agreement
from export.builder.specs import (
    CAPTION_AGREEMENT_MIN,
    CLASS_AGREEMENT_MIN,
    ExportSpec,
    classifier_spec,
    encoder_spec,
    regressor_spec,
    step_spec,
)
from export.serve.bundle import ENCODER_OUTPUTS, STEP_OUTPUTS
from export.serve.decode import greedy_decode_ids as onnx_greedy_decode_ids
from models.artifacts import load_trained
from models.captioner import captioner_from_train, greedy_decode_ids
from models.classifier import BACKBONE_LAYER, grad_cam, pooled_features
from models.config import ModelConfig
from models.embedding import EmbeddingProjection
from models.ood import OodReference

REFERENCE_BATCH = 64  # Keras reference in chunks: bounded memory on large parity batches

Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class Unit:
    """One ONNX file: its spec, the function tf2onnx converts, and Keras on the same feeds."""

    spec: ExportSpec
    function: Any  # tf.function over tf_signature(spec) → {output name: tensor}
    reference: Callable[[Arrays], Arrays]


@dataclass(frozen=True)
class Source:
    kind: str
    model: Any  # the trained keras.Model, as loaded
    image: ImageSpec
    units: tuple[Unit, ...]
    facts: dict  # recorded in bundle.json and in each file's metadata_props
    feeds: Callable[[np.ndarray], dict[str, Arrays]]  # parity images → feeds per unit name
    # (images, sessions, onnxruntime outputs, keras outputs; all per unit name) → (figures, failures)
    agreement: Callable[[np.ndarray, dict, dict[str, Arrays], dict[str, Arrays]], tuple[dict, list[ParityFailure]]]


def load_source(models_dir: Path, kind: str) -> Source:
    model, sidecar = load_trained(models_dir, kind)  # safe_mode=True
    config = ModelConfig.from_dict(sidecar["config"])
    return _BUILDERS[kind](model, sidecar, config)


def _chunked(fn: Callable[[np.ndarray], Arrays], x: np.ndarray) -> Arrays:
    parts = [fn(x[i:i + REFERENCE_BATCH]) for i in range(0, len(x), REFERENCE_BATCH)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _no_agreement_checks(images, sessions, got, expected):
    return {}, []


def _feature_reference(sidecar: dict, key: str, what: str, parse: Callable[[dict], Any]):
    """What training fitted on the classifier's pooled features (``sidecar[key]``), parsed."""
    if key not in sidecar:
        raise ExportError(f"the classifier's sidecar has no {what} ({key!r}): it was trained by an older morphcat; "
                          "train it again (morphcat train)")
    try:
        return parse(sidecar[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"the classifier's {what} is unusable: {exc}") from None


def _classifier(model, sidecar: dict, config: ModelConfig) -> Source:
    names = list(sidecar["class_names"])
    if len(names) != model.output_shape[-1]:
        raise ExportError(f"the classifier has {model.output_shape[-1]} outputs but its sidecar names {len(names)} "
                          f"classes: {names}")
    ood = _feature_reference(sidecar, "ood", "out-of-distribution reference", OodReference.from_dict)
    embedding = _feature_reference(sidecar, "embedding", "embedding projection", EmbeddingProjection.from_dict)
    if embedding.dim != EMBEDDING_DIM:
        raise ExportError(f"the classifier's embedding has {embedding.dim} dimensions; the output contract "
                          f"(catalogs.outputs) has {EMBEDDING_DIM}: train it again (morphcat train)")
    image = config.image
    cam_hw = tuple(model.get_layer(BACKBONE_LAYER).output_shape[1:3])
    spec = classifier_spec(image.size, image.channels, len(names), cam_hw, embedding.dim)

    def keras_outputs(x):
        pooled = pooled_features(model, x)
        return {"probs": np.asarray(model(x, training=False)), "cam": grad_cam(model, x),
                "ood_score": ood.scores(pooled).astype(np.float32), EMBEDDING: embedding.project(pooled)}

    def agreement(images, sessions, got, expected):
        ours, theirs = (out[spec.name]["probs"].argmax(axis=1) for out in (got, expected))
        share = row_agreement(ours, theirs)
        failures = []
        if share < CLASS_AGREEMENT_MIN:
            failures.append(ParityFailure(spec.name, "classes", f"predicted class differs on "
                                          f"{int(np.sum(ours != theirs))} of {len(ours)} images "
                                          f"(agreement {share:.4f}, needs {CLASS_AGREEMENT_MIN:g})"))
        return {"class_agreement": share}, failures

    unit = Unit(spec, classifier_with_cam(model, tf_signature(spec), ood, embedding),
                lambda f: _chunked(keras_outputs, f["image"]))
    calibration = sidecar.get("calibration") or {"temperature": 1.0, "method": "none (trained before calibration)"}
    return Source("classifier", model, image, (unit,),
                  {"class_names": names, "ood": ood.summary(), "calibration": calibration,
                   "embedding": embedding.summary(),
                   # every label scheme's head as trained (the graph serves the first one's classes)
                   **({"class_heads": sidecar["class_heads"]} if "class_heads" in sidecar else {})},
                  lambda images: {spec.name: {"image": images}}, agreement)


def _regressor(model, sidecar: dict, config: ModelConfig) -> Source:
    answers = list(sidecar.get("answer_names") or GZ2_TREE.output_names)
    columns = list(sidecar.get("target_columns") or GZ2_TREE.kaggle_columns)
    n = model.output_shape[-1]
    if len(answers) != n or len(columns) != n:
        raise ExportError(f"the regressor has {n} outputs but its sidecar names {len(answers)} answers "
                          f"and {len(columns)} target columns")
    image = config.image
    spec = regressor_spec(image.size, image.channels, n)
    (out_name,) = spec.output_names

    @tf.function(input_signature=tf_signature(spec))
    def forward(image_in):
        return {out_name: model(image_in, training=False)}

    def keras_outputs(x):
        return {out_name: np.asarray(model(x, training=False))}

    return Source("regressor", model, image, (Unit(spec, forward, lambda f: _chunked(keras_outputs, f["image"])),),
                  {"answer_names": answers, "target_columns": columns},
                  lambda images: {spec.name: {"image": images}}, _no_agreement_checks)


def _captioner(model, sidecar: dict, config: ModelConfig) -> Source:
    parts = captioner_from_train(model)
    tokenizer = Tokenizer.from_dict(sidecar["tokenizer"])
    if tokenizer.vocab_size != parts.vocab_size:
        raise ExportError(f"the captioner predicts {parts.vocab_size} tokens but its tokenizer has "
                          f"{tokenizer.vocab_size}")
    max_len = int(sidecar["max_len"])
    image = config.image
    enc_spec = encoder_spec(image.size, image.channels, parts.units)
    stp_spec = step_spec(parts.units, parts.vocab_size)

    @tf.function(input_signature=tf_signature(enc_spec))
    def encode(image_in):
        return dict(zip(ENCODER_OUTPUTS, parts.encoder(image_in, training=False)))

    @tf.function(input_signature=tf_signature(stp_spec))
    def step(token, h, c):
        return dict(zip(STEP_OUTPUTS, parts.step([token, h, c], training=False)))

    def keras_encoder(x):
        return {k: np.asarray(v) for k, v in zip(ENCODER_OUTPUTS, parts.encoder(x, training=False))}

    def keras_step(feeds):
        out = parts.step([feeds["token"], feeds["h"], feeds["c"]], training=False)
        return {k: np.asarray(v) for k, v in zip(STEP_OUTPUTS, out)}

    def feeds(images):
        h0, c0 = (_chunked(keras_encoder, images)[k] for k in ENCODER_OUTPUTS)
        # Every token id in turn (<pad>, which must pass the state through, <bos>, <eos>, words),
        # each from an image's own initial state.
        tokens = (np.arange(len(images)) % parts.vocab_size).astype(np.int32)[:, None]
        return {enc_spec.name: {"image": images}, stp_spec.name: {"token": tokens, "h": h0, "c": c0}}

    def agreement(images, sessions, got, expected):
        ours = onnx_greedy_decode_ids(sessions[enc_spec.name], sessions[stp_spec.name], images, max_len)
        theirs = np.concatenate([greedy_decode_ids(parts, images[i:i + REFERENCE_BATCH], max_len)
                                 for i in range(0, len(images), REFERENCE_BATCH)])
        share = row_agreement(ours, theirs)
        failures = []
        if share < CAPTION_AGREEMENT_MIN:
            failures.append(ParityFailure("captioner", "captions", f"greedy captions differ on "
                                          f"{int(round((1 - share) * len(images)))} of {len(images)} images "
                                          f"(agreement {share:.4f}, needs ≥ {CAPTION_AGREEMENT_MIN:g})"))
        return {"caption_agreement": share, "token_agreement": float(np.mean(ours == theirs))}, failures

    choice = sidecar.get("caption_choice") or {"source": "learned", "reason": "not compared: no regressor was "
                                                                                "trained with this captioner"}
    facts = {"tokenizer": tokenizer.to_dict(), "max_len": max_len, "units": parts.units,
             "special_ids": {"pad": PAD_ID, "bos": BOS_ID, "eos": EOS_ID, "unk": UNK_ID}, "caption_choice": choice}
    return Source("captioner", model, image, (Unit(enc_spec, encode, lambda f: _chunked(keras_encoder, f["image"])),
                                       Unit(stp_spec, step, keras_step)), facts, feeds, agreement)


_BUILDERS = {"classifier": _classifier, "regressor": _regressor, "captioner": _captioner}
