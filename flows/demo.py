"""``morphcat demo``: the whole pipeline on the embedded synthetic survey, then polars queries.

synth → train → evaluate → export → annotate, each stage its own Prefect flow, then the queries a
user would type over the catalog and over the annotations.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
from prefect import flow

from catalogs.inputs import CUTOUT_SIZE
from catalogs.summaries import summarise_annotations, summarise_catalog
from flows.annotate_flows import catalog_annotate
from flows.catalog_flows import synthesize_survey
from flows.export_flows import export_onnx
from flows.model_flows import evaluate_models, train_models
from models.config import TrainSettings


@flow(name="morphcat-demo")
def run_demo(out: Path, n: int, seed: int, size: int = CUTOUT_SIZE, epochs: int = TrainSettings.epochs) -> pl.DataFrame:
    out = Path(out)
    report = synthesize_survey(out=out / "survey", n=n, seed=seed, size=size, mix="balanced")
    catalog = Path(report.catalog_path)
    train_models(catalogs=[catalog], out=out / "models", models=["classifier", "regressor", "captioner"],
                 epochs=epochs, seed=seed, progress=True)
    metrics = evaluate_models(models_dir=out / "models", catalog=catalog, out=out / "report")
    manifest = export_onnx(models_dir=out / "models", out=out / "bundle", catalog=catalog)
    run = catalog_annotate(catalog=catalog, bundle=out / "bundle", out=out / "annotations", progress=True)
    with pl.Config(tbl_rows=20, fmt_str_lengths=90, tbl_width_chars=180):
        print(f"\nSynthetic survey: {report.rows} galaxies in {catalog}; models in {out / 'models'}\n")
        print(f'pl.scan_parquet("{catalog}").group_by("label").agg(...)')
        print(summarise_catalog(catalog))
        print(f"\nHeld-out test split ({out / 'report' / 'metrics.json'}): accuracy {metrics['accuracy']:.3f}, "
              f"balanced accuracy {metrics['balanced_accuracy']:.3f}, RMSE {metrics['rmse']:.3f}, "
              f"BLEU-4 {metrics['bleu4']:.3f}, caption agreement {metrics['caption_agreement']:.3f}")
        print(f"\nONNX bundle {manifest['bundle_id']} in {out / 'bundle'} (parity passed); annotation run "
              f"{run['run_id']}: {run['predictions']} predictions + {run['errors']} errors of "
              f"{run['catalog_rows']} rows, {run['images_per_second']} images/s on {run['provider']}\n")
        print(f'pl.scan_parquet("{out / "annotations"}/predictions/**/*.parquet")'
              f'.filter(pl.col("run_id") == "{run["run_id"]}").join(catalog, on="object_id")'
              '.group_by("label_pred").agg(...)')
        summary = summarise_annotations(out / "annotations", run["run_id"], catalog)
        print(summary)
    return summary
