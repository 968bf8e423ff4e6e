"""The fuzz catalog: every hostile input of ``catalogs.imaging``'s tables, paths that leave the
root, FITS with NaNs, photos and empty sky, mixed with real (synthetic) galaxies, annotated by
the real ``morphcat annotate`` with a really trained bundle. Every row must end where its kind
says: an error with its specific type, or a prediction carrying its conversion note; the
non-galaxies flagged as out of distribution; the galaxies annotated and mostly not flagged."""

from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from astropy.io import fits
from matplotlib import cbook
from PIL import Image

from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.imaging import FITS_NO_SIGNAL, PATH_ESCAPE
from tests.catalogs.test_imaging import _galaxy
from tests.catalogs.test_inputs import CONVERTED, REFUSED

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:File may have been truncated")]
GALAXIES = 24
SIDE = 96  # the galaxy bundle's survey cutouts


def _slug(case: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in case)


def _non_galaxies(folder) -> dict[str, str]:
    """Images that are not galaxy cutouts: a photo, empty sky, a test pattern."""
    rng = np.random.default_rng(0)
    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
        photo.convert("RGB").save(folder / "photo.jpg")
    sky = np.clip(rng.normal(12, 4, (SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(sky).save(folder / "empty_sky.png")
    y, x = np.mgrid[:SIDE, :SIDE]
    Image.fromarray(((((y // 8) + (x // 8)) % 2) * 255).astype(np.uint8)).convert("RGB").save(folder / "checker.png")
    return {"photo": "nongalaxy/photo.jpg", "empty_sky": "nongalaxy/empty_sky.png", "checker": "nongalaxy/checker.png"}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory, morphcat):
    """The fuzz catalog; returns (catalog path, expected outcome per object_id, galaxy ids).

    Expected: ``("error", error_type)`` or ``("prediction", input_note)``."""
    base = tmp_path_factory.mktemp("fuzz")
    survey = base / "galaxies"
    assert morphcat("synth", survey, "--n", str(GALAXIES), "--seed", "77", "--size", str(SIDE),
                    "--mix", "balanced").returncode == 0
    root = base / "root"
    shutil.copytree(survey, root / "galaxies")
    ids, paths, expected = [], [], {}

    def add(object_id, path, outcome):
        ids.append(object_id)
        paths.append(path)
        expected[object_id] = outcome

    galaxies = read_catalog(survey / "catalog.parquet").table
    galaxy_ids = []
    for oid, path in zip(galaxies.column("object_id").to_pylist(), galaxies.column("image_path").to_pylist()):
        add(f"galaxy-{oid}", f"galaxies/{path}", ("prediction", None))
        galaxy_ids.append(f"galaxy-{oid}")
    for table, kind in ((REFUSED, "refused"), (CONVERTED, "converted")):
        for case, (build, *rest) in table.items():
            folder = root / kind / _slug(case)
            folder.mkdir(parents=True)
            path = build(folder)
            outcome = ("error", rest[0]) if kind == "refused" else ("prediction", rest[1])
            add(f"{kind}-{_slug(case)}", str(path.relative_to(root)), outcome)
    outside = base / "outside.png"
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(outside)
    (root / "link_out.png").symlink_to(outside)
    add("escape-dotdot", "../outside.png", ("error", PATH_ESCAPE))
    add("escape-absolute", str(outside), ("error", PATH_ESCAPE))
    add("escape-symlink", "link_out.png", ("error", PATH_ESCAPE))
    nan = _galaxy(64, 64)
    nan[:4, :5] = np.nan
    (root / "fits").mkdir()
    fits.PrimaryHDU(nan).writeto(root / "fits" / "nan.fits")
    fits.PrimaryHDU(np.full((64, 64), np.nan)).writeto(root / "fits" / "all_nan.fits")
    add("fits-nan", "fits/nan.fits", ("prediction", "nonfinite_pixels=20"))
    add("fits-all-nan", "fits/all_nan.fits", ("error", FITS_NO_SIGNAL))
    (root / "nongalaxy").mkdir()
    for name, path in _non_galaxies(root / "nongalaxy").items():
        add(f"nongalaxy-{name}", path, ("prediction", None))
    order = np.random.default_rng(5).permutation(len(ids))  # hostile rows spread over the shards
    table = pa.table({"object_id": [ids[i] for i in order], "image_path": [paths[i] for i in order]})
    catalog = write_catalog(Catalog(table, root, "folder"), base / "fuzz.parquet")
    return catalog, expected, galaxy_ids


@pytest.fixture(scope="module")
def annotated(fuzz, galaxy_bundle, morphcat, tmp_path_factory):
    catalog, _, _ = fuzz
    out = tmp_path_factory.mktemp("fuzz-out") / "ann"
    proc = morphcat("annotate", catalog, "--bundle", galaxy_bundle, "--out", out, "--shard-size", "16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return (pl.read_parquet(out / "predictions" / "**" / "*.parquet"),
            pl.read_parquet(out / "errors" / "**" / "*.parquet"), proc.stdout)


def test_every_row_is_accounted_for_exactly_once(fuzz, annotated):
    _, expected, _ = fuzz
    predictions, errors, stdout = annotated
    ids = predictions["object_id"].to_list() + errors["object_id"].to_list()
    assert sorted(ids) == sorted(expected)  # inputs = predictions + errors, no row twice
    assert f"{len(expected)} rows → {predictions.height} predictions + {errors.height} errors" in stdout


def test_each_bad_input_ends_as_its_specific_error_or_an_annotated_conversion(fuzz, annotated):
    _, expected, _ = fuzz
    predictions, errors, _ = annotated
    got = {r["object_id"]: ("error", r["error_type"]) for r in errors.iter_rows(named=True)}
    got |= {r["object_id"]: ("prediction", r["input_note"]) for r in predictions.iter_rows(named=True)}
    wrong = {k: (got.get(k), want) for k, want in expected.items() if got.get(k) != want}
    assert not wrong, wrong
    assert errors["stage"].unique().to_list() == ["input"]
    assert errors.filter(pl.col("message").str.len_chars() < 10).height == 0  # each says why


def test_good_rows_are_annotated_normally(fuzz, annotated):
    _, _, galaxy_ids = fuzz
    predictions, _, _ = annotated
    galaxies = predictions.filter(pl.col("object_id").is_in(galaxy_ids))
    assert galaxies.height == GALAXIES
    for column in ("label_pred", "confidence", "cam_peak_x", "ood_score", "ood_flag"):
        assert galaxies[column].null_count() == 0, column
    assert (galaxies["ood_flag"] == (galaxies["ood_score"] > 1.0)).all()


def test_non_galaxies_are_flagged_and_galaxies_mostly_are_not(fuzz, annotated):
    _, _, galaxy_ids = fuzz
    predictions, _, _ = annotated
    flags = dict(zip(predictions["object_id"], predictions["ood_flag"]))
    scores = dict(zip(predictions["object_id"], predictions["ood_score"]))
    for name in ("nongalaxy-photo", "nongalaxy-empty_sky", "nongalaxy-checker"):
        assert flags[name], (name, scores[name])
    flagged = [g for g in galaxy_ids if flags[g]]
    assert len(flagged) <= GALAXIES // 6, {g: scores[g] for g in flagged}
    worst_galaxy = max(scores[g] for g in galaxy_ids if not flags[g])
    assert min(scores[n] for n in ("nongalaxy-photo", "nongalaxy-checker")) > 2 * worst_galaxy

