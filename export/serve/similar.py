""""More like this": nearest neighbours by cosine similarity over an annotation run's embeddings
(the ``embedding`` column, ``models.embedding``), through faiss.

Why faiss (``faiss-cpu``) rather than usearch: one library gives both the exact search (a flat
inner-product index, a BLAS matrix product: what small runs should use, since it is as fast there
and always right) and an HNSW graph for large runs, writes and reads its indexes itself, and is the
long-maintained reference implementation that vector-search benchmarks compare against. usearch
is smaller and its HNSW is quick, but its exact mode is a brute-force scan outside the index, so
the two halves would not share one file format. The embeddings are unit vectors, so the inner
product *is* the cosine similarity.

The index of a run is built once and saved beside the output, ``OUT/index/run=<run_id>/``
(``vectors.faiss``, ``ids.parquet``, ``index.json``); it is rebuilt only when the run's prediction
files change (a resumed run that wrote more shards). Below ``EXACT_MAX_ROWS`` embeddings the index
is exact; above, HNSW (``benchmarks/similar.py`` measures build time, query latency and recall@10
of both at 10⁵ and 10⁶ vectors).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.annotations import Annotations, open_annotations
from catalogs.errors import MorphcatError
from catalogs.outputs import EMBEDDING, EMBEDDING_DIM, PREDICTIONS
from catalogs.fingerprints import files_fingerprint
from catalogs.shards import run_folder

INDEX_FOLDER = "index"
INDEX_VERSION = 1
EXACT = "exact"
HNSW = "hnsw"
KINDS = (EXACT, HNSW)
# Up to here an exact query over every embedding takes about a millisecond on 2 cores (a
# 32-float dot product per row), as quick as HNSW and never wrong (benchmarks/similar.py).
EXACT_MAX_ROWS = 200_000
HNSW_M = 32  # graph degree
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 512  # recall@10 0.896 at 128, 0.969 at 256, 0.995 at 512 (10⁶ rows); ~1 ms a query
DEFAULT_K = 20
# Shown with each neighbour, read from the run's predictions (what a person checks first).
SHOWN_COLUMNS = ("label_pred", "confidence", "ood_flag", "ra", "dec")


class SimilarityError(MorphcatError):
    """A "more like this" query this run cannot answer (no embeddings, unknown object, another
    bundle's image)."""


@dataclass
class VectorIndex:
    """A faiss index over unit vectors and the object id of each of its rows."""

    index: object  # faiss.Index
    object_ids: np.ndarray  # (n,) object
    kind: str

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities (m, k), best first, and the index rows they belong to (−1 past
        the end when the index holds fewer than ``k`` rows)."""
        x = _unit_rows(queries)
        return self.index.search(x, min(int(k), len(self)))

    def vector(self, row: int) -> np.ndarray:
        return self.index.reconstruct(int(row))

    def vectors(self) -> np.ndarray:
        """Every indexed vector (N, dim), in index order."""
        return self.index.reconstruct_n(0, len(self))


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
    if x.ndim != 2 or x.shape[1] != EMBEDDING_DIM:
        raise ValueError(f"expected embeddings of shape (N, {EMBEDDING_DIM}), got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("embeddings must be finite")
    return x


def choose_kind(n_rows: int) -> str:
    return EXACT if n_rows <= EXACT_MAX_ROWS else HNSW


def build_index(object_ids, vectors: np.ndarray, kind: str | None = None) -> VectorIndex:
    """An index over ``vectors`` (N, ``EMBEDDING_DIM``) unit rows; ``kind`` ``exact`` or ``hnsw``
    (default: by size, :func:`choose_kind`)."""
    import faiss

    x = _unit_rows(vectors)
    ids = np.asarray(object_ids, dtype=object)
    if ids.shape != (len(x),):
        raise ValueError(f"{len(ids)} object ids for {len(x)} embeddings")
    kind = kind or choose_kind(len(x))
    if kind == EXACT:
        index = faiss.IndexFlatIP(EMBEDDING_DIM)
    elif kind == HNSW:
        index = faiss.IndexHNSWFlat(EMBEDDING_DIM, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"index kind must be one of {KINDS}, got {kind!r}")
    index.add(x)
    return VectorIndex(index, ids, kind)


def index_folder(out: Path, run_id: str) -> Path:
    return Path(out) / INDEX_FOLDER / f"run={run_id}"


def _run_embeddings(annotations: Annotations, run_id: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Object ids and embeddings of the run's rows that have one, and how many rows have none."""
    frame = annotations.scan(run_id).select("object_id", EMBEDDING).collect()
    has = frame[EMBEDDING].is_not_null()
    with_embedding = frame.filter(has)
    vectors = with_embedding[EMBEDDING].to_numpy().astype(np.float32).reshape(-1, EMBEDDING_DIM)
    return with_embedding["object_id"].to_numpy().astype(object), vectors, int((~has).sum())


@dataclass
class RunIndex:
    """A run's index and what ``index.json`` says of it."""

    run_id: str
    bundle_id: str
    folder: Path
    annotations: Annotations  # the folder the run is in, opened once
    index: VectorIndex
    info: dict
    built: bool  # built by this call (False: read from disk)

    def describe(self) -> str:
        return (f"run {self.run_id}: {self.info['rows']} embeddings, {self.info['kind']} index "
                f"{'built' if self.built else 'read'} ({self.folder})")


def open_run_index(out: Path, run_id: str | None = None, kind: str | None = None,
                   rebuild: bool = False) -> RunIndex:
    """The index of run ``run_id`` (default: the folder's latest) of the annotations folder
    ``out``: read from ``OUT/index/run=<id>/`` when it matches the run's predictions, else built
    and saved there. ``kind`` forces ``exact`` or ``hnsw`` (and rebuilds a saved index of the
    other kind)."""
    import faiss

    annotations = open_annotations(Path(out))
    run = run_id or annotations.runs[-1]
    if run not in annotations.runs:
        raise SimilarityError(f"{out} has no run {run!r} with predictions (it has: {', '.join(annotations.runs)})")
    folder = index_folder(out, run)
    # The run's prediction files: a shard written later changes it.
    fingerprint = files_fingerprint(run_folder(out, PREDICTIONS, run).glob("*.parquet"))
    info_path = folder / "index.json"
    if not rebuild and info_path.is_file():
        info = json.loads(info_path.read_text())
        if (info.get("version") == INDEX_VERSION and info.get("predictions") == fingerprint
                and (kind is None or info.get("kind") == kind)):
            ids = pq.read_table(folder / "ids.parquet").column("object_id").to_numpy(zero_copy_only=False)
            index = VectorIndex(faiss.read_index(str(folder / "vectors.faiss")), ids.astype(object), info["kind"])
            if index.kind == HNSW:  # a search-time setting: this version's, whatever the file was saved with
                index.index.hnsw.efSearch = HNSW_EF_SEARCH
            return RunIndex(run, annotations.bundle_id(run), folder, annotations, index, info, built=False)
    ids, vectors, without = _run_embeddings(annotations, run)
    if len(ids) == 0:
        raise SimilarityError(f"run {run} in {out} has no embeddings ({without} rows without one): annotate with a "
                              "bundle exported by this morphcat (bundle format 4 or later)")
    t = time.perf_counter()
    index = build_index(ids, vectors, kind)
    seconds = time.perf_counter() - t
    info = {"version": INDEX_VERSION, "run_id": run, "bundle_id": annotations.bundle_id(run), "kind": index.kind,
            "rows": len(index), "rows_without_embedding": without, "dim": EMBEDDING_DIM, "metric": "cosine",
            "predictions": fingerprint, "build_seconds": round(seconds, 3), "library": f"faiss {faiss.__version__}",
            **({"hnsw": {"m": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": HNSW_EF_SEARCH}}
               if index.kind == HNSW else {})}
    _save(folder, index, info)
    return RunIndex(run, info["bundle_id"], folder, annotations, index, info, built=True)


def _save(folder: Path, index: VectorIndex, info: dict) -> None:
    """Written beside, then moved into place: a reader never sees half an index, and index.json
    (which says the rest is valid) goes last."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    faiss.write_index(index.index, str(folder / f".vectors.faiss.{pid}"))
    pq.write_table(pa.table({"object_id": pa.array(list(index.object_ids), pa.string())}),
                   folder / f".ids.parquet.{pid}")
    (folder / f".index.json.{pid}").write_text(json.dumps(info, indent=2, sort_keys=True))
    for name in ("vectors.faiss", "ids.parquet", "index.json"):
        os.replace(folder / f".{name}.{pid}", folder / name)


def neighbours(run: RunIndex, query: np.ndarray, k: int = DEFAULT_K, exclude: str | None = None) -> pl.DataFrame:
    """The ``k`` galaxies of the run most like the embedding ``query`` (``EMBEDDING_DIM``,):
    ``rank``, ``object_id``, ``similarity`` (cosine), best first; ``exclude``: an object id left
    out (the query galaxy itself)."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    want = k + (exclude is not None)
    sims, rows = run.index.search(np.asarray(query, np.float32)[None, :], want)
    keep = [(run.index.object_ids[r], float(s)) for r, s in zip(rows[0], sims[0])
            if r >= 0 and run.index.object_ids[r] != exclude][:k]
    return pl.DataFrame({"rank": list(range(1, len(keep) + 1)), "object_id": [i for i, _ in keep],
                         "similarity": [s for _, s in keep]},
                        schema={"rank": pl.Int32, "object_id": pl.String, "similarity": pl.Float32})


def embedding_of(run: RunIndex, object_id: str) -> np.ndarray:
    hits = np.flatnonzero(run.index.object_ids == object_id)
    if len(hits) == 0:
        raise SimilarityError(f"object {object_id!r} has no embedding in run {run.run_id} (not in the catalog, or "
                              "its image could not be annotated: see the run's errors table)")
    return run.index.vector(int(hits[0]))


def embed_image(bundle, path: Path) -> np.ndarray:
    """The embedding of one image file by an opened bundle (``LoadedBundle``), prepared exactly
    as catalog images are (``catalogs.inputs.model_input``)."""
    from catalogs.decoding import to_model_floats
    from catalogs.inputs import model_input

    prepared = model_input(Path(path), bundle.image)
    return bundle.infer(to_model_floats(prepared.pixels[None], bundle.image))[EMBEDDING][0]


def similar(out: Path, *, object_id: str | None = None, image: Path | None = None, bundle: Path | None = None,
            k: int = DEFAULT_K, run_id: str | None = None) -> tuple[RunIndex, pl.DataFrame]:
    """The ``k`` galaxies of an annotation run most like ``object_id`` (one of the run's) or
    like ``image`` (a file, embedded by ``bundle``, which must be the run's bundle), with the
    run's ``SHOWN_COLUMNS`` for each."""
    if (object_id is None) == (image is None):
        raise SimilarityError("give exactly one of an object id or an image")
    run = open_run_index(out, run_id)
    if object_id is not None:
        table = neighbours(run, embedding_of(run, object_id), k, exclude=object_id)
    else:
        if bundle is None:
            raise SimilarityError("`image` needs `bundle`: the bundle that annotated the run embeds the image")
        from export.serve.runtime import open_bundle

        loaded = open_bundle(bundle, device="cpu")
        if loaded.bundle_id != run.bundle_id:
            raise SimilarityError(f"bundle {bundle} ({loaded.bundle_id}) did not annotate run {run.run_id} (bundle "
                                  f"{run.bundle_id}): embeddings of different bundles are not comparable")
        from catalogs.imaging import ImageError

        try:
            query = embed_image(loaded, image)
        except ImageError as exc:
            raise SimilarityError(f"cannot embed {image}: {exc.message} ({exc.reason})") from None
        table = neighbours(run, query, k)
    shown = (run.annotations.scan(run.run_id).select("object_id", *SHOWN_COLUMNS)
             .filter(pl.col("object_id").is_in(table["object_id"].to_list())).collect())
    return run, table.join(shown, on="object_id", how="left").sort("rank")
