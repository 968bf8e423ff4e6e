"""Training the three models on one or more catalogs. Pure of file I/O except for reading images
through ``models.data``: saving is ``models.artifacts``'s job, orchestration the flows'.

Every row contributes the losses it has targets for: a class where it has a ``label``, the 37
vote fractions where it has them, a caption where it has one (``models.data.TrainingSet``). The
class list is the union of the catalogs' labels; class imbalance is met with balanced class
weights raised to ``TrainSettings.class_balance``. After training the classifier is calibrated
(one temperature fitted on the validation split, folded into its last layer) and given its
out-of-distribution reference.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from catalogs.contract import Catalog
from catalogs.errors import CatalogError
from catalogs.fingerprints import catalog_fingerprint
from catalogs.inputs import dihedral_views
from catalogs.outputs import EMBEDDING_DIM
from catalogs.tokenizer import Tokenizer
from catalogs.tree import GZ2_TREE
from models.calibration import expected_calibration_error, fit_temperature, softmax
from models.captioner import EMBEDDING, LSTM, VOCAB_LOGITS, MaskedAccuracy, build_captioner, masked_loss
from models.classifier import BACKBONE_LAYER, fold_temperature, head_suffix, logits
from models.config import ModelConfig, TrainSettings
from models.data import SPLIT_SALT, TrainingSet, augmenter, training_set, weigh_pseudo
from models.embedding import fit_projection
from models.errors import TrainingError
from models.heads import class_heads, head_targets
from models.morphology import build_morphology
from models.ood import fit_reference
from models.precision import dtype_policy, training_precision

MODEL_KINDS = ("classifier", "regressor", "captioner")
VOTES_LOSS_WEIGHT = 20.0  # MSE of fractions is ~100× smaller than a cross-entropy: weigh it up
VOTE_OUTPUTS = ("votes", "votes_raw")  # the debiased vote head and, with vote_targets="both", the raw one


@dataclass
class TrainedModel:
    kind: str
    model: keras.Model
    sidecar: dict  # everything inference needs, saved next to the .keras file
    history: dict[str, list[float]] = field(default_factory=dict)
    extra_models: dict[str, keras.Model] = field(default_factory=dict)


def versions() -> dict[str, str]:
    import importlib.metadata as md

    return {p: md.version(p) for p in ("tensorflow", "keras", "numpy", "morphcat")}


def _check_rows(tset: TrainingSet, having: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    train, val = tset.rows_of("train", having), tset.rows_of("val", having)
    if len(train) == 0 or len(val) == 0:
        raise CatalogError(f"too few rows with {what} to train ({int(having.sum())}: {len(train)} train, {len(val)} "
                           "validation); the split is a hash of object_id, so use a larger catalog")
    return train, val


def _callbacks(settings: TrainSettings) -> list:
    return [keras.callbacks.EarlyStopping(monitor="val_loss", patience=settings.patience, restore_best_weights=True)]


def _optimizer(settings: TrainSettings, n_train: int, batch_size: int | None = None) -> keras.optimizers.Optimizer:
    """AdamW on a cosine schedule with a short warm-up, spanning the maximum number of epochs:
    the rate falls smoothly over the planned run, not in steps triggered by a validation loss
    that is noisy on small catalogs (few steps per epoch)."""
    steps = max(1, -(-n_train // (batch_size or settings.batch_size))) * settings.epochs
    warmup = min(steps // 10, 300)
    schedule = keras.optimizers.schedules.CosineDecay(
        settings.learning_rate * 0.1, max(1, steps - warmup), alpha=0.01,
        warmup_target=settings.learning_rate, warmup_steps=warmup)
    return keras.optimizers.AdamW(schedule, weight_decay=settings.weight_decay)


def _fit(model, train_ds, val_ds, settings, callbacks: Sequence = ()) -> tuple[dict, float, float]:
    """Fit with early stopping; progress is the caller's (``callbacks``), never Keras' own lines.
    Returns the history, the wall seconds and the process's CPU seconds (all its threads): on a
    machine shared with other work the CPU seconds still measure this fit's own cost."""
    t0, c0 = time.perf_counter(), time.process_time()
    hist = model.fit(train_ds, validation_data=val_ds, epochs=settings.epochs, shuffle=False,  # tf.data shuffles
                     callbacks=_callbacks(settings) + [c for c in callbacks if c is not None], verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return history, time.perf_counter() - t0, time.process_time() - c0


def _batches(tset: TrainingSet, idx: np.ndarray, targets, weights, spec, settings: TrainSettings,
             train: bool) -> tf.data.Dataset:
    """Images of rows ``idx`` zipped with their targets and sample weights (arrays, or dicts of
    arrays for several outputs; ``weights`` None for none); shuffled and augmented for training."""
    parts = [tset.images(idx, spec), tf.data.Dataset.from_tensor_slices(targets)]
    if weights is not None:
        parts.append(tf.data.Dataset.from_tensor_slices(weights))
    ds = tf.data.Dataset.zip(tuple(parts))
    if train:
        augment = augmenter(settings.augment, settings.seed)
        ds = ds.shuffle(len(idx), seed=settings.seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda x, *rest: (augment(x), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(settings.batch_size).prefetch(tf.data.AUTOTUNE)


def _base_sidecar(kind: str, tset: TrainingSet, config: ModelConfig, settings: TrainSettings) -> dict:
    return {
        "kind": kind,
        "config": config.to_dict(),
        "seed": settings.seed,
        "settings": settings.__dict__,
        # Every catalog trained on, by name: evaluation finds a catalog's held-out split by its
        # fingerprint, export its parity images.
        "catalogs": [{"name": n, "fingerprint": catalog_fingerprint(c)} for n, c in zip(tset.names, tset.catalogs)],
        "split": {"salt": SPLIT_SALT, "val_fraction": settings.val_fraction, "test_fraction": settings.test_fraction,
                  "rows": tset.split_counts()},
        "undecodable_images": tset.failures,
        "versions": versions(),
    }


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
                            "train with the pretrained models' `image_size`")
    own.set_weights(theirs)


def _pixels(tset: TrainingSet, idx: np.ndarray, spec) -> np.ndarray:
    return tset.pixels[idx].astype(np.float32) * np.float32(spec.scale)


def _calibrate(classifier: keras.Model, head: int, tset: TrainingSet, val: np.ndarray, class_names, spec) -> dict:
    """Fit class head ``head``'s own temperature on its validation rows, fold it into its logits,
    and report the validation ECE before and after."""
    if len(val) == 0:
        raise CatalogError("no validation rows for a class head to calibrate on; the split is a hash of object_id, "
                           "so use a larger catalog")
    z = logits(classifier, _pixels(tset, val, spec), head)
    index = {c: i for i, c in enumerate(class_names)}
    y = np.array([index[tset.labels[r]] for r in val])
    temperature = fit_temperature(z, y)
    before = expected_calibration_error(softmax(z), y)
    after = expected_calibration_error(softmax(z / temperature), y)
    fold_temperature(classifier, temperature, head)
    return {"method": "temperature scaling on the validation split", "temperature": round(temperature, 6),
            "val_rows": int(len(val)), "val_ece_before": round(before, 4), "val_ece_after": round(after, 4)}


def _feature_references(classifier: keras.Model, tset: TrainingSet, train: np.ndarray, val: np.ndarray,
                        spec) -> dict:
    """What the exporter bakes into the classifier's graph from its pooled features, saved in
    the classifier's sidecar: the out-of-distribution reference (``models.ood``: fitted on the
    training split's features, scaled on the validation split's) and the embedding projection
    (``models.embedding``: PCA of the training split's features)."""
    backbone = classifier.get_layer(BACKBONE_LAYER)  # GAP of its output is the classifier's gap layer
    fit = _pooled_features(backbone, tset.images(train, spec), views=False)
    calibration = _pooled_features(backbone, tset.images(val, spec), views=False)
    return {"ood": fit_reference(fit, calibration).to_dict(),
            "embedding": fit_projection(fit, EMBEDDING_DIM).to_dict()}


def targets_and_weights(tset: TrainingSet, idx: np.ndarray, kinds: Sequence[str], class_heads, row_head,
                        settings: TrainSettings, balanced: bool) -> tuple[dict, dict]:
    """Targets and per-row loss weights of rows ``idx`` per model output: every class head's
    (``models.heads.head_targets``) when the classifier is trained, and ``votes`` when the
    regressor is. A row without votes weighs 0 in the vote loss, one without a label (or of
    another scheme) 0 in a class head's, so each row trains only what it has targets for.
    ``balanced``: class weights (training rows) instead of 1. Pseudo-labelled rows weigh
    ``settings.pseudo_weight`` of the others in every output (``models.data.weigh_pseudo``)."""
    y, w = {}, {}
    if "classifier" in kinds:
        y, w = head_targets(tset, idx, class_heads, row_head, settings.class_balance, settings.soft_targets, balanced)
    if "regressor" in kinds:
        sets = {"votes": tset.votes} | ({} if tset.votes_raw is None else {"votes_raw": tset.votes_raw})
        for output, votes in sets.items():
            voted = ~np.isnan(votes[idx]).all(axis=1)
            y[output] = np.nan_to_num(votes[idx])
            # Keras averages over the batch: scaled so the vote loss is the mean over rows with votes.
            w[output] = voted.astype(np.float32) / max(float(voted.mean()), 1e-6)
    teacher = tset.is_pseudo[idx]
    if teacher.any():
        w = {o: weigh_pseudo(weight, teacher, settings.pseudo_weight) for o, weight in w.items()}
    return y, w


def train_morphology(catalogs: Sequence[Catalog], names: Sequence[str], config: ModelConfig,
                     settings: TrainSettings, heads: Sequence[str] = ("classifier", "regressor"),
                     init: keras.Model | None = None, callbacks: Sequence = (),
                     test_masks: Sequence[np.ndarray] | None = None,
                     pseudo: Sequence[bool] | None = None) -> list[TrainedModel]:
    """The classifier and/or the vote regressor (``heads``) on one backbone (see
    ``models.morphology``): trained jointly when both are asked for, each row adding the losses
    it has targets for. ``init``: a trained backbone to start from (synthetic pretraining).
    ``test_masks``: rows held out per catalog (a cross-validation fold) instead of the hashed
    test split. ``pseudo``: per catalog, whether its targets are a teacher's (``models.pseudo``).
    Returns the standalone models, ready to save."""
    heads = tuple(heads)
    if not heads or set(heads) - {"classifier", "regressor"}:
        raise ValueError(f"heads must be classifier and/or regressor, got {heads}")
    keras.utils.set_random_seed(settings.seed)
    spec = config.image
    wanted = tuple(t for h, t in (("classifier", "label"), ("regressor", "votes")) if h in heads)
    tset = training_set(catalogs, names, spec, settings.val_fraction, settings.test_fraction, test_masks, wanted,
                        settings.vote_targets, pseudo)
    has_label, has_votes = tset.has_label, tset.has_votes
    lacking = [need for head, need, have in (("classifier", "a 'label' column with values", has_label),
                                             ("regressor", "the 37 GZ2 vote fractions", has_votes))
               if head in heads and not have.any()]
    if lacking:
        what = " and ".join(heads)
        raise CatalogError(f"training the {what} needs {'both ' if len(lacking) > 1 else ''}{' and '.join(lacking)} "
                           "in at least one catalog (ingest derives labels from GZ2 votes); train the models one at a "
                           "time with `models` to use what the catalogs have")
    usable = (has_label if "classifier" in heads else False) | (has_votes if "regressor" in heads else False)
    train, val = _check_rows(tset, usable, "the targets of the " + " and ".join(heads))
    class_heads, row_head = _class_heads(tset, settings) if "classifier" in heads else ([], None)
    head_names = [list(h.class_names) for h in class_heads] or [["_", "__"]]
    precision = training_precision(settings.precision)
    raw_votes = tset.votes_raw is not None and "regressor" in heads
    with dtype_policy(precision):
        models = build_morphology(config, head_names[0], head_names[1:], raw_votes)
    outputs = [f"probs{head_suffix(h)}" for h in range(len(class_heads))] + (["votes"] if "regressor" in heads else [])
    outputs += ["votes_raw"] if raw_votes else []
    model = keras.Model(models.joint.input, {o: models.joint.get_layer(o).output for o in outputs}, name="training")
    init_backbone(model, init)

    model.compile(optimizer=_optimizer(settings, len(train)),
                  loss={o: keras.losses.MeanSquaredError() if o in VOTE_OUTPUTS else keras.losses.CategoricalCrossentropy()
                        for o in outputs},
                  # weighted: a row counts only in the outputs it has targets for (its weight is 0 elsewhere)
                  weighted_metrics={o: [keras.metrics.RootMeanSquaredError(name="rmse") if o in VOTE_OUTPUTS
                                        else keras.metrics.CategoricalAccuracy(name="accuracy")] for o in outputs},
                  loss_weights={o: VOTES_LOSS_WEIGHT if o in VOTE_OUTPUTS else 1.0 for o in outputs})
    train_ds = _batches(tset, train, *targets_and_weights(tset, train, heads, class_heads, row_head, settings, True),
                        spec, settings, train=True)
    val_ds = _batches(tset, val, *targets_and_weights(tset, val, heads, class_heads, row_head, settings, False),
                      spec, settings, train=False)
    history, seconds, cpu_seconds = _fit(model, train_ds, val_ds, settings, callbacks)
    if precision != "float32":
        models = _as_float32(models, config, head_names, raw_votes)
    epochs_run = len(history.get("loss", []))
    common = dict(train_seconds=round(seconds, 1), epochs_run=epochs_run, trained_jointly=len(heads) == 2,
                  precision=precision, train_images_per_second=images_per_second(len(train), epochs_run, seconds),
                  train_images_per_cpu_second=images_per_second(len(train), epochs_run, cpu_seconds))
    trained = []
    if "classifier" in heads:
        clf = _base_sidecar("classifier", tset, config, settings)
        labelled_train, labelled_val = tset.rows_of("train", has_label), tset.rows_of("val", has_label)
        head_models = (models.classifier, *models.heads)
        records = [dict(head.to_dict(), output=f"probs{head_suffix(h)}",
                        calibration=_calibrate(head_models[h], h, tset, tset.rows_of("val", row_head == h),
                                               head.class_names, spec))
                   for h, head in enumerate(class_heads)]
        clf.update(class_names=list(class_heads[0].class_names), label_column="label",
                   calibration=records[0]["calibration"], class_heads=records,
                   **_feature_references(models.classifier, tset, labelled_train, labelled_val, spec), **common)
        trained.append(TrainedModel("classifier", models.classifier, clf, history,
                                    extra_models={r["output"]: m for r, m in zip(records[1:], models.heads)}))
    if "regressor" in heads:
        reg = _base_sidecar("regressor", tset, config, settings)
        reg.update(target_columns=list(GZ2_TREE.kaggle_columns), answer_names=list(GZ2_TREE.output_names), **common)
        trained.append(TrainedModel("regressor", models.regressor, reg, history))
    return trained


def _class_heads(tset: TrainingSet, settings: TrainSettings):
    heads, row_head = class_heads(tset, settings.class_heads)
    for h in heads:
        if len(h.class_names) < 2:
            raise CatalogError(f"the labels of {', '.join(h.catalogs)} hold one class ({h.class_names[0]!r}): a "
                               "classifier head needs at least two")
    return heads, row_head


def images_per_second(n_train: int, epochs: int, seconds: float) -> float:
    """Training throughput: training images seen per second of the whole fit (validation passes
    included, as a user waits for them)."""
    return round(n_train * epochs / seconds, 1) if seconds > 0 else 0.0


def _as_float32(models, config: ModelConfig, head_names: Sequence[Sequence[str]], raw_votes: bool = False):
    """The same models built in float32 with the trained weights (float32 variables under mixed
    precision too): what is saved and exported computes in float32 only."""
    with dtype_policy("float32"):
        fresh = build_morphology(config, head_names[0], head_names[1:], raw_votes)
    fresh.joint.set_weights(models.joint.get_weights())
    return fresh


def _pooled_features(backbone: keras.Model, images: tf.data.Dataset, views: bool) -> np.ndarray:
    pool = keras.layers.GlobalAveragePooling2D()
    out = []
    for batch in images.batch(128):
        x = np.concatenate(dihedral_views(batch.numpy())) if views else batch.numpy()
        out.append(pool(backbone(x, training=False)).numpy())
    if views:  # back to (8 views × N) order across batches
        per_batch = [f.reshape(8, -1, f.shape[-1]) for f in out]
        return np.concatenate(per_batch, axis=1).reshape(-1, out[0].shape[-1])
    return np.concatenate(out)


def train_captioner(catalogs: Sequence[Catalog], names: Sequence[str], config: ModelConfig, settings: TrainSettings,
                    backbone: keras.Model | None = None, callbacks: Sequence = (),
                    test_masks: Sequence[np.ndarray] | None = None) -> TrainedModel:
    """CNN encoder + LSTM decoder with teacher forcing, on the rows that have a caption.

    With ``backbone`` (the trained classifier/regressor backbone), the captioner's backbone is a
    frozen copy of it and the rest is trained on its pooled features, precomputed once for the
    8 rotations/flips of every training image: the captions describe the same morphology the
    vote regressor learnt, and training costs seconds instead of another full CNN training.
    Without it, the whole captioner trains end to end on augmented images.
    """
    keras.utils.set_random_seed(settings.seed)
    spec = config.image
    tset = training_set(catalogs, names, spec, settings.val_fraction, settings.test_fraction, test_masks, ("caption",))
    if not tset.has_caption.any():
        raise CatalogError("the captioner needs a 'caption' column (ingest derives it from GZ2 votes)")
    rows = dict(zip(("train", "val"), _check_rows(tset, tset.has_caption, "a caption")))
    tokenizer = Tokenizer.fit(list(tset.captions[rows["train"]]))
    max_len = config.captioner.max_len
    tokens = {s: tokenizer.encode(list(tset.captions[r]), max_len) for s, r in rows.items()}
    models = build_captioner(config, tokenizer.vocab_size)
    if backbone is not None:
        own = models.encoder.get_layer("backbone")
        own.set_weights(backbone.get_weights())
        own.trainable = False
        trainable = _feature_decoder(models)
        feats = {"train": _pooled_features(own, tset.images(rows["train"], spec), views=True),
                 "val": _pooled_features(own, tset.images(rows["val"], spec), views=False)}
        reps = {"train": 8, "val": 1}
        data = {s: tf.data.Dataset.from_tensor_slices(
            ((feats[s], np.tile(tokens[s][:, :-1], (reps[s], 1))), np.tile(tokens[s][:, 1:], (reps[s], 1))))
            for s in ("train", "val")}
        train = data["train"].shuffle(8192, seed=settings.seed).batch(settings.batch_size * 2).prefetch(2)
        val = data["val"].batch(settings.batch_size * 2)
        mode = "frozen trained backbone; decoder trained on pooled features of 8 rotations/flips"
        optimizer = _optimizer(settings, 8 * len(rows["train"]), settings.batch_size * 2)
    else:
        trainable = models.train

        def as_inputs(ds):
            return ds.map(lambda x, t: ((x, t[0]), t[1]))

        train = as_inputs(_batches(tset, rows["train"], (tokens["train"][:, :-1], tokens["train"][:, 1:]),
                                   None, spec, settings, train=True))
        val = as_inputs(_batches(tset, rows["val"], (tokens["val"][:, :-1], tokens["val"][:, 1:]),
                                 None, spec, settings, train=False))
        mode = "end to end on augmented images"
        optimizer = _optimizer(settings, len(rows["train"]))
    trainable.compile(optimizer=optimizer, loss=masked_loss, metrics=[MaskedAccuracy()])
    history, seconds, cpu_seconds = _fit(trainable, train, val, settings, callbacks)
    sidecar = _base_sidecar("captioner", tset, config, settings)
    epochs_run = len(history.get("loss", []))
    seen = len(rows["train"]) * (8 if backbone is not None else 1)  # 8 views of each precomputed
    sidecar.update(tokenizer=tokenizer.to_dict(), max_len=max_len, train_seconds=round(seconds, 1),
                   epochs_run=epochs_run, training_mode=mode,
                   train_images_per_second=images_per_second(seen, epochs_run, seconds),
                   train_images_per_cpu_second=images_per_second(seen, epochs_run, cpu_seconds))
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
