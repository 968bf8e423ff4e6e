"""An int8 copy of the merged image graph, gated on keeping the answers.

What annotation runs is ``image_models.onnx`` (every image model in one graph), so that is what
gets quantised: **static QDQ**, per-channel int8 weights, uint8 activations, MinMax calibration
on training galaxies (the training split of the export's ``--catalog`` when the models trained on
it, else synthetic-survey galaxies of another seed than the parity batch), of the convolutions
only. The dense heads (MatMul/Gemm), softmax, the decision-tree layer, the embedding projection
and the Grad-CAM arithmetic stay fp32: they are a few per cent of the work, and quantising them
moved votes and CAMs most. (Dynamic quantisation of the convolutions runs them as
``ConvInteger``, about 10× slower than fp32 on onnxruntime's CPU provider, so it is not offered.)
The captioner's decoding step, fed states rather than images, stays fp32.

The int8 graph is compared with the fp32 graph (``export.builder.variants``) on held-out galaxies (up
to 1,024 of the test split of ``--catalog``, else the synthetic parity batch) and passes the gate only if it keeps the answers (:data:`GATE`):
predicted class ≥ 99.5 % identical, shipped captions ≥ 97 % identical, Grad-CAM peak cell ≥ 95 %
identical, the per-question vote fractions written to the predictions table within RMSE 0.005 of
fp32's (by the triangle inequality this bounds the change of the RMSE against any truth by the
same 0.005). ``bundle.json`` records the figures and
the verdict; :func:`export.serve.runtime.open_bundle` serves int8 only where it passed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from export.builder.variants import VariantCheck, compare
from export.serve.bundle import IMAGE_INPUT, INT8_NAME

CALIBRATION_IMAGES = 64
CALIBRATION_SEED = 1  # the synthetic parity batch uses seed 0
CALIBRATION_BATCH = 16
STATIC_OPS = ["Conv"]
# Figure → (comparison, threshold): what int8 must keep to be served.
GATE = {"class_agreement": (">=", 0.995), "caption_agreement": (">=", 0.97),
        "cam_peak_agreement": (">=", 0.95), "vote_rmse_vs_fp32": ("<=", 0.005)}
METHOD = (f"static QDQ int8 of {'/'.join(STATIC_OPS)} in the merged image graph, per-channel weights, MinMax "
          "calibration on training galaxies; dense heads, Grad-CAM arithmetic and the caption step fp32")


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def quantize_graph(proto: onnx.ModelProto, calibration: np.ndarray, ops=tuple(STATIC_OPS)) -> onnx.ModelProto:
    """Static QDQ int8 of ``ops`` in ``proto`` (one ``image`` input), calibrated on ``calibration``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="morphcat-int8-") as tmp:
        src, pre, dst = (Path(tmp) / f"graph.{s}.onnx" for s in ("fp32", "pre", "int8"))
        onnx.save(proto, src)
        # Shape inference and graph optimisation first, as onnxruntime recommends (its symbolic
        # shape inference needs sympy, which morphcat does not install).
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        feeds = [{IMAGE_INPUT: calibration[i:i + CALIBRATION_BATCH]}
                 for i in range(0, len(calibration), CALIBRATION_BATCH)]
        quantize_static(str(pre), str(dst), _Calibration(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=list(ops))
        quantized = onnx.load(str(dst))
    onnx.checker.check_model(quantized)
    return quantized


def quantize_merged(merged: onnx.ModelProto, calibration: np.ndarray, images: np.ndarray, captions) -> dict:
    """``{"file", "proto", "method", "comparison", "gate"}``: the int8 merged graph, its figures
    against the fp32 graph on ``images`` and :data:`GATE`'s verdict (``export.builder.variants``)."""
    quantized = quantize_graph(merged, calibration)
    return {"file": f"{INT8_NAME}.onnx", "proto": quantized, "method": METHOD,
            **compare(merged, quantized, "int8", images, captions, GATE)}


def quantize_models(plan, checked, merged) -> dict:
    """The int8 copy of ``merged`` (the export's merged image graph), compared with it on
    held-out galaxies and judged by the gate."""
    from catalogs.inputs import ImageSpec
    from export.builder.images import calibration_batch

    check = VariantCheck(plan, checked, merged, "`int8`")
    calibration = calibration_batch(plan.catalog, ImageSpec(**plan.image), plan.sidecars[plan.kinds[0]],
                                    CALIBRATION_IMAGES, CALIBRATION_SEED)
    out = quantize_merged(merged.proto, calibration.images, check.batch.images, check.captions)
    out["calibration"], out["checked_on"] = calibration.source, check.batch.source
    out["caption_source"] = check.caption_source  # whose captions caption_agreement compares
    return out
