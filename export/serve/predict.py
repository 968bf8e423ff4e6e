"""Images in a Python session → the predictions table's columns, one row per image: what
``morphcat.open_bundle(...).predict(...)`` returns, computed by the function that annotates a
catalog's shard (:func:`export.serve.annotate.annotate_rows`), so a notebook and a catalog run
agree row for row.

Image files are read where they are; arrays (uint8, ``(H, W)`` or ``(H, W, 3)``) are written to
lossless PNG files first, so they meet the same decoding and checks as files. An image that
cannot be annotated keeps its row, with null predictions and the reason in ``error_stage``,
``error_type`` and ``error_message`` (the errors table's ``stage``, ``error_type`` and
``message``); those three columns are null on every other row. ``ra`` and ``dec`` are null (an
image alone has no position) and ``run_id`` is ``predict``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from catalogs.decoding import BATCH_SIZE
from export.serve.annotate import annotate_rows
from export.serve.runtime import LoadedBundle

PREDICT_RUN_ID = "predict"  # the run_id column of rows that belong to no catalog run
ERROR_COLUMNS = {"stage": "error_stage", "error_type": "error_type", "message": "error_message"}


def predict_images(bundle: LoadedBundle, images: Sequence[str | os.PathLike | np.ndarray],
                   ids: Sequence[str] | None = None, batch_size: int = BATCH_SIZE,
                   decode_workers: int = 2) -> pl.DataFrame:
    """The predictions table of ``images`` (paths or arrays) in their order, plus the three
    error columns. ``ids``: the ``object_id`` of each image (default: the path as given, or the
    array's position), which also picks template captions' phrasing, as in a catalog run."""
    images = list(images)
    if ids is None:
        ids = [str(i) if isinstance(im, np.ndarray) else os.fspath(im) for i, im in enumerate(images)]
    ids = [str(i) for i in ids]
    if len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids for {len(images)} images")
    with tempfile.TemporaryDirectory(prefix="morphcat-predict-") as tmp:
        paths = [_as_file(im, Path(tmp) / f"{i}.png") for i, im in enumerate(images)]
        # Absolute paths under the root "/": every file is read where it is.
        table = pa.table({"object_id": pa.array(ids, pa.string()),
                          "image_path": pa.array([os.path.relpath(p, "/") for p in paths], pa.string())})
        result = annotate_rows(bundle, Path("/"), table, start_row=0, bundle_id=bundle.bundle_id,
                               run_id=PREDICT_RUN_ID, batch_size=batch_size, decode_workers=decode_workers)
    return _one_row_per_image(result.predictions, result.errors, ids, bundle.bundle_id)


def _as_file(image: str | os.PathLike | np.ndarray, png: Path) -> str:
    if not isinstance(image, np.ndarray):
        return str(Path(image).absolute())
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"an image array must be uint8 of shape (H, W) or (H, W, 3), got {image.dtype} "
                         f"{image.shape}")
    from PIL import Image

    Image.fromarray(image).save(png)
    return str(png)


def _one_row_per_image(predictions: pa.Table, errors: pa.Table, ids: list[str], bundle_id: str) -> pl.DataFrame:
    """``predictions`` (the rows that were annotated) and ``errors`` (the others), each in input
    order as annotation writes them, merged back into input order."""
    failed = _rows_of(errors.column("object_id").to_pylist(), ids)
    annotated = sorted(set(range(len(ids))) - set(failed))
    if predictions.column("object_id").to_pylist() != [ids[r] for r in annotated]:
        raise RuntimeError("annotation returned its rows out of input order")
    frame = pl.from_arrow(predictions).with_columns(pl.Series("_row", annotated, pl.Int64))
    reasons = (pl.from_arrow(errors.select(list(ERROR_COLUMNS))).rename(ERROR_COLUMNS)
               .with_columns(pl.Series("_row", failed, pl.Int64)))
    rows = pl.DataFrame({"_row": range(len(ids))}, schema={"_row": pl.Int64})
    merged = rows.join(frame, on="_row", how="left").join(reasons, on="_row", how="left")
    return merged.with_columns(pl.Series("object_id", ids, pl.String), pl.lit(bundle_id).alias("bundle_id"),
                               pl.lit(PREDICT_RUN_ID).alias("run_id")).drop("_row")


def _rows_of(failed_ids: list[str], ids: list[str]) -> list[int]:
    """The input positions of the failed rows (listed in input order; an id given twice is
    matched to its occurrences in turn)."""
    rows, start = [], {}
    for object_id in failed_ids:
        r = ids.index(object_id, start.get(object_id, 0))
        rows.append(r)
        start[object_id] = r + 1
    return rows
