"""catalogs.readers: every format round-trips through the contract; bad sources fail clearly."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from PIL import Image

from catalogs import contract
from catalogs.errors import CatalogError, ContractViolation, SourceError, UnknownFormatError
from catalogs.imaging import load_rgb
from catalogs.readers import FORMATS, read_source
from catalogs.tree import GZ2_TREE
from tests.catalogs.read_checks import assert_roundtrip, col

BIG_ID = "587739505552785605"  # 18 digits: float64 would turn it into 587739505552785600
VOTES = GZ2_TREE.debiased_columns


# --------------------------------------------------------------------------- fixture builders


def _jpeg(path: Path, color=(120, 60, 30), size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def _write_csv(path: Path, header: list[str], rows: list[list], gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    opener = (lambda p: gzip.open(p, "wt", newline="")) if gz else (lambda p: open(p, "w", newline=""))
    with opener(path) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _votes(seed: int) -> list[float]:
    """37 per-question fractions: each question's answers sum to 1."""
    rng = np.random.default_rng(seed)
    out = []
    for q, sl in GZ2_TREE.question_slices:
        n = sl.stop - sl.start
        out += [float(x) for x in rng.dirichlet(np.ones(n))]
    return out


def _hart16_rows(objs):
    """objs: list of (dr7objid, sample, ra, dec, seed)."""
    header = ["dr7objid", "ra", "dec", "rastring", "sample", "gz2_class", "total_votes",
              *(f"{c[:-len('_debiased')]}_weighted_fraction" for c in VOTES), *VOTES]
    rows = []
    for oid, sample, ra, dec, seed in objs:
        v = _votes(seed)
        rows.append([oid, repr(ra), repr(dec), "12:00:00", sample, "Ei", "40", *(0.5 for _ in VOTES),
                     *(repr(x) for x in v)])
    return header, rows


# --------------------------------------------------------------------------- GZ2 release layout


@pytest.fixture
def gz2_release(tmp_path) -> Path:
    root = tmp_path / "gz2"
    objs = [
        (BIG_ID, "original", 150.25, 2.5, 1),
        ("587732578312454276", "extra", 10.125, -1.75, 2),
        ("000000000000000042", "original", 200.0, 45.0, 3),  # leading zeros survive only as text
        ("588017702948962343", "stripe82", 1.0, 0.5, 4),  # no mapping row → skipped
    ]
    header, rows = _hart16_rows(objs)
    _write_csv(root / "gz2_hart16.csv", header, rows)
    _write_csv(root / "gz2_filename_mapping.csv", ["objid", "sample", "asset_id"],
               [[BIG_ID, "original", "130549"], ["587732578312454276", "extra", "57314"],
                ["000000000000000042", "original", "7"], ["999", "original", "8"]])
    for asset in ("130549", "57314", "7", "8"):
        _jpeg(root / "images" / f"{asset}.jpg")
    return root


def test_gz2_release_folder(gz2_release, tmp_path):
    r = read_source(gz2_release, "gz2")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == [BIG_ID, "587732578312454276", "000000000000000042"]
    assert col(t, "image_path") == ["images/130549.jpg", "images/57314.jpg", "images/7.jpg"]
    assert col(t, "ra") == [150.25, 10.125, 200.0]
    assert col(t, "dec") == [2.5, -1.75, 45.0]
    for j, name in enumerate(VOTES):
        assert col(t, name) == [_votes(1)[j], _votes(2)[j], _votes(3)[j]]
    # the raw (weighted) fractions come along when the release has them (evaluation's "visible")
    assert all(col(t, name) == [0.5] * 3 for name in GZ2_TREE.weighted_columns)
    assert set(t.column_names) == {"object_id", "image_path", "ra", "dec", *VOTES, *GZ2_TREE.weighted_columns}
    assert r.catalog.has_raw_votes and r.catalog.root == gz2_release.resolve()
    assert r.catalog.source_format == "gz2"
    assert all(r.catalog.image_file(i).is_file() for i in range(len(r.catalog)))
    assert col(r.skipped, "object_id") == ["588017702948962343"]
    assert col(r.skipped, "source_row") == [3]
    assert "no row in gz2_filename_mapping.csv" in col(r.skipped, "reason")[0]
    assert any("(dr7objid, sample)" in n for n in r.notes)
    assert any("1 of 4 Hart16 row(s) skipped" in n for n in r.notes)


def test_gz2_release_gzip_and_file_source(gz2_release, tmp_path):
    plain = read_source(gz2_release, "gz2")
    src = gz2_release / "gz2_hart16.csv"
    (gz2_release / "gz2_hart16.csv.gz").write_bytes(gzip.compress(src.read_bytes()))
    src.unlink()
    from_folder = read_source(gz2_release, "gz2")
    from_file = read_source(gz2_release / "gz2_hart16.csv.gz", "gz2")
    assert from_folder.catalog.table.equals(plain.catalog.table)
    assert from_file.catalog.table.equals(plain.catalog.table)
    assert from_file.catalog.root == gz2_release.resolve()
    assert from_file.skipped.equals(plain.skipped)


def test_gz2_release_joins_on_sample_too(tmp_path):
    root = tmp_path / "gz2"
    header, rows = _hart16_rows([("111", "original", 1.0, 1.0, 1), ("222", "extra", 2.0, 2.0, 2),
                                 ("333", "original", 3.0, 3.0, 3)])
    _write_csv(root / "gz2_hart16.csv", header, rows)
    _write_csv(root / "gz2_filename_mapping.csv", ["objid", "sample", "asset_id"], [
        ["111", "stripe82_coadd", "900"], ["111", "original", "1"],  # same objid, two samples
        ["222", "stripe82", "2"],  # objid known only under another sample
        ["333", "original", "3"], ["333", "original", "3"],  # exact duplicate: harmless
    ])
    r = read_source(root, "gz2")
    assert col(r.catalog.table, "object_id") == ["111", "333"]
    assert col(r.catalog.table, "image_path") == ["images/1.jpg", "images/3.jpg"]
    assert col(r.skipped, "object_id") == ["222"]
    assert col(r.skipped, "source_row") == [1]
    assert "only under sample(s) stripe82, not 'extra'" in col(r.skipped, "reason")[0]


def test_gz2_release_ambiguous_mapping_is_skipped(tmp_path):
    root = tmp_path / "gz2"
    header, rows = _hart16_rows([("111", "original", 1.0, 1.0, 1), ("222", "original", 2.0, 2.0, 2)])
    _write_csv(root / "gz2_hart16.csv", header, rows)
    _write_csv(root / "gz2_filename_mapping.csv", ["objid", "sample", "asset_id"],
               [["111", "original", "1"], ["111", "original", "5"], ["222", "original", "2"]])
    r = read_source(root, "gz2")
    assert col(r.catalog.table, "object_id") == ["222"]
    assert col(r.skipped, "object_id") == ["111"]
    assert "2 different asset_ids" in col(r.skipped, "reason")[0]


def test_gz2_release_without_sample_joins_on_objid(tmp_path):
    root = tmp_path / "gz2"
    header, rows = _hart16_rows([(BIG_ID, "original", 1.0, 1.0, 1)])
    _write_csv(root / "gz2_hart16.csv", header, rows)
    _write_csv(root / "gz2_filename_mapping.csv", ["objid", "asset_id"], [[BIG_ID, "130549"]])
    r = read_source(root, "gz2")
    assert col(r.catalog.table, "object_id") == [BIG_ID]
    assert col(r.catalog.table, "image_path") == ["images/130549.jpg"]
    assert any("dr7objid = objid" in n for n in r.notes)


def test_gz2_release_needs_mapping(tmp_path):
    header, rows = _hart16_rows([("111", "original", 1.0, 1.0, 1)])
    _write_csv(tmp_path / "gz2_hart16.csv", header, rows)
    with pytest.raises(SourceError, match="gz2_filename_mapping.csv"):
        read_source(tmp_path, "gz2")
    with pytest.raises(SourceError, match="gz2_filename_mapping.csv"):
        read_source(tmp_path / "gz2_hart16.csv", "gz2")


# --------------------------------------------------------------------------- GZ2 single CSV


def test_gz2_single_csv(tmp_path):
    header, rows = _hart16_rows([(BIG_ID, "original", 150.25, 2.5, 1), ("587732578312454276", "extra", 10.0, 1.0, 2),
                                 ("3", "original", 1.0, 1.0, 3), ("4", "original", 1.0, 1.0, 4)])
    header = ["asset_id", "filepath", *header]
    rows = [["130549", "images/130549.jpg", *rows[0]], ["57314", "", *rows[1]],
            ["", "", *rows[2]], ["44", "cutouts/x.png", *rows[3]]]
    rows[1][header.index(VOTES[5])] = ""  # a missing vote fraction → null
    rows[2][header.index(VOTES[6])] = "nan"
    _write_csv(tmp_path / "labels.csv", header, rows)
    r = read_source(tmp_path / "labels.csv", "gz2")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == [BIG_ID, "587732578312454276", "4"]
    assert col(t, "image_path") == ["images/130549.jpg", "images/57314.jpg", "cutouts/x.png"]
    assert col(t, VOTES[5])[1] is None
    assert col(t, VOTES[0]) == [_votes(1)[0], _votes(2)[0], _votes(4)[0]]
    assert col(r.skipped, "object_id") == ["3"]
    assert col(r.skipped, "source_row") == [2]
    assert "no image" in col(r.skipped, "reason")[0]
    assert r.catalog.root == tmp_path.resolve()


def test_gz2_single_csv_objid_fallback(tmp_path):
    header, rows = _hart16_rows([(BIG_ID, "original", 1.0, 1.0, 1)])
    header = ["objid", "asset_id", *header[1:]]
    rows = [[BIG_ID, "130549", *rows[0][1:]]]
    _write_csv(tmp_path / "s.csv", header, rows)
    r = read_source(tmp_path / "s.csv", "gz2")
    assert col(r.catalog.table, "object_id") == [BIG_ID]


# --------------------------------------------------------------------------- Kaggle


def _kaggle(tmp_path: Path, ids: list[str], cumulative: np.ndarray) -> Path:
    root = tmp_path / "kaggle"
    rows = [[gid, *(repr(float(v)) for v in row)] for gid, row in zip(ids, cumulative)]
    _write_csv(root / "training_solutions_rev1.csv", ["GalaxyID", *GZ2_TREE.kaggle_columns], rows)
    return root


def _kaggle_targets(n: int) -> np.ndarray:
    fractions = np.array([_votes(s) for s in range(n)])
    fractions[0, GZ2_TREE.answer("t01", "a02").index] = 0.0  # nobody says "features": Q2-5, 9-11 unreached
    fractions[0, 0:3] = [0.7, 0.0, 0.3]
    return GZ2_TREE.cumulative(fractions)


def test_kaggle_per_question_and_back(tmp_path):
    ids = ["100008", "100023", "999967", "100053"]
    targets = _kaggle_targets(len(ids))
    root = _kaggle(tmp_path, ids, targets)
    r = read_source(root, "kaggle")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == ids
    assert col(t, "image_path") == [f"images_training_rev1/{i}.jpg" for i in ids]
    per_q = np.column_stack([np.array(col(t, c), dtype=float) for c in VOTES])
    # row 0: questions below "features or disk" were never reached → null, not 0
    assert np.isnan(per_q[0, GZ2_TREE.answer("t02", "a04").index])
    assert not np.isnan(per_q[1]).any()
    # the inverse reproduces the Kaggle values exactly where defined
    np.testing.assert_allclose(GZ2_TREE.cumulative(per_q), targets, rtol=0, atol=1e-9)
    # and the stored values are per-question fractions (each reached question sums to 1)
    for q, sl in GZ2_TREE.question_slices:
        if q.normalise:
            sums = per_q[1:, sl].sum(axis=1)
            np.testing.assert_allclose(sums, 1.0, atol=1e-9)
    assert any("not Hart16 debiased" in n for n in r.notes)


def test_kaggle_pairs_images_by_id_not_listing_order(tmp_path):
    ids = ["300", "100", "200"]  # CSV order differs from the sorted (and creation) order
    root = _kaggle(tmp_path, ids, _kaggle_targets(3))
    colors = {"100": (255, 0, 0), "200": (0, 255, 0), "300": (0, 0, 255)}
    for gid in ("200", "100", "300"):  # created in yet another order
        _jpeg(root / "images_training_rev1" / f"{gid}.jpg", colors[gid])
    assert sorted(os.listdir(root / "images_training_rev1")) != [f"{i}.jpg" for i in ids]
    r = read_source(root / "training_solutions_rev1.csv", "kaggle")
    cat = r.catalog
    assert col(cat.table, "object_id") == ids
    for row, gid in enumerate(ids):
        pixel = load_rgb(cat.image_file(row))[4, 4].astype(int)
        assert np.abs(pixel - colors[gid]).max() < 10, (gid, pixel)


def test_kaggle_zip_extracted_names(tmp_path):
    root = tmp_path / "k"
    _write_csv(root / "training_solutions_rev1" / "training_solutions_rev1.csv",
               ["GalaxyID", *GZ2_TREE.kaggle_columns],
               [["5", *(repr(float(v)) for v in _kaggle_targets(2)[1])]])
    (root / "images_training_rev1" / "images_training_rev1").mkdir(parents=True)
    r = read_source(root, "kaggle")
    assert col(r.catalog.table, "image_path") == ["images_training_rev1/images_training_rev1/5.jpg"]
    assert r.catalog.root == root.resolve()


# --------------------------------------------------------------------------- folder of images


def test_folder_of_images(tmp_path):
    root = tmp_path / "imgs"
    _jpeg(root / "b.jpg")
    _jpeg(root / "a.JPEG")
    Image.new("L", (4, 4)).save(root / "c.png")
    (root / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(root / "sub" / "d.TIF")
    Image.new("RGB", (4, 4)).save(root / "sub" / "e.tiff")
    (root / "notes.txt").write_text("hi")
    (root / ".hidden.jpg").write_bytes(b"junk")
    r = read_source(root, "folder")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == ["a", "b", "c", "d", "e"]
    assert col(t, "image_path") == ["a.JPEG", "b.jpg", "c.png", "sub/d.TIF", "sub/e.tiff"]
    assert t.column_names == ["object_id", "image_path"]
    assert r.catalog.root == root.resolve()
    assert any("1 .txt" in n for n in r.notes) and any("hidden" in n for n in r.notes)


def test_folder_duplicate_stems_name_both(tmp_path):
    _jpeg(tmp_path / "x" / "gal.jpg")
    (tmp_path / "x" / "sub").mkdir()
    Image.new("RGB", (4, 4)).save(tmp_path / "x" / "sub" / "gal.png")
    with pytest.raises(SourceError) as info:
        read_source(tmp_path / "x", "folder")
    msg = str(info.value)
    assert "'gal'" in msg and "gal.jpg" in msg and "sub/gal.png" in msg


@pytest.mark.parametrize("content", [None, "fits"])
def test_folder_without_images(tmp_path, content):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    if content == "fits":
        fits.PrimaryHDU(np.ones((4, 4))).writeto(tmp_path / "empty" / "a.fits")
    with pytest.raises(SourceError, match="no images") as info:
        read_source(tmp_path / "empty", "folder")
    assert ("format 'fits'" in str(info.value)) == (content == "fits")


# --------------------------------------------------------------------------- manifests


def test_manifest_csv(tmp_path):
    votes = _votes(7)
    header = ["object_id", "image_path", "ra", "dec", "label", "caption", "x", "y", *VOTES]
    rows = [[BIG_ID, "cut/a.jpg", "150.5", "-2.25", "spiral", "a spiral", "1", "2", *map(repr, votes)],
            ["12", "b.png", "", "", "", "", "3", "4", *([""] * len(VOTES))],
            ["13", "", "1", "1", "", "", "", "", *([""] * len(VOTES))]]
    _write_csv(tmp_path / "m" / "manifest.csv", header, rows)
    r = read_source(tmp_path / "m" / "manifest.csv", "folder")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == [BIG_ID, "12"]
    assert col(t, "image_path") == ["cut/a.jpg", "b.png"]
    assert col(t, "ra") == [150.5, None] and col(t, "dec") == [-2.25, None]
    assert col(t, "label") == ["spiral", None] and col(t, "caption") == ["a spiral", None]
    assert col(t, VOTES[3]) == [votes[3], None]
    assert r.catalog.root == (tmp_path / "m").resolve()
    assert "ignored manifest columns: x, y" in r.notes
    assert r.skipped.to_pylist() == [{"object_id": "13", "source_row": 2, "reason": "no image_path"}]


def test_manifest_custom_columns_and_parquet_int_ids(tmp_path):
    table = pa.table({"galaxy": pa.array([int(BIG_ID), 7], pa.int64()),
                      "file": ["a.jpg", "d/b.jpg"], "ra": pa.array([1.5, 2.5], pa.float32()),
                      "object_id": ["unused", "unused"]})
    pq.write_table(table, tmp_path / "m.parquet")
    r = read_source(tmp_path / "m.parquet", "folder", id_column="galaxy", path_column="file")
    t = assert_roundtrip(r, tmp_path)
    assert col(t, "object_id") == [BIG_ID, "7"]
    assert col(t, "image_path") == ["a.jpg", "d/b.jpg"]
    assert col(t, "ra") == [1.5, 2.5]
    assert "ignored manifest columns: object_id" in r.notes


# --------------------------------------------------------------------------- FITS folder


# --------------------------------------------------------------------------- bad sources, table-driven


def _gz2_single(tmp_path, drop=None, rename=None, rows_override=None):
    header, rows = _hart16_rows([(BIG_ID, "original", 1.0, 1.0, 1), ("5", "original", 1.0, 1.0, 2)])
    header = ["asset_id", *header]
    rows = [["1", *rows[0]], ["2", *rows[1]]]
    if rows_override:
        rows = rows_override(header, rows)
    if drop:
        i = header.index(drop)
        header = header[:i] + header[i + 1:]
        rows = [r[:i] + r[i + 1:] for r in rows]
    return _write_csv(tmp_path / "gz2.csv", header, rows)


def _manifest(tmp_path, rows, header=("object_id", "image_path"), name="m.csv"):
    return _write_csv(tmp_path / name, list(header), rows)


BAD_SOURCES = {
    # name: (builder(tmp_path) -> (src, fmt, options), exception, substrings in message)
    "gz2 without dr7objid": (
        lambda p: (_gz2_single(p, drop="dr7objid"), "gz2", {}), SourceError, ["'dr7objid'", "asset_id", "ra"]),
    "gz2 without a vote column": (
        lambda p: (_gz2_single(p, drop=VOTES[7]), "gz2", {}), SourceError, [VOTES[7], "dr7objid"]),
    "gz2 text in a vote column": (
        lambda p: (_gz2_single(p, rows_override=lambda h, r: [r[0], [*r[1][:h.index(VOTES[2])], "lots",
                                                                         *r[1][h.index(VOTES[2]) + 1:]]]),
                   "gz2", {}), SourceError, [VOTES[2], "row 1", "'lots'"]),
    "gz2 duplicate dr7objid": (
        lambda p: (_gz2_single(p, rows_override=lambda h, r: [r[0], [r[1][0], BIG_ID, *r[1][2:]]]), "gz2", {}),
        ContractViolation, ["occur more than once", BIG_ID]),
    "gz2 csv without asset_id nor mapping": (
        lambda p: (_gz2_single(p, drop="asset_id"), "gz2", {}), SourceError, ["asset_id", "gz2_filename_mapping"]),
    "gz2 folder without hart16": (
        lambda p: (p, "gz2", {}), SourceError, ["gz2_hart16.csv"]),
    "kaggle without Class1.1": (
        lambda p: (_write_csv(p / "training_solutions_rev1.csv", ["GalaxyID", *GZ2_TREE.kaggle_columns[1:]],
                              [["1", *["0.1"] * 36]]), "kaggle", {}),
        SourceError, ["'Class1.1'", "GalaxyID", "Class1.2"]),
    "kaggle folder without solutions": (
        lambda p: (p, "kaggle", {}), SourceError, ["training_solutions_rev1.csv"]),
    "manifest without image_path": (
        lambda p: (_manifest(p, [["1", "a.jpg"]], header=("object_id", "path")), "folder", {}),
        SourceError, ["'image_path'", "object_id, path", "`path_column`"]),
    "manifest with a wrong id_column": (
        lambda p: (_manifest(p, [["1", "a.jpg"]]), "folder", {"id_column": "objid"}),
        SourceError, ["'objid'", "object_id, image_path"]),
    "manifest duplicate ids": (
        lambda p: (_manifest(p, [["1", "a.jpg"], ["2", "b.jpg"], ["1", "c.jpg"]]), "folder", {}),
        ContractViolation, ["occur more than once", "row 0", "row 2"]),
    "manifest ids through a float (csv)": (
        lambda p: (_manifest(p, [["5.87739505552786e+17", "a.jpg"], ["12.0", "b.jpg"]]), "folder", {}),
        ContractViolation, ["went through a float", "5.87739505552786e+17"]),
    "manifest float64 ids (parquet)": (
        lambda p: (pq.write_table(pa.table({"object_id": [5.87739505552786e17], "image_path": ["a.jpg"]}),
                                  p / "m.parquet") or p / "m.parquet", "folder", {}),
        ContractViolation, ["double", "read them as strings", "m.parquet"]),
    "manifest unparseable csv": (
        lambda p: ((p / "m.csv").write_text('object_id,image_path\n1,"a.jpg\n2,b.jpg\n') and p / "m.csv",
                   "folder", {}), SourceError, ["m.csv", "cannot parse"]),
    "manifest empty file": (
        lambda p: ((p / "m.csv").write_text("") or p / "m.csv", "folder", {}), SourceError, ["m.csv", "empty"]),
    "manifest not a parquet": (
        lambda p: ((p / "m.parquet").write_text("nope") and p / "m.parquet", "folder", {}),
        SourceError, ["m.parquet", "Parquet"]),
    "manifest of unknown type": (
        lambda p: ((p / "m.json").write_text("{}") and p / "m.json", "folder", {}), SourceError, ["m.json", "CSV"]),
    "missing source": (
        lambda p: (p / "nowhere", "folder", {}), SourceError, ["nowhere", "does not exist"]),
    "fits: a file, not a folder": (
        lambda p: ((p / "a.fits").write_bytes(b"x") and p / "a.fits", "fits", {}), SourceError, ["not a folder"]),
    "fits: empty folder": (
        lambda p: (p, "fits", {}), SourceError, ["no FITS files"]),
    "unknown format": (
        lambda p: (p, "votable", {}), UnknownFormatError, ["'votable'", "fits, folder, gz2, hats, kaggle"]),
    "option the format does not take": (
        lambda p: (p, "gz2", {"id_column": "x"}), CatalogError, ["id_column", "gz2"]),
}


@pytest.mark.parametrize("case", list(BAD_SOURCES), ids=list(BAD_SOURCES))
def test_bad_sources(tmp_path, case):
    build, exc_type, needles = BAD_SOURCES[case]
    src, fmt, options = build(tmp_path)
    with pytest.raises(exc_type) as info:
        read_source(src, fmt, **options)
    msg = str(info.value)
    for needle in needles:
        assert needle in msg, f"{needle!r} not in: {msg}"
    assert isinstance(info.value, CatalogError)  # never a bare polars/pyarrow/astropy error


def test_manifest_paths_leaving_the_root_are_kept_for_annotation_to_report(tmp_path):
    result = read_source(_manifest(tmp_path, [["1", "../x.jpg"], ["2", "ok.jpg"], ["3", "/etc/passwd"]]), "folder")
    assert result.catalog.table.column("image_path").to_pylist() == ["../x.jpg", "ok.jpg", "/etc/passwd"]


def test_contract_violation_codes(tmp_path):
    _manifest(tmp_path, [["1", "../x.jpg"], ["1", "/etc/passwd"]])
    with pytest.raises(ContractViolation) as info:
        read_source(tmp_path / "m.csv", "folder")
    assert info.value.codes == {"duplicate_id"}  # the escaping paths are the rows' problem
    pq.write_table(pa.table({"object_id": [1.0], "image_path": ["a.jpg"]}), tmp_path / "f.parquet")
    with pytest.raises(ContractViolation) as info:
        read_source(tmp_path / "f.parquet", "folder")
    assert info.value.codes == {"id_precision"}


def test_none_options_are_ignored_and_format_is_case_insensitive(gz2_release):
    r = read_source(gz2_release, " GZ2 ", id_column=None, path_column=None)
    assert len(r.catalog) == 3
    assert set(FORMATS) == {"gz2", "kaggle", "folder", "fits", "hats"}


# --------------------------------------------------------------------------- the real shared sample


def test_real_gz2_sample(shared_data, tmp_path):
    src = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "gz2-sample" / "gz2_sample_labels.csv"
    assert src.resolve() == (shared_data / "gz2-sample" / "gz2_sample_labels.csv").resolve()
    r = read_source(src, "gz2")
    with open(src, newline="") as f:
        want_ids = [row["dr7objid"] for row in csv.DictReader(f)]
    assert len(r.catalog) == 700 == len(want_ids)
    assert col(r.catalog.table, "object_id") == want_ids
    assert all(len(i) == 18 for i in want_ids)
    assert r.skipped.num_rows == 0
    assert r.catalog.has_votes
    assert all(r.catalog.image_file(i).is_file() for i in range(len(r.catalog)))
    assert load_rgb(r.catalog.image_file(0)).shape == (224, 224, 3)
    assert_roundtrip(r, tmp_path)
    # the vote fractions are the CSV's values, to the last digit
    with open(src, newline="") as f:
        first = next(csv.DictReader(f))
    assert col(r.catalog.table, VOTES[0])[0] == float(first[VOTES[0]])
    assert contract.ids_to_strings(r.catalog.table.column("object_id")).to_pylist() == want_ids
