"""The annotation output tables, ``predictions`` and ``errors``: a public contract.

Scripts outside morphcat read these folder and column names; add columns at the end of a group
if you must, never rename or retype one (bump ``OUTPUT_VERSION`` if you ever do). Every catalog
row of a run ends in exactly one of the two tables.

``predictions`` (one row per annotated object; ``float32`` for every model output, as computed
by the model; **never NaN**: an undefined value is null)

=========================  =======  ===============================================================
column                     type     meaning
=========================  =======  ===============================================================
object_id                  string   as in the catalog
ra, dec                    float64  as in the catalog, null when unknown
label_pred                 string   the most probable class
confidence                 float32  its probability
entropy                    float32  entropy of the class probabilities, in nats (0 = certain;
                                    ln K = uniform over K classes)
margin                     float32  top-1 minus top-2 probability (small = a toss-up)
p_<class>                  float32  one per class, in the bundle's class order (``p_edge-on``…)
t01_…_a01_…_pred (37)      float32  predicted GZ2 vote fractions **per question**, in tree order,
                                    named like the catalog's Hart16 ``…_debiased`` columns with
                                    ``_pred`` for ``_debiased``: compare or join them column by
                                    column, and apply ``catalogs.labels``' rules to them. Null
                                    where the question is not reached (its parent answer is 0).
caption                    string   generated caption
caption_source             string   where it comes from: ``learned`` (the CNN + LSTM captioner) or
                                    ``template`` (the GZ2 templates written from the predicted
                                    vote fractions), whichever scored better on the validation
                                    galaxies (recorded in ``bundle.json``)
cam_peak_x, cam_peak_y     float32  Grad-CAM peak cell centre, model-input pixels (x right, y down)
cam_peak_x_frac, …_y_frac  float32  the same as a fraction of the model input side
cam_centroid_dx, …_dy      float32  heat-weighted centroid minus image centre, cutout pixels
cam_offset_px              float32  length of that offset, cutout pixels
cam_offset_frac            float32  the same as a fraction of the cutout's shorter side
cam_central_share          float32  share of the heat within the central disc
                                    (``export.serve.camstats.CENTRAL_RADIUS`` of the input side)
cam_entropy                float32  entropy of the normalised map over ln(cells): 0 = one cell,
                                    1 = uniform
cam_gini                   float32  Gini coefficient of the heat over cells: 0 = uniform
ood_score                  float32  out-of-distribution score (``models.ood``): Mahalanobis
                                    distance of the classifier's pooled features to its training
                                    galaxies, over the 99th percentile of that distance on its
                                    validation galaxies (≤ 1 for 99 % of such galaxies)
ood_flag                   bool     ``ood_score > 1`` (the threshold each bundle records) or
                                    ``source_snr < 5``: probably not a galaxy like those the models
                                    learnt (a photo, empty sky, an artefact, an uncentred cutout,
                                    or a survey unlike the training one)
source_snr                 float32  signal-to-noise of a centred source in the model input
                                    (``catalogs.sources.central_source_snr``); < 5: none
input_note                 string   conversions applied to the image (``converted_from=RGBA``,
                                    ``nonfinite_pixels=12``), null when none
input_crop                 float32  the fraction of the cutout's shorter side the model saw (fixed,
                                    or sized from the galaxy: ``ImageSpec.framing``)
embedding                  float32  32 of them (``EMBEDDING_DIM``, a ``fixed_size_list``): the
                                    galaxy's L2-normalised embedding (``models.embedding``: PCA of
                                    the classifier's pooled features, fitted on its training
                                    galaxies); the dot product of two rows is their cosine
                                    similarity (``morphcat similar``). Comparable within one
                                    bundle only; null where the features were not finite
bundle_id, run_id          string   the model bundle and the run that wrote the row
=========================  =======  ===============================================================

A column whose model the bundle lacks (no captioner, no regressor…) is present and null.

``errors`` (one row per object that could not be annotated): ``object_id``, ``image_path`` (as
in the catalog), ``stage`` (where it failed, e.g. ``input``), ``error_type`` (a stable code, e.g.
``catalogs.imaging`` error types such as ``truncated``), ``message`` (for a person),
``bundle_id``, ``run_id``.

Each Parquet file also carries ``morphcat.output`` metadata (JSON: the output version, table,
bundle and run ids, the shard); the Arrow schema is stored by Parquet itself.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from catalogs.sources import MIN_SOURCE_SNR
from catalogs.tree import GZ2_TREE

OUTPUT_VERSION = 3  # 2: caption_source, input_crop; 3: embedding
EMBEDDING_DIM = 32  # every bundle's embedding width: runs stay comparable column for column
EMBEDDING = "embedding"
METADATA_KEY = b"morphcat.output"
PREDICTIONS = "predictions"
ERRORS = "errors"

CLASS_PREFIX = "p_"
VOTE_COLUMNS = tuple(f"{ref.stem}_pred" for ref in GZ2_TREE.answers)

CAM_PEAK_X = "cam_peak_x"
CAM_PEAK_Y = "cam_peak_y"
CAM_PEAK_X_FRAC = "cam_peak_x_frac"
CAM_PEAK_Y_FRAC = "cam_peak_y_frac"
CAM_CENTROID_DX = "cam_centroid_dx"
CAM_CENTROID_DY = "cam_centroid_dy"
CAM_OFFSET_PX = "cam_offset_px"
CAM_OFFSET_FRAC = "cam_offset_frac"
CAM_CENTRAL_SHARE = "cam_central_share"
CAM_ENTROPY = "cam_entropy"
CAM_GINI = "cam_gini"
CAM_COLUMNS = (CAM_PEAK_X, CAM_PEAK_Y, CAM_PEAK_X_FRAC, CAM_PEAK_Y_FRAC, CAM_CENTROID_DX, CAM_CENTROID_DY,
               CAM_OFFSET_PX, CAM_OFFSET_FRAC, CAM_CENTRAL_SHARE, CAM_ENTROPY, CAM_GINI)

_HEAD = [pa.field("object_id", pa.string(), nullable=False), pa.field("ra", pa.float64()),
         pa.field("dec", pa.float64()), pa.field("label_pred", pa.string()), pa.field("confidence", pa.float32()),
         pa.field("entropy", pa.float32()), pa.field("margin", pa.float32())]
_TAIL = [pa.field("caption", pa.string()), pa.field("caption_source", pa.string()),
         *(pa.field(c, pa.float32()) for c in CAM_COLUMNS),
         pa.field("ood_score", pa.float32()), pa.field("ood_flag", pa.bool_()), pa.field("source_snr", pa.float32()),
         pa.field("input_note", pa.string()), pa.field("input_crop", pa.float32()),
         pa.field(EMBEDDING, pa.list_(pa.float32(), EMBEDDING_DIM)),
         pa.field("bundle_id", pa.string(), nullable=False), pa.field("run_id", pa.string(), nullable=False)]

ERRORS_SCHEMA = pa.schema([
    pa.field("object_id", pa.string(), nullable=False),
    pa.field("image_path", pa.string()),
    pa.field("stage", pa.string(), nullable=False),
    pa.field("error_type", pa.string(), nullable=False),
    pa.field("message", pa.string(), nullable=False),
    pa.field("bundle_id", pa.string(), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
])


def predictions_schema(class_names: Sequence[str]) -> pa.Schema:
    """The ``predictions`` schema for a bundle's classes (one ``p_<class>`` column each, in order)."""
    names = list(class_names)
    if not names:
        raise ValueError("a predictions table needs at least one class")
    for name in names:
        if not isinstance(name, str) or not name or re.search(r"[\x00-\x1f]", name):
            raise ValueError(f"class name {name!r} cannot name a column")
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {names}")
    classes = [pa.field(CLASS_PREFIX + n, pa.float32()) for n in names]
    return pa.schema([*_HEAD, *classes, *(pa.field(c, pa.float32()) for c in VOTE_COLUMNS), *_TAIL])


def predictions_class_names(schema: pa.Schema) -> tuple[str, ...]:
    """The class names of a predictions schema, refusing one that is not exactly that schema."""
    start = len(_HEAD)
    stop = schema.names.index(VOTE_COLUMNS[0]) if VOTE_COLUMNS[0] in schema.names else start
    names = tuple(n[len(CLASS_PREFIX):] for n in schema.names[start:stop])
    if not names or not schema.remove_metadata().equals(predictions_schema(names)):
        raise ValueError("not a morphcat predictions schema: "
                         f"columns {schema.names[:start + 3]}… do not follow catalogs.outputs")
    return names


def predictions_table(
    class_names: Sequence[str],
    *,
    object_ids: Sequence[str],
    probs: np.ndarray,
    bundle_id: str,
    run_id: str,
    ra: np.ndarray | None = None,
    dec: np.ndarray | None = None,
    votes_cumulative: np.ndarray | None = None,
    captions: Sequence[str | None] | None = None,
    caption_source: str | None = None,
    cam: Mapping[str, np.ndarray] | None = None,
    ood_score: np.ndarray | None = None,
    ood_flag: np.ndarray | None = None,
    source_snr: np.ndarray | None = None,
    input_notes: Sequence[str | None] | None = None,
    input_crops: np.ndarray | None = None,
    embedding: np.ndarray | None = None,
) -> pa.Table:
    """Assemble ``predictions`` rows from model outputs, deriving label (ties: the first class),
    confidence and uncertainty from ``probs`` (N, K) and the per-question vote fractions from the
    regressor's Kaggle-style cumulative outputs (N, 37) with ``GZ2_TREE.per_question``. ``cam``
    maps every ``CAM_COLUMNS`` name to (N,); ``embedding`` is (N, ``EMBEDDING_DIM``). An omitted
    output is null; NaN becomes null (an embedding with any NaN is a null row)."""
    schema = predictions_schema(class_names)
    n = len(object_ids)
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (n, len(class_names)):
        raise ValueError(f"probs has shape {p.shape}, expected {(n, len(class_names))}")
    if not np.isfinite(p).all():
        raise ValueError("probs must be finite: route rows whose inference failed to the errors table")
    top = np.argmax(p, axis=1)
    ordered = np.sort(p, axis=1)
    columns: dict[str, pa.Array] = {
        "object_id": pa.array(list(object_ids), pa.string()),
        "ra": _floats(ra, n, pa.float64()),
        "dec": _floats(dec, n, pa.float64()),
        "label_pred": pa.array([class_names[i] for i in top], pa.string()),
        "confidence": _floats(ordered[:, -1], n),
        "entropy": _floats(class_entropy(p), n),
        "margin": _floats(ordered[:, -1] - (ordered[:, -2] if p.shape[1] > 1 else 0.0), n),
    }
    for j, name in enumerate(class_names):
        columns[CLASS_PREFIX + name] = _floats(p[:, j], n)
    votes = None if votes_cumulative is None else GZ2_TREE.per_question(_matrix(votes_cumulative, n, len(VOTE_COLUMNS)))
    for j, name in enumerate(VOTE_COLUMNS):
        columns[name] = _floats(None if votes is None else votes[:, j], n)
    columns["caption"] = _strings(captions, n)
    columns["caption_source"] = _strings(None if captions is None else [caption_source] * n, n)
    if cam is not None and set(cam) != set(CAM_COLUMNS):
        raise ValueError(f"cam must give exactly {CAM_COLUMNS}, got {sorted(cam)}")
    for name in CAM_COLUMNS:
        columns[name] = _floats(None if cam is None else cam[name], n)
    columns["ood_score"] = _floats(ood_score, n)
    columns["ood_flag"] = pa.nulls(n, pa.bool_()) if ood_flag is None else pa.array(_vector(ood_flag, n), pa.bool_())
    columns["source_snr"] = _floats(source_snr, n)
    columns["input_note"] = _strings(input_notes, n)
    columns["input_crop"] = _floats(input_crops, n)
    columns[EMBEDDING] = _embeddings(embedding, n)
    columns["bundle_id"] = pa.array([bundle_id] * n, pa.string())
    columns["run_id"] = pa.array([run_id] * n, pa.string())
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def class_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy in nats of class probabilities over the last axis (0 · ln 0 = 0): the ``entropy``
    column, and the uncertainty ``morphcat select`` ranks by."""
    p = np.asarray(probs, dtype=np.float64)
    return -np.sum(p * np.log(np.where(p > 0, p, 1.0)), axis=-1)


def ood_flags(scores: np.ndarray, source_snr: np.ndarray, threshold: float) -> np.ndarray:
    """The ``ood_flag`` column: the feature score above the bundle's ``threshold``, or no source
    at the centre (``catalogs.sources``)."""
    return (np.asarray(scores) > threshold) | (np.asarray(source_snr) < MIN_SOURCE_SNR)


def errors_table(*, object_ids: Sequence[str], image_paths: Sequence[str | None], stages: Sequence[str],
                 error_types: Sequence[str], messages: Sequence[str], bundle_id: str, run_id: str) -> pa.Table:
    """Assemble ``errors`` rows (one per object that could not be annotated)."""
    n = len(object_ids)
    columns = [list(object_ids), list(image_paths), list(stages), list(error_types), list(messages)]
    if any(len(c) != n for c in columns):
        raise ValueError(f"errors columns differ in length: {[len(c) for c in columns]}")
    for name, values in zip(("stage", "error_type", "message"), columns[2:]):
        if not all(isinstance(v, str) and v for v in values):
            raise ValueError(f"every error needs a non-empty {name}")
    arrays = [pa.array(c, pa.string()) for c in columns]
    arrays += [pa.array([bundle_id] * n, pa.string()), pa.array([run_id] * n, pa.string())]
    return pa.Table.from_arrays(arrays, schema=ERRORS_SCHEMA)


def with_output_metadata(table: pa.Table, name: str, bundle_id: str, run_id: str, shard: Mapping) -> pa.Table:
    """``table`` with the ``morphcat.output`` schema metadata (deterministic: no clock, no pid)."""
    meta = {"output_version": OUTPUT_VERSION, "table": name, "bundle_id": bundle_id, "run_id": run_id,
            "shard": dict(shard)}
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def output_metadata(schema: pa.Schema) -> dict:
    """The ``morphcat.output`` metadata of a file's schema (``pq.read_schema(path)``)."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError("not a morphcat output file (no 'morphcat.output' metadata)")
    return json.loads(raw)


def _vector(values, n: int) -> np.ndarray:
    a = np.asarray(values)
    if a.shape != (n,):
        raise ValueError(f"expected {n} values, got shape {a.shape}")
    return a


def _matrix(values, n: int, k: int) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.shape != (n, k):
        raise ValueError(f"expected shape {(n, k)}, got {a.shape}")
    return a


def _floats(values, n: int, kind: pa.DataType = pa.float32()) -> pa.Array:
    if values is None:
        return pa.nulls(n, kind)
    a = _vector(values, n).astype(kind.to_pandas_dtype())
    return pa.array(a, kind, mask=~np.isfinite(a))


def _embeddings(values, n: int) -> pa.Array:
    kind = pa.list_(pa.float32(), EMBEDDING_DIM)
    if values is None:
        return pa.nulls(n, kind)
    a = np.asarray(values, dtype=np.float32)
    if a.shape != (n, EMBEDDING_DIM):
        raise ValueError(f"embedding has shape {a.shape}, expected {(n, EMBEDDING_DIM)}")
    flat = pa.array(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0).ravel(), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, EMBEDDING_DIM, mask=pa.array(~np.isfinite(a).all(axis=1)))


def _strings(values, n: int) -> pa.Array:
    if values is None:
        return pa.nulls(n, pa.string())
    values = list(values)
    if len(values) != n:
        raise ValueError(f"expected {n} strings, got {len(values)}")
    return pa.array(values, pa.string())
