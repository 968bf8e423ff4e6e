"""HATS catalogs (HEALPix-partitioned Parquet, as surveys publish them and LSDB reads them) as
morphcat catalogs: ``morphcat ingest HATS_DIR --format hats [--images ROOT]``.

The catalog is read lazily with ``lsdb.open_catalog``, one partition at a time, and only the
columns a morphcat catalog has: an id column (``--id-column``, default ``object_id``), an
image-path column (``--path-column``, default ``image_path``, relative to ``--images``, by default
the folder that holds the HATS catalog), ``ra``/``dec`` and any catalog-contract column
(``label``, ``caption``, vote fractions). Rows without an id or a path are skipped with their
reason, as for a manifest.
"""

from __future__ import annotations

from pathlib import Path

from catalogs.contract import CATALOG_SCHEMA
from catalogs.hats import read_hats_rows
from catalogs.readers.common import ReadResult, require_exists
from catalogs.readers.folder import table_catalog

FORMAT = "hats"


def read_hats(src: Path, id_column: str = "object_id", path_column: str = "image_path",
              images: Path | None = None) -> ReadResult:
    src = require_exists(Path(src), "HATS catalog folder")
    wanted = [id_column, path_column, *(f.name for f in CATALOG_SCHEMA if f.name not in ("object_id", "image_path"))]
    table = read_hats_rows(src, list(dict.fromkeys(wanted)))
    root = Path(images).resolve() if images is not None else src.resolve().parent
    return table_catalog(table, src, id_column, path_column, root, FORMAT)


__all__ = ["read_hats"]
