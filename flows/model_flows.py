"""Prefect flows ``train-models`` (:func:`models.pipeline.train_models`), ``evaluate`` and
``cross-validate``."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from catalogs.atomic import write_text
from models.config import ModelConfig, TrainSettings
from models.pipeline import check_model_kinds, model_config, read_catalogs
from models.progress import epoch_bar
from models.train import MODEL_KINDS


@task(cache_policy=NO_CACHE)
def train(catalogs: list[Path], out: Path, models: list[str], epochs: int, image_size: int | None, seed: int,
          init_from: Path | None, backbone_from: Path | None, progress: bool, unlabelled: list[Path]) -> list[dict]:
    from models.pipeline import train_models as train_all

    def bars(stage: str, max_epochs: int) -> list:
        return [epoch_bar(f"training {stage}", max_epochs, progress)]

    return train_all(catalogs, out, models, epochs=epochs, image_size=image_size, seed=seed, init_from=init_from,
                     backbone_from=backbone_from, callbacks=bars, unlabelled=unlabelled)


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
                 backbone_from: Path | None = None, progress: bool = False,
                 unlabelled: list[Path] | None = None) -> list[dict]:
    """:func:`models.pipeline.train_models` (its parameters, plus ``progress``: a terminal
    progress bar per stage), and each model's training curves as a Prefect artifact."""
    results = train(list(catalogs), Path(out), list(models), epochs, image_size, seed,
                    None if init_from is None else Path(init_from),
                    None if backbone_from is None else Path(backbone_from), progress,
                    [Path(u) for u in unlabelled or []])
    publish_curves(results)
    return results


@task(cache_policy=NO_CACHE)
def score_models(models_dir: Path, catalog_path: Path, out: Path) -> dict:
    from models.evaluate import score_models as score

    return score(models_dir, catalog_path, out)


@flow(name="evaluate")
def evaluate_models(models_dir: Path, catalog: Path, out: Path) -> dict:
    """Score the models of ``models_dir`` on ``catalog`` into ``out`` (``models.evaluate.score_models``),
    with ``metrics.md`` and its Prefect artifact."""
    from models.evaluate import evaluation_markdown

    metrics = score_models(Path(models_dir), Path(catalog), Path(out))
    markdown = evaluation_markdown(metrics)
    write_text(Path(out) / "metrics.md", markdown + "\n")
    create_markdown_artifact(markdown, key="evaluation", description=f"morphcat evaluate {models_dir} on {catalog}")
    return metrics


@task(cache_policy=NO_CACHE, task_run_name="cross-validate-fold-{fold}")
def cross_validate_fold(catalog_paths: list[Path], config: dict, settings: dict, k: int, fold: int,
                        models: list[str], progress: bool = False, unlabelled: list[Path] | None = None,
                        members: int = 1) -> list:
    """Train on every fold but ``fold``, predict ``fold`` (``models.crossval.run_fold``)."""
    from models.crossval import folds_of, run_fold

    catalogs, names = read_catalogs(catalog_paths)
    extra, extra_names = read_catalogs(unlabelled) if unlabelled else ([], ())

    def bars(stage: str) -> list:
        return [epoch_bar(f"fold {fold + 1}/{k}: training {stage}", settings["epochs"], progress)]

    held_out, _ = run_fold(catalogs, names, ModelConfig.from_dict(config), TrainSettings(**settings),
                           folds_of(catalogs, names, k), fold, models, bars,
                           unlabelled=list(zip(extra_names, extra)), members=members)
    return held_out


@flow(name="cross-validate")
def cross_validate(catalogs: list[Path], out: Path, k: int = 5,
                   models: list[str] | None = None,
                   epochs: int = TrainSettings.epochs, image_size: int | None = None, seed: int = 0,
                   progress: bool = False, unlabelled: list[Path] | None = None, members: int = 1) -> dict:
    """K-fold cross-validation of the default training over ``catalogs`` (``models.crossval``):
    every galaxy tested exactly once (``models``: which to train, default all three); writes ``cv.json``, ``cv.md``, every held-out prediction
    (``predictions.parquet``) and per catalog the pooled
    confusion matrix and reliability diagram (PNG) to ``out``. ``unlabelled``: catalogs each fold's
    classifier and regressor also learn from, pseudo-labelled by a teacher trained on the fold's
    training galaxies (``models.pseudo``). ``members`` > 1: each fold's predictions are the average of
    that many models trained from successive seeds (a deep ensemble)."""
    from models.crossval import catalog_fingerprints, fold_commit, load_fold, save_fold, write_cv_report

    models = list(MODEL_KINDS) if models is None else list(models)  # None: all three
    check_model_kinds(models)
    catalogs = [Path(c) for c in catalogs]
    config = model_config(image_size)
    settings = TrainSettings(epochs=epochs, seed=seed).__dict__
    # Each finished fold is kept in out/folds/: a run stopped after hours resumes from there.
    unlabelled = [Path(u) for u in unlabelled or []]
    checkpoint = {"k": k, "catalogs": catalog_fingerprints(catalogs), "models": list(models), "config": config,
                  "settings": settings, **({"unlabelled": catalog_fingerprints(unlabelled)} if unlabelled else {}),
                  **({"members": members} if members != 1 else {})}
    held_out = []
    for fold in range(k):
        kept = load_fold(Path(out), fold, checkpoint)
        if kept is None:
            kept = cross_validate_fold(catalogs, config, settings, k, fold, list(models), progress, unlabelled,
                                       members)
            save_fold(Path(out), fold, checkpoint, kept)
        held_out += kept
    extra = ({"unlabelled": [str(u) for u in unlabelled]} if unlabelled else {}) | \
        ({"members": members} if members != 1 else {})
    summary = write_cv_report(held_out, Path(out), {"k": k, "catalogs": [str(c) for c in catalogs], **extra,
                                                    "models": list(models), "config": config, "settings": settings,
                                                    "fold_commits": [fold_commit(Path(out), f) for f in range(k)]})
    create_markdown_artifact((Path(out) / "cv.md").read_text(), key="cross-validation",
                             description=f"{k}-fold cross-validation")
    return summary
