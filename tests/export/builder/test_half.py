"""``--fp16``: the merged image graph's float16 copy (the converter's output mended, float32 kept
where the design says), its gate, where it is served, and the captioner's IO-bound steps."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from export.builder import half
from export.builder.errors import ExportError
from export.builder.exporter import export_bundle
from export.builder.images import synthetic_batch
from export.serve import runtime
from export.serve.bundle import FP16_NAME, MERGED_NAME
from export.serve.decode import greedy_decode_from_state
from export.serve.errors import BundleError
from export.serve.metadata import proto_props, read_facts
from export.serve.providers import CPU, CUDA
from export.serve.runtime import create_session, open_bundle

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

LENIENT = {k: (op, 0.0 if op == ">=" else 1.0) for k, (op, _) in half.GATE.items()}
IMPOSSIBLE = {**half.GATE, "class_agreement": (">=", 1.01)}
F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


def _cast(x: str, y: str, to: int, name: str) -> onnx.NodeProto:
    return helper.make_node("Cast", [x], [y], to=to, name=name)


def _model(nodes, inputs=("x",), outputs=("y",)) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(i, F32, [2]) for i in inputs],
                              [helper.make_tensor_value_info(o, F32, [2]) for o in outputs])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_nodes_are_put_back_in_dependency_order():
    model = _model([helper.make_node("Relu", ["a"], ["y"], name="late"), _cast("x", "a", F32, "early")])
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(model)
    half.in_dependency_order(model.graph)
    assert [n.name for n in model.graph.node] == ["early", "late"]
    onnx.checker.check_model(model)


def test_a_repeated_cast_is_kept_once_and_a_different_one_is_refused():
    model = _model([_cast("x", "a", F32, "c1"), _cast("x", "a", F32, "c2"), helper.make_node("Relu", ["a"], ["y"])])
    half.without_repeated_casts(model.graph)
    assert [n.name for n in model.graph.node if n.op_type == "Cast"] == ["c1"]
    onnx.checker.check_model(model)
    clash = _model([_cast("x", "a", F32, "c1"), _cast("x", "a", F16, "c2"), helper.make_node("Relu", ["a"], ["y"])])
    with pytest.raises(ExportError, match="two different casts named a"):
        half.without_repeated_casts(clash.graph)


def test_a_float32_round_trip_through_float16_becomes_an_identity():
    # x (fp32) → fp16 → fp32 → Relu: the pair rounds x to float16 for nothing.
    model = _model([_cast("x", "h", F16, "down"), _cast("h", "back", F32, "up"),
                    helper.make_node("Relu", ["back"], ["y"], name="relu")])
    half.without_round_trips(model)
    assert [n.op_type for n in model.graph.node] == ["Identity", "Relu"]
    x = np.array([1.0 + 2.0**-20, 3.0], np.float32)  # not a float16 number
    y = create_session(model.SerializeToString(), [CPU]).run(None, {"x": x})[0]
    assert y[0] == x[0]
    # A cast to float16 that float16 operators read stays.
    kept = _model([_cast("x", "h", F16, "down"), helper.make_node("Relu", ["h"], ["r"]), _cast("r", "y", F32, "up")])
    half.without_round_trips(kept)
    assert [n.op_type for n in kept.graph.node] == ["Cast", "Relu", "Cast"]


def test_only_the_backbone_is_float16(tiny_bundle):
    merged = onnx.load(tiny_bundle / f"{MERGED_NAME}.onnx")
    halved = half.halve_graph(merged)
    onnx.checker.check_model(halved)
    float32 = set(half.float32_nodes(merged.graph))
    convs = [n for n in merged.graph.node if n.op_type == "Conv"]
    assert convs and not {n.name for n in convs} & float32
    assert {n.name for n in merged.graph.node if n.op_type in ("MatMul", "Softmax")} <= float32
    weights = {t.name: t.data_type for t in halved.graph.initializer}
    assert all(weights[n.input[1]] == F16 for n in halved.graph.node if n.op_type == "Conv")
    assert [i.type.tensor_type.elem_type for i in halved.graph.input] == [F32]
    assert {o.type.tensor_type.elem_type for o in halved.graph.output} == {F32}
    x = synthetic_batch(runtime.ImageSpec(**json.loads((tiny_bundle / "bundle.json").read_text())["image"]),
                        8).images
    a, b = (create_session(p.SerializeToString(), [CPU]).run(None, {"image": x}) for p in (merged, halved))
    for u, v in zip(a, b):
        np.testing.assert_allclose(v, u, atol=2e-2)
    assert any(not np.array_equal(u, v) for u, v in zip(a, b))  # it really computes in float16


def _export(tiny_models, out, gate):
    with pytest.MonkeyPatch.context() as mp:  # the real gate is about trained models, not 32 px ones
        mp.setattr(half, "GATE", gate)
        return export_bundle(tiny_models, out, synthetic_images=8, fp16=True)


@pytest.fixture(scope="module")
def fp16_bundles(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("fp16")
    return (root / "passed", _export(tiny_models, root / "passed", LENIENT),
            root / "failed", _export(tiny_models, root / "failed", IMPOSSIBLE))


def test_the_fp16_graph_is_written_with_its_figures_and_verdict(fp16_bundles):
    path, manifest, _, failed = fp16_bundles
    entry = manifest["fp16"]
    assert entry["file"] == f"{FP16_NAME}.onnx" and entry["file"] in manifest["files"]
    assert entry["gate"]["passed"] and not failed["fp16"]["gate"]["passed"]
    assert failed["fp16"]["gate"]["failed"][0].startswith("class_agreement")
    facts = read_facts(proto_props(onnx.load(path / entry["file"])))
    assert facts["precision"] == "fp16" and facts["gate"] == entry["gate"]
    assert "int8" not in manifest
    c = entry["comparison"]
    fp32, served = open_bundle(path, precision="fp32"), open_bundle(path, precision="fp16")
    assert served.precision == "fp16"
    batch = synthetic_batch(fp32.image, 8).images
    out, out16 = fp32.infer(batch), served.infer(batch)
    assert c["class_agreement"] == np.mean(out["probs"].argmax(1) == out16["probs"].argmax(1))
    assert c["max_prob_diff"] == pytest.approx(float(np.abs(out["probs"] - out16["probs"]).max()), abs=1e-6)
    assert served.captions_from_state(out16["h0"], out16["c0"])  # the captions run from its states


def test_fp16_is_refused_where_its_gate_failed_and_auto_never_picks_it_on_a_cpu(fp16_bundles, monkeypatch):
    passed, _, failed, _ = fp16_bundles
    monkeypatch.setattr(runtime, "probe_speedup", lambda *a: 5.0)
    auto = open_bundle(passed, device="cpu")
    assert auto.precision == "fp32" and "no int8 image graph" in auto.precision_reason
    with pytest.raises(BundleError, match="fp16 image graph failed the agreement gate at export: class_agreement"):
        open_bundle(failed, precision="fp16")


def test_auto_on_cuda_considers_the_fp16_graph(fp16_bundles, tiny_bundle):
    # No session is created on these paths: they only read the manifest.
    for path, why in ((tiny_bundle, "no fp16 image graph (export it with `export_bundle(fp16=True)`)"),
                      (fp16_bundles[2], "fp16 image graph failed the agreement gate")):
        manifest = json.loads((path / "bundle.json").read_text())
        served, reason = runtime._choose_precision("auto", manifest, {}, [CUDA, CPU], path, None,
                                                   runtime.ImageSpec(**manifest["image"]))
        assert served == "fp32" and why in reason


def test_io_bound_caption_steps_decode_exactly_as_plain_runs(tiny_bundle):
    bundle = open_bundle(tiny_bundle, device="cpu")
    out = bundle.infer(synthetic_batch(bundle.image, 8).images)
    step = bundle._sessions["captioner_step"]
    plain = greedy_decode_from_state(step, out["h0"], out["c0"], bundle.max_len)
    bound = greedy_decode_from_state(step, out["h0"], out["c0"], bundle.max_len, device="cpu")
    np.testing.assert_array_equal(bound, plain)
    assert (plain[:, 1] != 0).any()  # something was decoded
