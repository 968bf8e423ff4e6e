"""Training inputs from one or more catalogs: deterministic splits and folds, the rows a
training run reads with their targets (:class:`TrainingSet`), a tf.data image pipeline.

Images are decoded by ``catalogs.decoding.decode_row`` (``catalogs.inputs.model_input``: the
decode, framing and resize that annotation uses, to the byte) inside a parallel ``tf.data`` map,
kept as uint8, then augmented with the symmetries of the sky (rotations by multiples of 90° and
flips) and prefetched.

Several catalogs train together: each row brings the targets it has (a class from ``label``, the
37 vote fractions, a caption) and contributes only to those losses; the split is a hash of
``object_id`` within each catalog, so a catalog's split does not move when another is added.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from catalogs.contract import Catalog
from catalogs.decoding import decode_row
from catalogs.errors import CatalogError
from catalogs.imaging import ImageError
from catalogs.inputs import ImageSpec

SPLIT_SALT = "morphcat-split-v1"
FOLD_SALT = "morphcat-fold-v1"
SPLITS = ("train", "val", "test")


def _unit_hash(object_ids, salt: str) -> np.ndarray:
    """A number in [0, 1) per id, from BLAKE2b: the same for an id whatever the row order."""
    return np.array([int.from_bytes(hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest(), "big") / 2**64
                     for i in object_ids], dtype=np.float64)


def assign_splits(object_ids, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  salt: str = SPLIT_SALT) -> np.ndarray:
    """'train' / 'val' / 'test' per object from a hash of its id: the same object lands in the
    same split whatever the row order, catalog size or machine."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val {val_fraction}, test {test_fraction}")
    u = _unit_hash(object_ids, salt)
    return np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train"))


def assign_folds(object_ids, strata, k: int, salt: str = FOLD_SALT) -> np.ndarray:
    """Stratified K-fold numbers (0 … k−1) per object: within each stratum (e.g. one catalog's
    class) the objects are ordered by a hash of their id and dealt to the folds in turn, so each
    fold holds every stratum in proportion (± 1 object), every object is in exactly one fold,
    and the folds do not depend on the row order."""
    if k < 2:
        raise ValueError(f"cross-validation needs k ≥ 2 folds, got {k}")
    ids = list(object_ids)
    strata = np.asarray([str(s) for s in strata], dtype=object)
    if len(strata) != len(ids):
        raise ValueError(f"{len(ids)} ids but {len(strata)} strata")
    u = _unit_hash(ids, salt)
    folds = np.zeros(len(ids), dtype=np.int64)
    for stratum in sorted(set(strata)):
        members = np.flatnonzero(strata == stratum)
        folds[members[np.argsort(u[members], kind="stable")]] = np.arange(len(members)) % k
    return folds


@dataclass(frozen=True)
class DecodedImages:
    """The decoded (cached) images of some catalog rows, and which rows could not be decoded."""

    dataset: tf.data.Dataset  # float32 (size, size, 3) in [0, 1], one element per *good* row
    good_rows: np.ndarray  # catalog row numbers, in dataset order
    failures: dict[str, str]  # object_id → reason, for rows left out
    pixels: np.ndarray  # uint8 (n good, size, size, 3): the same images, before scaling


def decode_images(catalog: Catalog, rows: np.ndarray, spec: ImageSpec) -> DecodedImages:
    """Decode, crop and resize ``rows`` of the catalog in a parallel tf.data map, once.

    A row whose image is missing or broken is left out and reported, never silently: the
    caller records ``failures`` with the trained model.
    """
    rows = np.asarray(rows, dtype=np.int64)
    paths = catalog.table.column("image_path").to_pylist()
    ids = catalog.table.column("object_id").to_pylist()

    def _decode(row):
        row = int(row)
        try:
            return decode_row(catalog.root, paths[row], spec).pixels, b""
        except ImageError as exc:
            return np.zeros((spec.size, spec.size, 3), np.uint8), f"{type(exc).__name__}: {exc}".encode()

    def _map(row):
        image, err = tf.numpy_function(_decode, [row], [tf.uint8, tf.string], stateful=False)
        image.set_shape((spec.size, spec.size, 3))
        return image, err

    raw = tf.data.Dataset.from_tensor_slices(rows).map(_map, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    images, errors = [], []
    for image, err in raw.batch(256):
        images.append(image.numpy())
        errors.extend(e.decode() for e in err.numpy())
    pixels = np.concatenate(images) if images else np.zeros((0, spec.size, spec.size, 3), np.uint8)
    ok = np.array([e == "" for e in errors], dtype=bool)
    failures = {ids[r]: e for r, e, good in zip(rows, errors, ok) if not good}
    # Kept as uint8 (4× smaller than float) and scaled per batch.
    scale = np.float32(spec.scale)
    dataset = tf.data.Dataset.from_tensor_slices(pixels[ok]).map(lambda x: tf.cast(x, tf.float32) * scale)
    return DecodedImages(dataset, rows[ok], failures, pixels[ok])


def weigh_pseudo(weight: np.ndarray, is_pseudo: np.ndarray, share: float) -> np.ndarray:
    """Loss weights with the pseudo-labelled rows scaled to weigh ``share`` of the others in all:
    the loss becomes L(volunteers) + share · L(teacher), as semi-supervised training writes it
    (FixMatch's λ_u), however many unlabelled galaxies there are."""
    weight = np.asarray(weight, np.float32).copy()
    real, teacher = float(weight[~is_pseudo].sum()), float(weight[is_pseudo].sum())
    if teacher > 0:
        weight[is_pseudo] *= share * real / teacher
    return weight


def augment(image: tf.Tensor) -> tf.Tensor:
    """A random element of the dihedral group D4: galaxies have no preferred orientation."""
    k = tf.random.uniform((), 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    return tf.cond(tf.random.uniform(()) < 0.5, lambda: tf.image.flip_left_right(image), lambda: image)


# Training augmentations, by name: what a galaxy may look like and still be the same galaxy.
# "d4": the 8 right-angle rotations and flips; "+affine": any rotation angle, ±10 % scale and
# ±4 % shift (the framing and centring of real cutouts vary); "+colour": ±10 % per-band gain
# (calibration and extinction differ between surveys).
AUGMENTATIONS = ("d4", "d4+affine", "d4+affine+colour")


def augmenter(name: str, seed: int):
    """The per-image augmentation ``name`` (one of ``AUGMENTATIONS``) as a tf.data map function."""
    if name not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {name!r}")
    if name == "d4":
        return augment
    import keras

    affine = keras.Sequential([keras.layers.RandomRotation(0.5, fill_mode="constant", seed=seed),
                               keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
                               keras.layers.RandomTranslation(0.04, 0.04, fill_mode="constant", seed=seed + 2)])
    colour = name.endswith("+colour")

    def apply(image: tf.Tensor) -> tf.Tensor:
        image = affine(augment(image), training=True)
        if colour:
            image = image * tf.random.uniform((1, 1, 3), 0.9, 1.1)
        return image

    return apply


def class_weights(labels: np.ndarray, class_names, power: float = 1.0) -> np.ndarray:
    """Per-row weights that balance the classes: sklearn's 'balanced' weights raised to
    ``power`` (1: every class weighs the same in the loss; 0.5: a class ten times rarer weighs
    ~3× more per row, which keeps a rare class of a few dozen rows from dominating the gradient),
    scaled to a mean of 1 over the rows."""
    from sklearn.utils.class_weight import compute_class_weight

    present = [c for c in class_names if c in set(labels)]
    weights = compute_class_weight("balanced", classes=np.array(present), y=labels) ** power
    lookup = dict(zip(present, weights))
    per_row = np.array([lookup[label] for label in labels], dtype=np.float64)
    return (per_row / per_row.mean()).astype(np.float32)


@dataclass(frozen=True)
class TrainingSet:
    """The rows of one or more catalogs that a training run reads, decoded once (uint8), with
    the targets each row has; ``None`` / NaN where a row has none (it adds nothing to that loss).

    Row ``i`` is row ``row[i]`` of catalog ``source[i]`` (named ``names[source[i]]``); its split is
    ``split[i]``. Rows whose image could not be decoded are left out and listed in ``failures``
    (``"<catalog>:<object_id>" → reason``)."""

    names: tuple[str, ...]
    catalogs: tuple[Catalog, ...]
    source: np.ndarray  # int64 (N,)
    row: np.ndarray  # int64 (N,)
    object_ids: np.ndarray  # object (N,)
    split: np.ndarray  # str (N,)
    labels: np.ndarray  # object (N,)
    votes: np.ndarray  # float32 (N, 37): the Kaggle cumulative targets
    captions: np.ndarray  # object (N,)
    pixels: np.ndarray  # uint8 (N, size, size, 3)
    failures: dict[str, str]
    votes_raw: np.ndarray | None = None  # float32 (N, 37) from the raw fractions, with vote_targets="both"
    # per catalog: its targets are a teacher model's predictions (models.pseudo), not volunteers'
    pseudo: tuple[bool, ...] = ()

    @property
    def is_pseudo(self) -> np.ndarray:
        """Per row: whether its targets are pseudo-labels (its catalog's ``pseudo`` flag)."""
        flags = np.array([bool(x) for x in self.pseudo] + [False] * (len(self.names) - len(self.pseudo)), bool)
        return flags[self.source]

    @property
    def has_label(self) -> np.ndarray:
        return np.array([x is not None for x in self.labels], dtype=bool)

    @property
    def has_votes(self) -> np.ndarray:
        return ~np.isnan(self.votes).all(axis=1)

    @property
    def has_caption(self) -> np.ndarray:
        return np.array([bool(x) for x in self.captions], dtype=bool)

    def rows_of(self, split: str, having: np.ndarray | None = None) -> np.ndarray:
        """Indices of the rows in ``split`` (and where ``having`` is true)."""
        keep = self.split == split
        return np.flatnonzero(keep if having is None else keep & having)

    def images(self, idx: np.ndarray, spec) -> tf.data.Dataset:
        """float32 images of rows ``idx`` in [0, 1], as the models take them."""
        scale = np.float32(spec.scale)
        return tf.data.Dataset.from_tensor_slices(self.pixels[idx]).map(lambda x: tf.cast(x, tf.float32) * scale)

    def split_counts(self) -> dict[str, dict[str, int]]:
        """Per catalog, rows per split: what the sidecar records."""
        return {name: {s: int(np.sum((self.source == i) & (self.split == s))) for s in SPLITS}
                for i, name in enumerate(self.names)}


def catalog_names(paths) -> tuple[str, ...]:
    """A short, unique name per catalog file: its stem, with its folder where stems repeat."""
    paths = [Path(p) for p in paths]
    stems = [p.stem for p in paths]
    return tuple(f"{p.parent.name}/{p.stem}" if stems.count(p.stem) > 1 else p.stem for p in paths)


VOTE_TARGETS = ("debiased", "raw", "both")


def training_set(catalogs, names, spec, val_fraction: float, test_fraction: float, test_masks=None,
                 wanted=("label", "votes", "caption"), vote_targets: str = "debiased", pseudo=None) -> TrainingSet:
    """Decode, once, every row of ``catalogs`` that has one of the ``wanted`` targets and is not
    in its test split, and gather the targets. The split is a hash of ``object_id`` within each
    catalog (``assign_splits``); ``test_masks`` (one boolean array per catalog, for a
    cross-validation fold) replace the hashed test split, the validation split then being the same
    hash over the remaining rows. ``vote_targets="raw"``: the vote targets of catalogs with votes are
    the raw (user-weighted) fractions, what the pixels show, instead of the debiased ones (zoobot
    trains on raw votes); the labels stay the rule's on the debiased fractions. ``"both"``: the
    debiased ones in ``votes`` and the raw ones in ``votes_raw``. ``pseudo`` (one flag per catalog):
    catalogs whose targets a teacher predicted (``models.pseudo``); every row of theirs trains, none
    validates or is tested (the validation loss and the temperatures stay the volunteers')."""
    pseudo = tuple(bool(x) for x in (pseudo or [False] * len(catalogs)))
    if len(pseudo) != len(catalogs):
        raise ValueError(f"{len(catalogs)} catalogs but {len(pseudo)} pseudo flags")
    if vote_targets not in VOTE_TARGETS:
        raise ValueError(f"vote_targets must be one of {VOTE_TARGETS}, got {vote_targets!r}")
    from catalogs.targets import kaggle_targets, raw_vote_matrix
    from catalogs.tree import GZ2_TREE

    parts = {k: [] for k in ("source", "row", "ids", "split", "labels", "votes", "votes_raw", "captions", "pixels")}
    failures: dict[str, str] = {}
    for i, (name, catalog) in enumerate(zip(names, catalogs)):
        table = catalog.table
        n = table.num_rows
        ids = table.column("object_id").to_pylist()
        labels = table.column("label").to_pylist() if "label" in table.column_names else [None] * n
        captions = table.column("caption").to_pylist() if "caption" in table.column_names else [None] * n
        votes = kaggle_targets(table) if catalog.has_votes else np.full((n, 37), np.nan)
        raw = np.full((n, 37), np.nan)
        if vote_targets != "debiased" and catalog.has_votes:
            if not catalog.has_raw_votes:
                raise CatalogError(f"{name}: raw vote targets need the '..._weighted_fraction' columns, which this "
                                   "catalog lacks (ingest them from a Hart16-layout source)")
            raw = GZ2_TREE.cumulative(raw_vote_matrix(table))
            if vote_targets == "raw":
                votes = raw
        if pseudo[i]:
            split = np.full(n, "train")
        elif test_masks is None:
            split = assign_splits(ids, val_fraction, test_fraction)
        else:
            split = np.where(np.asarray(test_masks[i], bool), "test", assign_splits(ids, val_fraction, 0.0))
        has = {"label": np.array([x is not None for x in labels]), "votes": ~np.isnan(votes).all(axis=1),
               "caption": np.array([bool(c) for c in captions])}
        useful = np.zeros(n, bool)
        for target in wanted:
            useful |= has[target]
        rows = np.flatnonzero(useful & (split != "test"))
        decoded = decode_images(catalog, rows, spec)
        good = decoded.good_rows
        failures.update({f"{name}:{oid}": why for oid, why in decoded.failures.items()})
        parts["source"].append(np.full(len(good), i, np.int64))
        parts["row"].append(good)
        parts["ids"].append(np.asarray(ids, dtype=object)[good])
        parts["split"].append(split[good])
        parts["labels"].append(np.asarray(labels, dtype=object)[good])
        parts["votes"].append(votes[good].astype(np.float32))
        parts["votes_raw"].append(raw[good].astype(np.float32))
        parts["captions"].append(np.asarray(captions, dtype=object)[good])
        parts["pixels"].append(decoded.pixels)
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return TrainingSet(tuple(names), tuple(catalogs), cat["source"], cat["row"], cat["ids"], cat["split"],
                       cat["labels"], cat["votes"], cat["captions"], cat["pixels"], failures,
                       cat["votes_raw"] if vote_targets == "both" else None, pseudo)
