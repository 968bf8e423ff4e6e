"""``morphcat demo``: the whole pipeline on the embedded synthetic survey, then a polars query.

The pipeline grows stage by stage (synth → train → export → annotate); this flow always runs
every stage that exists and ends with a query a user would type.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import flow

from flows.catalog_flows import synthesize_survey


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


@flow(name="morphcat-demo")
def run_demo(out: Path, n: int, seed: int, size: int = 424) -> pl.DataFrame:
    out = Path(out)
    report = synthesize_survey(out=out / "survey", n=n, seed=seed, size=size, mix="gz2")
    summary = summarise_catalog(Path(report.catalog_path))
    with pl.Config(tbl_rows=20, fmt_str_lengths=90, tbl_width_chars=160):
        print(f"\nSynthetic survey: {report.rows} galaxies in {report.catalog_path}\n")
        print(f'pl.scan_parquet("{report.catalog_path}").group_by("label").agg(...)')
        print(summary)
    return summary
