"""Training the models a bundle is made of, as plain Python: :func:`train_models` resolves the
model config (fresh, or read back from the models a run starts from), checks that a reused
backbone fits, trains the classifier and the regressor (jointly when both are asked for) and the
captioner (``models.train``), chooses the captions the bundle serves, and saves every model and
sidecar through ``models.artifacts``. The ``train-models`` flow is this one call.

Errors name the caller's parameters in backticks (`image_size`); a front end that calls them
otherwise (the command line: ``--image-size``) rewrites them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from catalogs.contract import Catalog, read_catalog
from catalogs.inputs import ImageSpec
from models.artifacts import PRETRAINED_KIND
from models.config import BackboneConfig, ModelConfig, TrainSettings
from models.errors import TrainingError
from models.train import MODEL_KINDS

# A stage's name ("classifier + regressor", "captioner") and its maximum epochs → the Keras
# callbacks to train it with (a progress bar, say).
StageCallbacks = Callable[[str, int], Sequence]


def read_catalogs(paths: Sequence[Path]) -> tuple[list[Catalog], tuple[str, ...]]:
    """The catalogs, validated, and the names their rows are told apart by."""
    from models.data import catalog_names

    return [read_catalog(Path(p)) for p in paths], catalog_names(paths)


def check_model_kinds(models: Sequence[str]) -> None:
    unknown = set(models) - set(MODEL_KINDS)
    if unknown:
        raise ValueError(f"unknown models {sorted(unknown)}; choose from {', '.join(MODEL_KINDS)}")


def model_config(image_size: int | None, source: Path | None = None, what: str = "") -> dict:
    """The config to train with: a fresh default one, or that of the models in ``source`` (read
    back from their sidecar, so the backbone fits the weights it starts from or reuses); ``what``
    names ``source`` in an error."""
    if source is None:
        return ModelConfig(image=ImageSpec(size=image_size or ImageSpec().size), backbone=BackboneConfig()).to_dict()
    from models.artifacts import load_sidecar

    config = load_sidecar(source, PRETRAINED_KIND)["config"]
    size = config["image"]["size"]
    if image_size is not None and image_size != size:
        raise TrainingError(f"`image_size` {image_size} differs from the {what} models' input size {size} "
                            f"({source}); leave it out to use {size}")
    return config


def _pretraining_record(models_dir: Path) -> dict:
    from models.artifacts import load_sidecar

    side = load_sidecar(models_dir, PRETRAINED_KIND)
    return {"models_dir": str(models_dir), "catalogs": side.get("catalogs"), "epochs_run": side.get("epochs_run")}


def _save(trained, out: Path) -> dict:
    from models.artifacts import save_trained

    paths = save_trained(trained, out)
    return {"kind": trained.kind, "train_seconds": trained.sidecar["train_seconds"],
            "epochs_run": trained.sidecar["epochs_run"],
            "train_images_per_second": trained.sidecar["train_images_per_second"],
            "train_images_per_cpu_second": trained.sidecar.get("train_images_per_cpu_second"),
            **{k: str(v) for k, v in paths.items()}}


def _callbacks(callbacks: StageCallbacks | None, stage: str, epochs: int) -> list:
    return [] if callbacks is None else list(callbacks(stage, epochs))


def train_morphology_models(catalogs: Sequence[Path], heads: Sequence[str], config: dict, settings: TrainSettings,
                            out: Path, init_from: Path | None = None,
                            callbacks: StageCallbacks | None = None, unlabelled: Sequence[Path] = ()) -> list[dict]:
    """The classifier and/or the regressor on one backbone (``models.morphology``), jointly when
    both are asked for, starting from the classifier backbone in ``init_from`` when given; with
    ``unlabelled`` catalogs, the students of a teacher that pseudo-labels them (``models.pseudo``)."""
    from models.artifacts import load_backbone
    from models.pseudo import stage_name, train_heads

    cats, names = read_catalogs(catalogs)
    extra, extra_names = read_catalogs(unlabelled) if unlabelled else ([], ())
    init = None if init_from is None else load_backbone(init_from)
    stage = " + ".join(heads)
    trained = train_heads(cats, names, ModelConfig.from_dict(config), settings, heads=list(heads),
                          unlabelled=list(zip(extra_names, extra)), init=init,
                          callbacks=lambda who: _callbacks(callbacks, stage_name(stage, who), settings.epochs))
    results = []
    for t in trained:
        if init_from is not None:
            t.sidecar["pretrained_from"] = _pretraining_record(init_from)
        results.append(_save(t, out))
    return results


def train_captioner_model(catalogs: Sequence[Path], config: dict, settings: TrainSettings, out: Path,
                          backbone_from: Path | None = None, callbacks: StageCallbacks | None = None) -> dict:
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
    cats, names = read_catalogs(catalogs)
    trained = train_captioner(cats, names, ModelConfig.from_dict(config), settings, backbone=backbone,
                              callbacks=_callbacks(callbacks, "captioner", settings.epochs))
    if backbone_from is not None:
        trained.sidecar["backbone_from"] = _pretraining_record(backbone_from)
    return _save(trained, out)


def choose_captions(catalogs: Sequence[Path], out: Path, regressor_dir: Path) -> dict:
    """Measure the learned captions against the templates from the predicted votes on the
    validation galaxies and record the winner in the captioner's sidecar (export carries it)."""
    from models.artifacts import load_trained, record_caption_choice
    from models.evaluate import choose_caption_source

    captioner, sidecar = load_trained(out, "captioner")
    regressor, _ = load_trained(regressor_dir, "regressor")
    cats, names = read_catalogs(catalogs)
    choice = choose_caption_source(cats, names, regressor, captioner, sidecar)
    record_caption_choice(out, {**choice, "regressor_from": str(regressor_dir)})
    return choice


def train_models(catalogs: Sequence[Path], out: Path, models: Sequence[str] = MODEL_KINDS,
                 epochs: int = TrainSettings.epochs, image_size: int | None = None, seed: int = 0,
                 init_from: Path | None = None, backbone_from: Path | None = None,
                 callbacks: StageCallbacks | None = None, unlabelled: Sequence[Path] = ()) -> list[dict]:
    """Train ``models`` on the union of ``catalogs`` (each row adds the losses it has targets
    for) into ``out``; returns, per model, its kind, epochs, seconds and the files written.

    ``init_from``: a models folder whose classifier backbone the new models start from
    (pretraining on the synthetic survey); its config is used. ``backbone_from``: a models folder
    whose trained classifier backbone the captioner reuses frozen, when the captioner is trained
    without the classifier; when both are trained here, the captioner reuses the one just
    trained. ``image_size`` defaults to ``ImageSpec().size``. ``callbacks``: see
    :data:`StageCallbacks`. ``unlabelled``: catalogs without labels that the classifier and
    regressor also learn from, pseudo-labelled by a teacher trained first (``models.pseudo``)."""
    check_model_kinds(models)
    if unlabelled and not {"classifier", "regressor"} & set(models):
        raise TrainingError("`unlabelled` catalogs teach the classifier and the regressor; train at least one of them")
    if backbone_from is not None and ("captioner" not in models or "classifier" in models):
        raise TrainingError("`backbone_from` gives the captioner a trained backbone when it is trained alone "
                            "(`models` captioner); with the classifier, the captioner reuses the one trained now")
    init_from = None if init_from is None else Path(init_from)
    backbone_from = None if backbone_from is None else Path(backbone_from)
    config = model_config(image_size, init_from, "pretrained") if backbone_from is None or init_from is not None \
        else model_config(image_size, backbone_from, "`backbone_from`")
    settings = TrainSettings(epochs=epochs, seed=seed)
    if not catalogs:
        raise TrainingError("train needs at least one catalog")
    catalogs, out = [Path(c) for c in catalogs], Path(out)
    results: list[dict] = []
    heads = [k for k in ("classifier", "regressor") if k in models]
    if heads:
        results += train_morphology_models(catalogs, heads, config, settings, out, init_from, callbacks,
                                           [Path(u) for u in unlabelled])
    if "captioner" in models:
        shared = out if "classifier" in models else backbone_from
        results.append(train_captioner_model(catalogs, config, settings, out, shared, callbacks))
        regressor_dir = out if "regressor" in models else backbone_from
        if regressor_dir is not None and (regressor_dir / "regressor.keras").is_file():
            choose_captions(catalogs, out, regressor_dir)
    return results
