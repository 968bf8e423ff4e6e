"""The held-out batch parity is measured on.

With a catalog: its held-out test split when it is the catalog the models trained on (the same
rule as ``morphcat evaluate``), else its first rows; decoded, cropped and resized exactly as in
training. Without one: galaxies rendered by the synthetic survey, deterministic per seed, so an
export can be checked anywhere, without the training data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from catalogs.contract import read_catalog
from catalogs.inputs import ImageSpec, frame
from catalogs.labels import CLASSES
from catalogs.synthetic import render_object, sample_truth
from export.builder.errors import ExportError

MAX_CATALOG_IMAGES = 256
SYNTHETIC_IMAGES = 32


@dataclass(frozen=True)
class ParityBatch:
    images: np.ndarray  # float32 (N, size, size, channels) in [0, 1]
    source: str  # said in bundle.json
    labels: list | None = None  # catalog labels of those rows, when the catalog has them


def catalog_batch(catalog_path: Path, image: ImageSpec, sidecar: dict,
                  limit: int = MAX_CATALOG_IMAGES) -> ParityBatch:
    from models.evaluate import evaluation_rows

    catalog = read_catalog(catalog_path)
    rows, scope = evaluation_rows(catalog, sidecar)
    rows = rows[:limit]
    images, good_rows = _decoded(catalog, rows, image)
    if len(good_rows) == 0:
        raise ExportError(f"no decodable image among the {len(rows)} rows of {catalog_path} chosen for parity")
    labels = None
    if "label" in catalog.table.column_names:
        column = catalog.table.column("label").to_pylist()
        labels = [column[r] for r in good_rows]
    return ParityBatch(images, f"{catalog_path}: {scope} ({len(images)} images)", labels)


def _decoded(catalog, rows: np.ndarray, image: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """The model inputs of ``rows`` (float32, as in training) and the rows that decoded."""
    from models.data import decode_images

    decoded = decode_images(catalog, rows, image)
    if len(decoded.good_rows) == 0:
        return np.zeros((0, image.size, image.size, image.channels), np.float32), decoded.good_rows
    return np.stack(list(decoded.dataset.as_numpy_iterator())).astype(np.float32), decoded.good_rows


def calibration_batch(catalog_path: Path | None, image: ImageSpec, sidecar: dict,
                      n: int, seed: int) -> ParityBatch:
    """Images to calibrate int8 on: ``n`` rows spread over the training split of ``catalog_path``
    when the models trained on it (never the held-out rows parity is measured on), else ``n``
    synthetic galaxies of ``seed``."""
    if catalog_path is not None:
        from models.evaluate import split_rows, trained_on

        catalog = read_catalog(catalog_path)
        if trained_on(catalog, sidecar):
            rows = split_rows(catalog, sidecar, "train")
            rows = rows[::max(1, len(rows) // n)][:n]  # spread over the catalog, not its first rows
            images, _ = _decoded(catalog, rows, image)
            if len(images):
                return ParityBatch(images, f"{catalog_path}: training split ({len(images)} images)")
    batch = synthetic_batch(image, n, seed)
    return ParityBatch(batch.images, f"synthetic survey galaxies (seed {seed}, {n} images)")


def synthetic_batch(image: ImageSpec, n: int = SYNTHETIC_IMAGES, seed: int = 0) -> ParityBatch:
    """``n`` synthetic galaxies, the classes in turn, each from its own seeded stream; rendered
    at the size whose smallest crop is the model input, then framed as in training."""
    side = max(image.size, math.ceil(image.size / image.smallest_crop))
    images = []
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        rgb, _ = render_object(sample_truth(CLASSES[i % len(CLASSES)], rng), rng, side)
        images.append(frame(rgb, image)[0])
    pixels = np.stack(images).astype(np.float32) * np.float32(image.scale)
    return ParityBatch(pixels, f"synthetic survey galaxies (seed {seed}, {n} images)")
