"""The per-shard annotation engine on a tiny synthetic catalog with broken rows mixed in:
every row ends in exactly one table, good rows carry every output, bad rows a specific reason."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.outputs import CAM_COLUMNS, VOTE_COLUMNS
from catalogs.sources import MIN_SOURCE_SNR, central_source_snr
from catalogs.synthetic import render_survey
from export.serve.annotate import annotate_rows
from export.serve.runtime import open_bundle

N_GOOD = 10

# Keras (building the tiny models) calls np.array(tensor); NumPy 2 warns about its __array__ signature.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """10 rendered galaxies + 3 rows whose image is missing, not an image, or empty."""
    root = tmp_path_factory.mktemp("survey")
    table = render_survey(root, n=N_GOOD, seed=4, size=64, mix="balanced", workers=1)
    (root / "images" / "text.jpg").write_text("this is not a JPEG\n")
    (root / "images" / "empty.jpg").write_bytes(b"")
    extra = {"object_id": ["missing", "text", "empty"],
             "image_path": ["images/missing.jpg", "images/text.jpg", "images/empty.jpg"]}
    broken = pa.table({name: extra.get(name, pa.nulls(3, table.schema.field(name).type))
                       for name in table.column_names}, schema=table.schema)
    mixed = pa.concat_tables([table.slice(0, 4), broken, table.slice(4)])
    write_catalog(Catalog(mixed, root, "synthetic"), root / "catalog.parquet")
    return read_catalog(root / "catalog.parquet")


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return open_bundle(tiny_bundle, device="cpu", intra_op_threads=1)


@pytest.mark.parametrize("batch_size", [1, 4, 64])
def test_every_row_ends_in_exactly_one_table(survey, bundle, batch_size):
    result = annotate_rows(bundle, survey.root, survey.table, start_row=0, bundle_id=bundle.bundle_id,
                           run_id="rtest", batch_size=batch_size, decode_workers=2)
    pred, err = result.predictions, result.errors
    assert pred.num_rows == N_GOOD and err.num_rows == 3
    ids = survey.table.column("object_id").to_pylist()
    assert sorted(pred.column("object_id").to_pylist() + err.column("object_id").to_pylist()) == sorted(ids)
    assert pred.column("object_id").to_pylist() == [i for i in ids if i not in {"missing", "text", "empty"}]
    reasons = dict(zip(err.column("object_id").to_pylist(), err.column("error_type").to_pylist()))
    assert reasons == {"missing": "missing", "text": "not_an_image", "empty": "empty_file"}
    assert set(err.column("stage").to_pylist()) == {"input"}
    assert all(m for m in err.column("message").to_pylist())


def test_good_rows_carry_every_output_and_agree_with_the_bundle(survey, bundle):
    result = annotate_rows(bundle, survey.root, survey.table, start_row=0, bundle_id=bundle.bundle_id,
                           run_id="rtest", batch_size=4)
    pred = result.predictions
    probs = np.stack([pred.column(f"p_{c}").to_numpy() for c in bundle.class_names], axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    labels = pred.column("label_pred").to_pylist()
    assert labels == [bundle.class_names[i] for i in probs.argmax(axis=1)]
    np.testing.assert_allclose(pred.column("confidence").to_numpy(), probs.max(axis=1), rtol=1e-6)
    for name in ("caption", "ra", "dec", *CAM_COLUMNS, "ood_score", "ood_flag", "source_snr"):
        assert pred.column(name).null_count == 0, name
    assert pred.column(VOTE_COLUMNS[0]).null_count == 0  # Q1 is always reached
    assert set(pred.column("bundle_id").to_pylist()) == {bundle.bundle_id}
    assert set(pred.column("run_id").to_pylist()) == {"rtest"}
    # The same images straight through the bundle give the same answers: nothing is reordered.
    from catalogs.decoding import iter_model_inputs

    good = [r for r, i in enumerate(survey.table.column("object_id").to_pylist())
            if i not in {"missing", "text", "empty"}]
    paths = [survey.table.column("image_path")[r].as_py() for r in good]
    pixels = np.concatenate([b.pixels for b in iter_model_inputs(survey.root, paths, bundle.image)])
    np.testing.assert_allclose(probs, bundle.infer(pixels)["probs"], atol=1e-6)
    assert pred.column("caption").to_pylist() == bundle.captions(pixels)
    score, snr = pred.column("ood_score").to_numpy(), pred.column("source_snr").to_numpy()
    np.testing.assert_allclose(score, bundle.infer(pixels)["ood_score"], rtol=1e-5)
    np.testing.assert_allclose(snr, central_source_snr(pixels), rtol=1e-5)
    assert pred.column("ood_flag").to_pylist() == ((score > bundle.ood_threshold) | (snr < MIN_SOURCE_SNR)).tolist()


def test_a_shard_slice_reports_rows_of_its_own(survey, bundle):
    part = survey.table.slice(3, 4)  # one good row, the three broken ones
    result = annotate_rows(bundle, survey.root, part, start_row=3, bundle_id=bundle.bundle_id, run_id="rtest")
    assert result.predictions.column("object_id").to_pylist() == [part.column("object_id")[0].as_py()]
    assert result.errors.column("object_id").to_pylist() == ["missing", "text", "empty"]
    assert result.errors.column("image_path").to_pylist() == part.column("image_path").to_pylist()[1:]


def test_rows_whose_outputs_are_not_finite_become_inference_errors_and_the_rest_are_kept(bundle):
    """A NaN pixel poisons that image's outputs only: it is reported, its neighbours annotated."""
    from catalogs.decoding import Batch
    from export.serve.annotate import _Collected, _infer

    s = bundle.image.size
    pixels = np.random.default_rng(0).random((4, s, s, 3)).astype(np.float32)
    pixels[2, 0, 0, 0] = np.nan
    batch = Batch(np.array([10, 11, 12, 13]), pixels, np.full((4, 2), 64), (None, "a", "b", None), (), np.full(4, 0.5))
    got = _Collected()
    ids = [f"g{r}" for r in range(14)]
    _infer(bundle, batch, ids, got, {"image_models": 0.0, "captions": 0.0, "cam_stats": 0.0})
    assert [(r, stage, kind) for r, stage, kind, _ in got.failed] == [(12, "inference", "non_finite_output")]
    assert got.rows[0].tolist() == [10, 11, 13] and got.notes == [None, "a", None]
    kept = pixels[[0, 1, 3]]
    np.testing.assert_allclose(got.probs[0], bundle.infer(kept)["probs"], atol=1e-6)
    assert got.captions == bundle.captions(kept)
    assert len(got.ood_score[0]) == len(got.ood_flag[0]) == len(got.source_snr[0]) == len(got.cam[0]["cam_gini"]) == 3
