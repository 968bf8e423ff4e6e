"""Galaxy Zoo 2 (``fmt="gz2"``): Hart et al. (2016) vote fractions plus SDSS cutouts.

Two layouts, chosen from ``src``:

(a) **The public release as downloaded**: a folder holding ``gz2_hart16.csv`` (or
    ``gz2_hart16.csv.gz``), ``gz2_filename_mapping.csv`` (``objid, sample, asset_id``) and
    ``images/<asset_id>.jpg`` — or ``src`` = the Hart16 file itself with the mapping beside it.
    Hart16 ``dr7objid`` is joined to mapping ``objid`` **as strings** (both files are read with
    every column as text; an 18-digit objid never passes through int or float). When both files
    have a ``sample`` column the join key is ``(objid, sample)``: an objid that the mapping lists
    under more than one sample (each with its own image) then still pairs with exactly one image,
    the one of the Hart16 row's own sample, and a key is never multiplied into duplicate rows.
    After de-duplicating identical mapping rows, a key that still maps to several different
    ``asset_id`` values is ambiguous and its Hart16 rows go to ``skipped`` rather than guessing.
    Hart16 rows without a mapping row (no image) go to ``skipped`` with the reason, as do rows
    whose objid the mapping has only under another sample. ``image_path`` is
    ``images/<asset_id>.jpg`` and the root is the folder of the Hart16 file.

(b) **One CSV** with Hart16 columns plus ``asset_id`` and optionally ``filepath`` (relative to
    the CSV's folder), e.g. the shared ``gz2-sample/gz2_sample_labels.csv``. ``object_id`` comes
    from ``dr7objid`` (else ``objid``); ``image_path`` is ``filepath`` where given, else
    ``images/<asset_id>.jpg``; the root is the CSV's folder. Rows with neither go to ``skipped``.

In both, ``ra``/``dec`` are carried when the file has them (Hart16 does) and the 37
``tNN_…_debiased`` columns are required and read as float64 (empty or NaN → null). Any other
source column is simply not carried: that is the format's definition.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa

from catalogs.errors import SourceError
from catalogs.readers.common import (
    ReadResult,
    concat_skipped,
    csv_header,
    finish,
    float_column,
    read_csv_columns,
    require_columns,
    require_exists,
    skipped_table,
    string_column,
)
from catalogs.tree import GZ2_TREE

FORMAT = "gz2"
HART16_NAMES = ("gz2_hart16.csv", "gz2_hart16.csv.gz")
MAPPING_NAMES = ("gz2_filename_mapping.csv", "gz2_filename_mapping.csv.gz")
IMAGE_DIR = "images"
VOTES = GZ2_TREE.debiased_columns
RAW_VOTES = GZ2_TREE.weighted_columns  # kept when the source has all of them (evaluation's "visible")
_ROW = "__source_row"


def read_gz2(src: Path) -> ReadResult:
    src = require_exists(Path(src), "GZ2 source")
    if src.is_dir():
        hart = _first_existing(src, HART16_NAMES)
        if hart is None:
            raise SourceError(
                f"{src} is a folder without {' or '.join(HART16_NAMES)}; for the GZ2 release put "
                "the Hart16 table, gz2_filename_mapping.csv and images/ together, or pass a single "
                "CSV with Hart16 columns plus asset_id/filepath as the source"
            )
        return _read_release(hart)
    header = csv_header(src)
    if "asset_id" in header or "filepath" in header:
        return _read_single(src, header)
    if _first_existing(src.parent, MAPPING_NAMES) is not None:
        return _read_release(src)
    raise SourceError(
        f"{src.name}: has neither an 'asset_id' nor a 'filepath' column, and there is no "
        f"{MAPPING_NAMES[0]} beside it to find the images; the file has: "
        f"{', '.join(header[:40])}{' …' if len(header) > 40 else ''}"
    )


def _first_existing(folder: Path, names) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _id_column(path: Path, header: list[str]) -> str:
    for name in ("dr7objid", "objid"):
        if name in header:
            return name
    require_columns(path, header, ["dr7objid"], "GZ2 ids come from 'dr7objid' (or 'objid')")
    raise AssertionError  # pragma: no cover


def _values(df: pl.DataFrame, path: Path, header: list[str]) -> dict[str, pa.Array]:
    rows = df[_ROW].to_numpy()
    out: dict[str, pa.Array] = {}
    for col in ("ra", "dec"):
        if col in header:
            out[col] = float_column(df[col], path, col, rows)
    for col in VOTES + (RAW_VOTES if all(c in header for c in RAW_VOTES) else ()):
        out[col] = float_column(df[col], path, col, rows)
    return out


def _read_single(path: Path, header: list[str]) -> ReadResult:
    id_col = _id_column(path, header)
    require_columns(path, header, VOTES, "a GZ2 catalog needs the 37 Hart16 '_debiased' vote fractions")
    wanted = [id_col, "asset_id", "filepath", "ra", "dec", *VOTES, *RAW_VOTES]
    df = read_csv_columns(path, wanted).with_row_index(_ROW)
    for col in ("asset_id", "filepath"):
        if col not in df.columns:
            df = df.with_columns(pl.lit(None, pl.String).alias(col))
    df = df.with_columns(
        pl.coalesce(pl.col("filepath"), pl.lit(IMAGE_DIR + "/") + pl.col("asset_id") + pl.lit(".jpg"))
        .alias("image_path")
    )
    no_id = df.filter(pl.col(id_col).is_null())
    no_path = df.filter(pl.col(id_col).is_not_null() & pl.col("image_path").is_null())
    skipped = concat_skipped([
        _skip(no_id, id_col, f"no {id_col}"),
        _skip(no_path, id_col, "neither filepath nor asset_id given: no image"),
    ])
    keep = df.filter(pl.col(id_col).is_not_null() & pl.col("image_path").is_not_null())
    columns = {"object_id": string_column(keep[id_col]), "image_path": string_column(keep["image_path"]),
               **_values(keep, path, header)}
    notes = [f"{skipped.num_rows} row(s) of {path.name} skipped (no id or no image)"] if skipped.num_rows else []
    return finish(columns, path.parent.resolve(), FORMAT, path, skipped, notes)


def _read_release(hart_path: Path) -> ReadResult:
    folder = hart_path.parent
    map_path = _first_existing(folder, MAPPING_NAMES)
    if map_path is None:
        raise SourceError(f"{hart_path.name}: the GZ2 release needs {MAPPING_NAMES[0]} (objid, sample, "
                          f"asset_id) beside it in {folder} to find each galaxy's image")
    header = csv_header(hart_path)
    id_col = _id_column(hart_path, header)
    require_columns(hart_path, header, VOTES, "a GZ2 catalog needs the 37 Hart16 '_debiased' vote fractions")
    map_header = csv_header(map_path)
    require_columns(map_path, map_header, ["objid", "asset_id"])
    by_sample = "sample" in header and "sample" in map_header
    keys = ["objid", "sample"] if by_sample else ["objid"]

    hart = read_csv_columns(hart_path, [id_col, "sample", "ra", "dec", *VOTES, *RAW_VOTES]).with_row_index(_ROW)
    hart = hart.rename({id_col: "objid"}) if id_col != "objid" else hart
    mapping = read_csv_columns(map_path, keys + ["asset_id"])
    n_map = mapping.height
    mapping = mapping.drop_nulls().unique(maintain_order=True)
    notes = [f"joined {hart_path.name} to {map_path.name} on "
             f"{'(' + id_col + ', sample) = (objid, sample)' if by_sample else id_col + ' = objid'} as strings"]
    unusable = n_map - mapping.height
    if unusable:
        notes.append(f"{unusable} row(s) of {map_path.name} ignored: empty fields or exact duplicates")

    counts = mapping.group_by(keys).agg(pl.len().alias("__n"))
    ambiguous = counts.filter(pl.col("__n") > 1)
    unique_map = mapping.join(ambiguous.select(keys), on=keys, how="anti")

    no_id = hart.filter(pl.col("objid").is_null())
    hart = hart.filter(pl.col("objid").is_not_null())
    joined = hart.join(unique_map, on=keys, how="left", maintain_order="left")
    matched = joined.filter(pl.col("asset_id").is_not_null())
    unmatched = joined.filter(pl.col("asset_id").is_null()).drop("asset_id")

    amb = unmatched.join(ambiguous, on=keys, how="inner", maintain_order="left")
    rest = unmatched.join(ambiguous.select(keys), on=keys, how="anti", maintain_order="left")
    parts = [
        _skip(no_id, "objid", f"no {id_col}"),
        _skip_with(amb, "objid", amb["__n"].to_list(),
                   lambda n: f"ambiguous: {map_path.name} gives {n} different asset_ids"),
    ]
    if by_sample:
        other = (mapping.group_by("objid").agg(pl.col("sample").unique().sort().str.join(", ").alias("__samples")))
        rest = rest.join(other, on="objid", how="left", maintain_order="left")
        elsewhere = rest.filter(pl.col("__samples").is_not_null())
        absent = rest.filter(pl.col("__samples").is_null())
        parts.append(_skip_with(
            elsewhere, "objid", list(zip(elsewhere["__samples"].to_list(), elsewhere["sample"].to_list())),
            lambda s: f"{map_path.name} has this objid only under sample(s) {s[0]}, not {s[1]!r}"))
    else:
        absent = rest
    parts.append(_skip(absent, "objid", f"no row in {map_path.name}: no image"))
    skipped = concat_skipped(parts)
    if skipped.num_rows:
        notes.append(f"{skipped.num_rows} of {hart.height + no_id.height} Hart16 row(s) skipped "
                     f"(no image in {map_path.name}); see skipped")

    matched = matched.with_columns(
        (pl.lit(IMAGE_DIR + "/") + pl.col("asset_id") + pl.lit(".jpg")).alias("image_path"))
    columns = {"object_id": string_column(matched["objid"]),
               "image_path": string_column(matched["image_path"]),
               **_values(matched, hart_path, header)}
    return finish(columns, folder.resolve(), FORMAT, hart_path, skipped, notes)


def _skip(df: pl.DataFrame, id_col: str, reason: str) -> pa.Table:
    return skipped_table(df[id_col].to_list(), df[_ROW].cast(pl.Int64).to_list(), [reason] * df.height)


def _skip_with(df: pl.DataFrame, id_col: str, values, make) -> pa.Table:
    return skipped_table(df[id_col].to_list(), df[_ROW].cast(pl.Int64).to_list(), [make(v) for v in values])


__all__ = ["read_gz2"]
