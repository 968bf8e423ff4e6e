import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalogs.contract import (
    CATALOG_SCHEMA,
    METADATA_KEY,
    Catalog,
    conform,
    ids_to_strings,
    read_catalog,
    resolve_image_path,
    validate,
    write_catalog,
)
from catalogs.errors import CatalogError, ContractViolation, PathEscapeError, SourceError
from catalogs.tree import GZ2_TREE

SDSS_ID = "587739505552785605"


def good(**overrides):
    cols = {"object_id": [SDSS_ID, "2", "3"], "image_path": ["a.jpg", "sub/b.jpg", "c.jpg"]}
    cols.update(overrides)
    return pa.table(cols)


@pytest.mark.parametrize(
    "table, code, column, needle",
    [
        (pa.table({"object_id": ["1"]}), "missing_column", "image_path", "required column is missing"),
        (good(colour=[1, 2, 3]), "unknown_column", "colour", "not a catalog column"),
        (good(t01_smooth_or_features_a01_smooth_fraction=[0.1, 0.2, 0.3]), "unknown_column",
         "t01_smooth_or_features_a01_smooth_fraction", "_debiased"),
        (good(object_id=[1, 2, 3]), "wrong_type", "object_id", "expected string, got int64"),
        (good(label=[1, 2, 3]), "wrong_type", "label", "expected string"),
        (good(object_id=["1", "2", "1"]), "duplicate_id", "object_id", "row 0 (object_id '1'), row 2"),
        (good(object_id=["5.87739505552786e+17", "2", "3"]), "id_precision", "object_id", "went through a float"),
        (good(object_id=["587739505552785605.0", "2", "3"]), "id_precision", "object_id", "row 0"),
        (good(object_id=["1", "", "3"]), "null_values", "object_id", "row 1"),
        (good(image_path=["a", None, "c"]), "null_values", "image_path", "row 1"),
        (good(ra=[10.0, 400.0, None]), "out_of_range", "ra", "outside [0, 360]"),
        (good(dec=[-91.0, 0.0, 1.0]), "out_of_range", "dec", "row 0"),
        (good(**{GZ2_TREE.debiased_columns[0]: [0.5, 1.2, 0.0]}), "out_of_range", GZ2_TREE.debiased_columns[0], "row 1"),
        (pa.table({"object_id": pa.array([], pa.string()), "image_path": pa.array([], pa.string())}), "empty", None, "no rows"),
    ],
)
def test_each_violation_is_named(table, code, column, needle):
    with pytest.raises(ContractViolation) as info:
        conform(table, "test.csv")
    problems = [p for p in info.value.problems if p.code == code]
    assert problems, f"expected {code}, got {info.value.codes}"
    assert problems[0].column == column
    assert needle in str(info.value)
    assert str(info.value).startswith("test.csv breaks the morphcat catalog contract")


@pytest.mark.parametrize("path", ["../b.jpg", "/etc/passwd", "b/../../c", "C:/x.jpg"])
def test_a_path_leaving_the_root_is_the_rows_problem_not_the_catalogs(tmp_path, path):
    """The catalog stays valid (its other rows get annotated); reading that row is refused."""
    table = conform(good(image_path=["a.jpg", path, "c.jpg"]))
    assert table.column("image_path")[1].as_py() == path
    with pytest.raises(PathEscapeError, match="leaves the catalog root"):
        resolve_image_path(tmp_path, path)


def test_all_problems_are_collected_before_raising():
    with pytest.raises(ContractViolation) as info:
        conform(good(object_id=["1", "1", "3"], ra=[0.0, 500.0, 1.0], extra=[1, 2, 3]))
    assert info.value.codes == {"duplicate_id", "out_of_range", "unknown_column"}


def test_message_quotes_first_rows_and_counts_the_rest():
    n = 12
    table = pa.table({"object_id": [f"{i}.0" for i in range(n)], "image_path": ["x.jpg"] * n})
    with pytest.raises(ContractViolation, match=r"\[12 row\(s\): row 0 .* and 7 more\]"):
        validate(table)


def test_conform_casts_lossless_variants_and_orders_columns():
    t = pa.table({
        "ra": pa.array([1.5, 2.5, 3.5], pa.float32()),
        "image_path": pa.array(["a", "b", "c"], pa.large_string()),
        "object_id": [SDSS_ID, "2", "3"],
        "dec": pa.array([1, 2, 3], pa.int64()),
    })
    out = conform(t)
    assert out.column_names == ["object_id", "image_path", "ra", "dec"]
    assert out.schema.field("ra").type == pa.float64()
    assert out.schema.field("image_path").type == pa.string()
    assert out.column("object_id").to_pylist()[0] == SDSS_ID


def test_schema_lists_every_contract_column():
    names = CATALOG_SCHEMA.names
    assert names[:2] == ["object_id", "image_path"]
    assert set(GZ2_TREE.debiased_columns) <= set(names)
    assert {"ra", "dec", "label", "caption"} <= set(names)


def test_ids_to_strings_is_exact_for_ints_and_refuses_floats():
    assert ids_to_strings(pa.array([587739505552785605, 2], pa.int64())).to_pylist() == [SDSS_ID, "2"]
    with pytest.raises(ContractViolation, match="floats keep only"):
        ids_to_strings(pa.array([5.87739505552785605e17]))


def test_parquet_round_trip_keeps_ids_root_and_format(tmp_path):
    out = tmp_path / "cat" / "catalog.parquet"
    written = write_catalog(Catalog(good(ra=[1.0, 2.0, 3.0]), tmp_path, "folder"), out)
    assert written == out and out.is_file()
    assert not list(out.parent.glob(".*.tmp"))
    meta = json.loads(pq.read_schema(out).metadata[METADATA_KEY])
    assert meta == {"contract": 1, "root": str(tmp_path.resolve()), "format": "folder", "rows": 3}
    back = read_catalog(out)
    assert back.root == tmp_path.resolve()
    assert back.source_format == "folder"
    assert back.table.column("object_id").to_pylist() == [SDSS_ID, "2", "3"]
    assert back.table.schema.field("object_id").type == pa.string()


def test_read_refuses_plain_parquet_and_missing_root(tmp_path):
    plain = tmp_path / "plain.parquet"
    pq.write_table(good(), plain)
    with pytest.raises(CatalogError, match="not a morphcat catalog"):
        read_catalog(plain)
    with pytest.raises(SourceError, match="does not exist"):
        read_catalog(tmp_path / "nope.parquet")
    images = tmp_path / "images"
    images.mkdir()
    out = write_catalog(Catalog(good(), images, "folder"), tmp_path / "c.parquet")
    images.rmdir()
    with pytest.raises(CatalogError, match="is not a folder; pass the images' current folder"):
        read_catalog(out)
    moved = tmp_path / "moved"
    moved.mkdir()
    assert read_catalog(out, root=moved).root == moved


def test_resolve_image_path_refuses_symlinks_out_of_the_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(b"x")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "link.jpg")
    assert resolve_image_path(root, "a.jpg") == (root / "a.jpg").resolve()
    with pytest.raises(PathEscapeError, match="outside the catalog root"):
        resolve_image_path(root, "link.jpg")
    with pytest.raises(PathEscapeError, match="leaves the catalog root"):
        resolve_image_path(root, "../secret.jpg")


def test_a_shard_reads_only_the_row_groups_that_hold_its_rows(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from catalogs import contract
    from catalogs.contract import ROW_GROUP_ROWS, read_rows

    n = 2 * ROW_GROUP_ROWS + 500
    table = pa.table({"object_id": [f"{587722981741363000 + i}" for i in range(n)],
                      "image_path": [f"images/{i}.jpg" for i in range(n)], "ra": np.linspace(0, 10, n),
                      "label": ["spiral"] * n})
    path = write_catalog(Catalog(table, tmp_path, "folder"), tmp_path / "c.parquet")
    assert pq.ParquetFile(path).num_row_groups == 3
    read = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, groups, **kw: (read.append(list(groups)), real(self, groups, **kw))[1])
    start, stop = ROW_GROUP_ROWS + 200, ROW_GROUP_ROWS + 700  # inside the second group
    rows = read_rows(path, start, stop)
    assert read == [[1]]
    assert rows.table.column_names == ["object_id", "image_path", "ra"]  # what annotation needs, no more
    assert rows.table.column("object_id").to_pylist() == table.column("object_id").to_pylist()[start:stop]
    assert rows.root == tmp_path.resolve()
    across = read_rows(path, ROW_GROUP_ROWS - 10, 2 * ROW_GROUP_ROWS + 10)  # spans three groups
    assert read[-1] == [0, 1, 2] and across.table.num_rows == ROW_GROUP_ROWS + 20
    assert across.table.column("image_path")[0].as_py() == f"images/{ROW_GROUP_ROWS - 10}.jpg"
    with pytest.raises(contract.CatalogError, match="not in"):
        read_rows(path, n - 5, n + 5)
