"""HATS catalogs (HEALPix-partitioned Parquet, read with LSDB): an annotation run written as one,
and one read as the rows of a morphcat catalog.

:func:`write_hats` turns one run's ``predictions`` (they carry the catalog's ``ra``/``dec``) into a
HATS catalog with hats-import on a Dask client, plus a margin cache of ``margin_arcsec`` so that
a crossmatch within that radius is complete near partition edges. Rows without a position
cannot be placed on the sky: they are counted and written to a side table, never dropped
silently. :func:`read_hats_rows` reads a HATS catalog lazily, one partition at a time, for
``morphcat ingest --format hats``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.errors import CatalogError

MARGIN_ARCSEC = 5.0  # crossmatches up to 5″ (seeing-limited surveys match at ≤ 1–2″) are complete
MAX_PARTITION_ROWS = 1_000_000  # hats-import's default: a partition a worker reads in one go
MIN_PARTITION_ROWS = 1_000
PARTITIONS_WANTED = 10  # below a million rows, enough partitions to keep a small cluster busy


def pixel_threshold(rows: int) -> int:
    """Rows per HEALPix partition for a catalog of ``rows``: a tenth of the catalog (so even a
    small run spreads over several partitions), between 1,000 and hats-import's 1,000,000."""
    return int(min(MAX_PARTITION_ROWS, max(MIN_PARTITION_ROWS, math.ceil(rows / PARTITIONS_WANTED))))


@dataclass(frozen=True)
class HatsResult:
    catalog: Path  # the HATS catalog
    margin: Path  # its margin cache
    rows: int  # rows written (with a position)
    without_position: int  # rows left out, listed in ``unplaced``
    unplaced: Path | None
    partitions: int
    pixel_threshold: int
    margin_arcsec: float


def split_by_position(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``(rows with ra and dec, rows without)``."""
    placed = pc.and_(pc.is_valid(table.column("ra")), pc.is_valid(table.column("dec")))
    placed = pc.fill_null(placed, False)
    return table.filter(placed), table.filter(pc.invert(placed))


def write_hats(predictions: pa.Table, out: Path, name: str, client, margin_arcsec: float = MARGIN_ARCSEC,
               tmp: Path | None = None) -> HatsResult:
    """Write the rows of ``predictions`` that have a position as the HATS catalog ``out/name``
    with its margin cache ``out/name_margin``; the others go to ``out/name_without_position.parquet``."""
    from hats_import.catalog.arguments import ImportArguments
    from hats_import.margin_cache.margin_cache_arguments import MarginCacheArguments
    from hats_import.pipeline import pipeline_with_client

    out = Path(out)
    placed, unplaced = split_by_position(predictions)
    if placed.num_rows == 0:  # refused before anything is written
        raise CatalogError(f"none of the {predictions.num_rows} annotated rows has ra and dec (the annotated catalog "
                           "has no positions), so there is nothing to place on the sky: annotate a catalog with "
                           "'ra' and 'dec' columns to make a HATS catalog of it")
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tmp) if tmp is not None else out / f".{name}.tmp"
    work.mkdir(parents=True, exist_ok=True)
    source = work / "input.parquet"
    pq.write_table(placed, source)
    threshold = pixel_threshold(placed.num_rows)
    pipeline_with_client(ImportArguments(
        output_path=str(out), output_artifact_name=name, input_file_list=[str(source)], file_reader="parquet",
        ra_column="ra", dec_column="dec", pixel_threshold=threshold, sort_columns="object_id",
        progress_bar=False, tmp_dir=str(work), resume=False), client)
    margin_name = f"{name}_margin"
    pipeline_with_client(MarginCacheArguments(
        input_catalog_path=str(out / name), output_path=str(out), output_artifact_name=margin_name,
        margin_threshold=margin_arcsec, progress_bar=False, tmp_dir=str(work), resume=False), client)
    unplaced_path = None
    if unplaced.num_rows:
        unplaced_path = out / f"{name}_without_position.parquet"
        pq.write_table(unplaced, unplaced_path)
    source.unlink()
    import hats

    partitions = len(hats.read_hats(out / name).get_healpix_pixels())
    return HatsResult(out / name, out / margin_name, placed.num_rows, unplaced.num_rows, unplaced_path, partitions,
                      threshold, margin_arcsec)


@dataclass(frozen=True)
class HatsReport:
    """What ``catalog-to-hats`` wrote from annotation run ``run_id``: :class:`HatsResult`, as text."""

    catalog: str
    margin: str
    run_id: str
    rows: int
    without_position: int
    unplaced: str | None
    partitions: int
    pixel_threshold: int
    margin_arcsec: float

    @classmethod
    def of(cls, run_id: str, r: HatsResult) -> "HatsReport":
        return cls(str(r.catalog), str(r.margin), run_id, r.rows, r.without_position,
                   None if r.unplaced is None else str(r.unplaced), r.partitions, r.pixel_threshold, r.margin_arcsec)

    def markdown(self) -> str:
        return "\n".join(f"- {k}: {v}" for k, v in asdict(self).items())

    def summary(self) -> str:
        """What was written, for a terminal (what ``morphcat hats`` prints)."""
        return (f"run {self.run_id}: {self.rows} rows with a position → HATS catalog {self.catalog} "
                f"({self.partitions} partitions, ≤ {self.pixel_threshold} rows each) + margin cache {self.margin} "
                f"({self.margin_arcsec:g}″)" + (f"\n{self.without_position} rows without ra/dec cannot be placed on "
                                                  f"the sky: listed in {self.unplaced}" if self.without_position else ""))


@contextmanager
def dask_client(workers: int, address: str | None = None) -> Iterator:
    """A Dask client of the cluster at ``address``, or of a local cluster of ``workers``
    single-threaded processes; closed on the way out, with the local cluster."""
    from distributed import Client, LocalCluster

    cluster = None if address else LocalCluster(n_workers=workers, threads_per_worker=1, dashboard_address=None)
    client = Client(address) if address else Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def read_hats_rows(path: Path, columns: list[str]) -> pa.Table:
    """The ``columns`` (those the catalog has) of every row of the HATS catalog at ``path``,
    read with LSDB one partition at a time (a catalog larger than memory streams through)."""
    import lsdb

    catalog = lsdb.open_catalog(Path(path))
    present = [c for c in columns if c in catalog.columns]
    parts = []
    for pixel in catalog.get_healpix_pixels():
        frame = catalog.get_partition(pixel.order, pixel.pixel).compute()[present].reset_index(drop=True)
        parts.append(pa.Table.from_pandas(frame, preserve_index=False))
    return pa.concat_tables(parts) if parts else pa.table({c: [] for c in present})
