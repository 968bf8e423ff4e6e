"""Images in a folder, or a manifest table (``fmt="folder"``).

(a) ``src`` is a **folder**: every ``.jpg .jpeg .png .tif .tiff`` file under it (any case,
    searched recursively, hidden files ignored) is one object; ``object_id`` is the file stem,
    ``image_path`` the path relative to the folder, rows sorted by that path. Two files with the
    same stem are an error naming both; a folder without images is an error.

(b) ``src`` is a **manifest**: a CSV (``.csv``, ``.csv.gz``) or Parquet (``.parquet``, ``.pq``)
    file with an id column and an image path column (``id_column="object_id"``,
    ``path_column="image_path"`` by default; the CLI's ``--id-column``/``--path-column``). Paths
    are relative to the manifest's folder, which is the root; a path leaving it (``../x.jpg``,
    ``/etc/passwd``) is kept, never opened: annotation reports that row as ``path_escape``. CSV
    ids are read as text;
    Parquet integer ids convert exactly and float ids are refused
    (:func:`catalogs.contract.ids_to_strings`). The optional catalog columns — ``ra``, ``dec``,
    ``label``, ``caption``, ``truth_class``, ``mask_path`` and the 37 ``…_debiased`` vote
    fractions — are carried when present; any other column is ignored with a note naming it.
    Rows without an id or a path go to ``skipped``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs import imaging
from catalogs.contract import CATALOG_SCHEMA, ids_to_strings
from catalogs.errors import ContractViolation, SourceError
from catalogs.readers.common import (
    ReadResult,
    finish,
    float_column,
    list_columns,
    read_csv_strings,
    require_columns,
    require_exists,
    scan_folder,
    skipped_table,
)

FORMAT = "folder"
IMAGE_SUFFIXES = imaging.RASTER_SUFFIXES
CSV_SUFFIXES = (".csv", ".csv.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
_OPTIONAL = [f for f in CATALOG_SCHEMA if f.name not in ("object_id", "image_path")]


def read_folder(src: Path, id_column: str = "object_id", path_column: str = "image_path") -> ReadResult:
    src = require_exists(Path(src), "image folder or manifest")
    if src.is_dir():
        return _read_images(src)
    return _read_manifest(src, id_column, path_column)


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _read_images(folder: Path) -> ReadResult:
    scan = scan_folder(folder, imaging.is_raster_name, _stem, "image")
    if not scan.paths:
        fits_count = sum(1 for p in folder.rglob("*") if p.is_file() and imaging.is_fits_name(p.name))
        hint = f"; it holds {fits_count} FITS file(s): use format 'fits'" if fits_count else ""
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {folder}{hint}")
    columns = {"object_id": pa.array(scan.ids, pa.string()), "image_path": pa.array(scan.paths, pa.string())}
    return finish(columns, folder.resolve(), FORMAT, folder, notes=scan.notes)


def _read_manifest(path: Path, id_column: str, path_column: str) -> ReadResult:
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        table = read_csv_strings(path).to_arrow()
    elif name.endswith(PARQUET_SUFFIXES):
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise SourceError(f"{path.name}: not a readable Parquet file: {exc}") from None
    else:
        raise SourceError(f"{path.name}: a manifest must be a CSV ({', '.join(CSV_SUFFIXES)}) or Parquet "
                          f"({', '.join(PARQUET_SUFFIXES)}) file, or pass a folder of images")
    return table_catalog(table, path, id_column, path_column, path.parent.resolve(), FORMAT)


def table_catalog(table: pa.Table, path: Path, id_column: str, path_column: str, root: Path, fmt: str) -> ReadResult:
    """A manifest-like table (an id and an image-path column, optional catalog columns) as a
    catalog of images under ``root``; rows without an id or a path are skipped with the reason."""
    have = table.column_names
    require_columns(path, have, [id_column, path_column],
                    "name the manifest's columns with `id_column` / `path_column`")

    try:
        ids = ids_to_strings(table.column(id_column), id_column)
    except ContractViolation as exc:
        raise ContractViolation(exc.problems, f"manifest {path}") from None
    paths = table.column(path_column).combine_chunks()
    if not (pa.types.is_string(paths.type) or pa.types.is_large_string(paths.type)
            or pa.types.is_string_view(paths.type)):
        raise SourceError(f"{path.name}: path column '{path_column}' must hold text, has {paths.type}")
    paths = pc.cast(paths, pa.string())
    no_id = np.asarray(pc.fill_null(pc.or_kleene(pc.is_null(ids), pc.equal(ids, "")), True))
    no_path = ~no_id & np.asarray(pc.fill_null(pc.or_kleene(pc.is_null(paths), pc.equal(paths, "")), True))
    keep = ~(no_id | no_path)
    rows = np.arange(table.num_rows)
    skipped = skipped_table(
        ids.filter(pa.array(~keep)).to_pylist(),
        rows[~keep].tolist(),
        [f"no {id_column}" if a else f"no {path_column}" for a in no_id[~keep]],
    )
    mask = pa.array(keep)
    columns: dict[str, pa.Array] = {"object_id": ids.filter(mask), "image_path": paths.filter(mask)}
    for f in _OPTIONAL:
        if f.name not in have:
            continue
        col = table.column(f.name).filter(mask)
        if pa.types.is_floating(f.type):
            columns[f.name] = float_column(col, path, f.name, rows[keep])
        else:
            columns[f.name] = col.combine_chunks()
    used = {id_column, path_column, *(f.name for f in _OPTIONAL)}
    ignored = [c for c in have if c not in used]
    notes = []
    if ignored:
        notes.append(f"ignored manifest columns: {list_columns(ignored)}")
    if skipped.num_rows:
        notes.append(f"{skipped.num_rows} manifest row(s) skipped (no id or no path)")
    return finish(columns, root, fmt, path, skipped, notes)


__all__ = ["read_folder", "table_catalog"]
