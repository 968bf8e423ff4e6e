"""Saving and loading trained models: ``MODELS_DIR/<kind>.keras`` plus ``<kind>.json``, the
sidecar with everything inference needs (the config is read back from it, never re-declared),
and ``<kind>_curves.png``."""

from __future__ import annotations

import json
from pathlib import Path

import keras

from catalogs.atomic import atomic_path, write_text
from models.errors import ArtifactError
from models.metrics import plot_training_curves
from models.train import MODEL_KINDS, TrainedModel

PRETRAINED_KIND = "classifier"  # whose backbone --init-from reads (the joint training shares it)


def save_trained(trained: TrainedModel, out_dir: Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{trained.kind}.keras"
    with atomic_path(model_path) as tmp:
        trained.model.save(tmp)
    sidecar = dict(trained.sidecar, history=trained.history)
    sidecar_path = out_dir / f"{trained.kind}.json"
    _write_sidecar(sidecar_path, sidecar)
    paths = {"model": model_path, "sidecar": sidecar_path}
    if trained.history:
        paths["curves"] = plot_training_curves(trained.history, out_dir / f"{trained.kind}_curves.png",
                                               f"{trained.kind} training")
    return paths


def record_caption_choice(models_dir: Path, choice: dict) -> None:
    """Record which captions the bundle serves (``models.evaluate.choose_caption_source``) in
    the captioner's sidecar, where export reads it."""
    sidecar = load_sidecar(models_dir, "captioner")
    sidecar["caption_choice"] = choice
    _write_sidecar(Path(models_dir) / "captioner.json", sidecar)


def _write_sidecar(path: Path, sidecar: dict) -> None:
    write_text(path, json.dumps(sidecar, indent=2, sort_keys=True, default=str))  # whole or not at all


def load_sidecar(models_dir: Path, kind: str) -> dict:
    path = Path(models_dir) / f"{kind}.json"
    if not path.is_file():
        raise ArtifactError(f"{path} is missing: train the {kind} first (`train_models(models={kind})`)")
    return json.loads(path.read_text())


def catalogs_trained_on(sidecar: dict) -> list[dict]:
    """The catalogs a sidecar's model was trained on, each ``{"name", "fingerprint"}``
    (``catalogs.fingerprints.catalog_fingerprint``); a sidecar from before several catalogs were
    trained on at once holds one fingerprint and no name."""
    return sidecar.get("catalogs") or [{"fingerprint": sidecar.get("catalog_fingerprint")}]


def load_trained(models_dir: Path, kind: str) -> tuple[keras.Model, dict]:
    """The model (loaded with ``safe_mode=True``: no code from the file runs) and its sidecar."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")
    sidecar = load_sidecar(models_dir, kind)
    path = Path(models_dir) / f"{kind}.keras"
    if not path.is_file():
        raise ArtifactError(f"{path} is missing")
    # Custom layers/losses register themselves on import.
    import models.captioner  # noqa: F401
    import models.equivariant  # noqa: F401
    import models.regressor  # noqa: F401

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    return model, sidecar


def load_backbone(models_dir: Path) -> keras.Model:
    """The trained backbone of the classifier in ``models_dir``: what a new training starts from."""
    from models.classifier import BACKBONE_LAYER

    return load_trained(models_dir, PRETRAINED_KIND)[0].get_layer(BACKBONE_LAYER)
