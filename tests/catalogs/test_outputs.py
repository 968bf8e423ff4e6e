"""catalogs.outputs: the predictions/errors column contract and the table builders."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from catalogs.contract import VOTE_COLUMNS as CATALOG_VOTE_COLUMNS
from catalogs.outputs import (
    CAM_COLUMNS,
    EMBEDDING_DIM,
    ERRORS_SCHEMA,
    VOTE_COLUMNS,
    predictions_class_names,
    errors_table,
    output_metadata,
    predictions_schema,
    predictions_table,
    with_output_metadata,
)
from catalogs.tree import GZ2_TREE

CLASSES = ("spiral", "elliptical", "edge-on")


def _table(probs, **kw):
    n = len(probs)
    return predictions_table(CLASSES, object_ids=[f"o{i}" for i in range(n)], probs=np.asarray(probs),
                             bundle_id="b1", run_id="r1", **kw)


def test_the_column_contract_is_stable():
    """Scripts outside morphcat read these names: a rename must fail here first."""
    schema = predictions_schema(CLASSES)
    assert schema.names == [
        "object_id", "ra", "dec", "label_pred", "confidence", "entropy", "margin",
        "p_spiral", "p_elliptical", "p_edge-on", *VOTE_COLUMNS, "caption", "caption_source",
        "cam_peak_x", "cam_peak_y", "cam_peak_x_frac", "cam_peak_y_frac", "cam_centroid_dx", "cam_centroid_dy",
        "cam_offset_px", "cam_offset_frac", "cam_central_share", "cam_entropy", "cam_gini",
        "ood_score", "ood_flag", "source_snr", "input_note", "input_crop", "embedding", "bundle_id", "run_id",
    ]
    assert schema.field("embedding").type == pa.list_(pa.float32(), EMBEDDING_DIM)
    assert schema.field("object_id").type == pa.string() and not schema.field("object_id").nullable
    assert schema.field("ra").type == schema.field("dec").type == pa.float64()
    assert schema.field("ood_flag").type == pa.bool_()
    for name in ("confidence", "entropy", "margin", "p_edge-on", *VOTE_COLUMNS, *CAM_COLUMNS, "ood_score"):
        assert schema.field(name).type == pa.float32(), name
    assert ERRORS_SCHEMA.names == ["object_id", "image_path", "stage", "error_type", "message", "bundle_id",
                                   "run_id"]


def test_vote_columns_pair_with_the_catalogs_hart16_columns():
    assert len(VOTE_COLUMNS) == 37
    assert [c.removesuffix("_pred") for c in VOTE_COLUMNS] == [
        c.removesuffix("_debiased") for c in CATALOG_VOTE_COLUMNS]
    assert VOTE_COLUMNS[7] == "t04_spiral_a08_spiral_pred"


@pytest.mark.parametrize("names", [[], ["a", "a"], ["a", ""], ["tab\there"], [3]])
def test_unusable_class_names_are_refused(names):
    with pytest.raises(ValueError):
        predictions_schema(names)


def test_label_confidence_and_uncertainty_from_probabilities():
    t = _table([[0.7, 0.2, 0.1], [0.0, 1.0, 0.0], [0.4, 0.4, 0.2]]).to_pydict()
    assert t["label_pred"] == ["spiral", "elliptical", "spiral"]  # a tie goes to the first class
    assert t["confidence"] == pytest.approx([0.7, 1.0, 0.4])
    h0 = -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1))
    h2 = -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2))
    assert t["entropy"] == pytest.approx([h0, 0.0, h2], abs=1e-6)
    assert t["margin"] == pytest.approx([0.5, 1.0, 0.0], abs=1e-6)
    assert t["p_edge-on"] == pytest.approx([0.1, 0.0, 0.2])


def test_single_class_margin_is_its_probability():
    t = predictions_table(["only"], object_ids=["a"], probs=np.array([[1.0]]), bundle_id="b", run_id="r")
    assert t.column("margin").to_pylist() == [1.0] and t.column("entropy").to_pylist() == [0.0]


def test_votes_are_stored_per_question_and_null_where_unreached():
    rng = np.random.default_rng(0)
    fractions = np.zeros((2, 37))
    for q, sl in GZ2_TREE.question_slices:
        block = rng.random((2, sl.stop - sl.start)) + 0.1
        fractions[:, sl] = block / block.sum(axis=1, keepdims=True)
    fractions[1, GZ2_TREE.answer("t01", "a02").index] = 0.0  # nobody saw features: Q2 unreached
    t = _table([[1, 0, 0], [0, 1, 0]], votes_cumulative=GZ2_TREE.cumulative(fractions))
    got = np.array([t.column(c).to_pylist() for c in VOTE_COLUMNS], dtype=float).T
    np.testing.assert_allclose(got[0], fractions[0], rtol=1e-6)
    edgeon = GZ2_TREE.answer("t02", "a04").index
    assert t.column(VOTE_COLUMNS[edgeon])[1].as_py() is None
    smooth = GZ2_TREE.answer("t01", "a01").index
    assert got[1, smooth] == pytest.approx(fractions[1, smooth], rel=1e-6)


def test_undefined_values_are_null_never_nan():
    cam = {c: np.array([1.0, np.nan]) for c in CAM_COLUMNS}
    t = _table([[1, 0, 0], [0, 0, 1]], ra=np.array([10.0, np.nan]), dec=np.array([-5.0, np.nan]), cam=cam,
               ood_score=np.array([np.nan, 0.5]), ood_flag=np.array([False, True]), source_snr=np.array([40.0, 2.0]),
               input_notes=[None, "converted_from=L"], captions=["a smooth galaxy.", None])
    for field in t.schema:
        if pa.types.is_floating(field.type):
            assert pc.sum(pc.is_nan(t.column(field.name))).as_py() in (0, None), field.name
    assert t.column("ra").to_pylist() == [10.0, None]
    assert t.column("cam_gini").to_pylist() == [1.0, None]
    assert t.column("ood_score").to_pylist() == [None, 0.5]
    assert t.column("ood_flag").to_pylist() == [False, True]
    assert t.column("source_snr").to_pylist() == [40.0, 2.0]
    assert t.column("input_note").to_pylist() == [None, "converted_from=L"]


def test_outputs_a_bundle_lacks_are_null_columns():
    t = _table([[1, 0, 0]])
    for name in ("ra", "caption", *VOTE_COLUMNS, *CAM_COLUMNS, "ood_score", "ood_flag", "source_snr", "input_note",
                 "embedding"):
        assert t.column(name).null_count == 1, name
    assert t.column("bundle_id").to_pylist() == ["b1"] and t.column("run_id").to_pylist() == ["r1"]
    assert predictions_class_names(t.schema) == CLASSES


def test_embeddings_are_fixed_size_float32_rows_and_a_non_finite_one_is_null():
    vectors = np.arange(2 * EMBEDDING_DIM, dtype=np.float64).reshape(2, EMBEDDING_DIM) / 100
    broken = vectors.copy()
    broken[1, 5] = np.nan
    t = _table([[1, 0, 0], [0, 1, 0]], embedding=broken)
    assert t.column("embedding").to_pylist()[0] == pytest.approx(vectors[0].astype(np.float32).tolist())
    assert t.column("embedding").to_pylist()[1] is None
    stored = pl.from_arrow(_table([[1, 0, 0], [0, 1, 0]], embedding=vectors))["embedding"].to_numpy()
    assert stored.dtype == np.float32 and stored.shape == (2, EMBEDDING_DIM)


@pytest.mark.parametrize("kw, match", [
    ({"probs": np.ones((2, 2))}, "shape"),
    ({"embedding": np.zeros((2, EMBEDDING_DIM - 1))}, "embedding has shape"),
    ({"probs": np.array([[np.nan, 0, 1], [1, 0, 0]])}, "finite"),
    ({"votes_cumulative": np.zeros((2, 36))}, "shape"),
    ({"cam": {"cam_gini": np.zeros(2)}}, "exactly"),
    ({"ra": np.zeros(3)}, "expected 2"),
    ({"captions": ["x"]}, "expected 2"),
])
def test_malformed_model_outputs_are_refused(kw, match):
    args = {"probs": np.array([[1.0, 0, 0], [0, 1.0, 0]]), **kw}
    with pytest.raises(ValueError, match=match):
        predictions_table(CLASSES, object_ids=["a", "b"], bundle_id="b", run_id="r", **args)


def test_errors_table():
    t = errors_table(object_ids=["a", "b"], image_paths=["x.jpg", None], stages=["input", "input"],
                     error_types=["truncated", "missing"], messages=["cut", "gone"], bundle_id="b", run_id="r")
    assert t.schema.equals(ERRORS_SCHEMA)
    assert t.column("image_path").to_pylist() == ["x.jpg", None]
    with pytest.raises(ValueError, match="length"):
        errors_table(object_ids=["a"], image_paths=[], stages=["s"], error_types=["e"], messages=["m"],
                     bundle_id="b", run_id="r")
    with pytest.raises(ValueError, match="error_type"):
        errors_table(object_ids=["a"], image_paths=["p"], stages=["s"], error_types=[""], messages=["m"],
                     bundle_id="b", run_id="r")


def test_predictions_class_names_refuses_other_schemas():
    with pytest.raises(ValueError, match="not a morphcat predictions schema"):
        predictions_class_names(ERRORS_SCHEMA)
    other = predictions_schema(CLASSES).set(4, pa.field("confidence", pa.float64()))
    with pytest.raises(ValueError):
        predictions_class_names(other)


def test_file_metadata_round_trip_is_deterministic():
    t = _table([[1, 0, 0]])
    a = with_output_metadata(t, "predictions", "b1", "r1", {"index": 3, "start": 30, "stop": 40})
    b = with_output_metadata(t, "predictions", "b1", "r1", {"stop": 40, "start": 30, "index": 3})
    assert a.schema.metadata == b.schema.metadata
    meta = output_metadata(a.schema)
    assert meta == {"output_version": 3, "table": "predictions", "bundle_id": "b1", "run_id": "r1",
                    "shard": {"index": 3, "start": 30, "stop": 40}}
    with pytest.raises(ValueError, match="not a morphcat output"):
        output_metadata(t.schema)
