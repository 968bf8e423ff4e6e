"""Per-class summaries of a catalog and of an annotation run joined back to it: the polars queries
``morphcat demo`` prints and shows, as a user would type them over the Parquet files."""

from __future__ import annotations

from pathlib import Path

import polars as pl


def summarise_catalog(catalog_path: Path) -> pl.DataFrame:
    """Per label: rows, share whose label matches the simulated truth, one example caption."""
    return (
        pl.scan_parquet(catalog_path)
        .group_by("label")
        .agg(
            rows=pl.len(),
            truth_agreement=(pl.col("label") == pl.col("truth_class")).mean().round(3),
            example_caption=pl.col("caption").sort_by("object_id").first(),
        )
        .sort("rows", descending=True)
        .collect()
    )


def summarise_annotations(out: Path, run_id: str, catalog_path: Path) -> pl.DataFrame:
    """Per predicted class of run ``run_id``, joined back to the catalog on ``object_id``: rows,
    mean confidence, agreement with the catalog's vote-derived label, rows flagged out of
    distribution, one caption. (An output folder keeps every run: another bundle is another run.)"""
    return (
        pl.scan_parquet(Path(out) / "predictions" / "**" / "*.parquet")
        .filter(pl.col("run_id") == run_id)
        .join(pl.scan_parquet(catalog_path).select("object_id", "label"), on="object_id", how="left")
        .group_by("label_pred")
        .agg(
            rows=pl.len(),
            mean_confidence=pl.col("confidence").mean().round(3),
            label_agreement=(pl.col("label_pred") == pl.col("label")).mean().round(3),
            ood_flagged=pl.col("ood_flag").sum(),
            example_caption=pl.col("caption").sort_by("object_id").first(),
        )
        .sort("rows", descending=True)
        .collect()
    )
