"""Prefect flows that bring catalogs in and send them out: ``synthesize-survey``,
``ingest-catalog`` and ``catalog-to-hats`` (an annotation run as a HATS catalog).

Thin orchestration: the numerics and parsing live in ``catalogs``; these flows order the steps,
report what happened (rows, skipped rows, missing images) and publish a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.progress import Progress

from catalogs import synthetic
from catalogs.contract import Catalog, write_catalog
from catalogs.hats import MARGIN_ARCSEC, HatsReport, dask_client, write_hats
from catalogs.ingest import IngestReport, missing_images, write_skipped
from catalogs.inputs import CUTOUT_SIZE
from catalogs.readers import ReadResult, read_source
from catalogs.targets import catalog_with_targets


@task(cache_policy=NO_CACHE)  # inputs are tables: nothing to gain from hashing them
def read_catalog_source(src: Path, fmt: str, options: dict) -> ReadResult:
    return read_source(src, fmt, **options)


@task(cache_policy=NO_CACHE)
def derive_targets(catalog: Catalog) -> Catalog:
    return catalog_with_targets(catalog)


@task(cache_policy=NO_CACHE)
def find_missing_images(catalog: Catalog) -> list[str]:
    """Those rows stay in the catalog; ingest only warns, so nothing is dropped."""
    return missing_images(catalog)


@task(cache_policy=NO_CACHE)
def save_catalog(catalog: Catalog, out: Path) -> Path:
    return write_catalog(catalog, out)


@task(cache_policy=NO_CACHE)
def save_skipped(skipped: pa.Table, out: Path) -> Path | None:
    return write_skipped(skipped, out)


@flow(name="ingest-catalog")
def ingest_catalog(src: Path, fmt: str, out: Path, options: dict | None = None) -> IngestReport:
    """Read any supported source, derive labels and captions from votes, write the catalog."""
    out = Path(out)
    result = read_catalog_source(Path(src), fmt, dict(options or {}))
    catalog = derive_targets(result.catalog)
    missing = find_missing_images(catalog)
    path = save_catalog(catalog, out)
    skipped_path = save_skipped(result.skipped, out)
    report = IngestReport.of(path, catalog.table, catalog.source_format, result.skipped, skipped_path, missing,
                             result.notes)
    create_markdown_artifact(report.markdown(), key="ingest-catalog", description="morphcat ingest")
    return report


@task(cache_policy=NO_CACHE)
def render_survey(out: Path, n: int, seed: int, size: int, mix: str, workers: int | None) -> Path:
    with Progress(transient=True) as bar:
        job = bar.add_task(f"rendering {n} galaxies", total=n)
        return synthetic.synthesize_survey(out, n=n, seed=seed, size=size, mix=mix, workers=workers,
                                           progress=lambda done: bar.update(job, completed=done))


@flow(name="synthesize-survey")
def synthesize_survey(out: Path, n: int, seed: int, size: int = CUTOUT_SIZE, mix: str = "gz2",
                      workers: int | None = None) -> IngestReport:
    """Render a synthetic GZ2-style survey into ``out`` and write ``out/catalog.parquet``
    (``catalogs.synthetic.synthesize_survey``)."""
    path = render_survey(Path(out), n, seed, size, mix, workers)
    report = IngestReport.of(path, pq.read_table(path), "synthetic")
    create_markdown_artifact(report.markdown(), key="synthesize-survey", description="morphcat synth")
    return report


@task(cache_policy=NO_CACHE)
def read_run_predictions(annotations: Path, run_id: str | None) -> tuple[str, pa.Table]:
    """One run's predictions (``run_id``, or the folder's latest run with predictions)."""
    from catalogs.annotations import open_annotations

    folder = open_annotations(annotations)
    run = run_id or folder.runs[-1]
    return run, folder.scan(run).collect().to_arrow()


@flow(name="catalog-to-hats")
def annotations_to_hats(annotations: Path, out: Path, run_id: str | None = None, name: str = "morphcat",
                        margin_arcsec: float = MARGIN_ARCSEC, workers: int = 1,
                        dask_address: str | None = None) -> HatsReport:
    """An annotation run's predictions as the HATS catalog ``out/name`` (hats-import on Dask: a
    local cluster of ``workers`` processes, or the one at ``dask_address``) with a margin cache of
    ``margin_arcsec``; rows without ra/dec are counted and listed beside it."""
    run, table = read_run_predictions(Path(annotations), run_id)
    with dask_client(workers, dask_address) as client:
        report = HatsReport.of(run, write_hats(table, Path(out), name, client, margin_arcsec))
    create_markdown_artifact(report.markdown(), key="hats", description=f"HATS catalog of run {run}")
    return report
