"""``morphcat bench ablation``: which modelling choices help, cross-validated, with their cost.

Each variant is the default training (``models.config``) with a few settings changed, declared
once in :data:`VARIANTS`. Every variant is cross-validated over the whole of every catalog given
(``models.crossval``: stratified folds by a hash of ``object_id``, each galaxy tested once) and
then timed where it matters to a survey: the training minutes per fold, and the images/s of its
exported bundle annotating synthetic 424 px cutouts end to end (``catalog-annotate``, one
process, this machine's cores). The table is the mean ± sd over the folds, per catalog.

Cross-validating a dozen variants on 2 cores takes hours, so the protocol can be shortened
(``--folds``, ``--epochs``, ``--models``); whatever is used is written beside the results, and
the variants are compared only with each other under the same protocol.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from models.config import BackboneConfig, ModelConfig, TrainSettings

REFERENCE = "default"


@dataclass(frozen=True)
class Variant:
    what: str  # one line for the table
    image: dict = field(default_factory=dict)  # ImageSpec overrides
    backbone: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # TrainSettings overrides
    views: int = 1  # 8: test-time averaging over the rotations/flips (evaluation and annotation cost ×8)
    votes: bool = True  # train the vote regressor jointly (its soft vote fractions shape the features)


VARIANTS: dict[str, Variant] = {
    REFERENCE: Variant("the default: galaxy-sized crop, 64 px, D4 augmentation, joint classifier + votes"),
    "fixed-crop-0.5": Variant("fixed central crop of half the cutout (the previous default)",
                              image={"framing": "fixed", "crop": 0.5}),
    "fixed-crop-0.7": Variant("fixed central crop of 0.7 of the cutout", image={"framing": "fixed", "crop": 0.7}),
    "size-96": Variant("96 px input", image={"size": 96}),
    "affine": Variant("augmentation: + any rotation angle, ±10 % scale, ±4 % shift", settings={"augment": "d4+affine"}),
    "affine-colour": Variant("augmentation: + affine and ±10 % per-band gain",
                             settings={"augment": "d4+affine+colour"}),
    "tta-8": Variant("test-time average over the 8 rotations/flips (×8 inference)", views=8),
    "wide": Variant("wider backbone: 48-96-192-192 channels", backbone={"widths": (48, 96, 192, 192)}),
    "weight-decay": Variant("AdamW weight decay 1e-4", settings={"weight_decay": 1e-4}),
    "balance-1.0": Variant("fully balanced class weights (the default is their square root)",
                           settings={"class_balance": 1.0}),
    "no-votes": Variant("classifier alone: no soft vote-fraction targets", votes=False),
}


def variant_config(variant: Variant, base: ModelConfig, settings: TrainSettings) -> tuple[ModelConfig, TrainSettings]:
    config = replace(base, image=replace(base.image, **variant.image),
                     backbone=replace(base.backbone, **variant.backbone) if variant.backbone else base.backbone)
    return config, replace(settings, **variant.settings)


def _throughput(models_dir: Path, work: Path, n_images: int) -> float:
    """images/s of the variant's exported bundle annotating ``n_images`` synthetic 424 px
    cutouts (the second of two runs: the first warms the caches)."""
    from catalogs.synthetic import synthesize_survey
    from export.builder.exporter import export_bundle
    from export.serve.catalog import annotate_catalog

    survey = work.parent / "throughput-survey"
    if not (survey / "catalog.parquet").is_file():
        synthesize_survey(out=survey, n=n_images, seed=5, size=424, mix="gz2")
    bundle = work / "bundle"
    export_bundle(models_dir, bundle)
    rates = [annotate_catalog(catalog=survey / "catalog.parquet", bundle=bundle, out=work / f"annotate-{i}")
             ["images_per_second"] for i in range(2)]
    return float(rates[-1])


def run_variant(name: str, catalogs: list[Path], out: Path, k: int, settings: TrainSettings,
                kinds: tuple[str, ...], throughput_images: int) -> dict:
    from catalogs.contract import read_catalog
    from models.artifacts import save_trained
    from models.crossval import cv_report, folds_of, run_fold
    from models.data import catalog_names

    variant = VARIANTS[name]
    config, vsettings = variant_config(variant, ModelConfig(backbone=BackboneConfig()), settings)
    loaded = [read_catalog(c) for c in catalogs]
    names = catalog_names(catalogs)
    folds = folds_of(loaded, names, k)
    use = tuple(x for x in kinds if variant.votes or x != "regressor")
    held_out, seconds = [], []
    for fold in range(k):
        t0 = time.perf_counter()
        got, trained = run_fold(loaded, names, config, vsettings, folds, fold, use, views=variant.views)
        seconds.append(time.perf_counter() - t0)
        held_out += got
        if fold == 0:
            models_dir = out / name / "fold0-models"
            for t in trained.values():
                save_trained(t, models_dir)
    result = {"variant": name, "what": variant.what, "config": config.to_dict(), "settings": asdict(vsettings),
              "views": variant.views, "models": list(use), "train_minutes_per_fold": _minutes(seconds),
              "report": {c: {k: v for k, v in e.items() if k not in ("reliability",)}
                         for c, e in cv_report(held_out).items()}}
    result["annotate_images_per_s"] = round(_throughput(out / name / "fold0-models", out / name, throughput_images)
                                            / variant.views, 1) if throughput_images else None
    (out / name / "result.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    return result


def _minutes(seconds: list[float]) -> dict:
    m = np.asarray(seconds) / 60.0
    return {"mean": round(float(m.mean()), 2), "folds": m.round(2).tolist()}


def _pm(entry: dict | None, digits: int = 3) -> str:
    return "–" if entry is None else f"{entry['mean']:.{digits}f} ± {entry['sd']:.{digits}f}"


def ablation_markdown(results: list[dict], protocol: dict) -> str:
    catalogs = list(results[0]["report"]) if results else []
    head = ["variant", "what"]
    for c in catalogs:
        head += [f"{c} accuracy", f"{c} balanced accuracy", f"{c} merger recall"]
    head += ["RMSE (per question)", "training min/fold", "annotate images/s"]
    lines = [f"Protocol: {protocol['folds']}-fold cross-validation, at most {protocol['epochs']} epochs, models "
             f"{', '.join(protocol['models'])}; machine: {protocol['machine']}", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for r in results:
        cells = [r["variant"], r["what"]]
        rmse = None
        for c in catalogs:
            e = r["report"].get(c, {})
            cells += [_pm(e.get("accuracy")), _pm(e.get("balanced_accuracy")),
                      _pm(e.get("recall", {}).get("merger"), 2)]
            rmse = rmse or e.get("rmse_per_question")
        cells += [_pm(rmse), f"{r['train_minutes_per_fold']['mean']:.1f}",
                  "–" if r["annotate_images_per_s"] is None else f"{r['annotate_images_per_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_ablation(catalogs: list[Path], out: Path, variants: list[str], k: int = 3, epochs: int = 30,
                 kinds: tuple[str, ...] = ("classifier", "regressor"), throughput_images: int = 300) -> dict:
    """Cross-validate every variant in ``variants``; results already in ``out/<variant>/`` are
    kept (a long ablation resumes where it stopped)."""
    from benchmarks.run import machine, machine_line

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = replace(TrainSettings(), epochs=epochs, patience=max(TrainSettings().patience, epochs))
    results = []
    for name in variants:
        done = out / name / "result.json"
        results.append(json.loads(done.read_text()) if done.is_file()
                       else run_variant(name, catalogs, out, k, settings, kinds, throughput_images))
    protocol = {"folds": k, "epochs": epochs, "models": list(kinds), "catalogs": [str(c) for c in catalogs],
                "machine": machine_line(machine())}
    summary = {"protocol": protocol, "results": results}
    (out / "ablation.json").write_text(json.dumps(summary, indent=2, default=float) + "\n")
    (out / "ablation.md").write_text(ablation_markdown(results, protocol))
    return summary
