"""Parity checking: names → shapes → values, every failure collected, and proof that a changed
weight (on the Keras side or in the ONNX file) fails the check."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from export.builder.errors import ExportError, ParityError, ParityFailure
from export.builder.exporter import check_parity, convert_source, raise_for_failures
from export.builder.parity import check_names, compare_outputs, max_abs_diff, row_agreement
from export.builder.specs import ExportSpec, TensorSpec, classifier_spec, step_spec
from export.builder.units import load_source
from models.artifacts import load_sidecar
from models.embedding import EmbeddingProjection
from tests.export.tiny_models import structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
SPEC = classifier_spec(32, 3, 3, (4, 4), 8)


def _outputs(rng, n=5):
    probs = rng.random((n, 3)).astype(np.float32)
    return {"probs": probs, "cam": rng.random((n, 4, 4)).astype(np.float32) * 30,
            "ood_score": rng.random(n).astype(np.float32) * 3,
            "embedding": rng.standard_normal((n, 8)).astype(np.float32)}


def test_equal_outputs_pass_and_figures_are_recorded():
    rng = np.random.default_rng(0)
    ref = _outputs(rng)
    got = {**ref, "probs": ref["probs"] + np.float32(1e-6), "cam": ref["cam"] + np.float32(1e-4)}
    figures, failures = compare_outputs(SPEC, got, ref)
    assert failures == []
    assert figures["probs"]["max_abs_diff"] == pytest.approx(1e-6, rel=0.1)
    assert figures["cam"]["max_abs_diff"] == pytest.approx(1e-4, rel=0.1)
    assert figures["cam"]["scale"] == pytest.approx(float(ref["cam"].max()))
    assert figures["cam"]["relative_diff"] == pytest.approx(figures["cam"]["max_abs_diff"] / ref["cam"].max())


def test_cam_tolerance_is_relative_to_the_map_scale():
    rng = np.random.default_rng(1)
    ref = _outputs(rng)
    # 1e-3 absolute on maps peaking near 30 is ~3e-5 of their scale: within 1e-4.
    assert compare_outputs(SPEC, {**ref, "cam": ref["cam"] + np.float32(1e-3)}, ref)[1] == []
    # The same difference on probabilities is ten times their tolerance.
    (failure,) = compare_outputs(SPEC, {**ref, "probs": ref["probs"] + np.float32(1e-3)}, ref)[1]
    assert (failure.model, failure.check) == ("classifier", "values")
    assert failure.max_diff == pytest.approx(1e-3, rel=1e-2)


def test_every_failure_is_collected_in_order_names_shapes_values():
    rng = np.random.default_rng(2)
    ref = _outputs(rng)
    wrong_shape = {**ref, "probs": ref["probs"][:, :2]}
    failures = compare_outputs(SPEC, wrong_shape, ref)[1]
    assert [f.check for f in failures] == ["shape"]
    failures = compare_outputs(SPEC, {"cam": ref["cam"] + 5, "ood_score": ref["ood_score"],
                                      "embedding": ref["embedding"]}, ref)[1]
    assert [f.check for f in failures] == ["names", "values"]
    assert "missing from onnxruntime" in str(failures[0])
    nan = {**ref, "probs": np.where(np.eye(5, 3) > 0, np.nan, ref["probs"]).astype(np.float32)}
    (failure,) = compare_outputs(SPEC, nan, ref)[1]
    assert failure.max_diff == float("inf")
    off_spec = {k: v[:, None] if k == "probs" else v for k, v in ref.items()}
    assert [f.check for f in compare_outputs(SPEC, off_spec, {**ref, "probs": ref["probs"][:, None]})[1]] == ["shape"]
    names = check_names(SPEC, ["image"], ["cam", "probs", "ood_score", "embedding"])
    assert [f.check for f in names] == ["names"] and "['cam', 'probs', 'ood_score', 'embedding']" in str(names[0])


def test_parity_error_lists_each_failure_and_the_max_diff():
    error = ParityError([ParityFailure("classifier", "values", "probs: 0.3 > 1e-4", 0.3),
                         ParityFailure("regressor", "values", "votes: 2 > 1e-3", 2.0),
                         ParityFailure("captioner", "captions", "differ on 3 of 8")])
    text = str(error)
    assert "3 failure(s); max diff 2" in text
    assert "classifier: values: probs" in text and "captioner: captions" in text
    assert error.max_diff == 2.0 and isinstance(error, ExportError)


def test_helpers():
    assert max_abs_diff(np.zeros(0), np.zeros(0)) == 0.0
    assert max_abs_diff(np.array([np.nan, 1.0]), np.array([np.nan, 1.5])) == 0.5
    assert row_agreement(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]])) == 0.5
    with pytest.raises(ValueError):
        row_agreement(np.zeros((2, 3)), np.zeros((2, 4)))


def test_specs_round_trip_through_json():
    for spec in (SPEC, step_spec(16, 20)):
        assert ExportSpec.from_dict(spec.to_dict()) == spec
    assert TensorSpec.from_dict(TensorSpec("x", ("batch", 3)).to_dict()) == TensorSpec("x", ("batch", 3))


def test_a_keras_weight_changed_after_conversion_fails_parity(tiny_models):
    source = load_source(tiny_models, "classifier")
    protos = convert_source(source)
    images = structured_images(16, seed=5)
    assert check_parity(source, protos, images).failures == []
    bias = source.model.get_layer("logits").bias
    bias.assign(bias.numpy() + np.array([2.0, 0.0, 0.0], np.float32))
    checked = check_parity(source, protos, images)
    assert {(f.model, f.check) for f in checked.failures} >= {("classifier", "values"), ("classifier", "classes")}
    assert any("probs" in f.detail for f in checked.failures) and any("cam" in f.detail for f in checked.failures)
    with pytest.raises(ParityError, match="predicted class differs") as raised:
        raise_for_failures([checked])
    assert raised.value.max_diff > 1e-2


def test_an_onnx_initializer_changed_fails_parity(tiny_models):
    source = load_source(tiny_models, "regressor")
    protos = convert_source(source)
    graph = protos["regressor"].graph
    # The output layer's kernel (hidden × 37) is the one initializer of that shape.
    (kernel,) = [t for t in graph.initializer if list(t.dims) == [16, 37]]
    weights = numpy_helper.to_array(kernel).copy()
    weights[:, 0] += 0.5
    kernel.CopyFrom(numpy_helper.from_array(weights, kernel.name))
    onnx.checker.check_model(protos["regressor"])
    (failure,) = check_parity(source, protos, structured_images(8, seed=6)).failures
    assert (failure.model, failure.check) == ("regressor", "values") and failure.max_diff > 1e-3


def test_a_changed_embedding_projection_in_the_onnx_file_fails_parity(tiny_models):
    source = load_source(tiny_models, "classifier")
    protos = convert_source(source)
    images = structured_images(16, seed=8)
    assert check_parity(source, protos, images).failures == []
    components = EmbeddingProjection.from_dict(load_sidecar(tiny_models, "classifier")["embedding"]).components
    (tensor,) = [t for t in protos["classifier"].graph.initializer
                 if np.array_equal(numpy_helper.to_array(t), components.astype(np.float32))]
    weights = numpy_helper.to_array(tensor).copy()
    weights[:, 0] += 0.5
    tensor.CopyFrom(numpy_helper.from_array(weights, tensor.name))
    (failure,) = check_parity(source, protos, images).failures
    assert (failure.model, failure.check) == ("classifier", "values") and failure.detail.startswith("embedding")


def test_failures_of_several_files_are_collected_together(tiny_models):
    source = load_source(tiny_models, "captioner")
    protos = convert_source(source)
    kernel = source.model.get_layer("lstm").cell.kernel
    kernel.assign(kernel.numpy() * 1.5)
    failures = check_parity(source, protos, structured_images(16, seed=7)).failures
    step_failures = {f.detail.split(":")[0] for f in failures if f.model == "captioner_step"}
    assert step_failures == {"logits", "h_next", "c_next"}
    assert not any(f.model == "captioner_encoder" for f in failures)


def test_a_renamed_output_is_reported_not_crashed_on(tiny_models):
    source = load_source(tiny_models, "classifier")
    protos = convert_source(source)
    graph = protos["classifier"].graph
    for node in graph.node:
        node.output[:] = ["p" if o == "probs" else o for o in node.output]
    graph.output[0].name = "p"
    checked = check_parity(source, protos, structured_images(4, seed=8))
    assert [f.check for f in checked.failures] == ["names", "names"]
    assert "ONNX outputs are ['p', 'cam', 'ood_score', 'embedding']" in str(checked.failures[0])
    assert "output 'probs' missing from onnxruntime" in str(checked.failures[1])
    assert "class_agreement" not in checked.parity  # not measured on the wrong tensors
