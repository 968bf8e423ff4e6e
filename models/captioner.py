"""CNN + LSTM captioner, trained with teacher forcing, decoded greedily one token at a time.

Three Keras models share ONE set of layer objects (so one set of weights):

* ``encoder``: ``image`` → (``h0``, ``c0``): backbone → "gap" → "enc_hidden" Dense(hidden, relu)
  → "enc_dropout" → "init_h" / "init_c" Dense(units, tanh).
* ``train``: (``image``, ``tokens_in`` (N, T) int32) → logits (N, T, vocab): the encoder (nested,
  named "encoder") gives the LSTM's initial state; "embedding" Embedding(vocab, embed_dim,
  mask_zero=True) → "lstm" LSTM(units, return_sequences=True, return_state=True) →
  "vocab_logits" Dense(vocab).
* ``step``: (``token`` (N, 1) int32, ``h``, ``c``) → (``logits`` (N, vocab), ``h_next``,
  ``c_next``): the same embedding/LSTM on one token; logits = "vocab_logits"(h) (the LSTM's last
  output IS its h). A ``<pad>`` token is masked: the state passes through unchanged.

The LSTM is a plain ``keras.layers.LSTM`` with default activations (tanh / sigmoid) so tf2onnx
turns it into the ONNX ``LSTM`` op.

Training pairs come from :func:`teacher_forcing_pairs`; :func:`masked_loss` (a scalar loss,
safe in ``compile``) and :class:`MaskedAccuracy` (a streaming metric) ignore the positions whose
target is ``<pad>`` (id 0); ``compile(loss=masked_loss, metrics=[MaskedAccuracy()])``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from catalogs.tokenizer import EOS_ID, PAD_ID, Tokenizer, greedy_caption_ids
from models.backbone import build_backbone
from models.classifier import BACKBONE_LAYER, IMAGE_INPUT
from models.config import ModelConfig

ENCODER = "encoder"
EMBEDDING = "embedding"
LSTM = "lstm"
VOCAB_LOGITS = "vocab_logits"


@dataclass(frozen=True)
class CaptionerModels:
    train: keras.Model
    encoder: keras.Model
    step: keras.Model

    @property
    def units(self) -> int:
        return int(self.train.get_layer(LSTM).units)

    @property
    def vocab_size(self) -> int:
        return int(self.train.get_layer(VOCAB_LOGITS).units)


def build_captioner(config: ModelConfig, vocab_size: int) -> CaptionerModels:
    if vocab_size < 5:
        raise ValueError(f"vocab_size must cover the 4 special tokens and at least one word, got {vocab_size}")
    image, cap = config.image, config.captioner

    # Encoder: image → initial LSTM state.
    image_in = keras.Input(shape=(image.size, image.size, image.channels), name=IMAGE_INPUT)
    x = build_backbone(image, config.backbone, name=BACKBONE_LAYER)(image_in)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(config.head.hidden, activation="relu", name="enc_hidden")(x)
    x = keras.layers.Dropout(config.head.dropout, name="enc_dropout")(x)
    h0 = keras.layers.Dense(cap.units, activation="tanh", name="init_h")(x)
    c0 = keras.layers.Dense(cap.units, activation="tanh", name="init_c")(x)
    encoder = keras.Model(image_in, [h0, c0], name=ENCODER)

    # Decoder layers, shared by train and step.
    embedding = keras.layers.Embedding(vocab_size, cap.embed_dim, mask_zero=True, name=EMBEDDING)
    lstm = keras.layers.LSTM(cap.units, return_sequences=True, return_state=True, name=LSTM)
    to_vocab = keras.layers.Dense(vocab_size, name=VOCAB_LOGITS)

    # Teacher-forced training model.
    t_image = keras.Input(shape=(image.size, image.size, image.channels), name=IMAGE_INPUT)
    tokens_in = keras.Input(shape=(None,), dtype="int32", name="tokens_in")
    th, tc = encoder(t_image)
    seq, _, _ = lstm(embedding(tokens_in), initial_state=[th, tc])
    train = keras.Model([t_image, tokens_in], to_vocab(seq), name="captioner_train")

    step = _step_model(embedding, lstm, to_vocab)
    return CaptionerModels(train=train, encoder=encoder, step=step)


def _step_model(embedding, lstm, to_vocab) -> keras.Model:
    token = keras.Input(shape=(1,), dtype="int32", name="token")
    h_in = keras.Input(shape=(lstm.units,), name="h")
    c_in = keras.Input(shape=(lstm.units,), name="c")
    _, h, c = lstm(embedding(token), initial_state=[h_in, c_in])
    # Identity layers only name the outputs (ONNX output names: logits, h_next, c_next).
    logits = keras.layers.Identity(name="logits")(to_vocab(h))
    h = keras.layers.Identity(name="h_next")(h)
    c = keras.layers.Identity(name="c_next")(c)
    return keras.Model([token, h_in, c_in], [logits, h, c], name="captioner_step")


def captioner_from_train(train: keras.Model) -> CaptionerModels:
    """Rebuild the shared (encoder, step) models from a (loaded) ``train`` model."""
    step = _step_model(train.get_layer(EMBEDDING), train.get_layer(LSTM), train.get_layer(VOCAB_LOGITS))
    return CaptionerModels(train=train, encoder=train.get_layer(ENCODER), step=step)


def teacher_forcing_pairs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Encoded captions (N, T) → (``tokens_in`` (N, T-1), ``targets`` (N, T-1)).

    ``targets`` is ``ids`` shifted left; in ``tokens_in`` the ``<eos>`` becomes ``<pad>`` (the
    model never reads past ``<eos>``), so the embedding mask of ``tokens_in`` coincides exactly
    with the positions whose target is not ``<pad>``.
    """
    ids = np.asarray(ids, dtype=np.int32)
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ValueError(f"expected encoded captions (N, T ≥ 2), got {ids.shape}")
    tokens_in = ids[:, :-1].copy()
    tokens_in[tokens_in == EOS_ID] = PAD_ID
    return tokens_in, ids[:, 1:].copy()


def _target_mask(y_true, dtype):
    y_true = ops.cast(y_true, "int32")
    if len(y_true.shape) == 3:  # (N, T, 1)
        y_true = ops.squeeze(y_true, axis=-1)
    return y_true, ops.cast(ops.not_equal(y_true, PAD_ID), dtype)


@keras.saving.register_keras_serializable(package="morphcat")
def masked_loss(y_true, y_pred):
    """Mean sparse categorical cross-entropy (from logits) over positions whose target ≠ ``<pad>``.

    Returns a scalar, so Keras' own mask/sample-weight handling cannot reweight it (a scalar loss
    scaled by a propagated mask averages back to itself); 0 when every target is ``<pad>``.
    """
    y_true, mask = _target_mask(y_true, y_pred.dtype)
    ce = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return ops.sum(ce * mask) / ops.maximum(ops.sum(mask), 1.0)


def masked_accuracy(y_true, y_pred):
    """Token accuracy of the arg-max prediction over positions whose target ≠ ``<pad>`` (a scalar).

    For eager use. In ``compile(metrics=...)`` use :class:`MaskedAccuracy` instead: Keras treats
    a metric *function* as per-position values and fails on a scalar.
    """
    hits, mask = _hits_and_mask(y_true, y_pred)
    return ops.sum(hits * mask) / ops.maximum(ops.sum(mask), 1.0)


def _hits_and_mask(y_true, y_pred):
    y_true, mask = _target_mask(y_true, y_pred.dtype)
    predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    return ops.cast(ops.equal(predicted, y_true), y_pred.dtype), mask


@keras.saving.register_keras_serializable(package="morphcat")
class MaskedAccuracy(keras.metrics.Metric):
    """Streaming token accuracy over non-``<pad>`` targets: hits / real tokens over all batches
    seen (not a mean of per-batch ratios). Ignores Keras' propagated mask and sample weights."""

    def __init__(self, name: str = "masked_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.hits = self.add_variable(shape=(), initializer="zeros", name="hits")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        hits, mask = _hits_and_mask(y_true, ops.convert_to_tensor(y_pred))
        self.hits.assign_add(ops.cast(ops.sum(hits * mask), self.dtype))
        self.count.assign_add(ops.cast(ops.sum(mask), self.dtype))

    def result(self):
        return ops.divide_no_nan(self.hits, self.count)

    def reset_state(self):
        self.hits.assign(0.0)
        self.count.assign(0.0)


def greedy_decode_ids(models: CaptionerModels, images, max_len: int) -> np.ndarray:
    """Greedy token ids (N, max_len) int32 of the Keras captioner
    (``catalogs.tokenizer.greedy_caption_ids``)."""

    def encode(x):
        return tuple(np.asarray(t) for t in models.encoder(x, training=False))

    def step(token, h, c):
        return tuple(np.asarray(t) for t in models.step([token, h, c], training=False))

    return greedy_caption_ids(encode, step, images, max_len)


def greedy_decode(models: CaptionerModels, images, tokenizer: Tokenizer, max_len: int) -> list[str]:
    """Greedy captions for a batch of images (the reference for the ONNX decoder)."""
    return tokenizer.decode(greedy_decode_ids(models, images, max_len))
