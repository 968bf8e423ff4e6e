"""Writing a synthetic survey: every object's image, mask and votes, and the catalog table.

Each object is a job: sample its truth, render it, simulate its votes, write
``images/<object_id>.jpg`` and ``masks/<object_id>.png``, and return its catalog row. The
catalog's ``label`` comes from the simulated fractions through ``catalogs.labels.derive_labels``,
exactly as for real GZ2 data.

Determinism: each object's random streams come from ``numpy.random.SeedSequence([seed,
index])``; nothing depends on the worker count or the order in which workers finish.
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from catalogs.inputs import CUTOUT_SIZE
from catalogs.labels import derive_labels
from catalogs.synthetic.render import render_object
from catalogs.synthetic.truth import MIXES, _assign_classes, sample_truth
from catalogs.synthetic.votes import simulate_votes
from catalogs.tree import GZ2_TREE

_JPEG_QUALITY = 90
_RA_RANGE = (150.0, 160.0)  # the survey patch, degrees
_DEC_RANGE = (0.0, 10.0)


def _object_rngs(seed: int, index: int) -> tuple[np.random.Generator, ...]:
    """Independent streams for an object's truth, its image and its votes."""
    children = np.random.SeedSequence([seed, index]).spawn(3)
    return tuple(np.random.default_rng(c) for c in children)


def _object_id(seed: int, index: int, width: int) -> str:
    return f"synth-{seed}-{index:0{width}d}"


def _make_object(job: tuple) -> dict:
    """Sample, render and write one object; return its catalog row (without the label)."""
    out_dir, seed, index, cls, size, width = job
    rng_truth, rng_image, rng_votes = _object_rngs(seed, index)
    truth = sample_truth(cls, rng_truth)
    ra = rng_truth.uniform(*_RA_RANGE)
    sin_dec = rng_truth.uniform(math.sin(math.radians(_DEC_RANGE[0])), math.sin(math.radians(_DEC_RANGE[1])))
    rgb, mask = render_object(truth, rng_image, size)
    fractions = simulate_votes(truth, rng_votes)

    oid = _object_id(seed, index, width)
    image_rel, mask_rel = f"images/{oid}.jpg", f"masks/{oid}.png"
    _write_bytes(Path(out_dir) / image_rel, _encode(rgb, "JPEG", quality=_JPEG_QUALITY))
    _write_bytes(Path(out_dir) / mask_rel, _encode(mask, "PNG"))
    return {"object_id": oid, "image_path": image_rel, "ra": float(ra),
            "dec": math.degrees(math.asin(sin_dec)), "fractions": fractions,
            "truth_class": truth["class"], "mask_path": mask_rel}


def _encode(array: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # readers never see half a file


def _make_chunk(jobs: list[tuple]) -> list[dict]:
    return [_make_object(j) for j in jobs]


def _validate(n, seed, size, mix, workers) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32 pixels, got {size!r}")
    if mix not in MIXES:
        raise ValueError(f"unknown mix {mix!r}; valid mixes: {', '.join(sorted(MIXES))}")
    if workers is not None and (not isinstance(workers, (int, np.integer)) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")


def _schema() -> pa.Schema:
    fields = [pa.field("object_id", pa.string()), pa.field("image_path", pa.string()),
              pa.field("ra", pa.float64()), pa.field("dec", pa.float64())]
    fields += [pa.field(c, pa.float64()) for c in GZ2_TREE.debiased_columns]
    fields += [pa.field("label", pa.string()), pa.field("truth_class", pa.string()),
               pa.field("mask_path", pa.string())]
    return pa.schema(fields)


def render_survey(out_dir: Path, n: int, seed: int, size: int = CUTOUT_SIZE, mix: str = "gz2",
                  workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> pa.Table:
    """Render a synthetic survey of ``n`` objects into ``out_dir`` and return its catalog.

    Writes ``out_dir/images/<object_id>.jpg`` (RGB, ``size``×``size``) and
    ``out_dir/masks/<object_id>.png`` (0/255 footprint of the target galaxy). The table has one
    row per object in index order: ``object_id``, ``image_path`` (relative to ``out_dir``),
    ``ra``, ``dec``, the 37 ``GZ2_TREE.debiased_columns``, ``label`` (``derive_labels`` on the
    simulated fractions), ``truth_class`` and ``mask_path``. The output depends only on
    ``(n, seed, size, mix)``, never on ``workers`` (default: all CPU cores). ``progress`` is
    called with the number of objects finished so far.

    With ``workers`` > 1 the objects are rendered in a ``forkserver`` process pool (safe when the
    caller already runs threads, as Prefect and TensorFlow do); like any ``multiprocessing``
    code, a script calling this must then guard its entry point with
    ``if __name__ == "__main__":``.
    """
    _validate(n, seed, size, mix, workers)
    n, seed, size = int(n), int(seed), int(size)
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)

    classes = _assign_classes(n, seed, mix)
    width = max(6, len(str(n - 1)))
    jobs = [(str(out_dir), seed, i, classes[i], size, width) for i in range(n)]
    workers = min(int(workers or os.cpu_count() or 1), n)

    rows: list[dict | None] = [None] * n
    done = 0
    if workers == 1:
        for i, job in enumerate(jobs):
            rows[i] = _make_object(job)
            done += 1
            if progress:
                progress(done)
    else:
        # Small chunks keep both workers busy to the end and the progress bar moving.
        chunk = max(1, min(16, n // (workers * 4)))
        chunks = [jobs[i : i + chunk] for i in range(0, n, chunk)]
        # forkserver: safe even when the caller holds threads (Prefect, TensorFlow).
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["catalogs.synthetic", "galsim"])
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            for start, result in zip(range(0, n, chunk), pool.map(_make_chunk, chunks)):
                rows[start : start + len(result)] = result
                done += len(result)
                if progress:
                    progress(done)

    fractions = np.stack([r["fractions"] for r in rows])
    columns = {c: fractions[:, j] for j, c in enumerate(GZ2_TREE.debiased_columns)}
    labels = derive_labels(columns)
    data = {"object_id": [r["object_id"] for r in rows], "image_path": [r["image_path"] for r in rows],
            "ra": [r["ra"] for r in rows], "dec": [r["dec"] for r in rows], **columns,
            "label": [str(x) for x in labels], "truth_class": [r["truth_class"] for r in rows],
            "mask_path": [r["mask_path"] for r in rows]}
    return pa.table(data, schema=_schema())


def synthesize_survey(out: Path, n: int, seed: int, size: int = CUTOUT_SIZE, mix: str = "gz2",
                      workers: int | None = None, progress: Callable[[int], None] | None = None) -> Path:
    """Render the survey (:func:`render_survey`) into ``out`` and write its catalog, with the
    targets ingest derives from votes, as ``out/catalog.parquet``; returns that path."""
    from catalogs.contract import Catalog, write_catalog
    from catalogs.targets import catalog_with_targets

    out = Path(out)
    table = render_survey(out, n=n, seed=seed, size=size, mix=mix, workers=workers, progress=progress)
    return write_catalog(catalog_with_targets(Catalog(table, out, "synthetic")), out / "catalog.parquet")
