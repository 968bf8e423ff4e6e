"""``morphcat bench ablation``: which modelling choices help, cross-validated, with their cost.

Each variant is the default training (``models.config``) with a few settings changed, declared
once in :data:`VARIANTS`. Every variant is cross-validated over the whole of every catalog given
(``models.crossval``: stratified folds by a hash of ``object_id``, each galaxy tested once).

Experiments outlive a working session, so the results live in a **ledger**: one JSON line per
finished (variant, fold) cell, appended the moment the cell ends, with the commit, the CPU and
its flags, the protocol (folds, epochs, models, catalogs by fingerprint, seed), the minutes it
took and its scores per catalog and stratum. A run skips every cell already in the ledger under
the same protocol, so a stopped run resumes where it stopped and a committed ledger accumulates
across machines; the table is rendered from the ledger alone. Fold 0 also times the variant's
exported bundle annotating synthetic 424 px cutouts end to end (``--throughput-images``).

A cell is known by its **recipe** (the model config, the training settings, the views and the
models trained; not the variant's name), so changing the default keeps the ledger honest: the
earlier default's cells count for the variant that now declares its recipe, and the cells of the
variant that became the default count for ``default``.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from catalogs.atomic import write_text
from models.config import BackboneConfig, ModelConfig, TrainSettings, with_defaults
from models.provenance import code_commit

REFERENCE = "default"


@dataclass(frozen=True)
class Variant:
    what: str  # one line for the table
    image: dict = field(default_factory=dict)  # ImageSpec overrides
    backbone: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # TrainSettings overrides
    views: int = 1  # 8: test-time averaging over the rotations/flips (evaluation and annotation cost ×8)
    votes: bool = True  # train the vote regressor jointly (its soft vote fractions shape the features)
    unlabelled: bool = False  # a student on the run's unlabelled catalogs, pseudo-labelled by a teacher (models.pseudo)
    members: int = 1  # > 1: a deep ensemble of that many models from successive seeds (models.crossval.run_fold)


VARIANTS: dict[str, Variant] = {
    REFERENCE: Variant("the default: D4-equivariant CNN (32-64-128-256), a class head per label scheme, soft class "
                       "targets (α 0.5), galaxy-sized crop, 64 px, D4 augmentation, joint classifier + votes, bfloat16 "
                       "where the CPU has it"),
    "union": Variant("one softmax over every catalog's classes (the previous default)",
                     settings={"class_heads": "union"}),
    "hard-targets": Variant("class targets the rule's label alone (the default until soft targets won)",
                            settings={"soft_targets": 0.0}),
    "raw-votes": Variant("the vote head learns the raw (weighted) fractions, what the pixels show (zoobot)",
                         settings={"vote_targets": "raw"}),
    "votes-both": Variant("a second vote head, in training only, learns the raw fractions beside the debiased "
                          "one (what the pixels show and what the labels read)", settings={"vote_targets": "both"}),
    "float32": Variant("float32 training everywhere (the default uses bfloat16 where the CPU has it)",
                       settings={"precision": "float32"}),
    "fixed-crop-0.5": Variant("fixed central crop of half the cutout (the previous default)",
                              image={"framing": "fixed", "crop": 0.5}),
    "fixed-crop-0.7": Variant("fixed central crop of 0.7 of the cutout", image={"framing": "fixed", "crop": 0.7}),
    "wide-view": Variant("a wider view around the galaxy: crop 4 × its extent instead of 2.5 × (a merger's companion "
                         "often sits outside the tight crop)", image={"galaxy_scale": 4.0}),
    "size-96": Variant("96 px input", image={"size": 96}),
    "affine": Variant("augmentation: + any rotation angle, ±10 % scale, ±4 % shift", settings={"augment": "d4+affine"}),
    "affine-colour": Variant("augmentation: + affine and ±10 % per-band gain",
                             settings={"augment": "d4+affine+colour"}),
    "tta-8": Variant("test-time average over the 8 rotations/flips (×8 inference)", views=8),
    # The defaults before soft targets and the D4 backbone, kept declared so their cells keep names.
    "plain-hard": Variant("plain CNN, hard class targets (the default before soft targets and the D4 backbone)",
                          backbone={"name": "small_cnn", "widths": (32, 64, 128, 128)}, settings={"soft_targets": 0.0}),
    "plain-hard-union": Variant("plain CNN, hard class targets, one softmax over every catalog's classes (the default "
                                "before a head per label scheme)",
                                backbone={"name": "small_cnn", "widths": (32, 64, 128, 128)},
                                settings={"soft_targets": 0.0, "class_heads": "union"}),
    "plain-cnn": Variant("a plain CNN (small_cnn 32-64-128-128, the default until the D4 backbone won): features "
                         "not invariant to rotations", backbone={"name": "small_cnn", "widths": (32, 64, 128, 128)}),
    "wide": Variant("wider backbone: 48-96-192-384 channels", backbone={"widths": (48, 96, 192, 384)}),
    "batch-64": Variant("batches of 64 instead of 32 (half the per-step work each galaxy carries; half the steps)",
                        settings={"batch_size": 64}),
    "batch-64-lr": Variant("batches of 64 at twice the learning rate (4e-3: the linear scaling rule keeps the "
                           "progress per galaxy seen)", settings={"batch_size": 64, "learning_rate": 4e-3}),
    "lean-stem": Variant("one convolution in the full-resolution first stage instead of two (the cheapest stage "
                         "in parameters, the dearest in memory traffic)", backbone={"depths": (1, 2, 2, 2)}),
    "pseudo-labels": Variant("a teacher (the default) labels the unlabelled catalogs with its vote fractions; a "
                             "student trains from scratch on both, the pseudo-labels' loss weighing as much as the "
                             "volunteers' (the training twice over, the student's on more images)", unlabelled=True),
    "ensemble-2": Variant("a deep ensemble of two default models, trained from seeds 0 and 1, averaging their "
                          "calibrated probabilities and vote fractions (training and inference ×2)", members=2),
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


def protocol_of(catalogs: list[Path], k: int, settings: TrainSettings, kinds: tuple[str, ...]) -> dict:
    """What makes two cells comparable: the folds, the training budget, the models, the catalogs
    (by content, not path) and the seed."""
    from models.crossval import catalog_fingerprints

    return {"folds": k, "epochs": settings.epochs, "seed": settings.seed, "models": list(kinds),
            "catalogs": catalog_fingerprints(catalogs)}


# Fixed by the protocol (epochs, seed) or by it through the settings (patience), not by a variant.
PROTOCOL_SETTINGS = ("epochs", "seed", "patience")


def recipe_of(config: dict, settings: dict, views: int, models, unlabelled: bool = False, members: int = 1) -> str:
    """What a cell trained, as comparable text: everything but the protocol. ``unlabelled``: it
    also trained on the run's unlabelled catalogs (which ones, its line records); ``members``:
    the models its predictions average."""
    config = with_defaults(ModelConfig(backbone=BackboneConfig()).to_dict(), config)
    settings = {k: v for k, v in with_defaults(asdict(TrainSettings()), settings).items() if k not in PROTOCOL_SETTINGS}
    recipe = {"config": config, "settings": settings, "views": views, "models": sorted(models)}
    recipe |= ({"unlabelled": True} if unlabelled else {}) | ({"members": members} if members != 1 else {})
    return json.dumps(recipe, sort_keys=True, default=list)


def variant_recipe(name: str, protocol: dict) -> str:
    variant = VARIANTS[name]
    config, settings = variant_config(variant, ModelConfig(backbone=BackboneConfig()), TrainSettings())
    return recipe_of(config.to_dict(), asdict(settings), variant.views, _models(variant, protocol), variant.unlabelled,
                     variant.members)


def line_recipe(line: dict) -> str:
    return recipe_of(line["config"], line["settings"], line.get("views", 1), line["train_images_per_second"],
                     bool(line.get("unlabelled")), line.get("members", 1))


def _models(variant: Variant, protocol: dict) -> tuple[str, ...]:
    return tuple(x for x in protocol["models"] if variant.votes or x != "regressor")


class Ledger:
    """The JSON-lines file of finished cells; a cell is (recipe, fold) under one protocol."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def lines(self) -> list[dict]:
        if not self.path.is_file():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x.strip()]

    def done(self, protocol: dict) -> set[tuple[str, int]]:
        """(recipe, fold) of every finished cell under ``protocol``."""
        return {(line_recipe(x), x["fold"]) for x in self.lines() if x["protocol"] == protocol}

    def append(self, line: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:  # one write per line: a killed run leaves whole lines only
            f.write(json.dumps(line, default=float, sort_keys=True) + "\n")


def run_cell(name: str, fold: int, loaded: list, names: tuple[str, ...], folds: list, protocol: dict,
             settings: TrainSettings, out: Path, throughput_images: int, unlabelled=()) -> dict:
    """Train and score one (variant, fold) cell; the ledger line it makes. ``unlabelled``:
    (name, catalog) pairs, for a variant that trains on them."""
    from benchmarks.run import machine, machine_line
    from catalogs.fingerprints import catalog_fingerprint
    from models.artifacts import save_trained
    from models.crossval import fold_scores, member_view, run_fold, training_summary
    from models.precision import cpu_flags

    variant = VARIANTS[name]
    config, vsettings = variant_config(variant, ModelConfig(backbone=BackboneConfig()), settings)
    use = _models(variant, protocol)
    t0 = time.perf_counter()
    extra = list(unlabelled) if variant.unlabelled else []
    held_out, ensemble = run_fold(loaded, list(names), config, vsettings, folds, fold, use, views=variant.views,
                                 unlabelled=extra, members=variant.members)
    minutes = (time.perf_counter() - t0) / 60.0
    trained = ensemble[0]
    line = {"variant": name, "fold": fold, "what": variant.what, "protocol": protocol, "commit": code_commit(),
            "machine": machine_line(machine()), "cpu_flags": cpu_flags(), "minutes": round(minutes, 2),
            "config": config.to_dict(), "settings": asdict(vsettings), "views": variant.views, "members": variant.members,
            "train_images_per_second": {k: t.sidecar.get("train_images_per_second") for k, t in trained.items()},
            "train_images_per_cpu_second": {k: t.sidecar.get("train_images_per_cpu_second") for k, t in trained.items()},
            "precision": trained[use[0]].sidecar.get("precision"),
            "scores": {h.catalog: fold_scores(h) for h in held_out},
            # per member, the joint training of the classifier and regressor (one history)
            "trainings": [training_summary(member[use[0]].history) for member in ensemble]}
    if variant.members > 1:  # each member alone too: how far the average is from its parts
        line["member_scores"] = [{h.catalog: fold_scores(member_view(h, m)) for h in held_out}
                                 for m in range(variant.members)]
    if extra:
        line["unlabelled"] = {n: catalog_fingerprint(c) for n, c in extra}
        line["pseudo_labels"] = trained[use[0]].sidecar["pseudo_labels"]
    if fold == 0 and throughput_images:
        models_dir = out / name / "fold0-models"
        for t in trained.values():
            save_trained(t, models_dir)
        # one member's bundle timed; views and members multiply the model's share of the cost
        line["annotate_images_per_s"] = round(_throughput(models_dir, out / name, throughput_images)
                                              / (variant.views * variant.members), 1)
    return line


def ledger_table(lines: list[dict], protocol: dict | None = None) -> list[dict]:
    """Per recipe (in ledger order) under ``protocol`` (default: the last line's): its folds'
    scores aggregated per catalog (``models.crossval.aggregate_scores``), minutes per fold,
    throughput. A row is named by the variant declaring that recipe today; a recipe no variant
    declares any more keeps its last recorded name and commit, marked "(retired)"."""
    from models.crossval import aggregate_scores

    if not lines:
        return []
    protocol = protocol or lines[-1]["protocol"]
    mine = [x for x in lines if x["protocol"] == protocol]
    declared = {variant_recipe(n, protocol): n for n in reversed(VARIANTS)}  # the first declared wins
    rows = []
    for recipe in dict.fromkeys(line_recipe(x) for x in mine):
        cells = sorted((x for x in mine if line_recipe(x) == recipe), key=lambda x: x["fold"])
        name = declared.get(recipe, f"{cells[-1]['variant']}@{cells[-1]['commit'][:7]} (retired)")
        cells = list({x["fold"]: x for x in cells}.values())  # a repeated cell: its last line
        catalogs = list(dict.fromkeys(c for x in cells for c in x["scores"]))
        rate = next((x["annotate_images_per_s"] for x in cells if x.get("annotate_images_per_s")), None)
        what = VARIANTS[name].what if name in VARIANTS else cells[-1]["what"]
        rows.append({"variant": name, "what": what, "folds": [x["fold"] for x in cells],
                     "complete": len(cells) == protocol["folds"], "commits": sorted({x["commit"] for x in cells}),
                     "minutes_per_fold": float(np.mean([x["minutes"] for x in cells])),
                     "annotate_images_per_s": rate,
                     "report": {c: aggregate_scores([x["scores"][c] for x in cells if c in x["scores"]])
                                for c in catalogs}})
    return rows


def _pm(entry: dict | None, digits: int = 3) -> str:
    if entry is None:
        return "–"
    if len(entry.get("folds", [])) == 1:  # one fold has no spread to show
        return f"{entry['mean']:.{digits}f}"
    return f"{entry['mean']:.{digits}f} ± {entry['sd']:.{digits}f}"


def _ece(e: dict) -> str:
    """ECE after scaling, with the floor a perfectly calibrated model shows on as many galaxies
    (cells from before the floor was scored show none)."""
    floor = e.get("ece_floor")
    return _pm(e.get("ece_after")) + ("" if floor is None else f" (floor {floor['mean']:.3f})")


def _stratum(e: dict, stratum: str, key: str = "accuracy") -> str:
    s = e.get("strata", {}).get(stratum)
    return "–" if not s or key not in s else f"{_pm(s[key])} (n={s['n']})"


def _recall(e: dict, stratum: str, cls: str) -> str:
    r = e.get("strata", {}).get(stratum, {}).get("recall", {}).get(cls)
    return "–" if r is None else f"{r['recall']:.2f} [{r['low']:.2f}, {r['high']:.2f}] (n={r['n']})"


def ablation_markdown(rows: list[dict], protocol: dict) -> str:
    """One table per catalog (variants as rows): accuracy and balanced accuracy on all labels and
    per stratum, merger recall, ECE, vote RMSE; then the cost of each variant."""
    catalogs = list(dict.fromkeys(c for r in rows for c in r["report"]))
    lines = [f"Protocol: {protocol['folds']}-fold cross-validation, at most {protocol['epochs']} epochs, seed "
             f"{protocol['seed']}, models {', '.join(protocol['models'])}; catalogs "
             + ", ".join(f"{n} ({f})" for n, f in protocol["catalogs"].items()) + ". Mean ± sd over the folds; "
             "n: galaxies pooled over the folds; recalls pooled with their Wilson 95 % interval.", ""]
    for c in catalogs:
        head = ["variant", "folds", "accuracy", "balanced accuracy", "supported", "visible", "confident",
                "merger recall (supported)", "ECE", "RMSE per question", "RMSE Kaggle", "RMSE Kaggle, raw votes"]
        lines += [f"### {c}", "", "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
        for r in rows:
            e = r["report"].get(c)
            if e is None:
                continue
            merger = "supported" if "supported" in e.get("strata", {}) else "all"
            lines.append("| " + " | ".join([
                r["variant"], f"{len(r['folds'])}/{protocol['folds']}", _stratum(e, "all"),
                _stratum(e, "all", "balanced_accuracy"), _stratum(e, "supported"), _stratum(e, "visible"),
                _stratum(e, "confident"), _recall(e, merger, "merger"), _ece(e),
                _pm(e.get("rmse_per_question")), _pm(e.get("rmse_kaggle")), _pm(e.get("rmse_kaggle_raw"))]) + " |")
        lines.append("")
    lines += ["### cost", "", "| variant | what | minutes per fold | annotate images/s | commits |", "|---|---|---:|---:|---|"]
    for r in rows:
        rate = "–" if r["annotate_images_per_s"] is None else f"{r['annotate_images_per_s']:.0f}"
        lines.append(f"| {r['variant']} | {r['what']} | {r['minutes_per_fold']:.1f} | {rate} | "
                     f"{', '.join(c[:12] for c in r['commits'])} |")
    return "\n".join(lines) + "\n"


def run_ablation(catalogs: list[Path], out: Path, variants: list[str], ledger: Path | None = None, k: int = 3,
                 epochs: int = TrainSettings.epochs, seed: int = TrainSettings.seed,
                 kinds: tuple[str, ...] = ("classifier", "regressor"),
                 throughput_images: int = 300, progress=None, unlabelled: list[Path] = ()) -> dict:
    """Cross-validate every variant in ``variants``, one (variant, fold) cell at a time, each
    appended to ``ledger`` (default ``out/ledger.jsonl``) as it finishes; cells already there
    under the same protocol are skipped. Writes ``out/ablation.md`` and ``out/ablation.json``
    from the ledger. ``progress``: called with a line per cell started. ``unlabelled``: catalogs
    without labels, for the variants that train on them (``pseudo-labels``)."""
    from catalogs.contract import read_catalog
    from models.crossval import folds_of
    from models.data import catalog_names

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    needy = [v for v in variants if VARIANTS[v].unlabelled]
    if needy and not unlabelled:
        raise ValueError(f"{', '.join(needy)} train(s) on unlabelled catalogs: give them (--unlabelled)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    book = Ledger(ledger or out / "ledger.jsonl")
    settings = replace(TrainSettings(), epochs=epochs, seed=seed, patience=max(TrainSettings().patience, epochs))
    protocol = protocol_of(catalogs, k, settings, kinds)
    done = book.done(protocol)
    # Fold by fold across the variants: a stopped run leaves paired comparisons (same fold).
    todo = [(v, f) for f in range(k) for v in variants if (variant_recipe(v, protocol), f) not in done]
    if todo:
        loaded = [read_catalog(c) for c in catalogs]
        names = catalog_names(catalogs)
        folds = folds_of(loaded, names, k)
        extra = list(zip(catalog_names(unlabelled), (read_catalog(c) for c in unlabelled))) if needy else []
        for v, f in todo:
            if progress:
                progress(f"{v}, fold {f + 1} of {k}")
            book.append(run_cell(v, f, loaded, names, folds, protocol, settings, out, throughput_images, extra))
    rows = [r for r in ledger_table(book.lines(), protocol) if r["variant"] in variants]
    summary = {"protocol": protocol, "ledger": str(book.path), "results": rows}
    write_text(out / "ablation.json", json.dumps(summary, indent=2, default=float) + "\n")
    write_text(out / "ablation.md", ablation_markdown(rows, protocol))
    return summary
