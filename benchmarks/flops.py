"""Floating-point operations per image of an ONNX graph, counted as onnxruntime runs it.

The graph is first optimised by onnxruntime itself (``ORT_ENABLE_EXTENDED``, saved to a file):
batch norms folded into convolutions, and in the merged image graph the layers the three models
share computed once. Then every convolution and matrix product is counted with batch size 1, a
multiply-add as 2 operations: ``Conv`` (and onnxruntime's ``FusedConv``) ``2·Cout·(Cin/groups)·kh·kw``
per output pixel, ``Gemm``/``MatMul`` ``2·M·K·N``, ``LSTM`` ``2·4H·(I + H)`` per step. Element-wise operations, pooling and softmax
are left out (a few percent of a CNN's work). Shapes are measured on the optimised graph run
once on a batch of one image.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

COUNTED = ("Conv", "FusedConv", "Gemm", "MatMul", "FusedMatMul", "LSTM")


def _optimised(model_path: Path, work: Path) -> Path:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    out = work / "optimised.onnx"
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(model_path), sess_options=options, providers=["CPUExecutionProvider"])
    return out


def graph_flops(model_path: Path, optimise: bool = True) -> dict:
    """``{"total": FLOPs per image, "by_op": {op: FLOPs}, "nodes": counted nodes}``."""
    import onnx
    from onnx import numpy_helper

    with tempfile.TemporaryDirectory(prefix="morphcat-flops-") as tmp:
        path = _optimised(Path(model_path), Path(tmp)) if optimise else Path(model_path)
        model = onnx.load(str(path))
        shapes = {init.name: list(numpy_helper.to_array(init).shape) for init in model.graph.initializer}
        shapes.update(_run_shapes(model, Path(tmp)))
    by_op: dict[str, float] = {}
    nodes = 0
    for node in model.graph.node:
        if node.op_type not in COUNTED:
            continue
        flops = _node_flops(node, shapes)
        if flops is None:
            raise ValueError(f"{model_path}: no shape for {node.op_type} node {node.name!r}: cannot count it")
        by_op[node.op_type] = by_op.get(node.op_type, 0.0) + flops
        nodes += 1
    return {"total": float(sum(by_op.values())), "by_op": by_op, "nodes": nodes}


_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 10: np.float16}


def _run_shapes(model, work: Path) -> dict[str, list[int]]:
    """The shape of every tensor, measured: the graph is run once on zeros with a batch of one,
    every node output exposed (shape inference knows nothing of onnxruntime's fused operators and
    loses track of tf2onnx's dynamic shapes)."""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    known = {o.name for o in exposed.graph.output}
    for node in exposed.graph.node:
        for name in node.output:
            if name and name not in known:
                exposed.graph.output.append(helper.ValueInfoProto(name=name))
                known.add(name)
    path = work / "exposed.onnx"
    onnx.save(exposed, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {}
    for value in exposed.graph.input:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in tensor.shape.dim]
        feeds[value.name] = np.zeros(dims, _DTYPES.get(tensor.elem_type, np.float32))
    names = [o.name for o in session.get_outputs()]
    return {n: list(np.shape(v)) for n, v in zip(names, session.run(names, feeds))}


def _node_flops(node, shapes: dict) -> float | None:
    if node.op_type in ("Conv", "FusedConv"):
        weight, output = shapes.get(node.input[1]), shapes.get(node.output[0])
        if not weight or not output or None in output:
            return None
        _, cin_per_group, *kernel = weight  # (Cout, Cin / groups, kh, kw)
        return 2.0 * float(np.prod(output)) * cin_per_group * float(np.prod(kernel))  # output: (N, Cout, H, W)
    if node.op_type == "LSTM":  # X (T, N, I), W (D, 4H, I), R (D, 4H, H): the gates' products per step
        x, w, r = (shapes.get(n) for n in node.input[:3])
        if not x or not w or not r:
            return None
        return 2.0 * x[0] * x[1] * w[0] * w[1] * (w[2] + r[2])
    a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
    if not a or not b or None in a or None in b:
        return None
    if node.op_type == "Gemm":
        trans_a = next((x.i for x in node.attribute if x.name == "transA"), 0)
        trans_b = next((x.i for x in node.attribute if x.name == "transB"), 0)
        m, k = (a[1], a[0]) if trans_a else (a[0], a[1])
        n = b[0] if trans_b else b[1]
        return 2.0 * m * k * n
    # MatMul: batched (…, M, K) × (…, K, N)
    batch = float(np.prod(a[:-2])) if len(a) > 2 else 1.0
    return 2.0 * batch * a[-2] * a[-1] * b[-1] if len(a) >= 2 else 2.0 * a[-1] * b[-1]
