"""The machine's sustained fp32 peak, measured in the same run as the throughputs it is compared to.

Two probes, every core busy, and the faster one is the peak: a numpy float32 GEMM (the BLAS
numpy ships with) and onnxruntime on one large 3×3 convolution (the operator that is ~all of
morphcat's image graph), each timed as the best of a few calls after a warm-up. A graph's
fraction of peak is then its FLOPs per image (``benchmarks.flops``) × images/s ÷ this peak.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from catalogs.timing import best_seconds

GEMM_SIDE = 2048
CONV = {"batch": 8, "channels": 128, "side": 64, "kernel": 3}
CALLS = 5


def gemm_gflops(side: int = GEMM_SIDE) -> float:
    rng = np.random.default_rng(0)
    a, b = (rng.random((side, side), dtype=np.float32) for _ in range(2))
    return 2.0 * side**3 / best_seconds(lambda: a @ b, CALLS) / 1e9


def conv_gflops(threads: int | None = None) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n, c, s, k = CONV["batch"], CONV["channels"], CONV["side"], CONV["kernel"]
    weight = numpy_helper.from_array(np.random.default_rng(1).random((c, c, k, k), dtype=np.float32) * 0.01, "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], pads=[k // 2] * 4)], "conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, c, s, s])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, c, s, s])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="morphcat-peak-") as tmp:
        path = Path(tmp) / "conv.onnx"
        onnx.save(model, path)
        session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).random((n, c, s, s), dtype=np.float32)
    flops = 2.0 * n * c * s * s * c * k * k
    return flops / best_seconds(lambda: session.run(None, {"x": x}), CALLS) / 1e9


def peak_gflops(threads: int | None = None) -> dict:
    """``{"peak_gflops", "gemm_gflops", "conv_gflops"}``: the sustained fp32 rate of this machine."""
    gemm, conv = gemm_gflops(), conv_gflops(threads)
    return {"peak_gflops": round(max(gemm, conv), 1), "gemm_gflops": round(gemm, 1), "conv_gflops": round(conv, 1)}
