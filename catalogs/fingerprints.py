"""Fingerprints: 16 hex digits of a hash that tell whether two things are the same without
keeping them. Each kind answers its own question:

- :func:`rows_fingerprint`: which rows a catalog has (``ROW_COLUMNS``, in row order), all an
  output folder's predictions are made of; a catalog whose labels or votes change keeps it;
- :func:`catalog_fingerprint`: everything training saw (every column; not the root, which
  moves); evaluation and export recognise a training catalog by it;
- :func:`files_fingerprint`: the names and sizes of files; what is built from them (a
  similarity index) is stale once it changes.

Manifests, sidecars and index files store these values, so each recipe stays as it is: another
recipe would disown every artifact written before it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa

# The catalog columns predictions are made of; a catalog differing in any other column (labels,
# votes) gives the same output rows and is the same catalog to an output folder.
ROW_COLUMNS = ("object_id", "image_path", "ra", "dec")


def _short(h) -> str:
    return h.hexdigest()[:16]


def rows_fingerprint(table: pa.Table) -> str:
    """A hash of the ``ROW_COLUMNS`` a catalog has, values in row order."""
    h = hashlib.sha256()
    for name in ROW_COLUMNS:
        if name not in table.column_names:
            continue
        column = table.column(name)
        h.update(f"\x00{name}:{column.type}\x00".encode())
        if pa.types.is_floating(column.type):
            h.update(column.to_numpy().astype("<f8").tobytes())  # nulls read as NaN
        else:
            h.update(json.dumps(column.to_pylist(), ensure_ascii=False).encode())
    return _short(h)


def catalog_fingerprint(catalog) -> str:
    """A hash of a :class:`~catalogs.contract.Catalog`'s table: ids, image paths and targets."""
    h = hashlib.sha256()
    for name in sorted(catalog.table.column_names):
        h.update(name.encode())
        h.update(repr(catalog.table.column(name).to_pylist()).encode())
    return _short(h)


def files_fingerprint(files: Iterable[Path]) -> str:
    """A hash of the files' names and sizes, in name order."""
    key = json.dumps([(f.name, f.stat().st_size) for f in sorted(files)])
    return _short(hashlib.sha256(key.encode()))
