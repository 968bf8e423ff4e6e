"""``morphcat similar``: the faiss index over a run's embeddings, exact and HNSW, built once per
run and saved beside the output, queried by object id or by image; ``morphcat unusual``: the
run's galaxies ranked by isolation in that index and by the OOD score; ``morphcat select``: the
galaxies volunteers should label next, as a Panoptes manifest."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from catalogs.inputs import dihedral_views
from catalogs.outputs import EMBEDDING_DIM
from export.serve.select import bald_scores
from export.serve.similar import EXACT, HNSW, build_index, index_folder, neighbours, open_run_index
from export.serve.unusual import isolation
from flows.cli import EXIT_BAD_INPUT

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

N = 24
SHARD = 8


def _unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _clustered(n, seed):
    """Unit vectors in 20 tight-ish clusters: like embeddings, unlike uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((20, EMBEDDING_DIM))
    return _unit(centres[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, EMBEDDING_DIM)))


def test_the_exact_index_returns_the_brute_force_cosine_neighbours():
    vectors = _clustered(500, seed=0)
    index = build_index([f"o{i}" for i in range(500)], vectors, EXACT)
    sims, rows = index.search(vectors[:7], 10)
    brute = vectors[:7] @ vectors.T
    expected = np.argsort(-brute, axis=1)[:, :10]
    np.testing.assert_array_equal(rows, expected)
    np.testing.assert_allclose(sims, np.take_along_axis(brute, expected, axis=1), atol=1e-5)
    assert index.kind == EXACT and len(index) == 500


def test_hnsw_finds_what_exact_search_finds():
    vectors = _clustered(4000, seed=1)
    ids = [f"o{i}" for i in range(4000)]
    exact, approximate = build_index(ids, vectors, EXACT), build_index(ids, vectors, HNSW)
    queries = _clustered(100, seed=2)
    _, truth = exact.search(queries, 10)
    _, found = approximate.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.95


def test_malformed_embeddings_are_refused():
    with pytest.raises(ValueError, match="shape"):
        build_index(["a"], np.zeros((1, EMBEDDING_DIM - 1)))
    with pytest.raises(ValueError, match="finite"):
        build_index(["a"], np.full((1, EMBEDDING_DIM), np.nan))
    with pytest.raises(ValueError, match="object ids"):
        build_index(["a", "b"], np.ones((1, EMBEDDING_DIM)))


@pytest.fixture(scope="module")
def survey(tmp_path_factory, morphcat):
    root = tmp_path_factory.mktemp("similar") / "survey"
    proc = morphcat("synth", root, "--n", N, "--seed", 4, "--size", 64, "--workers", 1)
    assert proc.returncode == 0, proc.stderr
    return root / "catalog.parquet"


@pytest.fixture(scope="module")
def run(survey, tiny_bundle, tmp_path_factory, morphcat):
    out = tmp_path_factory.mktemp("similar-run") / "out"
    proc = morphcat("annotate", survey, "--bundle", tiny_bundle, "--out", out, "--shard-size", SHARD)
    assert proc.returncode == 0, proc.stderr
    return out


def test_every_prediction_has_a_unit_embedding(run):
    vectors = pl.read_parquet(run / "predictions" / "**" / "*.parquet")["embedding"].to_numpy()
    assert vectors.shape == (N, EMBEDDING_DIM) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len(np.unique(vectors.round(4), axis=0)) > 1  # the images differ, so do their embeddings


def test_similar_by_object_id_lists_its_neighbours_and_saves_the_index_once(run, morphcat):
    pred = pl.read_parquet(run / "predictions" / "**" / "*.parquet")
    target = pred["object_id"][5]
    proc = morphcat("similar", run, "--object-id", target, "-k", 5, "--output", run.parent / "near.csv")
    assert proc.returncode == 0, proc.stderr
    assert f"{N} embeddings, exact index built" in proc.stderr
    listed = pl.read_csv(run.parent / "near.csv")
    assert listed["rank"].to_list() == [1, 2, 3, 4, 5] and target not in listed["object_id"].to_list()
    assert {"similarity", "label_pred", "confidence", "ood_flag", "ra", "dec"} <= set(listed.columns)
    # The brute-force cosine ranking of the run's own embeddings.
    vectors = pred["embedding"].to_numpy()
    sims = vectors @ vectors[5]
    order = [i for i in np.argsort(-sims) if i != 5][:5]
    assert listed["object_id"].to_list() == pred["object_id"].gather(order).to_list()
    np.testing.assert_allclose(listed["similarity"].to_numpy(), sims[order], atol=1e-4)
    run_id = pred["run_id"][0]
    folder = index_folder(run, run_id)
    assert sorted(p.name for p in folder.iterdir()) == ["ids.parquet", "index.json", "vectors.faiss"]
    info = json.loads((folder / "index.json").read_text())
    assert info["rows"] == N and info["kind"] == EXACT and info["metric"] == "cosine"
    again = morphcat("similar", run, "--object-id", target, "-k", 5)
    assert again.returncode == 0 and "exact index read" in again.stderr


def test_similar_piped_prints_csv_with_the_k_ids_whole(run, morphcat):
    pred = pl.read_parquet(run / "predictions" / "**" / "*.parquet")
    proc = morphcat("similar", run, "--object-id", pred["object_id"][3], "-k", 7)  # stdout is a pipe
    assert proc.returncode == 0, proc.stderr
    listed = pl.read_csv(io.StringIO(proc.stdout), schema_overrides={"object_id": pl.String})
    vectors = pred["embedding"].to_numpy()
    order = [i for i in np.argsort(-(vectors @ vectors[3])) if i != 3][:7]
    assert listed["object_id"].to_list() == pred["object_id"].gather(order).to_list()
    assert listed["rank"].to_list() == list(range(1, 8))


def test_similar_by_image_finds_the_galaxy_itself_first(run, survey, tiny_bundle, morphcat):
    catalog = pl.read_parquet(survey)
    target, path = catalog["object_id"][11], survey.parent / catalog["image_path"][11]
    proc = morphcat("similar", run, "--image", path, "--bundle", tiny_bundle, "-k", 3,
                    "--output", run.parent / "by-image.parquet")
    assert proc.returncode == 0, proc.stderr
    found = pl.read_parquet(run.parent / "by-image.parquet")
    assert found["object_id"][0] == target and found["similarity"][0] > 0.9999


@pytest.mark.parametrize("args, message", [
    (("--object-id", "no-such-galaxy"), "object 'no-such-galaxy' has no embedding"),
    (("--image", "x.jpg"), "--image needs --bundle"),
])
def test_queries_the_run_cannot_answer_are_one_clear_error(run, morphcat, args, message):
    proc = morphcat("similar", run, *args)
    assert proc.returncode == EXIT_BAD_INPUT and message in proc.stderr and "Traceback" not in proc.stderr


def test_the_index_is_rebuilt_when_the_run_gains_shards(survey, tiny_bundle, tmp_path, morphcat):
    out = tmp_path / "growing"
    args = ("annotate", survey, "--bundle", tiny_bundle, "--out", out, "--shard-size", SHARD)
    assert morphcat(*args, "--shards", "0").returncode == 0
    first = open_run_index(out)
    assert first.built and len(first.index) == SHARD
    assert not open_run_index(out).built  # read back, not rebuilt
    assert morphcat(*args).returncode == 0
    grown = open_run_index(out)
    assert grown.built and len(grown.index) == N
    table = neighbours(grown, grown.index.vector(0), k=N + 5)
    assert table.height == N and table["similarity"].is_sorted(descending=True)


def test_isolation_puts_the_planted_outliers_first():
    vectors = _clustered(600, seed=3)
    rng = np.random.default_rng(4)
    planted = [17, 230, 481]
    vectors[planted] = _unit(rng.standard_normal((3, EMBEDDING_DIM)))  # far from every cluster
    score = isolation(build_index([f"o{i}" for i in range(600)], vectors, EXACT))
    assert sorted(np.argsort(-score)[:3].tolist()) == planted
    assert (score >= 0).all() and (score <= 2).all()


def test_unusual_ranks_every_galaxy_once_and_draws_the_top(run, survey, morphcat, tmp_path):
    proc = morphcat("unusual", run, "-n", 6)
    assert proc.returncode == 0, proc.stderr
    (folder,) = (run / "unusual").iterdir()
    ranked = pl.read_parquet(folder / "unusual.parquet")
    assert ranked.height == N and ranked["rank"].to_list() == list(range(1, N + 1))
    assert ranked["object_id"].n_unique() == N and ranked["score"].is_sorted(descending=True)
    # Both signals over their 99th percentile in the run, then averaged.
    ood = ranked["ood_score"].to_numpy().astype(np.float64)
    np.testing.assert_allclose(ranked["ood_in_run"].to_numpy(), ood / np.quantile(ood, 0.99), rtol=1e-5)
    assert np.quantile(ranked["isolation"].to_numpy().astype(np.float64), 0.99) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(ranked["score"].to_numpy(), (ranked["isolation"].to_numpy() + ranked["ood_in_run"]
                                                            .to_numpy()) / 2, rtol=1e-5)
    assert ranked["reason"].str.contains("isolated").all() and ranked["reason"].str.contains("unlike").all()
    assert (folder / "contact_sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "contact sheet of the top 6" in proc.stderr


def test_unusual_without_the_catalog_still_ranks_and_says_why_there_is_no_sheet(survey, tiny_bundle, tmp_path,
                                                                                morphcat):
    import shutil

    moved = tmp_path / "survey"
    shutil.copytree(survey.parent, moved)
    out = tmp_path / "out"
    assert morphcat("annotate", moved / "catalog.parquet", "--bundle", tiny_bundle, "--out", out).returncode == 0
    shutil.rmtree(moved)
    proc = morphcat("unusual", out)
    assert proc.returncode == 0, proc.stderr
    assert "no contact sheet: catalog" in proc.stderr and "--catalog" in proc.stderr
    (folder,) = (out / "unusual").iterdir()
    assert pl.read_parquet(folder / "unusual.parquet").height == N and not (folder / "contact_sheet.png").exists()


def test_bald_is_zero_when_the_views_agree_and_ln2_when_they_split():
    agree = np.tile([[0.5, 0.5], [0.9, 0.1]], (8, 1, 1))
    split = np.array([[[1.0, 0.0]], [[0.0, 1.0]]] * 4)  # half the views say one class, half the other
    np.testing.assert_allclose(bald_scores(agree), [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(bald_scores(split), [np.log(2)], rtol=1e-9)


def test_dihedral_views_are_the_eight_distinct_turns_and_flips():
    image = np.arange(2 * 3 * 3 * 1, dtype=np.float32).reshape(2, 3, 3, 1)
    views = np.stack(dihedral_views(image))
    assert views.shape == (8, 2, 3, 3, 1)
    np.testing.assert_array_equal(views[0], image)
    assert len({v[0].tobytes() for v in views}) == 8


MANIFEST = ["subject_id", "image", "ra", "dec", "#image_path", "#label_pred", "#confidence", "#strategy", "#score",
            "#run_id"]


def _select(morphcat, run, tmp_path, *args):
    out = tmp_path / "subjects.csv"
    proc = morphcat("select", run, "--out", out, "--include-labelled", *args)
    assert proc.returncode == 0, proc.stderr
    return pl.read_csv(out), proc


def test_select_by_entropy_writes_a_manifest_of_the_most_uncertain(run, morphcat, tmp_path):
    subjects, proc = _select(morphcat, run, tmp_path, "--n", 5, "--strategy", "entropy", "--include-flagged")
    assert subjects.columns == MANIFEST and subjects.height == 5 and subjects["subject_id"].n_unique() == 5
    assert f"5 of {N} candidate galaxies chosen by entropy" in proc.stdout
    pred = pl.read_parquet(run / "predictions" / "**" / "*.parquet")
    top = pred.sort(["entropy", "object_id"], descending=[True, False]).head(5)
    assert subjects["subject_id"].to_list() == top["object_id"].to_list()
    np.testing.assert_allclose(subjects["#score"].to_numpy(), top["entropy"].to_numpy(), rtol=1e-5)
    assert all(Path(p).is_file() for p in subjects["image"])


def test_select_by_margin_and_the_seeded_random_baseline(run, morphcat, tmp_path):
    subjects, _ = _select(morphcat, run, tmp_path, "--n", 4, "--strategy", "margin", "--include-flagged")
    pred = pl.read_parquet(run / "predictions" / "**" / "*.parquet").sort("object_id")
    expected = pred.sort(["margin", "object_id"]).head(4)["object_id"].to_list()
    assert subjects["subject_id"].to_list() == expected
    first, _ = _select(morphcat, run, tmp_path, "--n", 6, "--strategy", "random", "--seed", "1", "--include-flagged")
    again, _ = _select(morphcat, run, tmp_path, "--n", 6, "--strategy", "random", "--seed", "1", "--include-flagged")
    other, _ = _select(morphcat, run, tmp_path, "--n", 6, "--strategy", "random", "--seed", "2", "--include-flagged")
    assert first["subject_id"].to_list() == again["subject_id"].to_list() != other["subject_id"].to_list()


def test_select_diverse_and_bald(run, tiny_bundle, morphcat, tmp_path):
    diverse, _ = _select(morphcat, run, tmp_path, "--n", 5, "--strategy", "diverse", "--include-flagged")
    assert diverse["subject_id"].n_unique() == 5
    bald, _ = _select(morphcat, run, tmp_path, "--n", 5, "--strategy", "bald", "--bundle", tiny_bundle,
                      "--include-flagged")
    assert bald["subject_id"].n_unique() == 5 and (bald["#score"] >= -1e-9).all()
    assert bald["#score"].is_sorted(descending=True)
    proc = morphcat("select", run, "--out", tmp_path / "x.csv", "--strategy", "bald", "--include-labelled")
    assert proc.returncode == EXIT_BAD_INPUT and "--strategy bald needs --bundle" in proc.stderr


def test_select_leaves_out_flagged_and_labelled_galaxies_unless_asked(run, morphcat, tmp_path):
    pred = pl.read_parquet(run / "predictions" / "**" / "*.parquet")
    flagged = int(pred["ood_flag"].sum())
    _, proc = _select(morphcat, run, tmp_path, "--n", 1)
    assert f"of {N - flagged} candidate galaxies" in proc.stdout
    proc = morphcat("select", run, "--out", tmp_path / "x.csv")  # every synthetic galaxy has a label
    assert proc.returncode == EXIT_BAD_INPUT and "no galaxy left to choose from" in proc.stderr
