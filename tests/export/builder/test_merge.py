"""The merged image graph: shared weights computed once, outputs unchanged, bad inputs refused,
and its own parity check able to fail."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from export.builder import exporter
from export.builder.errors import ExportError, ParityError
from export.builder.exporter import check_merged, check_parity, convert_source, raise_for_failures
from export.builder.merge import merge_image_models
from export.builder.units import load_source
from tests.export.tiny_models import structured_images

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
KINDS = ("classifier", "regressor", "captioner")


@pytest.fixture(scope="module")
def checked(tiny_models):
    images = structured_images(12, seed=11)
    out = []
    for kind in KINDS:
        source = load_source(tiny_models, kind)
        out.append(check_parity(source, convert_source(source), images))
    assert not [f for c in out for f in c.failures]
    return out, images


def _renamed_outputs(proto: onnx.ModelProto, suffix: str) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    names = {o.name for o in copy.graph.output}
    for node in copy.graph.node:
        node.output[:] = [f"{o}{suffix}" if o in names else o for o in node.output]
    for out in copy.graph.output:
        out.name += suffix
    return copy


def _convolutions(proto: onnx.ModelProto, tmp_path) -> int:
    """Convolutions onnxruntime runs after optimising (``Conv``, or ``FusedConv`` with its ReLU)."""
    return sum(n for op, n in _optimised_ops(proto, tmp_path).items() if op.endswith("Conv"))


def _optimised_ops(proto: onnx.ModelProto, tmp_path) -> Counter:
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # portable, CSE included
    ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


def test_two_graphs_with_the_same_weights_share_every_initializer_and_run_once(checked, tmp_path):
    classifier = checked[0][0].protos["classifier"]
    merged = merge_image_models({"a": classifier, "b": _renamed_outputs(classifier, "_b")})
    assert len(merged.graph.initializer) == len(classifier.graph.initializer)
    assert [o.name for o in merged.graph.output] == ["probs", "cam", "ood_score", "embedding",
                                                     "probs_b", "cam_b", "ood_score_b", "embedding_b"]
    assert _convolutions(merged, tmp_path) == _convolutions(classifier, tmp_path) > 0  # the copy's are gone
    images = checked[1]
    session = ort.InferenceSession(merged.SerializeToString(), providers=["CPUExecutionProvider"])
    probs, cam, ood, embedding, probs_b, cam_b, ood_b, embedding_b = session.run(None, {"image": images})
    alone = ort.InferenceSession(classifier.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(probs, alone.run(["probs"], {"image": images})[0])
    np.testing.assert_array_equal(probs, probs_b)
    np.testing.assert_array_equal(cam, cam_b)
    np.testing.assert_array_equal(ood, ood_b)
    np.testing.assert_array_equal(embedding, embedding_b)


def test_the_merged_bundle_graph_passes_the_checks_of_every_file_it_computes(checked):
    models, images = checked
    merged = check_merged(models, images)
    assert merged.failures == []
    assert merged.files == ("classifier", "regressor", "captioner_encoder")
    assert set(merged.parity["files"]) == set(merged.files)
    assert merged.parity["class_agreement"] == 1.0 and merged.parity["caption_agreement"] >= 0.99


def test_a_changed_weight_in_the_merged_graph_fails_its_parity(checked, monkeypatch):
    models, images = checked
    real_merge = exporter.merge_image_models

    def perturbed(protos):
        proto = real_merge(protos)
        # The regressor's output kernel (hidden × 37) is the one initializer of that shape.
        (kernel,) = [t for t in proto.graph.initializer if list(t.dims) == [16, 37]]
        weights = numpy_helper.to_array(kernel).copy()
        weights[:, 0] += 0.5
        kernel.CopyFrom(numpy_helper.from_array(weights, kernel.name))
        return proto

    monkeypatch.setattr(exporter, "merge_image_models", perturbed)
    merged = check_merged(models, images)
    assert [(f.model, f.check) for f in merged.failures] == [("image_models (regressor)", "values")]
    with pytest.raises(ParityError, match=r"image_models \(regressor\): values: votes") as raised:
        raise_for_failures(models, merged)
    assert raised.value.max_diff > 1e-3


def test_graphs_that_cannot_share_one_input_or_clash_on_outputs_are_refused(checked):
    models, _ = checked
    classifier = models[0].protos["classifier"]
    step = models[2].protos["captioner_step"]
    with pytest.raises(ExportError, match="only models with the one input 'image'"):
        merge_image_models({"classifier": classifier, "captioner_step": step})
    with pytest.raises(ExportError, match="output 'probs' of b is also an output of a"):
        merge_image_models({"a": classifier, "b": classifier})
