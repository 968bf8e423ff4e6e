"""The three fingerprints: what changes each one and what does not, and their values pinned, since
manifests, sidecars and index files written by earlier versions store them."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from catalogs.contract import Catalog
from catalogs.fingerprints import catalog_fingerprint, files_fingerprint, rows_fingerprint

TABLE = pa.table({"object_id": ["a", "b"], "image_path": ["a.jpg", "b.jpg"], "ra": [1.5, None], "label": ["s", "e"]})


def _catalog(table: pa.Table, root: str = "/x") -> Catalog:
    return Catalog(table, Path(root), "folder")


def test_the_stored_values_do_not_change():
    assert rows_fingerprint(TABLE) == "83cb0b8823ae0abe"
    assert catalog_fingerprint(_catalog(TABLE)) == "055f7d795b2eecb0"


@pytest.mark.parametrize("changed, rows_same, catalog_same", [
    (TABLE.set_column(3, "label", pa.array(["e", "s"])), True, False),  # targets: training saw them
    (TABLE.take([1, 0]), False, False),  # row order defines the shards
    (TABLE.set_column(1, "image_path", pa.array(["a.jpg", "c.jpg"])), False, False),
])
def test_what_each_fingerprint_sees(changed, rows_same, catalog_same):
    assert (rows_fingerprint(changed) == rows_fingerprint(TABLE)) is rows_same
    assert (catalog_fingerprint(_catalog(changed)) == catalog_fingerprint(_catalog(TABLE))) is catalog_same


def test_the_catalog_fingerprint_ignores_where_the_images_are():
    assert catalog_fingerprint(_catalog(TABLE, "/elsewhere")) == catalog_fingerprint(_catalog(TABLE))


def test_the_files_fingerprint_follows_names_and_sizes_not_listing_order(tmp_path):
    for name, size in (("b.parquet", 3), ("a.parquet", 5)):
        (tmp_path / name).write_bytes(b"x" * size)
    first = files_fingerprint(tmp_path.glob("*.parquet"))
    assert first == "5d248573aae53ef3"
    assert files_fingerprint(reversed(sorted(tmp_path.glob("*.parquet")))) == first
    (tmp_path / "b.parquet").write_bytes(b"x" * 4)
    assert files_fingerprint(tmp_path.glob("*.parquet")) != first
