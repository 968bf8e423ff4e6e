"""HATS out and in: an annotation run as a HATS catalog (every placed row once, the same values,
the rows without a position listed beside it), a cone search equal to a brute-force one, a
crossmatch that finds the known pairs, and a HATS catalog ingested back as a morphcat catalog."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.hats import pixel_threshold, write_hats
from catalogs.synthetic import render_survey
from catalogs.targets import with_derived_targets

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::UserWarning")]

N = 40
UNPLACED = {3, 17}  # rows whose ra/dec are unknown


@pytest.fixture(scope="module")
def survey(tmp_path_factory) -> Catalog:
    root = tmp_path_factory.mktemp("hats") / "survey"
    table = with_derived_targets(render_survey(root, n=N, seed=61, size=48, mix="balanced", workers=1))
    ra = table.column("ra").to_pylist()
    for i in UNPLACED:
        ra[i] = None
    table = table.set_column(table.schema.get_field_index("ra"), "ra", pa.array(ra, pa.float64()))
    write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    return read_catalog(root / "catalog.parquet")


@pytest.fixture(scope="module")
def hats_run(survey, tiny_bundle, morphcat, tmp_path_factory):
    base = tmp_path_factory.mktemp("hats-run")
    proc = morphcat("annotate", survey.root / "catalog.parquet", "--bundle", tiny_bundle, "--out", base / "ann",
                    "--shard-size", 16)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = morphcat("hats", base / "ann", "--out", base / "hats", "--margin-arcsec", 5)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return base, proc


def _angular_arcsec(ra1, dec1, ra2, dec2):
    ra1, dec1, ra2, dec2 = map(np.radians, (ra1, dec1, ra2, dec2))
    hav = np.sin((dec2 - dec1) / 2) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin((ra2 - ra1) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(hav))) * 3600


def test_the_hats_catalog_holds_every_placed_row_once_with_the_same_values(hats_run):
    import lsdb

    base, proc = hats_run
    predictions = pl.read_parquet(base / "ann" / "predictions" / "**" / "*.parquet")
    hats = lsdb.open_catalog(base / "hats" / "morphcat").compute()
    placed = predictions.filter(pl.col("ra").is_not_null() & pl.col("dec").is_not_null()).sort("object_id")
    got = pl.from_pandas(hats.reset_index(drop=True)).sort("object_id")
    assert got.height == placed.height == N - len(UNPLACED) and got["object_id"].n_unique() == got.height
    for column in ("object_id", "ra", "dec", "label_pred", "confidence", "p_spiral", "caption"):
        assert got[column].to_list() == placed[column].to_list(), column
    unplaced = pl.read_parquet(base / "hats" / "morphcat_without_position.parquet")
    assert unplaced.height == len(UNPLACED) and unplaced["ra"].null_count() == len(UNPLACED)
    assert f"{len(UNPLACED)} rows without ra/dec cannot be placed on the sky" in proc.stdout
    assert (base / "hats" / "morphcat_margin").is_dir()


def test_a_cone_search_returns_what_a_brute_force_distance_filter_returns(hats_run):
    import lsdb

    base, _ = hats_run
    catalog = lsdb.open_catalog(base / "hats" / "morphcat")
    everything = catalog.compute()
    centre = (float(everything["ra"].median()), float(everything["dec"].median()))
    radius = 3 * 3600.0  # arcsec: about a third of the synthetic patch
    found = set(catalog.cone_search(*centre, radius).compute()["object_id"])
    distance = _angular_arcsec(centre[0], centre[1], everything["ra"].to_numpy(), everything["dec"].to_numpy())
    expected = set(everything["object_id"][distance <= radius])
    assert found == expected and 0 < len(found) < len(everything)


def test_a_crossmatch_within_one_arcsecond_finds_the_known_pairs(hats_run, tmp_path):
    import lsdb
    from distributed import Client, LocalCluster

    base, _ = hats_run
    ours = lsdb.open_catalog(base / "hats" / "morphcat", margin_cache=base / "hats" / "morphcat_margin")
    placed = ours.compute().reset_index(drop=True)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(placed), 10, replace=False)
    offset = 0.4 / 3600  # 0.4″ in dec: a "spectroscopic" catalog of ten of our galaxies, plus far sources
    spec = pa.table({
        "object_id": [f"spec-{i}" for i in range(15)],
        "ra": np.concatenate([placed["ra"].to_numpy()[pick], rng.uniform(170, 171, 5)]),
        "dec": np.concatenate([placed["dec"].to_numpy()[pick] + offset, rng.uniform(20, 21, 5)]),
        "z": rng.uniform(0.01, 0.2, 15)})
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        write_hats(spec, tmp_path, "spec", client)
    matched = ours.crossmatch(lsdb.open_catalog(tmp_path / "spec"), radius_arcsec=1.0, n_neighbors=1,
                              suffixes=("", "_spec")).compute()
    pairs = set(zip(matched["object_id"], matched["object_id_spec"]))
    assert pairs == {(placed["object_id"][p], f"spec-{i}") for i, p in enumerate(pick)}


def test_a_hats_catalog_is_ingested_back_as_the_same_catalog(survey, morphcat, tmp_path):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None) as cluster, Client(cluster) as client:
        result = write_hats(survey.table, tmp_path / "published", "survey", client)
    assert result.without_position == len(UNPLACED)
    out = tmp_path / "back.parquet"
    proc = morphcat("ingest", tmp_path / "published" / "survey", "--format", "hats", "--images", survey.root,
                    "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    back = pl.read_parquet(out).sort("object_id")
    original = pl.from_arrow(survey.table).filter(pl.col("ra").is_not_null()).sort("object_id")
    for column in ("object_id", "image_path", "ra", "dec", "label", "caption"):
        assert back[column].to_list() == original[column].to_list(), column
    assert read_catalog(out).root == survey.root


@pytest.mark.parametrize("rows, threshold", [(40, 1_000), (50_000, 5_000), (10**9, 1_000_000)])
def test_the_partition_size_follows_the_row_count(rows, threshold):
    assert pixel_threshold(rows) == threshold


def test_predictions_without_any_position_are_refused_before_anything_is_written(tmp_path):
    from catalogs.errors import CatalogError

    unplaced = pa.table({"object_id": ["a", "b"], "ra": pa.array([None, None], pa.float64()),
                         "dec": pa.array([None, 1.0], pa.float64())})
    with pytest.raises(CatalogError, match="none of the 2 annotated rows has ra and dec"):
        write_hats(unplaced, tmp_path / "hats", "morphcat", client=None)
    assert not (tmp_path / "hats").exists()
