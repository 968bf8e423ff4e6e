"""Prefect flows ``train-models`` (:func:`models.pipeline.train_models`), ``evaluate`` and
``cross-validate``."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from catalogs.atomic import atomic_path, write_text
from catalogs.contract import read_catalog
from flows.progress import epoch_bar
from models.config import ModelConfig, TrainSettings
from models.errors import ArtifactError
from models.pipeline import check_model_kinds, model_config, read_catalogs
from models.train import MODEL_KINDS


def _headline(metric: str) -> bool:
    """The per-epoch figures worth a progress line: losses, accuracies, RMSE."""
    return any(word in metric for word in ("loss", "accuracy", "rmse")) and metric.count("_") <= 2


@task(cache_policy=NO_CACHE)
def train(catalogs: list[Path], out: Path, models: list[str], epochs: int, image_size: int | None, seed: int,
          init_from: Path | None, backbone_from: Path | None, progress: bool) -> list[dict]:
    from models.pipeline import train_models as train_all

    def bars(stage: str, max_epochs: int) -> list:
        return [epoch_bar(f"training {stage}", max_epochs, progress, _headline)]

    return train_all(catalogs, out, models, epochs=epochs, image_size=image_size, seed=seed, init_from=init_from,
                     backbone_from=backbone_from, callbacks=bars)


@task(cache_policy=NO_CACHE)
def publish_curves(results: list[dict]) -> None:
    """Each model's per-epoch figures (from its sidecar) as a Prefect table artifact."""
    for r in results:
        history = json.loads(Path(r["sidecar"]).read_text()).get("history") or {}
        epochs = len(next(iter(history.values()), []))
        create_table_artifact(
            [{"epoch": e + 1, **{k: round(v[e], 5) for k, v in history.items()}} for e in range(epochs)],
            key=f"{r['kind']}-training-curves", description=f"{r['kind']}: per-epoch training and validation metrics",
        )


@flow(name="train-models")
def train_models(catalogs: list[Path], out: Path, models: list[str], epochs: int = TrainSettings.epochs,
                 image_size: int | None = None, seed: int = 0, init_from: Path | None = None,
                 backbone_from: Path | None = None, progress: bool = False) -> list[dict]:
    """:func:`models.pipeline.train_models` (its parameters, plus ``progress``: a terminal
    progress bar per stage), and each model's training curves as a Prefect artifact."""
    results = train(list(catalogs), Path(out), list(models), epochs, image_size, seed,
                    None if init_from is None else Path(init_from),
                    None if backbone_from is None else Path(backbone_from), progress)
    publish_curves(results)
    return results


@task(cache_policy=NO_CACHE)
def score_models(models_dir: Path, catalog_path: Path, out: Path) -> dict:
    from models.artifacts import load_trained
    from models.evaluate import evaluate_captioner, evaluate_classifier, evaluate_regressor, template_baseline
    from models.metrics import combine_metrics, plot_confusion_matrix, plot_reliability, write_metrics_json

    catalog = read_catalog(catalog_path)
    present = [k for k in MODEL_KINDS if (Path(models_dir) / f"{k}.keras").is_file()]
    if not present:
        raise ArtifactError(f"no trained models (classifier/regressor/captioner .keras) in {models_dir}")
    out.mkdir(parents=True, exist_ok=True)
    parts: dict = {}
    predicted_votes = None
    if "classifier" in present and "label" in catalog.table.column_names:
        parts["classification"] = evaluate_classifier(*load_trained(models_dir, "classifier"), catalog)
        c = parts["classification"]
        plot_confusion_matrix(c["confusion_matrix"], c["labels"], out / "confusion_matrix.png",
                              f"classifier on {Path(catalog_path).name} ({c['scope']})")
        if "reliability" in c:
            plot_reliability(c.pop("reliability"), out / "reliability.png",
                             f"calibration of the classifier on {Path(catalog_path).name}")
    if "regressor" in present and catalog.has_votes:
        parts["regression"], rows, pred = evaluate_regressor(*load_trained(models_dir, "regressor"), catalog)
        predicted_votes = (rows, pred)
    if "caption" in catalog.table.column_names:
        if "captioner" in present:
            parts["captions"], refs, hyps, _ = evaluate_captioner(*load_trained(models_dir, "captioner"), catalog)
            write_text(out / "captions.tsv",
                "reference\thypothesis\n" + "".join(f"{r}\t{h}\n" for r, h in zip(refs, hyps)))
        if predicted_votes is not None:
            parts["template_baseline"] = template_baseline(catalog, *predicted_votes)
    metrics = combine_metrics(**{k: v for k, v in parts.items() if k in ("classification", "regression", "captions")})
    if "template_baseline" in parts:
        metrics["template_baseline"] = parts["template_baseline"]
    write_metrics_json(metrics, out / "metrics.json")
    return metrics


@flow(name="evaluate")
def evaluate_models(models_dir: Path, catalog: Path, out: Path) -> dict:
    from models.metrics import metrics_markdown

    metrics = score_models(Path(models_dir), Path(catalog), Path(out))
    markdown = metrics_markdown(metrics)
    cls, reg = metrics.get("classification", {}), metrics.get("regression", {})
    if "ece" in cls:
        markdown += (f"\nExpected calibration error (15 bins): {cls['ece']:.3f} "
                     f"({cls['ece_before_temperature']:.3f} before the temperature)\n")
    if reg.get("rmse_per_question") is not None:
        markdown += (f"\nRMSE of the per-question vote fractions: {reg['rmse_per_question']:.4f}; Kaggle definition "
                     f"(cumulative, 37 answers): {reg['rmse_kaggle']:.4f}\n")
    baseline = metrics.get("template_baseline")
    if baseline:
        markdown += (f"\n\nTemplate captions from the regressor's predicted votes (baseline): "
                     f"BLEU-4 {baseline['bleu4']:.3f}, feature agreement {baseline['caption_agreement']:.3f}")
    write_text(Path(out) / "metrics.md", markdown + "\n")
    create_markdown_artifact(markdown, key="evaluation", description=f"morphcat evaluate {models_dir} on {catalog}")
    return metrics


@task(cache_policy=NO_CACHE, task_run_name="cross-validate-fold-{fold}")
def cross_validate_fold(catalog_paths: list[Path], config: dict, settings: dict, k: int, fold: int,
                        models: list[str], progress: bool = False) -> list:
    """Train on every fold but ``fold``, predict ``fold`` (``models.crossval.run_fold``)."""
    from models.crossval import folds_of, run_fold

    catalogs, names = read_catalogs(catalog_paths)

    def bars(stage: str) -> list:
        return [epoch_bar(f"fold {fold + 1}/{k}: training {stage}", settings["epochs"], progress, _headline)]

    held_out, _ = run_fold(catalogs, names, ModelConfig.from_dict(config), TrainSettings(**settings),
                           folds_of(catalogs, names, k), fold, models, bars)
    return held_out


@flow(name="cross-validate")
def cross_validate(catalogs: list[Path], out: Path, k: int = 5,
                   models: list[str] | None = None,
                   epochs: int = TrainSettings.epochs, image_size: int | None = None, seed: int = 0,
                   progress: bool = False) -> dict:
    """K-fold cross-validation of the default training over ``catalogs`` (``models.crossval``):
    every galaxy tested exactly once (``models``: which to train, default all three); writes ``cv.json``, ``cv.md``, every held-out prediction
    (``predictions.parquet``) and per catalog the pooled
    confusion matrix and reliability diagram (PNG) to ``out``."""
    import pyarrow.parquet as pq

    from models.crossval import cv_report, held_out_table
    from models.metrics import cv_markdown, plot_confusion_matrix, plot_reliability

    models = list(MODEL_KINDS) if models is None else list(models)  # None: all three
    check_model_kinds(models)
    catalogs, out = [Path(c) for c in catalogs], Path(out)
    config = model_config(image_size)
    settings = TrainSettings(epochs=epochs, seed=seed).__dict__
    held_out = [h for fold in range(k) for h in cross_validate_fold(catalogs, config, settings, k, fold,
                                                                     list(models), progress)]
    report = cv_report(held_out)
    out.mkdir(parents=True, exist_ok=True)
    for name, entry in report.items():
        safe = name.replace("/", "_")
        if "confusion_matrix" in entry:
            cm = entry["confusion_matrix"]
            plot_confusion_matrix(cm["matrix"], cm["labels"], out / f"confusion_{safe}.png",
                                  f"{name}: {k}-fold cross-validation, pooled")
            plot_reliability(entry["reliability"], out / f"reliability_{safe}.png",
                             f"{name}: calibration of the classifier ({k}-fold, pooled)")
    summary = {"k": k, "catalogs": [str(c) for c in catalogs], "models": list(models), "config": config,
               "settings": settings, "report": report}
    write_text(out / "cv.json", json.dumps(summary, indent=2, default=float) + "\n")
    with atomic_path(out / "predictions.parquet") as tmp:
        pq.write_table(held_out_table(held_out), tmp)
    markdown = cv_markdown(report, k)
    write_text(out / "cv.md", markdown)
    create_markdown_artifact(markdown, key="cross-validation", description=f"{k}-fold cross-validation")
    return summary
