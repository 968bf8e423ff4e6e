"""``morphcat bench active``: does choosing which galaxies get labelled beat choosing at random?

A simulated active-learning loop on a labelled catalog (its labels play the volunteers): one
stratified fold (``models.data.assign_folds``, as ``evaluate --cv``) is the fixed test set, the
rest the pool. Every strategy starts from the same seeded ``start`` random labels; each round a
classifier is trained on the labels so far (``models.train.train_morphology``, its validation
split and calibration from those labels only; from scratch, or from the backbone of ``init_from``,
e.g. one trained on the synthetic survey, which has seen no real label), scored on the test set, and
``export.serve.select.choose`` (what ``morphcat select`` runs) picks the next ``step`` galaxies
from the unlabelled pool. The table gives accuracy and balanced accuracy per round and strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import write_summary
from catalogs.atomic import atomic_path

DEFAULT_STRATEGIES = ("random", "entropy", "margin", "bald", "diverse")


def _outputs(trained, config, catalog, rows: np.ndarray):
    """Probabilities, embeddings, the catalog rows they are of (those of ``rows`` that decode) and
    the model inputs, by the Keras classifier."""
    from models.calibration import softmax
    from models.classifier import logits, pooled_features
    from models.data import decode_images
    from models.embedding import EmbeddingProjection

    decoded = decode_images(catalog, rows, config.image)
    x = decoded.pixels.astype(np.float32) * np.float32(config.image.scale)
    projection = EmbeddingProjection.from_dict(trained.sidecar["embedding"])
    return softmax(logits(trained.model, x)), projection.project(pooled_features(trained.model, x)), decoded.good_rows, x


def run_active_bench(catalog_path: Path, out: Path, strategies: Sequence[str] = DEFAULT_STRATEGIES, start: int = 100,
                     step: int = 100, rounds: int = 4, epochs: int | None = None, folds: int = 5, fold: int = 0,
                     seed: int = 0, init_from: Path | None = None) -> dict:
    from catalogs.contract import Catalog, read_catalog
    from catalogs.inputs import dihedral_views
    from export.serve.select import choose
    from models.artifacts import PRETRAINED_KIND, load_backbone, load_sidecar
    from models.calibration import softmax
    from models.classifier import logits
    from models.config import ModelConfig, TrainSettings
    from models.crossval import folds_of
    from models.metrics import classification_metrics
    from models.train import train_morphology

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    catalog = read_catalog(catalog_path)
    labels = np.array(catalog.table.column("label").to_pylist(), dtype=object)
    test = np.flatnonzero(folds_of([catalog], ["catalog"], folds)[0] == fold)
    pool = np.setdiff1d(np.flatnonzero(labels != None), test)  # noqa: E711 (an object array)
    if len(pool) < start + step * rounds:
        raise ValueError(f"the pool has {len(pool)} labelled galaxies, fewer than the {start + step * rounds} "
                         f"{rounds} rounds would label")
    first = np.random.default_rng(seed).choice(pool, start, replace=False)
    # A pretrained backbone fixes the config (input size, widths) to its own, read back from it.
    config = ModelConfig() if init_from is None else \
        ModelConfig.from_dict(load_sidecar(init_from, PRETRAINED_KIND)["config"])
    init = None if init_from is None else load_backbone(init_from)
    settings = TrainSettings(seed=seed, test_fraction=0.0, **({"epochs": epochs} if epochs else {}))
    curves: dict[str, list[dict]] = {}
    # The start model is trained once and shared: every strategy then picks from the same model
    # (a re-train on CPU is not bit-identical), and the run trains (strategies − 1) fewer models.
    start_model = None
    for strategy in strategies:
        labelled = np.sort(first)
        curve = []
        for r in range(rounds + 1):
            if r == 0 and start_model is not None:
                clf = start_model
            else:
                subset = Catalog(catalog.table.take(labelled), catalog.root, catalog.source_format)
                (clf,) = train_morphology([subset], ["catalog"], config, settings, heads=("classifier",), init=init)
                start_model = start_model or clf
            probs, _, good, _ = _outputs(clf, config, catalog, test)
            names = clf.sidecar["class_names"]
            truth = list(labels[good])
            predicted = [names[i] for i in probs.argmax(axis=1)]
            m = classification_metrics(truth, predicted, sorted(set(names) | set(truth)))
            curve.append({"labels": int(len(labelled)), "accuracy": round(m["accuracy"], 4),
                          "balanced_accuracy": round(m["balanced_accuracy"], 4)})
            if r == rounds:
                break
            cprobs, cembed, candidates, cx = _outputs(clf, config, catalog, np.setdiff1d(pool, labelled))

            def view_probs(rows, model=clf.model, x=cx):
                views = dihedral_views(x[rows])
                return np.stack([softmax(logits(model, v)) for v in views]), np.ones(len(rows), bool)

            picked, _ = choose(strategy, cprobs, step, seed=seed + r, embeddings=cembed, view_probs=view_probs)
            labelled = np.sort(np.concatenate([labelled, candidates[picked]]))
        curves[strategy] = curve
    ids = catalog.table.column("object_id").to_pylist()
    summary = {"catalog": str(catalog_path), "test_rows": int(len(test)), "pool": int(len(pool)), "start": start,
               "start_ids": [ids[i] for i in np.sort(first)], "test_ids": [ids[i] for i in test],
               "step": step, "rounds": rounds, "epochs": settings.epochs, "fold": fold, "folds": folds,
               "init_from": None if init_from is None else str(init_from), "image_size": config.image.size,
               "curves": curves}
    plot_curves(summary["curves"], "balanced accuracy (test fold)", out / "active.png")
    return write_summary(out, "active", summary, active_markdown(summary))


def active_markdown(s: dict) -> str:
    strategies = list(s["curves"])
    lines = [f"Simulated active learning on {s['catalog']}: test fold {s['fold']} of {s['folds']} "
             f"({s['test_rows']} galaxies), a pool of {s['pool']}, {s['start']} random labels then {s['step']} a round "
             f"chosen by each strategy; a classifier trained each round ({s['epochs']} epochs at most) "
             + (f"from the backbone of {s['init_from']}. " if s.get("init_from") else "from scratch. ")
             + "Accuracy / balanced accuracy on the test fold:", "",
             "| labels | " + " | ".join(strategies) + " |", "|---:|" + "---|" * len(strategies)]
    for i, point in enumerate(s["curves"][strategies[0]]):
        cells = [f"{s['curves'][k][i]['accuracy']:.3f} / {s['curves'][k][i]['balanced_accuracy']:.3f}"
                 for k in strategies]
        lines.append(f"| {point['labels']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: dict[str, list[dict]], ylabel: str, path: Path) -> None:
    """Balanced accuracy against labelled galaxies, a line per strategy (``curves``: strategy →
    points with ``labels`` and ``balanced_accuracy``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for strategy, curve in curves.items():
        ax.plot([p["labels"] for p in curve], [p["balanced_accuracy"] for p in curve], marker="o", label=strategy)
    ax.set_xlabel("labelled galaxies")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
