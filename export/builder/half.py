"""A float16 copy of the merged image graph, for GPUs, gated on keeping the answers.

The conversion is onnxruntime's own (``onnxruntime.transformers.float16``, shipped in the
onnxruntime wheel). The backbone, nearly all the work, runs in float16: convolutions, ReLU,
pooling, additions and the operators that only move data (:data:`FLOAT16_OPS`). Every other
operator stays float32: the dense heads, softmax, the decision-tree layer, the embedding's
normalisation and the Grad-CAM arithmetic, where sums of squares and divisions can leave float16's
range (65,504) or lose the small differences the outputs are made of. The ``image`` input and
every output stay float32 (the casts are inside the graph, so the serving code and the tables do
not change). The converter's output is mended in two ways the ONNX checker requires (a cast it
repeats for each reader of a tensor is kept once; the input casts it appends after their readers
are put back in dependency order) and one it needs to keep its word: between two float32
operators it puts a float32 → float16 → float32 pair of casts, rounding what passes between them,
which becomes an ``Identity``.

The copy is compared with the fp32 graph on held-out galaxies like the int8 copy
(``export.builder.variants``) and passes :data:`GATE` only if it keeps the answers: predicted class
≥ 99.9 % identical, and int8's bars for captions, Grad-CAM peaks and vote fractions. The export
machine has no GPU, so the comparison runs on onnxruntime's CPU provider, which runs float16 nodes
it has no float16 kernel for in float32 between casts: float16 weights and stored activations, fp32
arithmetic, close to what a GPU's float16 convolutions (fp32 accumulation) compute.
``benchmarks/gpu.sh`` measures the agreement again on the GPU itself.
"""

from __future__ import annotations

import graphlib

import onnx

from export.builder.variants import VariantCheck, compare
from export.serve.bundle import FP16_NAME

# Figure → (comparison, threshold): what float16 must keep to be served.
GATE = {"class_agreement": (">=", 0.999), "caption_agreement": (">=", 0.97),
        "cam_peak_agreement": (">=", 0.95), "vote_rmse_vs_fp32": ("<=", 0.005)}
FLOAT16_OPS = frozenset({"Conv", "Relu", "MaxPool", "AveragePool", "GlobalAveragePool", "Add", "Transpose",
                         "Reshape", "Squeeze", "Unsqueeze", "Concat", "Slice", "Gather", "Identity"})
METHOD = ("float16 backbone (convolutions, ReLU, pooling, additions, data movement; onnxruntime.transformers."
          "float16), heads, softmax, embedding and Grad-CAM arithmetic float32, float32 input and outputs; "
          "compared on onnxruntime's CPU provider")


def in_dependency_order(graph: onnx.GraphProto) -> None:
    """Reorder ``graph``'s nodes so that each comes after the nodes whose outputs it reads."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output}
    order = graphlib.TopologicalSorter({i: {producer[x] for x in node.input if x in producer}
                                        for i, node in enumerate(graph.node)})
    nodes = [graph.node[i] for i in order.static_order()]
    del graph.node[:]
    graph.node.extend(nodes)


def float32_nodes(graph: onnx.GraphProto) -> list[str]:
    """The nodes that stay float32: all but the convolutions and the :data:`FLOAT16_OPS` nodes
    that feed a convolution. What follows the last convolutions (pooling, heads, Grad-CAM) reads
    their output in float32: float16's 11-bit rounding there ties nearly equal Grad-CAM cells."""
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for x in node.input:
            readers.setdefault(x, []).append(i)
    feeds_conv: dict[int, bool] = {}

    def leads_to_conv(i: int) -> bool:  # memoised, iteratively deep graphs stay within recursion limits
        stack = [i]
        while stack:
            j = stack[-1]
            if j in feeds_conv:
                stack.pop()
                continue
            after = [k for out in graph.node[j].output for k in readers.get(out, [])]
            pending = [k for k in after if k not in feeds_conv]
            if pending:
                stack.extend(pending)
                continue
            feeds_conv[j] = graph.node[j].op_type == "Conv" or any(
                feeds_conv[k] and graph.node[k].op_type in FLOAT16_OPS for k in after)
            stack.pop()
        return feeds_conv[i]

    return [node.name for i, node in enumerate(graph.node)
            if not (node.op_type in FLOAT16_OPS and leads_to_conv(i))]


def without_repeated_casts(graph: onnx.GraphProto) -> None:
    """Drop the converter's repeats of one cast: where a float16 tensor feeds several float32
    operators it writes one identical ``Cast`` per reader, all with the same output name (which
    ONNX forbids). Casts of one name that differ are a converter bug, not a repeat: refused."""
    from export.builder.errors import ExportError

    seen: dict[str, onnx.NodeProto] = {}
    kept = []
    for node in graph.node:
        first = seen.get(node.output[0]) if node.op_type == "Cast" else None
        if first is None:
            seen.update({out: node for out in node.output})
            kept.append(node)
        elif (list(first.input), list(first.attribute)) != (list(node.input), list(node.attribute)):
            raise ExportError(f"the float16 converter wrote two different casts named {node.output[0]}")
    del graph.node[:]
    graph.node.extend(kept)


def without_round_trips(model: onnx.ModelProto) -> None:
    """Replace each float32 → float16 → float32 pair of casts by an ``Identity`` of the float32
    tensor: the converter puts one between two float32 operators, which rounds what passes from
    one to the other to float16 and undoes keeping them float32."""
    typed = onnx.shape_inference.infer_shapes(model)
    dtype = {v.name: v.type.tensor_type.elem_type
             for v in (*typed.graph.value_info, *typed.graph.input, *typed.graph.output)}
    dtype.update({t.name: t.data_type for t in model.graph.initializer})
    producer = {out: node for node in model.graph.node for out in node.output}

    def cast_to(node: onnx.NodeProto | None) -> int | None:
        if node is None or node.op_type != "Cast":
            return None
        return next(a.i for a in node.attribute if a.name == "to")

    for node in model.graph.node:
        first = producer.get(node.input[0]) if node.input else None
        if (cast_to(node) == onnx.TensorProto.FLOAT and cast_to(first) == onnx.TensorProto.FLOAT16
                and dtype.get(first.input[0]) == onnx.TensorProto.FLOAT):
            node.op_type, node.input[0] = "Identity", first.input[0]
            del node.attribute[:]
    read = {x for node in model.graph.node for x in node.input} | {o.name for o in model.graph.output}
    unread = [node for node in model.graph.node if node.op_type == "Cast" and not set(node.output) & read]
    for node in unread:
        model.graph.node.remove(node)


def halve_graph(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` with its :data:`FLOAT16_OPS` in float16, the rest and its inputs and outputs float32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    half = convert_float_to_float16(proto, keep_io_types=True, op_block_list=list(DEFAULT_OP_BLOCK_LIST),
                                    node_block_list=float32_nodes(proto.graph))
    without_repeated_casts(half.graph)
    in_dependency_order(half.graph)
    without_round_trips(half)
    onnx.checker.check_model(half)
    return half


def halve_models(plan, checked, merged) -> dict:
    """``{"file", "proto", "method", "checked_on", "caption_source", "comparison", "gate"}``: the
    float16 copy of the export's merged image graph, compared with it on held-out galaxies."""
    check = VariantCheck(plan, checked, merged, "`fp16`")
    half = halve_graph(merged.proto)
    return {"file": f"{FP16_NAME}.onnx", "proto": half, "method": METHOD, "checked_on": check.batch.source,
            "caption_source": check.caption_source,
            **compare(merged.proto, half, "fp16", check.batch.images, check.captions, GATE)}
