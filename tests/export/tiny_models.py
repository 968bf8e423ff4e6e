"""Tiny trained-looking models for export tests: the builders' tiny config, saved with their
sidecars exactly as ``morphcat train`` saves them, and made to answer differently for different
images (a bundle whose classifier always says one class, or whose captions all stop at the same
place, would not exercise per-image Grad-CAM classes or per-row decoding stops)."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from catalogs.outputs import EMBEDDING_DIM
from catalogs.tokenizer import BOS_ID, EOS_ID, SPECIALS, Tokenizer
from catalogs.tree import GZ2_TREE
from models.artifacts import save_trained
from models.captioner import build_captioner, masked_loss, teacher_forcing_pairs
from models.classifier import grad_cam_model, pooled_features
from models.embedding import fit_projection
from models.morphology import build_morphology
from models.ood import fit_reference
from models.train import TrainedModel
from tests.models.test_builders import CFG, CLASSES, VOCAB

KINDS = ("classifier", "regressor", "captioner")
SIZE = CFG.image.size
TOKENIZER = Tokenizer(SPECIALS + tuple(f"w{i}" for i in range(VOCAB - len(SPECIALS))))
HISTORY = {"loss": [1.2, 0.9, 0.8], "val_loss": [1.3, 1.0, 1.1], "accuracy": [0.4, 0.5, 0.6]}
CAPTION_FIT_EPOCHS = 40


def structured_images(n: int, seed: int) -> np.ndarray:
    """Noise of per-image brightness and colour with one bright square: images that differ in
    ways a small CNN notices."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, SIZE, SIZE, 3), dtype=np.float32) * rng.uniform(0.05, 1.0, (n, 1, 1, 3)).astype(np.float32)
    for i in range(n):
        r, c = rng.integers(0, SIZE - SIZE // 4, 2)
        x[i, r:r + SIZE // 4, c:c + SIZE // 4] = rng.uniform(0.5, 1.0, 3)
    return x


def vary_weights(model: keras.Model, seed: int) -> None:
    """Non-default batch-norm statistics and biases, so that their conversion is exercised; the
    initialised kernels are kept (fully random ones drown the image in the biases)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        shape, path = tuple(w.shape), w.path
        if "variance" in path or "gamma" in path:
            w.assign(rng.uniform(0.5, 1.5, shape).astype(np.float32))
        elif "moving_mean" in path or "beta" in path or "bias" in path:
            w.assign(rng.normal(0, 0.1, shape).astype(np.float32))


def _centre_logits(classifier: keras.Model, seed: int) -> None:
    """Shift the logit biases by their mean over some images, so the predicted class varies."""
    _, logits = grad_cam_model(classifier)(structured_images(64, seed + 100), training=False)
    layer = classifier.get_layer("logits")
    layer.bias.assign(layer.bias.numpy() - np.asarray(logits).mean(axis=0))


def _teach_lengths(train: keras.Model, seed: int) -> None:
    """A few epochs of teacher forcing on captions of 1 to 9 words: greedy captions then stop
    at different positions for different images."""
    rng = np.random.default_rng(seed)
    max_len = CFG.captioner.max_len
    ids = np.zeros((16, max_len), np.int32)
    for i in range(16):
        n = 1 + i % 9
        ids[i, 0], ids[i, n + 1] = BOS_ID, EOS_ID
        ids[i, 1:n + 1] = rng.integers(len(SPECIALS), VOCAB, n)
    tokens_in, targets = teacher_forcing_pairs(ids)
    train.compile(optimizer=keras.optimizers.Adam(0.03), loss=masked_loss)
    train.fit([structured_images(16, seed), tokens_in], targets, epochs=CAPTION_FIT_EPOCHS, batch_size=16, verbose=0)


def _sidecar(kind: str, **extra) -> dict:
    return {"kind": kind, "config": CFG.to_dict(), "seed": 0, "catalog_fingerprint": "tiny", **extra}


def build_tiny(kind: str, seed: int = 1) -> TrainedModel:
    keras.utils.set_random_seed(seed)
    if kind == "classifier":
        model = build_morphology(CFG, CLASSES).classifier
        vary_weights(model, seed)
        _centre_logits(model, seed)
        fit = pooled_features(model, structured_images(48, seed + 200))
        reference = fit_reference(fit, pooled_features(model, structured_images(16, seed + 300)))
        sidecar = _sidecar(kind, class_names=list(CLASSES), epochs_run=3, train_seconds=1.5, ood=reference.to_dict(),
                           embedding=fit_projection(fit, EMBEDDING_DIM).to_dict())
        return TrainedModel(kind, model, sidecar, dict(HISTORY))
    if kind == "regressor":
        model = build_morphology(CFG, CLASSES).regressor
        vary_weights(model, seed)
        return TrainedModel(kind, model, _sidecar(kind, answer_names=list(GZ2_TREE.output_names),
                                                  target_columns=list(GZ2_TREE.kaggle_columns)))
    model = build_captioner(CFG, VOCAB).train
    vary_weights(model, seed)
    _teach_lengths(model, seed)
    return TrainedModel(kind, model, _sidecar(kind, tokenizer=TOKENIZER.to_dict(), max_len=CFG.captioner.max_len))


def write_tiny_models(out: Path, kinds=KINDS) -> Path:
    for kind in kinds:
        save_trained(build_tiny(kind), Path(out))
    return Path(out)
