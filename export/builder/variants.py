"""Lower-precision copies of the merged image graph (int8: ``export.builder.quantize``; float16:
``export.builder.half``), compared with the fp32 graph on the same held-out galaxies and judged
by a gate of answers kept. One comparison, one verdict, one bundle entry shape for both, so
:func:`export.serve.runtime.open_bundle` serves either only where it passed.
"""

from __future__ import annotations

import numpy as np
import onnx

from catalogs.tree import GZ2_TREE
from catalogs.timing import images_per_second
from export.builder.parity import row_agreement
from export.serve.bundle import IMAGE_INPUT, caption_source
from export.serve.decode import greedy_decode_from_state
from export.serve.providers import CPU
from export.serve.runtime import create_session

CHECK_IMAGES = 1024
Gate = dict[str, tuple[str, float]]  # figure → (comparison, threshold)


def cam_peaks(cam: np.ndarray) -> np.ndarray:
    """The index of each image's hottest Grad-CAM cell."""
    return cam.reshape(len(cam), -1).argmax(axis=1)


def agreement(fp32: dict[str, np.ndarray], other: dict[str, np.ndarray], captions=None) -> dict:
    """The gate's figures for two runs of the image graph on the same images (those the outputs
    allow): class, CAM-peak and caption agreement, vote RMSE. ``captions``: outputs → the
    captions annotation would ship, or None when the bundle writes none."""
    out = {}
    if "probs" in fp32:
        out["class_agreement"] = row_agreement(fp32["probs"].argmax(1), other["probs"].argmax(1))
        out["max_prob_diff"] = float(np.abs(fp32["probs"] - other["probs"]).max())
    if "cam" in fp32:
        out["cam_peak_agreement"] = row_agreement(cam_peaks(fp32["cam"]), cam_peaks(other["cam"]))
    if "votes" in fp32:
        # The per-question fractions the predictions table holds (the regressor outputs the
        # cumulative 37 answers; dividing by a small parent amplifies a change, so gate on these).
        a, b = (np.nan_to_num(GZ2_TREE.per_question(o["votes"]), nan=0.0) for o in (fp32, other))
        out["vote_rmse_vs_fp32"] = float(np.sqrt(np.mean((a - b) ** 2)))
        out["cumulative_vote_rmse_vs_fp32"] = float(np.sqrt(np.mean((fp32["votes"] - other["votes"]) ** 2)))
    if captions is not None:
        out["caption_agreement"] = row_agreement(np.array(captions(fp32)), np.array(captions(other)))
    return out


def judge(figures: dict, gate: Gate) -> dict:
    """``gate``'s verdict on ``figures``: each threshold, and which figures missed it. A figure
    the bundle cannot have (no regressor: no votes) is not judged."""
    failed = []
    for name, (op, limit) in gate.items():
        if name in figures and not (figures[name] >= limit if op == ">=" else figures[name] <= limit):
            failed.append(f"{name} {figures[name]:.4g} (needs {op} {limit:g})")
    return {"thresholds": {k: f"{op} {limit:g}" for k, (op, limit) in gate.items()}, "failed": failed,
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


def compare(merged: onnx.ModelProto, variant: onnx.ModelProto, name: str, images: np.ndarray, captions,
            gate: Gate) -> dict:
    """``{"comparison", "gate"}``: ``variant`` against the fp32 ``merged`` graph on ``images`` with
    onnxruntime's CPU provider (sizes, images/s, :func:`agreement`) and ``gate``'s verdict."""
    sessions = [create_session(p.SerializeToString(), [CPU]) for p in (merged, variant)]
    feeds = {IMAGE_INPUT: images}
    fp32_out, other_out = (dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))) for s in sessions)
    comparison = agreement(fp32_out, other_out, captions)
    speeds = [images_per_second(lambda s=s: s.run(None, feeds), len(images)) for s in sessions]
    comparison.update({"n_images": int(len(images)), "bytes_fp32": merged.ByteSize(), f"bytes_{name}": variant.ByteSize(),
                       "images_per_s_fp32": round(speeds[0], 1), f"images_per_s_{name}": round(speeds[1], 1),
                       "speedup": round(speeds[1] / speeds[0], 2)})
    return {"comparison": comparison, "gate": judge(comparison, gate)}


class VariantCheck:
    """What a variant of the export's merged graph is compared on: the captions annotation
    would ship from its outputs, whose captions they are, and the held-out check batch."""

    def __init__(self, plan, checked, merged, flag: str):
        from catalogs.inputs import ImageSpec
        from catalogs.tokenizer import Tokenizer
        from export.builder.errors import ExportError
        from export.builder.images import catalog_batch

        if merged is None:
            raise ExportError(f"{flag} converts the merged image graph, and these models have fewer than two "
                              "image-input files to merge (export a classifier with a regressor or captioner)")
        facts = {c.source.kind: c.source.facts for c in checked}
        protos = {name: p for c in checked for name, p in c.protos.items()}
        self.caption_source = caption_source(facts)
        captioner = facts.get("captioner", {})
        self.captions = shipped_captions(self.caption_source, protos.get("captioner_step"),
                                         Tokenizer.from_dict(captioner["tokenizer"]) if captioner else None,
                                         captioner.get("max_len"))
        # Rare rows decide a gate (a few galaxies whose votes move most): compare on up to
        # CHECK_IMAGES held-out galaxies, more than the parity batch holds, when a catalog is given.
        self.batch = plan.batch if plan.catalog is None else catalog_batch(
            plan.catalog, ImageSpec(**plan.image), plan.sidecars[plan.kinds[0]], CHECK_IMAGES)
