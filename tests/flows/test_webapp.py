"""The web demo's plain modules, without a browser: uploads meet the catalog's image checks, the
single-image analysis says what catalog annotation says, the overlay and figures, the catalog
view's filters and downloads, the ``streamlit run`` command line and ``morphcat app``'s refusals."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from PIL import Image

from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.errors import CatalogError
from catalogs.imaging import EMPTY_FILE, NOT_AN_IMAGE, TOO_LARGE, TOO_SMALL, TRUNCATED, UNSUPPORTED_TYPE, ImageError
from catalogs.inputs import model_input
from catalogs.outputs import CAM_COLUMNS, VOTE_COLUMNS, predictions_table
from catalogs.shards import MANIFEST_NAME, OutputFolderError, prepare_run, write_shard
from catalogs.synthetic import render_survey
from catalogs.tree import GZ2_TREE
from export.serve.annotate import annotate_rows
from export.serve.runtime import open_bundle
from flows.cli import EXIT_BAD_INPUT
from flows.webapp import analysis, catalog_view, figures, launch

# Keras (building the tiny models) calls np.array(tensor); NumPy 2 warns about its __array__ signature.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
N_GALAXIES = 8


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return open_bundle(tiny_bundle, device="cpu", intra_op_threads=1)


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """A rendered 64 px survey written as a catalog."""
    root = tmp_path_factory.mktemp("survey")
    table = render_survey(root, n=N_GALAXIES, seed=2, size=64, mix="balanced", workers=1)
    write_catalog(Catalog(table, root, "synthetic"), root / "catalog.parquet")
    return read_catalog(root / "catalog.parquet")


@pytest.fixture(scope="module")
def annotations(survey, bundle, tmp_path_factory):
    """``survey`` annotated by the tiny bundle into a folder, by the functions the
    catalog-annotate flow runs (two shards)."""
    out = tmp_path_factory.mktemp("annotations") / "out"
    source = str(survey.root / "catalog.parquet")
    plan = prepare_run(out, survey.table, bundle.bundle_id, 5, {"batch_size": 4}, source=source)
    for shard in plan.shards:
        result = annotate_rows(bundle, survey.root, survey.table.slice(shard.start, len(shard)),
                               start_row=shard.start, bundle_id=bundle.bundle_id, run_id=plan.run_id, batch_size=4)
        write_shard(plan, shard, result.predictions, result.errors)
    return out


def _jpeg(path: Path, size: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size]
    blob = 220 * np.exp(-(((x - size / 2) / 6) ** 2 + ((y - size / 2) / 4) ** 2) / 2)
    rgb = np.clip(blob[..., None] * np.array([1.0, 0.8, 0.6]) + rng.normal(20, 4, (size, size, 3)), 0, 255)
    Image.fromarray(rgb.astype(np.uint8)).save(path, "JPEG", quality=92)
    return path.read_bytes()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width``×``height`` with a few bytes of data (a bomb, to any header check)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- uploads


def test_check_upload_refuses_other_types_and_oversized_files():
    with pytest.raises(ImageError) as exc:
        analysis.check_upload("notes.gif", 100)
    assert exc.value.reason == UNSUPPORTED_TYPE and "notes.gif" in exc.value.message
    with pytest.raises(ImageError) as exc:
        analysis.check_upload("big.jpg", analysis.MAX_UPLOAD_BYTES + 1)
    assert exc.value.reason == analysis.UPLOAD_TOO_LARGE and "10 MB" in exc.value.message
    for name in ("a.JPG", "b.png", "c.tiff", "d.fits", "e.fits.gz"):
        analysis.check_upload(name, analysis.MAX_UPLOAD_BYTES)


def _truncated_jpeg(tmp_path: Path) -> bytes:
    data = _jpeg(tmp_path / "whole.jpg")
    return data[: len(data) // 2]


def _small_png(tmp_path: Path) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (40, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name, make, reason", [
    ("empty.jpg", lambda tmp: b"", EMPTY_FILE),
    ("page.jpg", lambda tmp: b"<html>404 not found</html>\n", NOT_AN_IMAGE),
    ("cut.jpg", _truncated_jpeg, TRUNCATED),
    ("tiny.png", _small_png, TOO_SMALL),
    ("bomb.png", lambda tmp: _png_header_only(20000, 20000), TOO_LARGE),
])
def test_hostile_uploads_fail_with_the_catalog_reason_and_the_uploads_name(tmp_path, bundle, name, make, reason):
    with pytest.raises(ImageError) as exc:
        analysis.prepare_upload(name, make(tmp_path), bundle.image)
    assert exc.value.reason == reason
    assert name in exc.value.message and "morphcat-upload-" not in exc.value.message


def test_an_upload_becomes_exactly_the_pixels_a_catalog_image_would(tmp_path, bundle):
    data = _jpeg(tmp_path / "galaxy.jpg", size=100)
    prepared = analysis.prepare_upload("galaxy.jpg", data, bundle.image)
    np.testing.assert_array_equal(prepared.model.pixels, model_input(tmp_path / "galaxy.jpg", bundle.image).pixels)
    assert prepared.model.source_size == (100, 100)
    assert prepared.shown.shape == (100, 100, 3)  # never enlarged
    assert prepared.view.shape == (analysis.VIEW_SIDE, analysis.VIEW_SIDE, 3) and prepared.view.dtype == np.uint8


# --------------------------------------------------------------------------- analysis


def test_analysis_says_what_catalog_annotation_says(survey, bundle):
    files = [survey.image_file(i) for i in range(N_GALAXIES)]
    results = analysis.analyse(bundle, [analysis.prepare_file(f, bundle.image).model for f in files])
    annotated = pl.from_arrow(annotate_rows(bundle, survey.root, survey.table, start_row=0, bundle_id=bundle.bundle_id,
                                            run_id="rtest", batch_size=3).predictions)
    assert len(results) == N_GALAXIES
    for result, row in zip(results, annotated.iter_rows(named=True)):
        assert result.label == row["label_pred"] and result.label in bundle.class_names
        assert result.confidence == pytest.approx(row["confidence"], abs=1e-6)
        assert result.caption == row["caption"] and result.caption
        votes = [row[c] for c in VOTE_COLUMNS]
        np.testing.assert_allclose(np.nan_to_num(result.votes), [0.0 if v is None else v for v in votes], atol=1e-6)
        assert result.cam.ndim == 2 and (result.cam >= 0).all()
        assert result.ood_score == pytest.approx(row["ood_score"], rel=1e-5) and result.ood_flag == row["ood_flag"]
        assert np.isfinite(result.source_snr)
    assert analysis.analyse(bundle, []) == []


def test_votes_table_groups_the_37_answers_by_question_in_tree_order():
    votes = np.full(len(GZ2_TREE), np.nan)
    votes[:3] = [0.2, 0.7, 0.1]
    table = analysis.votes_table(votes)
    assert table.height == 37 and table["question_key"].unique(maintain_order=True).to_list() == \
        [q.key for q in GZ2_TREE.questions]
    first = table.filter(pl.col("question_key") == "t01")
    assert first["answer"].to_list() == ["Smooth", "Features or disk", "Star or artifact"]
    assert first["fraction"].to_list() == pytest.approx([0.2, 0.7, 0.1])
    assert table["fraction"].null_count() == 34  # unreached questions are null, not NaN
    with pytest.raises(ValueError, match="37 vote fractions"):
        analysis.votes_table(np.zeros(5))


def test_the_app_modules_serve_a_bundle_without_tensorflow(tiny_bundle, tmp_path):
    image = tmp_path / "g.jpg"
    _jpeg(image)
    code = (
        "import sys\n"
        "from export.serve.runtime import open_bundle\n"
        "from flows.webapp import analysis, catalog_view, figures, launch\n"
        f"b = open_bundle({str(tiny_bundle)!r}, device='cpu')\n"
        f"p = analysis.prepare_file({str(image)!r}, b.image)\n"
        "r = analysis.analyse(b, [p.model])[0]\n"
        "figures.cam_overlay(p.view, r.cam); figures.votes_figure(r.votes)\n"
        "print(r.label, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    label, tf_loaded, keras_loaded = proc.stdout.split()
    assert label in open_bundle(tiny_bundle, device="cpu").class_names
    assert (tf_loaded, keras_loaded) == ("False", "False")


# --------------------------------------------------------------------------- figures


def test_overlay_puts_the_colormap_top_where_the_heat_is():
    grey = np.full((64, 64, 3), 128, np.uint8)
    cam = np.zeros((4, 4), np.float32)
    cam[0, 3] = 2.5  # heat in the top-right cell only
    out = figures.cam_overlay(grey, cam)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    hot, cold = out[2, 61].astype(int), out[61, 2].astype(int)
    assert hot[0] > hot[2] + 40  # jet's top is red
    assert cold[2] > cold[0] + 40  # and its bottom blue
    # No heat at all is drawn as the colormap's bottom everywhere, not a division by zero.
    flat = figures.cam_overlay(grey, np.zeros((4, 4), np.float32))
    assert (flat == flat[0, 0]).all()


def test_normalised_cam_refuses_maps_grad_cam_cannot_produce():
    for bad in (np.full((2, 2), -1.0), np.full((2, 2), np.nan), np.zeros((2, 2, 2))):
        with pytest.raises(ValueError, match="Grad-CAM map"):
            figures.normalised_cam(bad, 8)
    with pytest.raises(ValueError, match="square RGB"):
        figures.cam_overlay(np.zeros((8, 6, 3), np.uint8), np.ones((2, 2)))


def test_figures_draw_one_bar_per_class_and_one_panel_per_question():
    fig = figures.probabilities_figure(["a", "b", "c"], np.array([0.2, 0.5, 0.3]))
    ax = fig.axes[0]
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.2, 0.5, 0.3])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError):
        figures.probabilities_figure(["a"], np.array([0.5, 0.5]))
    votes = np.full(len(GZ2_TREE), np.nan)
    votes[:3] = [0.2, 0.7, 0.1]
    fig = figures.votes_figure(votes)
    titled = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert len(titled) == len(GZ2_TREE.questions)
    assert titled[0].get_title(loc="left").startswith("t01:") and len(titled[0].patches) == 3
    assert all(any(t.get_text() == "not reached" for t in ax.texts) for ax in titled[1:])
    counts = figures.class_counts_figure(["spiral", "elliptical"], [3, 1])
    assert [p.get_height() for p in counts.axes[0].patches] == [3, 1]
    hist = figures.confidence_figure(np.array([0.1, 0.95, 0.97]), bins=10)
    assert sum(p.get_height() for p in hist.axes[0].patches) == 3


# --------------------------------------------------------------------------- catalog view


def _rows() -> pl.DataFrame:
    """Six predictions with chosen classes, captions, flags and notes, in the output schema."""
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55], [0.99, 0.01], [0.3, 0.7]])
    table = predictions_table(
        ["spiral", "elliptical"], object_ids=[f"o{i}" for i in range(6)], probs=probs, bundle_id="b", run_id="r",
        captions=["a barred spiral", "a spiral galaxy with a Bar", "barred? no: smooth", "smooth round", None, "round"],
        ood_score=np.arange(6.0), ood_flag=np.array([False, True, False, True, False, False]),
        input_notes=[None, "converted_from=RGBA", None, None, "converted_from=L", None])
    return pl.from_arrow(table)


@pytest.mark.parametrize("filters, expected", [
    (catalog_view.Filters(), ["o0", "o1", "o2", "o3", "o4", "o5"]),
    (catalog_view.Filters(classes=("elliptical",)), ["o2", "o3", "o5"]),
    (catalog_view.Filters(min_confidence=0.6, max_confidence=0.95), ["o0", "o1", "o2", "o5"]),
    (catalog_view.Filters(caption_words="bar"), ["o1"]),  # whole words, any case: "barred" is not "bar"
    (catalog_view.Filters(caption_words="SPIRAL a"), ["o0", "o1"]),
    (catalog_view.Filters(caption_words="barred?"), ["o2"]),  # regex characters are literal
    (catalog_view.Filters(ood="flagged"), ["o1", "o3"]),
    (catalog_view.Filters(ood="not flagged"), ["o0", "o2", "o4", "o5"]),
    (catalog_view.Filters(converted_only=True, classes=("spiral",)), ["o1", "o4"]),
])
def test_filters_keep_exactly_the_matching_rows(filters, expected):
    kept = catalog_view.apply_filters(_rows().lazy(), filters).collect()
    assert kept["object_id"].to_list() == expected


def test_an_unknown_ood_flag_keeps_no_row_either_way():
    rows = _rows().with_columns(pl.lit(None, pl.Boolean).alias("ood_flag"))
    for choice in ("flagged", "not flagged"):
        assert catalog_view.apply_filters(rows.lazy(), catalog_view.Filters(ood=choice)).collect().height == 0


def test_filters_refuse_impossible_settings():
    with pytest.raises(ValueError, match="confidence range"):
        catalog_view.Filters(min_confidence=0.8, max_confidence=0.2)
    with pytest.raises(ValueError, match="ood must be one of"):
        catalog_view.Filters(ood="maybe")


def test_class_counts_and_downloads_round_trip():
    rows = _rows()
    counts = catalog_view.class_counts(rows)
    assert counts.rows() == [("elliptical", 3), ("spiral", 3)]
    back = pl.read_parquet(io.BytesIO(catalog_view.table_bytes(rows, "parquet")))
    assert back.equals(rows)
    csv = pl.read_csv(io.BytesIO(catalog_view.table_bytes(rows, "csv")))
    assert csv["object_id"].to_list() == rows["object_id"].to_list() and csv.columns == rows.columns
    with pytest.raises(ValueError, match="download format"):
        catalog_view.table_bytes(rows, "xlsx")


def test_a_csv_download_writes_the_embedding_as_its_numbers():
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    rows = pl.DataFrame({"object_id": ["a", "b"], "embedding": pl.Series(vectors, dtype=pl.Array(pl.Float32, 3))})
    back = pl.read_csv(io.BytesIO(catalog_view.table_bytes(rows, "csv")))
    got = np.array([[float(x) for x in text.split()] for text in back["embedding"]])
    np.testing.assert_allclose(got, vectors, rtol=1e-6)


def test_an_annotations_folder_opens_with_its_runs_and_catalog(annotations, survey, bundle):
    folder = catalog_view.open_annotations(annotations)
    assert len(folder.runs) == 1 and folder.bundle_id(folder.runs[0]) == bundle.bundle_id
    rows = folder.scan(folder.runs[0]).collect()
    assert sorted(rows["object_id"]) == sorted(survey.table.column("object_id").to_pylist())
    assert set(CAM_COLUMNS) <= set(rows.columns)
    assert folder.scan(folder.runs[0], "errors").collect().height == 0
    catalog = catalog_view.locate_catalog(folder)
    assert catalog.root == survey.root
    page = catalog_view.with_image_paths(rows.reverse().head(3), catalog)
    assert page["object_id"].to_list() == rows.reverse().head(3)["object_id"].to_list()
    lookup = dict(zip(survey.table.column("object_id").to_pylist(), survey.table.column("image_path").to_pylist()))
    assert page["image_path"].to_list() == [lookup[i] for i in page["object_id"]]
    with pytest.raises(OutputFolderError, match="no run 'rnope'"):
        folder.scan("rnope")


def test_folders_that_are_not_annotations_are_refused_with_the_reason(tmp_path, annotations):
    with pytest.raises(OutputFolderError, match="does not exist"):
        catalog_view.open_annotations(tmp_path / "nothing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(OutputFolderError, match=f"no {MANIFEST_NAME}"):
        catalog_view.open_annotations(tmp_path / "plain")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(OutputFolderError, match="not a morphcat annotations manifest"):
        catalog_view.open_annotations(tmp_path / "bad")
    (tmp_path / "empty").mkdir()
    manifest = json.loads((annotations / MANIFEST_NAME).read_text())
    (tmp_path / "empty" / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(OutputFolderError, match="holds no predictions yet"):
        catalog_view.open_annotations(tmp_path / "empty")


def test_a_moved_or_different_catalog_is_refused_with_the_reason(tmp_path, annotations, survey):
    folder = catalog_view.open_annotations(annotations)
    moved = catalog_view.Annotations(folder.out, {**folder.manifest, "catalog": {
        **folder.manifest["catalog"], "source": str(tmp_path / "gone.parquet")}}, folder.runs)
    with pytest.raises(CatalogError, match="pass its current path with `catalog`"):
        catalog_view.locate_catalog(moved)
    # An explicit --catalog is accepted when it holds the annotated rows...
    assert len(catalog_view.locate_catalog(moved, survey.root / "catalog.parquet")) == N_GALAXIES
    # ...and refused when it holds other rows.
    other = tmp_path / "other.parquet"
    write_catalog(Catalog(survey.table.slice(1), survey.root, "synthetic"), other)
    with pytest.raises(CatalogError, match="is not the one annotated"):
        catalog_view.locate_catalog(folder, other)


# --------------------------------------------------------------------------- launching


def test_streamlit_command_binds_to_this_machine_and_passes_the_paths(tmp_path):
    command = launch.streamlit_command(Path("bundle"), tmp_path / "ann", port=8999)
    assert command[:4] == [sys.executable, "-m", "streamlit", "run"] and Path(command[4]).is_file()
    options = dict(zip(command[5:command.index("--"):2], command[6:command.index("--"):2]))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8999"
    assert options["--server.maxUploadSize"] == str(analysis.MAX_UPLOAD_MB)
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    args = launch.parse_script_arguments(command[command.index("--") + 1:])
    assert args.bundle == Path("bundle").resolve() and args.annotations == (tmp_path / "ann").resolve() and args.catalog is None
    with pytest.raises(ValueError, match="port"):
        launch.streamlit_command(Path("b"), port=70000)


def _morphcat(*args) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).with_name("morphcat"))
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_morphcat_app_refuses_a_bad_bundle_or_folder_before_serving(tmp_path, tiny_bundle):
    proc = _morphcat("app", "--bundle", tmp_path / "nope")
    assert proc.returncode == EXIT_BAD_INPUT and "morphcat app: " in proc.stderr and "Traceback" not in proc.stderr
    proc = _morphcat("app", "--bundle", tiny_bundle, "--annotations", tmp_path)
    assert proc.returncode == EXIT_BAD_INPUT and f"no {MANIFEST_NAME}" in proc.stderr
    proc = _morphcat("app", "--bundle", tiny_bundle, "--catalog", tmp_path / "c.parquet")
    assert proc.returncode == EXIT_BAD_INPUT and "give --annotations too" in proc.stderr
    proc = _morphcat("app", "--bundle", tiny_bundle, "--port", "0")
    assert proc.returncode == 2 and "1…65535" in proc.stderr  # argparse's own exit
    assert "serving" not in proc.stdout
