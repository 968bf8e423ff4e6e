"""Training inputs from a catalog: deterministic splits, a tf.data image pipeline, targets.

Images are decoded by ``catalogs.decoding.decode_row`` (``catalogs.imaging.model_input``: the
decode, centre crop and resize that annotation uses, to the byte) inside a parallel ``tf.data``
map, cached after the first pass, then augmented with the symmetries of the sky (rotations by
multiples of 90° and flips) and prefetched.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from catalogs.contract import Catalog
from catalogs.decoding import decode_row
from catalogs.imaging import ImageError
from catalogs.inputs import ImageSpec

SPLIT_SALT = "morphcat-split-v1"
SPLITS = ("train", "val", "test")


def assign_splits(object_ids, val_fraction: float = 0.15, test_fraction: float = 0.15,
                  salt: str = SPLIT_SALT) -> np.ndarray:
    """'train' / 'val' / 'test' per object from a hash of its id: the same object lands in the
    same split whatever the row order, catalog size or machine."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ValueError(f"bad split fractions: val {val_fraction}, test {test_fraction}")
    u = np.array(
        [int.from_bytes(hashlib.blake2b(f"{salt}:{i}".encode(), digest_size=8).digest(), "big") / 2**64
         for i in object_ids]
    )
    return np.where(u < test_fraction, "test", np.where(u < test_fraction + val_fraction, "val", "train"))


@dataclass(frozen=True)
class DecodedImages:
    """The decoded (cached) images of some catalog rows, and which rows could not be decoded."""

    dataset: tf.data.Dataset  # float32 (size, size, 3) in [0, 1], one element per *good* row
    good_rows: np.ndarray  # catalog row numbers, in dataset order
    failures: dict[str, str]  # object_id → reason, for rows left out


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
    return DecodedImages(dataset, rows[ok], failures)


def augment(image: tf.Tensor) -> tf.Tensor:
    """A random element of the dihedral group D4: galaxies have no preferred orientation."""
    k = tf.random.uniform((), 0, 4, dtype=tf.int32)
    image = tf.image.rot90(image, k)
    return tf.cond(tf.random.uniform(()) < 0.5, lambda: tf.image.flip_left_right(image), lambda: image)


def training_dataset(images: tf.data.Dataset, targets, batch_size: int, shuffle: bool, augmented: bool,
                     seed: int, sample_weights=None) -> tf.data.Dataset:
    """Zip images with targets and optional sample weights (arrays, or tuples/dicts of arrays
    for multi-input/output models), shuffle, augment, batch, prefetch."""
    parts = [images, tf.data.Dataset.from_tensor_slices(targets)]
    if sample_weights is not None:
        parts.append(tf.data.Dataset.from_tensor_slices(sample_weights))
    ds = tf.data.Dataset.zip(tuple(parts)).cache()
    if shuffle:
        ds = ds.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    if augmented:
        ds = ds.map(lambda x, *rest: (augment(x), *rest), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_weights(labels: np.ndarray, class_names) -> np.ndarray:
    """Per-row weights that balance the classes (sklearn's 'balanced' heuristic)."""
    from sklearn.utils.class_weight import compute_class_weight

    present = [c for c in class_names if c in set(labels)]
    weights = compute_class_weight("balanced", classes=np.array(present), y=labels)
    lookup = dict(zip(present, weights))
    return np.array([lookup[label] for label in labels], dtype=np.float32)
