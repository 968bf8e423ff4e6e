"""Kaggle Galaxy Challenge (``fmt="kaggle"``): ``training_solutions_rev1.csv`` + JPEG cutouts.

Layout: a folder with ``training_solutions_rev1.csv`` (``GalaxyID`` and the 37 targets
``Class1.1 … Class11.6``; also accepted: ``training_solutions_rev1.csv.gz`` and the
zip-extracted ``training_solutions_rev1/training_solutions_rev1.csv``) and
``images_training_rev1/<GalaxyID>.jpg`` (or the zip-extracted
``images_training_rev1/images_training_rev1/``). ``src`` may also be the CSV itself.

Images and labels are paired **by id**: ``image_path`` is built from each row's ``GalaxyID``; the
image folder is never listed, so its order cannot matter. ``GalaxyID`` is read as text.

**What the vote columns mean here.** The challenge's targets are *cumulative* and normalised
(each answer's fraction multiplied down the decision tree; Q1 and Q6 kept as is), computed
by the challenge from the original GZ2 weighted votes — they are **not** the Hart et al. (2016)
debiased fractions. This reader inverts them to per-question fractions with
``GZ2_TREE.per_question`` (a question nobody reached → null) and stores those under the
``tNN_…_debiased`` column names, so every catalog has the same columns; ``GZ2_TREE.cumulative``
of them gives back the Kaggle targets. Labels derived from them follow the same rule as GZ2
but on these (non-debiased) fractions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from catalogs.errors import SourceError
from catalogs.readers.common import (
    ReadResult,
    concat_skipped,
    csv_header,
    finish,
    float_column,
    read_csv_strings,
    require_columns,
    require_exists,
    skipped_table,
    string_column,
)
from catalogs.tree import GZ2_TREE

FORMAT = "kaggle"
ID_COLUMN = "GalaxyID"
SOLUTION_NAMES = (
    "training_solutions_rev1.csv",
    "training_solutions_rev1.csv.gz",
    "training_solutions_rev1/training_solutions_rev1.csv",
)
IMAGE_DIRS = ("images_training_rev1/images_training_rev1", "images_training_rev1")
_ROW = "__source_row"


def _locate(src: Path) -> tuple[Path, Path]:
    """(the solutions CSV, the root folder holding the image folder)."""
    if src.is_dir():
        for name in SOLUTION_NAMES:
            if (src / name).is_file():
                return src / name, src
        raise SourceError(f"{src} is a folder without {' or '.join(SOLUTION_NAMES)}; the Kaggle "
                          "Galaxy Challenge layout is training_solutions_rev1.csv + images_training_rev1/")
    root = src.parent
    if root.name == "training_solutions_rev1" and not any((root / d).is_dir() for d in IMAGE_DIRS):
        root = root.parent
    return src, root


def read_kaggle(src: Path) -> ReadResult:
    src = require_exists(Path(src), "Kaggle source")
    csv_path, root = _locate(src)
    header = csv_header(csv_path)
    targets = GZ2_TREE.kaggle_columns
    require_columns(csv_path, header, [ID_COLUMN, *targets],
                    "the Kaggle layout is GalaxyID + Class1.1 … Class11.6")
    df = read_csv_strings(csv_path, [ID_COLUMN, *targets]).with_row_index(_ROW)
    rows = df[_ROW].to_numpy()
    values = np.column_stack(
        [float_column(df[c], csv_path, c, rows).to_numpy(zero_copy_only=False) for c in targets]
    ).astype(np.float64) if df.height else np.zeros((0, len(targets)))

    no_id = df[ID_COLUMN].is_null().to_numpy()
    incomplete = ~no_id & np.isnan(values).any(axis=1)
    keep = ~(no_id | incomplete)
    skipped = concat_skipped([
        _skip(df, no_id, f"no {ID_COLUMN}"),
        _skip(df, incomplete, "missing Kaggle target value(s)"),
    ])

    image_dir = next((d for d in IMAGE_DIRS if (root / d).is_dir()), IMAGE_DIRS[-1])
    ids = df.filter(pl.Series(keep))[ID_COLUMN]
    fractions = GZ2_TREE.per_question(values[keep])
    columns: dict[str, pa.Array] = {
        "object_id": string_column(ids),
        "image_path": string_column(f"{image_dir}/" + ids + ".jpg"),
    }
    for j, name in enumerate(GZ2_TREE.debiased_columns):
        col = fractions[:, j]
        columns[name] = pa.array(col, pa.float64(), mask=np.isnan(col))

    notes = ["Kaggle targets converted to per-question fractions (GZ2_TREE.per_question) and stored "
             "under the _debiased names; they are the challenge's normalised targets, not Hart16 "
             "debiased fractions"]
    if not (root / image_dir).is_dir():
        notes.append(f"no {image_dir}/ folder in {root}: every image will be missing")
    if skipped.num_rows:
        notes.append(f"{skipped.num_rows} row(s) of {csv_path.name} skipped (no id or missing targets)")
    return finish(columns, root.resolve(), FORMAT, csv_path, skipped, notes)


def _skip(df: pl.DataFrame, mask: np.ndarray, reason: str) -> pa.Table:
    sub = df.filter(pl.Series(mask))
    return skipped_table(sub[ID_COLUMN].to_list(), sub[_ROW].cast(pl.Int64).to_list(), [reason] * sub.height)


__all__ = ["read_kaggle"]
