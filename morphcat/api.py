"""The public functions of the ``morphcat`` package: each is one call into the layer that owns
the work (``export.serve`` for bundles and annotation, ``models.pipeline`` for training), with
the defaults of the ``morphcat`` command."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from catalogs.decoding import BATCH_SIZE
from catalogs.shards import SHARD_SIZE
from export.serve.runtime import LoadedBundle


class Bundle:
    """An opened model bundle (``morphcat export --out``): its models in onnxruntime."""

    def __init__(self, loaded: LoadedBundle):
        self.loaded = loaded

    @property
    def bundle_id(self) -> str:
        return self.loaded.bundle_id

    @property
    def class_names(self) -> list[str]:
        return list(self.loaded.class_names)

    def __repr__(self) -> str:
        return (f"<morphcat.Bundle {self.bundle_id} at {self.loaded.path}: {', '.join(sorted(self.loaded.has))}; "
                f"{self.loaded.image.size} px inputs on {self.loaded.provider}, {self.loaded.precision}>")

    def predict(self, images: Sequence[str | os.PathLike | np.ndarray], ids: Sequence[str] | None = None,
                batch_size: int = BATCH_SIZE) -> pl.DataFrame:
        """The predictions table's columns for ``images`` (file paths, or uint8 arrays ``(H, W)``
        or ``(H, W, 3)``), one row per image in their order. An image that cannot be annotated
        keeps its row: null predictions, and the reason in ``error_stage``, ``error_type`` and
        ``error_message`` (null elsewhere). ``ids``: the ``object_id`` of each image (default:
        the path as given, or the array's position)."""
        from export.serve.predict import predict_images

        return predict_images(self.loaded, images, ids=ids, batch_size=batch_size)


def open_bundle(path: str | os.PathLike, device: str = "auto", precision: str = "auto") -> Bundle:
    """Verify the bundle at ``path`` and open it: ``device`` ``auto`` (CUDA when it can run here,
    else the CPU), ``cpu`` or ``cuda``; ``precision`` of the image graph, chosen as
    ``morphcat annotate --precision`` chooses it."""
    from export.serve.runtime import open_bundle as open_loaded

    return Bundle(open_loaded(Path(path), device=device, require=("classifier",), precision=precision))


def annotate(catalog: str | os.PathLike, bundle: str | os.PathLike, out: str | os.PathLike, *,
             shard_size: int = SHARD_SIZE, batch_size: int = BATCH_SIZE, workers: int = 1, device: str = "auto",
             precision: str = "auto", shards: Sequence[int] | None = None,
             expect_image_size: int | None = None) -> dict:
    """Annotate every row of ``catalog`` with ``bundle`` into ``out`` (``predictions/`` and
    ``errors/``, as ``morphcat annotate`` writes them, without Prefect); returns the run's
    summary. A second call resumes: finished shards are skipped."""
    from export.serve.catalog import annotate_catalog

    return annotate_catalog(Path(catalog), Path(bundle), Path(out), shard_size=shard_size, batch_size=batch_size,
                            workers=workers, device=device, precision=precision,
                            shards=None if shards is None else list(shards), expect_image_size=expect_image_size)


def train(catalogs: Sequence[str | os.PathLike], out: str | os.PathLike, models: Sequence[str] | None = None,
          epochs: int | None = None, image_size: int | None = None, seed: int = 0,
          init_from: str | os.PathLike | None = None, backbone_from: str | os.PathLike | None = None,
          unlabelled: Sequence[str | os.PathLike] = ()) -> list[dict]:
    """Train ``models`` (default: the classifier, the vote regressor and the captioner) on
    ``catalogs`` into ``out``, as ``morphcat train`` does; returns per model its kind, epochs,
    seconds and files. ``epochs``: at most (default ``morphcat train``'s), with early stopping.
    ``unlabelled``: catalogs without labels, pseudo-labelled by a teacher trained first
    (``morphcat train --unlabelled``)."""
    from models.config import TrainSettings
    from models.pipeline import train_models
    from models.train import MODEL_KINDS

    return train_models([Path(c) for c in catalogs], Path(out), MODEL_KINDS if models is None else list(models),
                        epochs=TrainSettings.epochs if epochs is None else epochs, image_size=image_size, seed=seed,
                        init_from=None if init_from is None else Path(init_from),
                        backbone_from=None if backbone_from is None else Path(backbone_from),
                        unlabelled=[Path(u) for u in unlabelled])
