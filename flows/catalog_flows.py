"""Prefect flows that bring catalogs in and send them out: ``synthesize-survey``,
``ingest-catalog`` and ``catalog-to-hats`` (an annotation run as a HATS catalog).

Thin orchestration: the numerics and parsing live in ``catalogs``; these flows order the steps,
report what happened (rows, skipped rows, missing images) and publish a Prefect artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.progress import Progress

from catalogs import synthetic
from catalogs.contract import Catalog, resolve_image_path, write_catalog
from catalogs.errors import PathEscapeError
from catalogs.hats import MARGIN_ARCSEC, write_hats
from catalogs.inputs import CUTOUT_SIZE
from catalogs.readers import ReadResult, read_source
from catalogs.targets import catalog_with_targets

# How many missing image paths a report quotes.
_QUOTED = 5


@dataclass
class IngestReport:
    catalog_path: str
    rows: int
    source_format: str
    skipped_rows: int = 0
    skipped_path: str | None = None
    missing_images: int = 0
    missing_examples: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        """The report on the terminal (what ``morphcat ingest`` and ``synth`` print)."""
        from rich.console import Console

        console = Console()
        console.print(f"[bold]{self.catalog_path}[/]: {self.rows} rows ({self.source_format})")
        if self.label_counts:
            console.print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.label_counts.items())))
        if self.skipped_rows:
            console.print(f"[yellow]{self.skipped_rows} source rows could not become catalog rows; "
                          f"each is listed with its reason in {self.skipped_path}[/]")
        if self.missing_images:
            console.print(f"[yellow]{self.missing_images} rows point at missing image files "
                          f"(kept; annotation reports each), e.g. {', '.join(self.missing_examples)}[/]")
        for note in self.notes:
            console.print(f"note: {note}")

    def markdown(self) -> str:
        lines = [
            f"# Catalog `{self.catalog_path}`",
            "",
            "| rows | format | skipped source rows | rows whose image is missing |",
            "|---:|---|---:|---:|",
            f"| {self.rows} | {self.source_format} | {self.skipped_rows} | {self.missing_images} |",
        ]
        if self.label_counts:
            lines += ["", "| label | rows |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.label_counts.items())]
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)


@task(cache_policy=NO_CACHE)  # inputs are tables: nothing to gain from hashing them
def read_catalog_source(src: Path, fmt: str, options: dict) -> ReadResult:
    return read_source(src, fmt, **options)


@task(cache_policy=NO_CACHE)
def derive_targets(catalog: Catalog) -> Catalog:
    return catalog_with_targets(catalog)


@task(cache_policy=NO_CACHE)
def find_missing_images(catalog: Catalog) -> list[str]:
    """Image paths with no file behind them. Those rows stay in the catalog (annotation reports
    each one in its errors table); ingest only warns so nothing is dropped."""
    missing = []
    for rel in catalog.table.column("image_path").to_pylist():
        try:
            if not resolve_image_path(catalog.root, rel).is_file():
                missing.append(rel)
        except PathEscapeError:  # a symlink pointing outside the root: as good as missing
            missing.append(rel)
    return missing


@task(cache_policy=NO_CACHE)
def save_catalog(catalog: Catalog, out: Path) -> Path:
    return write_catalog(catalog, out)


@task(cache_policy=NO_CACHE)
def save_skipped(skipped: pa.Table, out: Path) -> Path | None:
    if skipped.num_rows == 0:
        return None
    path = out.with_name(out.stem + ".skipped.parquet")
    pq.write_table(skipped, path)
    return path


def _label_counts(table: pa.Table) -> dict[str, int]:
    if "label" not in table.column_names:
        return {}
    counts = table.column("label").value_counts().to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


@flow(name="ingest-catalog")
def ingest_catalog(src: Path, fmt: str, out: Path, options: dict | None = None) -> IngestReport:
    """Read any supported source, derive labels and captions from votes, write the catalog."""
    out = Path(out)
    result = read_catalog_source(Path(src), fmt, dict(options or {}))
    catalog = derive_targets(result.catalog)
    missing = find_missing_images(catalog)
    path = save_catalog(catalog, out)
    skipped_path = save_skipped(result.skipped, out)
    report = IngestReport(
        catalog_path=str(path),
        rows=len(catalog),
        source_format=catalog.source_format,
        skipped_rows=result.skipped.num_rows,
        skipped_path=str(skipped_path) if skipped_path else None,
        missing_images=len(missing),
        missing_examples=missing[:_QUOTED],
        label_counts=_label_counts(catalog.table),
        notes=list(result.notes),
    )
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
    table = pq.read_table(path)
    report = IngestReport(
        catalog_path=str(path), rows=table.num_rows, source_format="synthetic",
        label_counts=_label_counts(table),
    )
    create_markdown_artifact(report.markdown(), key="synthesize-survey", description="morphcat synth")
    return report



@dataclass(frozen=True)
class HatsReport:
    catalog: str
    margin: str
    run_id: str
    rows: int
    without_position: int
    unplaced: str | None
    partitions: int
    pixel_threshold: int
    margin_arcsec: float


@task(cache_policy=NO_CACHE)
def run_predictions(annotations: Path, run_id: str | None) -> tuple[str, pa.Table]:
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
    from distributed import Client, LocalCluster

    run, table = run_predictions(Path(annotations), run_id)
    if dask_address:
        client, cluster = Client(dask_address), None
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
        client = Client(cluster)
    try:
        result = write_hats(table, Path(out), name, client, margin_arcsec)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    report = HatsReport(str(result.catalog), str(result.margin), run, result.rows, result.without_position,
                        None if result.unplaced is None else str(result.unplaced), result.partitions,
                        result.pixel_threshold, result.margin_arcsec)
    create_markdown_artifact("\n".join(f"- {k}: {v}" for k, v in asdict(report).items()), key="hats",
                             description=f"HATS catalog of run {run}")
    return report
