"""A ``tf.function`` → an ONNX ``ModelProto`` shaped by its :class:`~export.builder.specs.ExportSpec`:
outputs in the spec's order, dynamic axes named as in the spec, ``onnx.checker`` passed."""

from __future__ import annotations

import logging

import onnx
import tensorflow as tf

from export.builder.errors import ExportError
from export.builder.specs import ExportSpec

# tf2onnx logs every rewriter pass at INFO; its warnings and errors still show.
logging.getLogger("tf2onnx").setLevel(logging.WARNING)

_DTYPES = {"float32": tf.float32, "int32": tf.int32}


def tf_signature(spec: ExportSpec) -> list[tf.TensorSpec]:
    """The spec's inputs as a ``tf.function`` input signature (named axes → ``None``)."""
    return [tf.TensorSpec([None if isinstance(d, str) else d for d in t.shape], _DTYPES[t.dtype], name=t.name)
            for t in spec.inputs]


def to_onnx(spec: ExportSpec, function) -> onnx.ModelProto:
    """Convert ``function`` (a ``tf.function`` over ``tf_signature(spec)`` returning a dict keyed
    by the spec's output names) with tf2onnx at the spec's opset."""
    import tf2onnx

    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=tf_signature(spec), opset=spec.opset)
    except Exception as exc:  # tf2onnx raises bare ValueError/RuntimeError/KeyError for unsupported graphs
        raise ExportError(f"tf2onnx cannot convert {spec.name}: {type(exc).__name__}: {exc}") from exc
    _order_outputs(proto, spec)
    _name_dynamic_axes(proto, spec)
    proto.doc_string = f"morphcat {spec.name} (from the trained {spec.kind})"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _order_outputs(proto: onnx.ModelProto, spec: ExportSpec) -> None:
    """tf.nest sorts a dict's keys, so tf2onnx emits outputs alphabetically: put them in the
    spec's order. Unexpected names are left as they are for the parity check to report."""
    outputs = {o.name: o for o in proto.graph.output}
    if set(outputs) != set(spec.output_names):
        return
    ordered = [onnx.ValueInfoProto.FromString(outputs[n].SerializeToString()) for n in spec.output_names]
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)


def _name_dynamic_axes(proto: onnx.ModelProto, spec: ExportSpec) -> None:
    """tf2onnx names unknown dimensions ``unk__N``; give them the spec's axis names."""
    tensors = {t.name: t for t in (*spec.inputs, *spec.outputs)}
    for value in (*proto.graph.input, *proto.graph.output):
        t = tensors.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if t is None or len(dims) != len(t.shape):
            continue
        for dim, axis in zip(dims, t.shape):
            if isinstance(axis, str):
                dim.dim_param = axis
