"""Training the three models from a catalog. Pure of file I/O except for reading images through
``models.data``: saving is ``models.artifacts``'s job, orchestration the flows'."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from catalogs.contract import Catalog
from catalogs.errors import CatalogError
from catalogs.labels import CLASSES
from catalogs.targets import kaggle_targets, vote_matrix
from catalogs.tokenizer import Tokenizer
from catalogs.tree import GZ2_TREE
from models.captioner import EMBEDDING, LSTM, VOCAB_LOGITS, MaskedAccuracy, build_captioner, masked_loss
from models.classifier import BACKBONE_LAYER, build_classifier
from models.config import ModelConfig, TrainSettings
from models.data import assign_splits, class_weights, decode_images, training_dataset
from models.errors import TrainingError
from models.morphology import build_morphology
from models.ood import fit_reference
from models.regressor import build_regressor

MODEL_KINDS = ("classifier", "regressor", "captioner")
VOTES_LOSS_WEIGHT = 20.0


@dataclass
class TrainedModel:
    kind: str
    model: keras.Model
    sidecar: dict  # everything inference needs, saved next to the .keras file
    history: dict[str, list[float]] = field(default_factory=dict)
    extra_models: dict[str, keras.Model] = field(default_factory=dict)


def catalog_fingerprint(catalog: Catalog) -> str:
    """A hash of what training saw: ids, image paths and targets (not the root, which moves)."""
    h = hashlib.sha256()
    for name in sorted(catalog.table.column_names):
        h.update(name.encode())
        h.update(repr(catalog.table.column(name).to_pylist()).encode())
    return h.hexdigest()[:16]


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("tensorflow", "keras", "numpy", "morphcat")}


def _split_rows(catalog: Catalog, settings: TrainSettings, usable: np.ndarray) -> dict[str, np.ndarray]:
    splits = assign_splits(catalog.table.column("object_id").to_pylist(), settings.val_fraction, settings.test_fraction)
    rows = {s: np.flatnonzero((splits == s) & usable) for s in ("train", "val", "test")}
    if len(rows["train"]) == 0 or len(rows["val"]) == 0:
        raise CatalogError(f"too few usable rows to train ({int(usable.sum())}: {len(rows['train'])} train, "
                           f"{len(rows['val'])} validation); the split is a hash of object_id, so use a larger catalog")
    return rows


def _callbacks(settings: TrainSettings) -> list:
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience, restore_best_weights=True)]


def _optimizer(settings: TrainSettings, n_train: int, batch_size: int | None = None) -> keras.optimizers.Optimizer:
    """Adam on a cosine schedule with a short warm-up, spanning the maximum number of epochs: the
    rate falls smoothly over the planned run, not in steps triggered by a validation loss that is
    noisy on small catalogs (few steps per epoch)."""
    steps = max(1, -(-n_train // (batch_size or settings.batch_size))) * settings.epochs
    warmup = min(steps // 10, 200)
    schedule = keras.optimizers.schedules.CosineDecay(
        settings.learning_rate * 0.1, max(1, steps - warmup), alpha=0.01,
        warmup_target=settings.learning_rate, warmup_steps=warmup)
    return keras.optimizers.Adam(schedule)


def _base_sidecar(kind: str, catalog: Catalog, config: ModelConfig, settings: TrainSettings,
                  rows: dict[str, np.ndarray], failures: dict[str, str]) -> dict:
    return {
        "kind": kind,
        "config": config.to_dict(),
        "seed": settings.seed,
        "settings": settings.__dict__,
        "catalog_fingerprint": catalog_fingerprint(catalog),
        "split": {"salt": "morphcat-split-v1", "val_fraction": settings.val_fraction,
                  "test_fraction": settings.test_fraction, **{f"{k}_rows": int(len(v)) for k, v in rows.items()}},
        "undecodable_images": failures,
        "versions": versions(),
    }


def _ood_reference(classifier: keras.Model, decoded: dict) -> dict:
    """The out-of-distribution reference (``models.ood``): fitted on the training split's
    features, scaled on the validation split's; saved in the classifier's sidecar."""
    backbone = classifier.get_layer(BACKBONE_LAYER)  # GAP of its output is the classifier's gap layer
    fit = _pooled_features(backbone, decoded["train"].dataset, views=False)
    calibration = _pooled_features(backbone, decoded["val"].dataset, views=False)
    return fit_reference(fit, calibration).to_dict()


def _class_names(labels: list) -> list[str]:
    present = {x for x in labels if x is not None}
    canonical = [c for c in CLASSES if c in present]
    return canonical + sorted(present - set(canonical))


def _fit(model, train_ds, val_ds, settings, callbacks: Sequence = ()) -> tuple[dict, float]:
    """Fit with early stopping; progress is the caller's (``callbacks``), never Keras' own lines."""
    t0 = time.perf_counter()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=settings.epochs,
                     callbacks=_callbacks(settings) + [c for c in callbacks if c is not None], verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return history, time.perf_counter() - t0


def init_backbone(model: keras.Model, source: keras.Model | None) -> None:
    """Start ``model``'s backbone from ``source``'s weights (synthetic pretraining); the shapes
    must match exactly, i.e. the same backbone config and input size."""
    if source is None:
        return
    own = model.get_layer(BACKBONE_LAYER)
    theirs = source.get_weights()
    mine = own.get_weights()
    if len(theirs) != len(mine) or any(a.shape != b.shape for a, b in zip(theirs, mine)):
        raise TrainingError("the pretrained backbone does not fit this model (different backbone or input size); "
                           "train with the pretrained models' --image-size")
    own.set_weights(theirs)


def _decoded(catalog, rows, spec):
    return {split: decode_images(catalog, r, spec) for split, r in rows.items()}


def train_classifier(catalog: Catalog, config: ModelConfig, settings: TrainSettings,
                     init: keras.Model | None = None, callbacks: Sequence = ()) -> TrainedModel:
    keras.utils.set_random_seed(settings.seed)
    labels = catalog.table.column("label").to_pylist() if "label" in catalog.table.column_names else []
    if not any(label is not None for label in labels):
        raise CatalogError("the classifier needs a 'label' column with values (ingest derives it from GZ2 votes)")
    class_names = _class_names(labels)
    rows = _split_rows(catalog, settings, np.array([x is not None for x in labels]))
    dec = _decoded(catalog, rows, config.image)
    index = {c: i for i, c in enumerate(class_names)}
    y = {s: np.array([index[labels[r]] for r in d.good_rows], np.int32) for s, d in dec.items()}
    weights = class_weights(np.array([labels[r] for r in dec["train"].good_rows]), class_names)
    model = build_classifier(config, class_names)
    init_backbone(model, init)
    model.compile(optimizer=_optimizer(settings, len(dec["train"].good_rows)),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    train = training_dataset(dec["train"].dataset, y["train"], settings.batch_size, True, True, settings.seed, weights)
    val = training_dataset(dec["val"].dataset, y["val"], settings.batch_size, False, False, settings.seed)
    history, seconds = _fit(model, train, val, settings, callbacks)
    sidecar = _base_sidecar("classifier", catalog, config, settings, rows,
                            {k: v for d in dec.values() for k, v in d.failures.items()})
    sidecar.update(class_names=class_names, label_column="label", train_seconds=round(seconds, 1),
                   epochs_run=len(history.get("loss", [])), ood=_ood_reference(model, dec))
    return TrainedModel("classifier", model, sidecar, history)


def train_morphology(catalog: Catalog, config: ModelConfig, settings: TrainSettings,
                     init: keras.Model | None = None, callbacks: Sequence = ()) -> list[TrainedModel]:
    """Classifier and regressor trained jointly on one backbone (see ``models.morphology``), on
    the rows that have both a label and vote fractions; returns the two standalone models.
    ``init``: a trained backbone to start from (e.g. pretrained on the synthetic survey)."""
    keras.utils.set_random_seed(settings.seed)
    if "label" not in catalog.table.column_names or not catalog.has_votes:
        raise CatalogError("training the classifier and regressor together needs both a 'label' column and the "
                           "37 GZ2 vote fractions; train them separately with --models classifier or regressor")
    labels = catalog.table.column("label").to_pylist()
    targets = kaggle_targets(catalog.table).astype(np.float32)
    has_votes = ~np.isnan(vote_matrix(catalog.table)).all(axis=1)
    class_names = _class_names(labels)
    rows = _split_rows(catalog, settings, np.array([x is not None for x in labels]) & has_votes)
    dec = _decoded(catalog, rows, config.image)
    index = {c: i for i, c in enumerate(class_names)}
    y = {s: {"probs": np.array([index[labels[r]] for r in d.good_rows], np.int32), "votes": targets[d.good_rows]}
         for s, d in dec.items()}
    weights = class_weights(np.array([labels[r] for r in dec["train"].good_rows]), class_names)
    models = build_morphology(config, class_names)
    init_backbone(models.joint, init)
    models.joint.compile(
        optimizer=_optimizer(settings, len(dec["train"].good_rows)),
        loss={"probs": keras.losses.SparseCategoricalCrossentropy(), "votes": keras.losses.MeanSquaredError()},
        # MSE of fractions is ~100x smaller than a cross-entropy: weigh it up so both heads learn.
        loss_weights={"probs": 1.0, "votes": VOTES_LOSS_WEIGHT},
        metrics={"probs": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                 "votes": [keras.metrics.RootMeanSquaredError(name="rmse")]},
    )
    ones = np.ones(len(weights), np.float32)
    train = training_dataset(dec["train"].dataset, y["train"], settings.batch_size, True, True, settings.seed,
                             {"probs": weights, "votes": ones})
    val = training_dataset(dec["val"].dataset, y["val"], settings.batch_size, False, False, settings.seed)
    history, seconds = _fit(models.joint, train, val, settings, callbacks)
    failures = {k: v for d in dec.values() for k, v in d.failures.items()}
    common = dict(train_seconds=round(seconds, 1), epochs_run=len(history.get("loss", [])),
                  trained_jointly=True)
    clf = _base_sidecar("classifier", catalog, config, settings, rows, failures)
    clf.update(class_names=class_names, label_column="label", ood=_ood_reference(models.classifier, dec), **common)
    reg = _base_sidecar("regressor", catalog, config, settings, rows, failures)
    reg.update(target_columns=list(GZ2_TREE.kaggle_columns), answer_names=list(GZ2_TREE.output_names), **common)
    return [TrainedModel("classifier", models.classifier, clf, history),
            TrainedModel("regressor", models.regressor, reg, history)]


def train_regressor(catalog: Catalog, config: ModelConfig, settings: TrainSettings,
                    init: keras.Model | None = None, callbacks: Sequence = ()) -> TrainedModel:
    keras.utils.set_random_seed(settings.seed)
    if not catalog.has_votes:
        raise CatalogError("the regressor needs the 37 GZ2 vote-fraction columns")
    targets = kaggle_targets(catalog.table).astype(np.float32)
    votes_present = ~np.isnan(vote_matrix(catalog.table)).all(axis=1)
    rows = _split_rows(catalog, settings, votes_present)
    dec = _decoded(catalog, rows, config.image)
    y = {s: targets[d.good_rows] for s, d in dec.items()}
    model = build_regressor(config)
    init_backbone(model, init)
    model.compile(optimizer=_optimizer(settings, len(dec["train"].good_rows)), loss="mse",
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
    train = training_dataset(dec["train"].dataset, y["train"], settings.batch_size, True, True, settings.seed)
    val = training_dataset(dec["val"].dataset, y["val"], settings.batch_size, False, False, settings.seed)
    history, seconds = _fit(model, train, val, settings, callbacks)
    sidecar = _base_sidecar("regressor", catalog, config, settings, rows,
                            {k: v for d in dec.values() for k, v in d.failures.items()})
    sidecar.update(target_columns=list(GZ2_TREE.kaggle_columns), answer_names=list(GZ2_TREE.output_names),
                   train_seconds=round(seconds, 1), epochs_run=len(history.get("loss", [])))
    return TrainedModel("regressor", model, sidecar, history)


def _dihedral_views(images: np.ndarray) -> np.ndarray:
    """All 8 rotations/flips of a batch (N, H, W, C) → (8N, H, W, C), view-major."""
    views = [np.rot90(images, k, axes=(1, 2)) for k in range(4)]
    views += [v[:, :, ::-1] for v in views]
    return np.concatenate(views)


def _pooled_features(backbone: keras.Model, images: tf.data.Dataset, views: bool) -> np.ndarray:
    pool = keras.layers.GlobalAveragePooling2D()
    out = []
    for batch in images.batch(128):
        x = _dihedral_views(batch.numpy()) if views else batch.numpy()
        out.append(pool(backbone(x, training=False)).numpy())
    if views:  # back to (8 views × N) order across batches
        per_batch = [f.reshape(8, -1, f.shape[-1]) for f in out]
        return np.concatenate(per_batch, axis=1).reshape(-1, out[0].shape[-1])
    return np.concatenate(out)


def train_captioner(catalog: Catalog, config: ModelConfig, settings: TrainSettings,
                    backbone: keras.Model | None = None, callbacks: Sequence = ()) -> TrainedModel:
    """CNN encoder + LSTM decoder with teacher forcing.

    With ``backbone`` (the trained classifier/regressor backbone), the captioner's backbone is a
    frozen copy of it and the rest is trained on its pooled features, precomputed once for the
    8 rotations/flips of every training image: the captions describe the same morphology the
    vote regressor learnt, and training costs seconds instead of another full CNN training.
    Without it, the whole captioner trains end to end on augmented images.
    """
    keras.utils.set_random_seed(settings.seed)
    captions = catalog.table.column("caption").to_pylist() if "caption" in catalog.table.column_names else []
    if not any(c for c in captions):
        raise CatalogError("the captioner needs a 'caption' column (ingest derives it from GZ2 votes)")
    rows = _split_rows(catalog, settings, np.array([bool(c) for c in captions]))
    tokenizer = Tokenizer.fit([captions[r] for r in rows["train"]])
    max_len = config.captioner.max_len
    dec = _decoded(catalog, rows, config.image)
    tokens = {s: tokenizer.encode([captions[r] for r in d.good_rows], max_len) for s, d in dec.items()}
    models = build_captioner(config, tokenizer.vocab_size)
    if backbone is not None:
        own = models.encoder.get_layer("backbone")
        own.set_weights(backbone.get_weights())
        own.trainable = False
        trainable = _feature_decoder(models)
        feats = {"train": _pooled_features(own, dec["train"].dataset, views=True),
                 "val": _pooled_features(own, dec["val"].dataset, views=False)}
        reps = {"train": 8, "val": 1}
        data = {s: tf.data.Dataset.from_tensor_slices(
            ((feats[s], np.tile(tokens[s][:, :-1], (reps[s], 1))), np.tile(tokens[s][:, 1:], (reps[s], 1))))
            for s in ("train", "val")}
        train = data["train"].shuffle(8192, seed=settings.seed).batch(settings.batch_size * 2).prefetch(2)
        val = data["val"].batch(settings.batch_size * 2)
        mode = "frozen trained backbone; decoder trained on pooled features of 8 rotations/flips"
        optimizer = _optimizer(settings, 8 * len(dec["train"].good_rows), settings.batch_size * 2)
    else:
        trainable = models.train

        def as_inputs(ds):
            return ds.map(lambda x, t: ((x, t[0]), t[1]))

        pairs = {s: (tokens[s][:, :-1], tokens[s][:, 1:]) for s in ("train", "val")}
        train = as_inputs(training_dataset(dec["train"].dataset, pairs["train"], settings.batch_size, True, True,
                                           settings.seed))
        val = as_inputs(training_dataset(dec["val"].dataset, pairs["val"], settings.batch_size, False, False,
                                         settings.seed))
        mode = "end to end on augmented images"
        optimizer = _optimizer(settings, len(dec["train"].good_rows))
    trainable.compile(optimizer=optimizer, loss=masked_loss, metrics=[MaskedAccuracy()])
    history, seconds = _fit(trainable, train, val, settings, callbacks)
    sidecar = _base_sidecar("captioner", catalog, config, settings, rows,
                            {k: v for d in dec.values() for k, v in d.failures.items()})
    sidecar.update(tokenizer=tokenizer.to_dict(), max_len=max_len, train_seconds=round(seconds, 1),
                   epochs_run=len(history.get("loss", [])), training_mode=mode)
    return TrainedModel("captioner", models.train, sidecar, history,
                        extra_models={"encoder": models.encoder, "step": models.step})


def _feature_decoder(models) -> keras.Model:
    """The captioner minus its backbone: pooled features + tokens → logits, sharing the layers."""
    enc = models.encoder
    feats = keras.Input(shape=(enc.get_layer("enc_hidden").kernel.shape[0],), name="pooled")
    x = enc.get_layer("enc_dropout")(enc.get_layer("enc_hidden")(feats))
    h0, c0 = enc.get_layer("init_h")(x), enc.get_layer("init_c")(x)
    tokens_in = keras.Input(shape=(None,), dtype="int32", name="tokens_in")
    seq, _, _ = models.train.get_layer(LSTM)(models.train.get_layer(EMBEDDING)(tokens_in), initial_state=[h0, c0])
    return keras.Model([feats, tokens_in], models.train.get_layer(VOCAB_LOGITS)(seq), name="captioner_features")
