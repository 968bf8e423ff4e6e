"""``morphcat demo``: the whole pipeline on the embedded synthetic survey, then a polars query.

The pipeline grows stage by stage (synth → train → evaluate → export → annotate); this flow
runs every stage that exists and ends with a query a user would type.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import flow

from flows.catalog_flows import synthesize_survey
from flows.model_flows import evaluate_models, train_models


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
def run_demo(out: Path, n: int, seed: int, size: int = 424, epochs: int = 80) -> pl.DataFrame:
    out = Path(out)
    report = synthesize_survey(out=out / "survey", n=n, seed=seed, size=size, mix="balanced")
    catalog = Path(report.catalog_path)
    train_models(catalog=catalog, out=out / "models", models=["classifier", "regressor", "captioner"],
                 epochs=epochs, seed=seed)
    metrics = evaluate_models(models_dir=out / "models", catalog=catalog, out=out / "report")
    summary = summarise_catalog(catalog)
    with pl.Config(tbl_rows=20, fmt_str_lengths=90, tbl_width_chars=160):
        print(f"\nSynthetic survey: {report.rows} galaxies in {catalog}; models in {out / 'models'}\n")
        print(f'pl.scan_parquet("{catalog}").group_by("label").agg(...)')
        print(summary)
        print(f"\nHeld-out test split ({out / 'report' / 'metrics.json'}): accuracy {metrics['accuracy']:.3f}, "
              f"balanced accuracy {metrics['balanced_accuracy']:.3f}, RMSE {metrics['rmse']:.3f}, "
              f"BLEU-4 {metrics['bleu4']:.3f}, caption agreement {metrics['caption_agreement']:.3f}")
    return summary
