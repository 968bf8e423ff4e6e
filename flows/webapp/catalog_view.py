"""An annotations folder (``morphcat annotate --out``) as the web demo's catalog view: its runs,
the predictions of one run as a polars ``LazyFrame``, the filters, the summaries and the
downloads, and the catalog whose images the gallery shows.

The catalog is the one recorded in the folder's manifest (``catalog.source``), or one given
explicitly (images moved, another machine); either way its rows must have the fingerprint the
manifest recorded, so a gallery never shows another catalog's images beside these predictions.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from catalogs.contract import Catalog, read_catalog
from catalogs.errors import CatalogError
from catalogs.outputs import ERRORS, PREDICTIONS
from catalogs.shards import MANIFEST_NAME, OutputFolderError, rows_fingerprint, run_folder

OOD_CHOICES = ("any", "flagged", "not flagged")
DOWNLOAD_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class Annotations:
    """An annotations folder: where it is, its manifest, and its runs that have predictions."""

    out: Path
    manifest: dict
    runs: tuple[str, ...]

    def scan(self, run_id: str, table: str = PREDICTIONS) -> pl.LazyFrame:
        """One run's ``predictions`` (or ``errors``) rows."""
        if run_id not in self.runs:
            raise OutputFolderError(f"{self.out} has no run {run_id!r} with predictions (it has: {', '.join(self.runs)})")
        folder = run_folder(self.out, table, run_id)
        if table == ERRORS and not any(folder.glob("*.parquet")):
            return pl.LazyFrame(schema={"object_id": pl.String, "error_type": pl.String, "message": pl.String})
        return pl.scan_parquet(folder / "*.parquet")

    def bundle_id(self, run_id: str) -> str:
        return self.manifest["runs"][run_id]["bundle_id"]


def open_annotations(out: Path) -> Annotations:
    """The annotations folder at ``out``, or :class:`OutputFolderError` saying why it is not one."""
    out = Path(out)
    manifest_path = out / MANIFEST_NAME
    if not out.is_dir():
        raise OutputFolderError(f"annotations folder {out} does not exist (write one with `morphcat annotate --out`)")
    if not manifest_path.is_file():
        raise OutputFolderError(f"{out} is not an annotations folder: it has no {MANIFEST_NAME} "
                           "(write one with `morphcat annotate --out`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded = list(manifest["runs"])
        manifest["catalog"]["fingerprint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputFolderError(f"{manifest_path} is not a morphcat annotations manifest: {exc}") from None
    runs = tuple(r for r in recorded if any(run_folder(out, PREDICTIONS, r).glob("*.parquet")))
    if not runs:
        raise OutputFolderError(f"{out} holds no predictions yet (runs recorded: {', '.join(recorded) or 'none'})")
    return Annotations(out, manifest, runs)


def locate_catalog(annotations: Annotations, catalog: Path | None = None) -> Catalog:
    """The catalog the folder annotated: ``catalog`` when given, else the one its manifest
    recorded; refused unless its rows are the ones annotated."""
    recorded = annotations.manifest["catalog"]
    path = Path(catalog) if catalog is not None else Path(recorded.get("source") or "")
    if not str(path) or str(path) == ".":
        raise CatalogError(f"{annotations.out} does not record its catalog's path: pass --catalog")
    if not path.is_file():
        raise CatalogError(f"catalog {path} (recorded in {annotations.out / MANIFEST_NAME}) is not there any more; "
                           "pass its current path with --catalog")
    found = read_catalog(path)
    fingerprint = rows_fingerprint(found.table)
    if fingerprint != recorded["fingerprint"]:
        raise CatalogError(f"catalog {path} is not the one annotated in {annotations.out}: its rows have "
                           f"fingerprint {fingerprint}, the annotations were made from {recorded['fingerprint']} "
                           f"({recorded['rows']} rows)")
    return found


@dataclass(frozen=True)
class Filters:
    """What the catalog view keeps: predicted ``classes`` (empty: all), a confidence range,
    ``caption_words`` that must all occur as whole words (any case), the OOD flag
    (``OOD_CHOICES``) and whether only rows whose image needed a conversion are kept."""

    classes: tuple[str, ...] = ()
    min_confidence: float = 0.0
    max_confidence: float = 1.0
    caption_words: str = ""
    ood: str = "any"
    converted_only: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence <= self.max_confidence <= 1.0:
            raise ValueError(f"confidence range must lie in [0, 1] with min ≤ max, got "
                             f"{self.min_confidence}…{self.max_confidence}")
        if self.ood not in OOD_CHOICES:
            raise ValueError(f"ood must be one of {OOD_CHOICES}, got {self.ood!r}")


def apply_filters(rows: pl.LazyFrame, filters: Filters) -> pl.LazyFrame:
    """``rows`` (predictions) narrowed by ``filters``."""
    keep = pl.col("confidence").is_between(filters.min_confidence, filters.max_confidence)
    if filters.classes:
        keep &= pl.col("label_pred").is_in(list(filters.classes))
    for word in filters.caption_words.split():
        # A whole word, any case, taken literally; \b would not bound a word ending in punctuation.
        keep &= pl.col("caption").str.contains(rf"(?i)(?:^|\W){pl.escape_regex(word)}(?:\W|$)").fill_null(False)
    if filters.ood == "flagged":
        keep &= pl.col("ood_flag").fill_null(False)
    elif filters.ood == "not flagged":
        keep &= ~pl.col("ood_flag").fill_null(True)
    if filters.converted_only:
        keep &= pl.col("input_note").is_not_null()
    return rows.filter(keep)


def class_counts(rows: pl.DataFrame) -> pl.DataFrame:
    """Objects per predicted class (``label_pred``, ``objects``), most frequent first."""
    return (rows.group_by("label_pred").agg(pl.len().alias("objects"))
            .sort(["objects", "label_pred"], descending=[True, False]))


def table_bytes(rows: pl.DataFrame, fmt: str) -> bytes:
    """``rows`` as a Parquet or CSV file's bytes, for download."""
    if fmt not in DOWNLOAD_FORMATS:
        raise ValueError(f"download format must be one of {DOWNLOAD_FORMATS}, got {fmt!r}")
    if fmt == "csv":
        return rows.write_csv().encode()
    buffer = io.BytesIO()
    rows.write_parquet(buffer)
    return buffer.getvalue()


def with_image_paths(rows: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """``rows`` with the catalog's ``image_path`` of each object (relative to ``catalog.root``)."""
    paths = pl.from_arrow(catalog.table.select(["object_id", "image_path"]))
    return rows.join(paths, on="object_id", how="left", maintain_order="left")
