"""The FLOP counter on graphs whose count is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.flops import graph_flops


def _one_conv(tmp_path, cin=3, cout=8, k=3, size=16, groups=1, dense=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", cin, size, size])
    w = numpy_helper.from_array(np.ones((cout, cin // groups, k, k), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4, group=groups)]
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [w]
    if dense:
        nodes += [helper.make_node("Flatten", ["y"], ["f"]), helper.make_node("MatMul", ["f", "d"], ["z"])]
        inits.append(numpy_helper.from_array(np.ones((cout * size * size, dense), np.float32), "d"))
        out = helper.make_tensor_value_info("z", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [x], [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("cin, cout, k, size, groups", [(3, 8, 3, 16, 1), (4, 4, 3, 8, 4), (16, 32, 1, 10, 2)])
def test_a_convolution_is_two_multiply_adds_per_weight_per_output_pixel(tmp_path, cin, cout, k, size, groups):
    counted = graph_flops(_one_conv(tmp_path, cin, cout, k, size, groups), optimise=False)
    assert counted["total"] == 2 * size * size * cout * (cin // groups) * k * k and counted["nodes"] == 1


def test_a_matrix_product_is_counted_and_the_optimised_graph_agrees(tmp_path):
    path = _one_conv(tmp_path, dense=5)
    conv, dense = 2 * 16 * 16 * 8 * 3 * 9, 2 * (8 * 16 * 16) * 5
    assert graph_flops(path, optimise=False)["total"] == conv + dense
    assert graph_flops(path)["total"] == conv + dense  # onnxruntime's optimisation changes no arithmetic here
