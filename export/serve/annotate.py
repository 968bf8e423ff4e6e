"""Annotating one shard of a catalog with an opened bundle: decode → the image models in one
onnxruntime run (classifier + Grad-CAM + out-of-distribution score, vote fractions, captioner
state) → captions → Grad-CAM
statistics → the shard's ``predictions`` and ``errors`` tables (``catalogs.outputs``). Pure of
orchestration: the ``catalog-annotate`` flow plans the shards, calls :func:`annotate_rows` per
shard and writes its tables atomically.

Memory is bounded by one batch of pixels plus the decoder's look-ahead (``catalogs.decoding``):
the shard's own rows are read from the catalog table, never its pixels all at once. Decoding runs
on a small thread pool ahead of inference, so reading images overlaps with onnxruntime.

Every row of the shard ends in exactly one of the two tables: a row whose image cannot become a
model input is an ``input`` error (its specific ``error_type`` from ``catalogs.imaging``); a
batch that onnxruntime rejects becomes one ``inference`` error per row of that batch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from catalogs.captions import template_captions
from catalogs.decoding import BATCH_SIZE, Batch, iter_model_inputs
from catalogs.outputs import EMBEDDING, EMBEDDING_DIM, errors_table, ood_flags, predictions_table
from catalogs.sources import central_source_snr
from catalogs.tree import GZ2_TREE
from export.serve.camstats import cam_statistics
from export.serve.runtime import ORT_ERRORS, LoadedBundle

STAGE_INFERENCE = "inference"


@dataclass
class ShardResult:
    predictions: pa.Table
    errors: pa.Table
    seconds: dict[str, float] = field(default_factory=dict)  # time per stage, for profiling


@dataclass
class _Collected:
    """Per-row outputs of the rows annotated so far, and the failures."""

    rows: list[np.ndarray] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    votes: list[np.ndarray] = field(default_factory=list)
    ood_score: list[np.ndarray] = field(default_factory=list)
    ood_flag: list[np.ndarray] = field(default_factory=list)
    source_snr: list[np.ndarray] = field(default_factory=list)
    embedding: list[np.ndarray] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    cam: list[dict[str, np.ndarray]] = field(default_factory=list)
    notes: list[str | None] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    failed: list[tuple[int, str, str, str]] = field(default_factory=list)  # row, stage, type, message


def annotate_rows(bundle: LoadedBundle, root, table: pa.Table, *, start_row: int, bundle_id: str, run_id: str,
                  batch_size: int = BATCH_SIZE, decode_workers: int = 2) -> ShardResult:
    """Annotate ``table`` (the shard's slice of the catalog; its first row is catalog row
    ``start_row``) whose ``image_path`` values are relative to ``root``."""
    if "classifier" not in bundle.has:
        raise ValueError(f"bundle {bundle.bundle_id} has no classifier: annotation needs one")
    got = _Collected()
    seconds = {"decode_wait": 0.0, "image_models": 0.0, "captions": 0.0, "cam_stats": 0.0}
    paths = table.column("image_path").to_pylist()
    ids = table.column("object_id").to_pylist()
    batches = iter_model_inputs(root, paths, bundle.image, start_row=0, batch_size=batch_size,
                                workers=decode_workers)
    t = time.perf_counter()
    for batch in batches:
        seconds["decode_wait"] += time.perf_counter() - t
        got.failed.extend((f.row, f.stage, f.error_type, f.message) for f in batch.failures)
        if len(batch.rows):
            _infer(bundle, batch, ids, got, seconds)
        t = time.perf_counter()
    return ShardResult(*_tables(bundle, table, got, bundle_id, run_id), seconds=seconds)


@dataclass
class PixelAnnotations:
    """What the bundle says about a batch of prepared images (``LoadedBundle.image``)."""

    probs: np.ndarray  # (N, C) in the bundle's class order
    cam: np.ndarray  # (N, h, w) raw Grad-CAM of the predicted class (export.builder.gradcam)
    ood_score: np.ndarray  # (N,) models.ood: feature distance over the bundle's scale
    ood_flag: np.ndarray  # (N,) bool: ood_score > the bundle's threshold or no centred source
    source_snr: np.ndarray  # (N,) catalogs.sources.central_source_snr
    votes: np.ndarray | None  # (N, 37) cumulative GZ2 answers, when the bundle has a regressor
    captions: list[str] | None  # when the bundle writes captions (bundle.caption_source)
    embedding: np.ndarray  # (N, EMBEDDING_DIM) models.embedding

    @property
    def finite(self) -> np.ndarray:
        """(N,) bool: the rows whose class probabilities and OOD score are all finite (a NaN or
        inf here means the models broke on that image: it is an error, never a prediction)."""
        return np.isfinite(self.probs).all(axis=1) & np.isfinite(self.ood_score)

    def select(self, keep: np.ndarray) -> "PixelAnnotations":
        """The rows where ``keep`` (N,) is true."""
        return PixelAnnotations(self.probs[keep], self.cam[keep], self.ood_score[keep], self.ood_flag[keep],
                                self.source_snr[keep], None if self.votes is None else self.votes[keep],
                                None if self.captions is None else [c for c, k in zip(self.captions, keep) if k],
                                self.embedding[keep])


def annotate_pixels(bundle: LoadedBundle, pixels: np.ndarray, object_ids: Sequence[str],
                    seconds: dict[str, float] | None = None) -> PixelAnnotations:
    """Every model of ``bundle`` on ``pixels`` (N, size, size, channels) in [0, 1] of the objects
    ``object_ids``: one run of the image models, then the captions of the bundle's caption
    source (the learned captioner's greedy captions, or the templates from the predicted vote
    fractions, whose phrase variants follow the object id). ``seconds`` (optional) accumulates
    per-stage time. onnxruntime's errors (``ORT_ERRORS``) propagate."""
    if len(object_ids) != len(pixels):
        raise ValueError(f"{len(object_ids)} object ids for {len(pixels)} images")
    t0 = time.perf_counter()
    outputs = bundle.infer(pixels)  # one run: the image models share their backbone
    t1 = time.perf_counter()
    captions = None
    if bundle.caption_source == "learned":
        captions = bundle.captions_from_state(outputs["h0"], outputs["c0"])
    elif bundle.caption_source == "template":
        fractions = np.nan_to_num(GZ2_TREE.per_question(outputs["votes"]), nan=0.0)
        captions = template_captions(np.asarray(object_ids, dtype=object), fractions)
    t2 = time.perf_counter()
    if seconds is not None:
        seconds["image_models"] = seconds.get("image_models", 0.0) + t1 - t0
        seconds["captions"] = seconds.get("captions", 0.0) + t2 - t1
    score, snr = outputs["ood_score"], central_source_snr(pixels)
    return PixelAnnotations(outputs["probs"], outputs["cam"], score, ood_flags(score, snr, bundle.ood_threshold),
                            snr, outputs.get("votes"), captions, outputs[EMBEDDING])


def _infer(bundle: LoadedBundle, batch: Batch, ids: list[str], got: _Collected, seconds: dict[str, float]) -> None:
    try:
        out = annotate_pixels(bundle, batch.pixels, [ids[r] for r in batch.rows], seconds)
    except ORT_ERRORS as exc:  # the batch, not the run: its rows are reported, the rest go on
        message = f"onnxruntime refused the batch: {exc}"
        got.failed.extend((int(r), STAGE_INFERENCE, type(exc).__name__, message) for r in batch.rows)
        return
    bad = ~out.finite
    if bad.any():
        got.failed.extend((int(r), STAGE_INFERENCE, "non_finite_output", "the classifier returned NaN/inf")
                          for r in batch.rows[bad])
        batch, out = batch.select(~bad), out.select(~bad)
    t = time.perf_counter()
    stats = cam_statistics(out.cam, bundle.image.size, batch.crops, batch.source_sizes.min(axis=1))
    seconds["cam_stats"] += time.perf_counter() - t
    got.rows.append(batch.rows)
    got.probs.append(out.probs)
    got.ood_score.append(out.ood_score)
    got.ood_flag.append(out.ood_flag)
    got.source_snr.append(out.source_snr)
    if out.votes is not None:
        got.votes.append(out.votes)
    if out.captions is not None:
        got.captions.extend(out.captions)
    got.embedding.append(out.embedding)
    got.cam.append(stats)
    got.notes.extend(batch.notes)
    got.crops.append(batch.crops)


def _tables(bundle: LoadedBundle, table: pa.Table, got: _Collected, bundle_id: str,
            run_id: str) -> tuple[pa.Table, pa.Table]:
    ids = table.column("object_id").to_pylist()
    rows = np.concatenate(got.rows) if got.rows else np.zeros(0, np.int64)
    n_classes = len(bundle.class_names)

    def column(name):
        if name not in table.column_names:
            return None
        return table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)[rows]

    cam = {k: np.concatenate([c[k] for c in got.cam]) for k in got.cam[0]} if got.cam else None
    predictions = predictions_table(
        bundle.class_names, object_ids=[ids[r] for r in rows],
        probs=np.concatenate(got.probs) if got.probs else np.zeros((0, n_classes)),
        bundle_id=bundle_id, run_id=run_id, ra=column("ra"), dec=column("dec"),
        votes_cumulative=np.concatenate(got.votes) if got.votes else None,
        captions=got.captions if bundle.caption_source else None, caption_source=bundle.caption_source,
        cam=cam if cam is not None else _empty_cam(),
        ood_score=np.concatenate(got.ood_score) if got.ood_score else np.zeros(0),
        ood_flag=np.concatenate(got.ood_flag) if got.ood_flag else np.zeros(0, bool),
        source_snr=np.concatenate(got.source_snr) if got.source_snr else np.zeros(0), input_notes=got.notes,
        input_crops=np.concatenate(got.crops) if got.crops else np.zeros(0),
        embedding=np.concatenate(got.embedding) if got.embedding else np.zeros((0, EMBEDDING_DIM)))
    failed = sorted(got.failed)
    paths = table.column("image_path").to_pylist()
    errors = errors_table(object_ids=[ids[r] for r, *_ in failed], image_paths=[paths[r] for r, *_ in failed],
                          stages=[f[1] for f in failed], error_types=[f[2] for f in failed],
                          messages=[f[3] for f in failed], bundle_id=bundle_id, run_id=run_id)
    return predictions, errors


def _empty_cam() -> dict[str, np.ndarray]:
    from catalogs.outputs import CAM_COLUMNS

    return {name: np.zeros(0) for name in CAM_COLUMNS}
