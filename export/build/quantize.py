"""Optional int8 copies of the bundle's models, and what they cost against fp32.

Measured on the models trained on the shared 700-galaxy GZ2 sample: dynamic quantisation of the
convolutions runs them as ``ConvInteger``, about 10× *slower* than fp32 on onnxruntime's CPU
provider, and quantising only the dense layers shrinks and speeds up nothing (the weights and the
time are in the convolutions). So the image models get **static** QDQ quantisation, per channel,
of the ops that hold weights (Conv, MatMul, Gemm), calibrated on synthetic-survey galaxies (never
the parity batch: another seed; calibrating on real training images did no better); softmax, the
decision-tree layer and the Grad-CAM arithmetic stay in float (quantising every op put vote errors
at 0.4). The captioner step, fed states rather than images, gets dynamic int8 weights (its LSTM
and vocabulary projection). On those models int8 is 1.2-3× faster and 3.7× smaller but changes
1 class in 20 and 1 caption in 10, so it is never the default.

Every int8 file is compared with its fp32 file on the parity batch: size, images/s, and the
agreement that matters for each model. Bundles open in fp32 unless the caller asks for
``precision="int8"``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx

from export.build.benchmark import images_per_second
from export.build.images import synthetic_batch
from export.build.parity import max_abs_diff, row_agreement
from export.serve.decode import greedy_decode_ids
from export.serve.providers import CPU
from export.serve.runtime import create_session

CALIBRATION_IMAGES = 32
CALIBRATION_SEED = 1  # the synthetic parity batch uses seed 0
CALIBRATION_BATCH = 8
STATIC_OPS = ["Conv", "MatMul", "Gemm"]
METHOD = (f"image models: static QDQ int8, per channel, {'/'.join(STATIC_OPS)} only, MinMax calibration on "
          f"{CALIBRATION_IMAGES} synthetic galaxies (seed {CALIBRATION_SEED}); captioner step: dynamic int8 weights")


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over a list of feeds."""

    def __init__(self, feeds: list[dict]):
        self._feeds = iter(feeds)

    def get_next(self):
        return next(self._feeds, None)


def _quantize_file(name: str, proto: onnx.ModelProto, calibration: np.ndarray, workdir: Path) -> onnx.ModelProto:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre, dst = (workdir / f"{name}.{s}.onnx" for s in ("fp32", "pre", "int8"))
    onnx.save(proto, src)
    # Shape inference and graph optimisation before quantising, as onnxruntime recommends
    # (its symbolic shape inference needs sympy, which morphcat does not install).
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    image_input = proto.graph.input[0].name == "image"
    if image_input:
        feeds = [{"image": calibration[i:i + CALIBRATION_BATCH]} for i in range(0, len(calibration), CALIBRATION_BATCH)]
        quantize_static(str(pre), str(dst), _Calibration(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=STATIC_OPS)
    else:
        quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8)
    quantized = onnx.load(str(dst))
    onnx.checker.check_model(quantized)
    return quantized


def _sessions(protos: dict[str, onnx.ModelProto]) -> dict:
    return {n: create_session(p.SerializeToString(), [CPU]) for n, p in protos.items()}


def _size(protos: dict[str, onnx.ModelProto]) -> int:
    return sum(p.ByteSize() for p in protos.values())


def _compare(kind: str, fp32: dict, int8: dict, images: np.ndarray, labels, facts: dict) -> dict:
    """Agreement of int8 with fp32 (and accuracy against catalog labels when the batch has them)
    plus images/s of both on the same batch."""
    feeds = {"image": images}
    n = len(images)
    if kind == "captioner":
        max_len = facts["max_len"]

        def caption(s):
            return greedy_decode_ids(s["captioner_encoder"], s["captioner_step"], images, max_len)

        a, b = caption(fp32), caption(int8)
        out = {"caption_agreement": row_agreement(a, b), "token_agreement": float(np.mean(a == b))}
        speeds = [images_per_second(lambda s=s: caption(s), n) for s in (fp32, int8)]
    else:
        ref, got = (s[kind].run(None, feeds) for s in (fp32, int8))
        if kind == "classifier":
            p0, p1 = ref[0].argmax(1), got[0].argmax(1)
            scale = float(np.abs(ref[1]).max()) or 1.0
            out = {"class_agreement": row_agreement(p0, p1), "max_prob_diff": max_abs_diff(ref[0], got[0]),
                   "cam_relative_diff": max_abs_diff(ref[1], got[1]) / scale}
            names = facts["class_names"]
            if labels is not None and any(label in names for label in labels):
                known = np.array([label in names for label in labels])
                truth = np.array([names.index(label) if label in names else -1 for label in labels])
                out["accuracy_fp32"] = float(np.mean(p0[known] == truth[known]))
                out["accuracy_int8"] = float(np.mean(p1[known] == truth[known]))
        else:
            out = {"max_vote_diff": max_abs_diff(ref[0], got[0]),
                   "vote_rmse_vs_fp32": float(np.sqrt(np.mean((ref[0] - got[0]) ** 2)))}
        speeds = [images_per_second(lambda s=s: s[kind].run(None, feeds), n) for s in (fp32, int8)]
    out.update(images_per_s_fp32=round(speeds[0], 1), images_per_s_int8=round(speeds[1], 1),
               speedup=round(speeds[1] / speeds[0], 2))
    return out


def quantize_models(plan, checked) -> dict:
    """``{"method", "models": {kind: {"files", "protos", "comparison"}}}`` for every checked model."""
    from catalogs.inputs import ImageSpec

    calibration = synthetic_batch(ImageSpec(**plan.image), CALIBRATION_IMAGES, CALIBRATION_SEED).images
    models = {}
    with tempfile.TemporaryDirectory(prefix="morphcat-int8-") as tmp:
        for c in checked:
            int8 = {n: _quantize_file(n, p, calibration, Path(tmp)) for n, p in c.protos.items()}
            comparison = _compare(c.source.kind, _sessions(c.protos), _sessions(int8), plan.batch.images,
                                  plan.batch.labels, c.source.facts)
            comparison.update(bytes_fp32=_size(c.protos), bytes_int8=_size(int8))
            models[c.source.kind] = {"files": {n: f"{n}.int8.onnx" for n in int8}, "protos": int8,
                                     "comparison": comparison}
    return {"method": METHOD, "models": models}
