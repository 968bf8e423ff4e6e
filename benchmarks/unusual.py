"""``morphcat bench unusual``: do rare galaxies the models never saw rise to the top of
``morphcat unusual``?

A classifier is trained on a synthetic survey from which every galaxy of the rare classes
(``RARE``: mergers, the synthetic survey's rarest class) is removed, exported, and run over a new
synthetic survey of the GZ2 mix, where they are ~3 % of the objects. The run is ranked by
``export.serve.unusual`` and the benchmark reports precision at 20 and 100 (the share of the top
that are rare) against the base rate, for the combined score and for each of its two parts alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from benchmarks.report import write_summary

RARE = ("merger",)


def run_unusual_bench(out: Path, n: int = 2000, train_n: int = 1500, epochs: int = 20, size: int = 128,
                      seed: int = 0) -> dict:
    from catalogs.contract import Catalog, read_catalog, write_catalog
    from catalogs.synthetic import synthesize_survey
    from export.builder.exporter import export_bundle
    from export.serve.catalog import annotate_catalog
    from export.serve.unusual import write_unusual
    from models.pipeline import train_models

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    train_survey = out / "train-survey"
    if not (train_survey / "catalog.parquet").is_file():
        synthesize_survey(out=train_survey, n=train_n, seed=seed + 1, size=size, mix="balanced")
    whole = read_catalog(train_survey / "catalog.parquet")
    truth = np.array(whole.table.column("truth_class").to_pylist(), dtype=object)
    usual = Catalog(whole.table.filter(~np.isin(truth, RARE)), whole.root, whole.source_format)
    write_catalog(usual, train_survey / "without-rare.parquet")
    models = out / "models"
    if not (models / "classifier.keras").is_file():
        train_models(catalogs=[train_survey / "without-rare.parquet"], out=models, models=["classifier"],
                     epochs=epochs, seed=seed)
    bundle = out / "bundle"
    export_bundle(models, bundle)
    survey = out / "survey"
    if not (survey / "catalog.parquet").is_file():
        synthesize_survey(out=survey, n=n, seed=seed + 2, size=size, mix="gz2")
    annotate_catalog(catalog=survey / "catalog.parquet", bundle=bundle, out=out / "annotations")
    ranked = write_unusual(out / "annotations", n=100).table
    classes = pl.read_parquet(survey / "catalog.parquet").select("object_id", "truth_class")
    ranked = ranked.join(classes, on="object_id", how="left")
    rare = ranked["truth_class"].is_in(list(RARE)).to_numpy()
    result = {"n": ranked.height, "rare_classes": list(RARE), "rare": int(rare.sum()),
              "base_rate": round(float(rare.mean()), 4), "trained_on": usual.table.num_rows, "epochs": epochs,
              "size": size}
    ranked = ranked.with_columns(maximum=pl.max_horizontal("isolation", "ood_score"))
    for name, column in (("score", "score"), ("isolation", "isolation"), ("ood_score", "ood_score"),
                         ("maximum", "maximum")):
        order = np.argsort(-ranked[column].fill_null(0.0).to_numpy(), kind="stable")
        for k in (20, 100):
            result[f"precision_at_{k}_{name}"] = round(float(rare[order[:k]].mean()), 3)
    return write_summary(out, "unusual", result, unusual_markdown(result))


def unusual_markdown(r: dict) -> str:
    lines = [f"A classifier trained on {r['trained_on']} synthetic galaxies without {', '.join(r['rare_classes'])} "
             f"({r['epochs']} epochs, {r['size']} px cutouts) ranks a new synthetic survey of {r['n']} galaxies, "
             f"{r['rare']} of them {', '.join(r['rare_classes'])} (base rate {r['base_rate']:.3f}):", "",
             "| ranked by | precision at 20 | precision at 100 |", "|---|---:|---:|"]
    for name, what in (("score", "the combined score (morphcat unusual): the mean of both over their run percentiles"),
                       ("isolation", "isolation alone"), ("ood_score", "ood_score alone"),
                       ("maximum", "the larger of isolation and the (training-scaled) ood_score")):
        lines.append(f"| {what} | {r[f'precision_at_20_{name}']:.2f} | {r[f'precision_at_100_{name}']:.2f} |")
    return "\n".join(lines) + "\n"
