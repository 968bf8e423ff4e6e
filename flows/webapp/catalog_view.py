"""An annotations folder (``morphcat annotate --out``) as the web demo's catalog view: its runs,
the predictions of one run as a polars ``LazyFrame``, the filters, the summaries and the
downloads, and the catalog whose images the gallery shows.

The catalog is the one recorded in the folder's manifest (``catalog.source``), or one given
explicitly (images moved, another machine); either way its rows must have the fingerprint the
manifest recorded, so a gallery never shows another catalog's images beside these predictions.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from catalogs.annotations import Annotations, locate_catalog, open_annotations  # noqa: F401 — the view's API
from catalogs.contract import Catalog

OOD_CHOICES = ("any", "flagged", "not flagged")
DOWNLOAD_FORMATS = ("parquet", "csv")


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
        # CSV has no array type: an array column (the embedding) is written as its numbers, space-separated.
        arrays = [name for name, kind in rows.schema.items() if isinstance(kind, (pl.Array, pl.List))]
        flat = rows.with_columns(pl.col(name).cast(pl.List(pl.Float32)).list.eval(pl.element().cast(pl.String))
                                 .list.join(" ") for name in arrays)
        return flat.write_csv().encode()
    buffer = io.BytesIO()
    rows.write_parquet(buffer)
    return buffer.getvalue()


def with_image_paths(rows: pl.DataFrame, catalog: Catalog) -> pl.DataFrame:
    """``rows`` with the catalog's ``image_path`` of each object (relative to ``catalog.root``)."""
    paths = pl.from_arrow(catalog.table.select(["object_id", "image_path"]))
    return rows.join(paths, on="object_id", how="left", maintain_order="left")
