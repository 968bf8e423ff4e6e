"""Prefect flows ``train-models`` (one task per model) and ``evaluate``."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from catalogs.atomic import atomic_path, write_text
from catalogs.contract import read_catalog
from catalogs.inputs import ImageSpec
from flows.progress import epoch_bar
from models.artifacts import PRETRAINED_KIND
from models.config import BackboneConfig, ModelConfig, TrainSettings
from models.errors import ArtifactError, TrainingError
from models.train import MODEL_KINDS


def _headline(metric: str) -> bool:
    """The per-epoch figures worth a progress line: losses, accuracies, RMSE."""
    return any(word in metric for word in ("loss", "accuracy", "rmse")) and metric.count("_") <= 2


def _publish(trained, out: Path, init_from: Path | None = None) -> dict:
    from models.artifacts import save_trained

    if init_from is not None:
        trained.sidecar["pretrained_from"] = _pretraining_record(init_from)
    paths = save_trained(trained, out)
    epochs = len(next(iter(trained.history.values()), []))
    create_table_artifact(
        [{"epoch": e + 1, **{k: round(v[e], 5) for k, v in trained.history.items()}} for e in range(epochs)],
        key=f"{trained.kind}-training-curves", description=f"{trained.kind}: per-epoch training and validation metrics",
    )
    return {"kind": trained.kind, "train_seconds": trained.sidecar["train_seconds"],
            "epochs_run": trained.sidecar["epochs_run"],
            "train_images_per_second": trained.sidecar["train_images_per_second"], **{k: str(v) for k, v in paths.items()}}


def _pretraining_record(init_from: Path) -> dict:
    from models.artifacts import load_sidecar

    side = load_sidecar(init_from, PRETRAINED_KIND)
    return {"models_dir": str(init_from), "catalogs": side.get("catalogs"),
            "epochs_run": side.get("epochs_run")}


def _pretrained_backbone(init_from: Path | None):
    if init_from is None:
        return None
    from models.artifacts import load_backbone

    return load_backbone(init_from)


def _catalogs(paths: list[Path]) -> tuple[list, tuple[str, ...]]:
    from models.data import catalog_names

    return [read_catalog(Path(p)) for p in paths], catalog_names(paths)


@task(cache_policy=NO_CACHE)
def train_morphology_models(catalog_paths: list[Path], heads: list[str], config: dict, settings: dict, out: Path,
                            init_from: Path | None = None, progress: bool = False) -> list[dict]:
    """The classifier and/or the regressor on one backbone (``models.morphology``), jointly when
    both are asked for."""
    from models.train import train_morphology

    catalogs, names = _catalogs(catalog_paths)
    bar = epoch_bar("training " + " + ".join(heads), settings["epochs"], progress, _headline)
    trained = train_morphology(catalogs, names, ModelConfig.from_dict(config), TrainSettings(**settings),
                               heads=heads, init=_pretrained_backbone(init_from), callbacks=[bar])
    return [_publish(t, out, init_from) for t in trained]


@task(cache_policy=NO_CACHE)
def train_captioner_model(catalog_paths: list[Path], config: dict, settings: dict, out: Path,
                          backbone_from: Path | None = None, progress: bool = False) -> dict:
    """On the frozen backbone of the classifier in ``backbone_from`` (checked to fit this run's
    config), or end to end without one: never on whatever lies in ``out``."""
    from models.artifacts import load_trained
    from models.train import train_captioner

    backbone = None
    if backbone_from is not None:
        source, sidecar = load_trained(backbone_from, PRETRAINED_KIND)
        mismatch = ModelConfig.from_dict(config).backbone_mismatch(ModelConfig.from_dict(sidecar["config"]))
        if mismatch:
            raise TrainingError(f"the captioner cannot reuse the backbone of {backbone_from}: {mismatch}")
        backbone = source.get_layer("backbone")
    bar = epoch_bar("training captioner", settings["epochs"], progress, _headline)
    catalogs, names = _catalogs(catalog_paths)
    trained = train_captioner(catalogs, names, ModelConfig.from_dict(config), TrainSettings(**settings),
                              backbone=backbone, callbacks=[bar])
    if backbone_from is not None:
        trained.sidecar["backbone_from"] = _pretraining_record(backbone_from)
    return _publish(trained, out)


@task(cache_policy=NO_CACHE)
def choose_captions(catalog_paths: list[Path], out: Path, regressor_dir: Path) -> dict:
    """Measure the learned captions against the templates from the predicted votes on the
    validation galaxies and record the winner in the captioner's sidecar (export carries it)."""
    import json

    from models.artifacts import load_trained
    from models.evaluate import choose_caption_source

    captioner, sidecar = load_trained(out, "captioner")
    regressor, _ = load_trained(regressor_dir, "regressor")
    catalogs, names = _catalogs(catalog_paths)
    choice = choose_caption_source(catalogs, names, regressor, captioner, sidecar)
    path = out / "captioner.json"
    side = json.loads(path.read_text())
    side["caption_choice"] = {**choice, "regressor_from": str(regressor_dir)}
    write_text(path, json.dumps(side, indent=2, sort_keys=True, default=str))
    return choice


def _model_config(image_size: int | None, source: Path | None, what: str) -> dict:
    """The config to train with: a fresh default one, or that of the models in ``source`` (read
    back from their sidecar, so the backbone fits the weights it starts from or reuses)."""
    if source is None:
        return ModelConfig(image=ImageSpec(size=image_size or ImageSpec().size), backbone=BackboneConfig()).to_dict()
    from models.artifacts import load_sidecar

    config = load_sidecar(source, PRETRAINED_KIND)["config"]
    size = config["image"]["size"]
    if image_size is not None and image_size != size:
        raise TrainingError(f"--image-size {image_size} differs from the {what} models' input size {size} "
                            f"({source}); leave it out to use {size}")
    return config


@flow(name="train-models")
def train_models(catalogs: list[Path], out: Path, models: list[str], epochs: int = TrainSettings.epochs,
                 image_size: int | None = None, seed: int = 0, init_from: Path | None = None,
                 backbone_from: Path | None = None, progress: bool = False) -> list[dict]:
    """Train ``models`` on the union of ``catalogs`` (each row adds the losses it has targets
    for). ``init_from``: a models folder whose classifier backbone the new models start from
    (pretraining on the synthetic survey); its config is used. ``backbone_from``: a models folder
    whose trained classifier backbone the captioner reuses frozen, when the captioner is trained
    without the classifier; when both are trained here, the captioner reuses the one just
    trained. ``image_size`` defaults to ``ImageSpec().size``."""
    unknown = set(models) - set(MODEL_KINDS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {', '.join(MODEL_KINDS)}")
    if backbone_from is not None and ("captioner" not in models or "classifier" in models):
        raise TrainingError("--backbone-from gives the captioner a trained backbone when it is trained alone "
                            "(--models captioner); with the classifier, the captioner reuses the one trained now")
    init_from = None if init_from is None else Path(init_from)
    backbone_from = None if backbone_from is None else Path(backbone_from)
    config = _model_config(image_size, init_from, "pretrained") if backbone_from is None or init_from is not None \
        else _model_config(image_size, backbone_from, "--backbone-from")
    settings = TrainSettings(epochs=epochs, seed=seed).__dict__
    if not catalogs:
        raise TrainingError("train needs at least one catalog")
    catalogs, out = [Path(c) for c in catalogs], Path(out)
    results: list[dict] = []
    heads = [k for k in ("classifier", "regressor") if k in models]
    if heads:
        results += train_morphology_models(catalogs, heads, config, settings, out, init_from, progress)
    if "captioner" in models:
        shared = out if "classifier" in models else backbone_from
        results.append(train_captioner_model(catalogs, config, settings, out, shared, progress))
        regressor_dir = out if "regressor" in models else backbone_from
        if regressor_dir is not None and (regressor_dir / "regressor.keras").is_file():
            choose_captions(catalogs, out, regressor_dir)
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

    catalogs, names = _catalogs(catalog_paths)

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
    import json

    import pyarrow.parquet as pq

    from models.crossval import cv_report, held_out_table
    from models.metrics import cv_markdown, plot_confusion_matrix, plot_reliability

    models = list(MODEL_KINDS) if models is None else list(models)  # None: all three
    unknown = set(models) - set(MODEL_KINDS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {', '.join(MODEL_KINDS)}")
    catalogs, out = [Path(c) for c in catalogs], Path(out)
    config = _model_config(image_size, None, "")
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
