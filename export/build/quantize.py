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

The int8 graph is compared with the fp32 graph on held-out galaxies (up to 1,024 of the test split
of ``--catalog``, else the synthetic parity batch) and passes the gate only if it keeps the answers (:data:`GATE`):
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

from catalogs.tree import GZ2_TREE
from export.build.benchmark import images_per_second
from export.build.parity import row_agreement
from export.serve.bundle import IMAGE_INPUT, INT8_NAME, caption_source
from export.serve.decode import greedy_decode_from_state
from export.serve.providers import CPU
from export.serve.runtime import create_session

CALIBRATION_IMAGES = 64
CALIBRATION_SEED = 1  # the synthetic parity batch uses seed 0
CALIBRATION_BATCH = 16
CHECK_IMAGES = 1024
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


def cam_peaks(cam: np.ndarray) -> np.ndarray:
    """The index of each image's hottest Grad-CAM cell."""
    return cam.reshape(len(cam), -1).argmax(axis=1)


def agreement(fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], captions=None) -> dict:
    """The gate's figures for two runs of the image graph on the same images (those the outputs
    allow): class, CAM-peak and caption agreement, vote RMSE. ``captions``: outputs → the
    captions annotation would ship, or None when the bundle writes none."""
    out = {}
    if "probs" in fp32:
        out["class_agreement"] = row_agreement(fp32["probs"].argmax(1), int8["probs"].argmax(1))
        out["max_prob_diff"] = float(np.abs(fp32["probs"] - int8["probs"]).max())
    if "cam" in fp32:
        out["cam_peak_agreement"] = row_agreement(cam_peaks(fp32["cam"]), cam_peaks(int8["cam"]))
    if "votes" in fp32:
        # The per-question fractions the predictions table holds (the regressor outputs the
        # cumulative 37 answers; dividing by a small parent amplifies a change, so gate on these).
        a, b = (np.nan_to_num(GZ2_TREE.per_question(o["votes"]), nan=0.0) for o in (fp32, int8))
        out["vote_rmse_vs_fp32"] = float(np.sqrt(np.mean((a - b) ** 2)))
        out["cumulative_vote_rmse_vs_fp32"] = float(np.sqrt(np.mean((fp32["votes"] - int8["votes"]) ** 2)))
    if captions is not None:
        out["caption_agreement"] = row_agreement(np.array(captions(fp32)), np.array(captions(int8)))
    return out


def judge(figures: dict) -> dict:
    """The gate's verdict on ``figures``: each threshold, and which figures missed it. A figure
    the bundle cannot have (no regressor: no votes) is not judged."""
    failed = []
    for name, (op, limit) in GATE.items():
        if name in figures and not (figures[name] >= limit if op == ">=" else figures[name] <= limit):
            failed.append(f"{name} {figures[name]:.4g} (needs {op} {limit:g})")
    return {"thresholds": {k: f"{op} {limit:g}" for k, (op, limit) in GATE.items()}, "failed": failed,
            "passed": not failed}


def shipped_captions(caption_source: str | None, step_proto: onnx.ModelProto | None, tokenizer, max_len):
    """outputs → the captions annotation writes from them (``export.serve.annotate``'s rule)."""
    if caption_source == "template":
        from catalogs.captions import template_captions

        return lambda out: template_captions([f"parity-{i}" for i in range(len(out["votes"]))], out["votes"])
    if caption_source == "learned":
        step = create_session(step_proto.SerializeToString(), [CPU])
        return lambda out: tokenizer.decode(greedy_decode_from_state(step, out["h0"], out["c0"], max_len))
    return None


def quantize_merged(merged: onnx.ModelProto, calibration: np.ndarray, images: np.ndarray, captions) -> dict:
    """``{"file", "proto", "comparison", "gate"}``: the int8 merged graph, its figures against the
    fp32 graph on ``images`` (sizes, images/s, :func:`agreement`) and the gate's verdict."""
    quantized = quantize_graph(merged, calibration)
    sessions = [create_session(p.SerializeToString(), [CPU]) for p in (merged, quantized)]
    feeds = {IMAGE_INPUT: images}
    fp32_out, int8_out = (dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))) for s in sessions)
    comparison = agreement(fp32_out, int8_out, captions)
    speeds = [images_per_second(lambda s=s: s.run(None, feeds), len(images)) for s in sessions]
    comparison.update(n_images=int(len(images)), bytes_fp32=merged.ByteSize(), bytes_int8=quantized.ByteSize(),
                      images_per_s_fp32=round(speeds[0], 1), images_per_s_int8=round(speeds[1], 1),
                      speedup=round(speeds[1] / speeds[0], 2))
    return {"file": f"{INT8_NAME}.onnx", "proto": quantized, "comparison": comparison, "gate": judge(comparison),
            "method": METHOD}


def quantize_models(plan, checked, merged) -> dict:
    """The int8 copy of ``merged`` (the export's merged image graph), compared with it on the
    plan's parity batch and judged by the gate."""
    from catalogs.inputs import ImageSpec
    from catalogs.tokenizer import Tokenizer
    from export.build.errors import ExportError
    from export.build.images import calibration_batch, catalog_batch

    if merged is None:
        raise ExportError("--int8 quantises the merged image graph, and these models have fewer than two "
                          "image-input files to merge (export a classifier with a regressor or captioner)")
    facts = {c.source.kind: c.source.facts for c in checked}
    protos = {name: p for c in checked for name, p in c.protos.items()}
    source = caption_source(facts)
    captioner = facts.get("captioner", {})
    captions = shipped_captions(source, protos.get("captioner_step"),
                                Tokenizer.from_dict(captioner["tokenizer"]) if captioner else None,
                                captioner.get("max_len"))
    first = plan.kinds[0]
    calibration = calibration_batch(plan.catalog, ImageSpec(**plan.image), plan.sidecars[first],
                                    CALIBRATION_IMAGES, CALIBRATION_SEED)
    # Rare rows decide the gate (a few galaxies whose votes move most): compare on up to
    # CHECK_IMAGES held-out galaxies, more than the parity batch holds, when a catalog is given.
    check = plan.batch if plan.catalog is None else catalog_batch(plan.catalog, ImageSpec(**plan.image),
                                                                  plan.sidecars[first], CHECK_IMAGES)
    out = quantize_merged(merged.proto, calibration.images, check.images, captions)
    out["calibration"], out["checked_on"] = calibration.source, check.source
    out["caption_source"] = source  # whose captions caption_agreement compares
    return out
