"""What every reader test checks of a read: it round-trips through the catalog contract."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from catalogs.contract import read_catalog, write_catalog
from catalogs.readers import SKIPPED_SCHEMA, ReadResult


def assert_roundtrip(result: ReadResult, tmp_path: Path) -> pa.Table:
    assert isinstance(result, ReadResult)
    assert result.skipped.schema == SKIPPED_SCHEMA
    out = write_catalog(result.catalog, tmp_path / "out" / "catalog.parquet")
    back = read_catalog(out)
    assert back.table.equals(result.catalog.table)
    assert back.root == Path(result.catalog.root).resolve()
    assert back.source_format == result.catalog.source_format
    return back.table


def col(table: pa.Table, name: str) -> list:
    return table.column(name).to_pylist()
