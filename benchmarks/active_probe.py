"""``morphcat bench active --head-only``: the active-learning loop averaged over every fold and
several starts, affordable because only a linear head is retrained each round.

``benchmarks.active`` retrains the whole classifier per round (~6 min a strategy-round on 2
cores), so it runs one fold once, and its differences between strategies are within training
noise. Here the backbone of a pretrained classifier (``--init-from``, e.g. trained on the
synthetic survey, which has seen no real label) is frozen: its pooled features of every labelled
galaxy, and of each galaxy's 8 rotations/flips, are computed once; each round fits a multinomial
logistic regression (scikit-learn, the trainer's class weights) on the labels so far. What
``export.serve.select.choose`` receives is what ``morphcat select`` reads from a run annotated by
that model: its class probabilities, its embedding (the pretrained model's projection of the
pooled features) and, for ``bald``, the probabilities of the 8 views. Each (fold, start) pair
gives every strategy the same start and test set, so a strategy's gain over random is measured
pairwise and reported with its standard error.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.active import plot_curves
from benchmarks.report import write_summary

PROBE_C = 1.0  # scikit-learn's default inverse regularisation; not tuned on the shared sample


def _features(classifier, config, catalog, rows: np.ndarray):
    """(the classifier's pooled features of the 8 views (V, N, k), the catalog rows they are of): the first view is
    the image as decoded."""
    from catalogs.inputs import dihedral_views
    from models.classifier import pooled_features
    from models.data import decode_images

    decoded = decode_images(catalog, rows, config.image)
    if decoded.failures:
        raise ValueError(f"{len(decoded.failures)} images of {catalog.root} do not decode, e.g. {decoded.failures[0]}")
    x = decoded.pixels.astype(np.float32) * np.float32(config.image.scale)
    return np.stack([pooled_features(classifier, v) for v in dihedral_views(x)]), decoded.good_rows


class _Head:
    """A linear softmax head on standardised features, its probabilities over every class name
    (a class with no label yet gets probability 0)."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], balance: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        from models.data import class_weights

        self.class_names = list(class_names)
        self.model = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=5000))
        self.model.fit(features, labels, logisticregression__sample_weight=class_weights(labels, class_names, balance))

    def probs(self, features: np.ndarray) -> np.ndarray:
        out = np.zeros((len(features), len(self.class_names)))
        seen = [self.class_names.index(c) for c in self.model.classes_]
        out[:, seen] = self.model.predict_proba(features)
        return out


def run_probe_bench(catalog_path: Path, out: Path, init_from: Path, strategies: Sequence[str], start: int = 100,
                    step: int = 100, rounds: int = 4, folds: int = 5, repeats: int = 3, seed: int = 0) -> dict:
    from catalogs.contract import read_catalog
    from export.serve.select import choose
    from models.artifacts import PRETRAINED_KIND, load_trained
    from models.config import ModelConfig, TrainSettings
    from models.crossval import folds_of
    from models.embedding import EmbeddingProjection
    from models.metrics import classification_metrics

    if "random" not in strategies:
        raise ValueError("the head-only bench measures each strategy against random: include it in the strategies")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    catalog = read_catalog(catalog_path)
    labels_all = np.array(catalog.table.column("label").to_pylist(), dtype=object)
    labelled_rows = np.flatnonzero(labels_all != None)  # noqa: E711 (an object array)
    pretrained, sidecar = load_trained(init_from, PRETRAINED_KIND)
    config = ModelConfig.from_dict(sidecar["config"])
    views, rows = _features(pretrained, config, catalog, labelled_rows)
    embeddings = EmbeddingProjection.from_dict(sidecar["embedding"]).project(views[0])
    labels = labels_all[rows].astype(str)
    class_names = sorted(set(labels))
    fold_of = folds_of([catalog], ["catalog"], folds)[0][rows]
    balance = TrainSettings().class_balance
    runs = []  # one per (fold, repeat): every strategy's curve from the same start
    for fold in range(folds):
        test = np.flatnonzero(fold_of == fold)
        pool = np.flatnonzero(fold_of != fold)
        if len(pool) < start + step * rounds:
            raise ValueError(f"fold {fold}'s pool has {len(pool)} labelled galaxies, fewer than the "
                             f"{start + step * rounds} {rounds} rounds would label")
        for repeat in range(repeats):
            run_seed = seed + 1000 * fold + repeat
            first = np.random.default_rng(run_seed).choice(pool, start, replace=False)
            curves = {}
            for strategy in strategies:
                labelled, curve = np.sort(first), []
                for r in range(rounds + 1):
                    head = _Head(views[0][labelled], labels[labelled], class_names, balance)
                    predicted = np.array(class_names)[head.probs(views[0][test]).argmax(axis=1)]
                    m = classification_metrics(list(labels[test]), list(predicted), class_names)
                    curve.append({"labels": int(len(labelled)), "accuracy": m["accuracy"],
                                  "balanced_accuracy": m["balanced_accuracy"]})
                    if r == rounds:
                        break
                    candidates = np.setdiff1d(pool, labelled)

                    def view_probs(picked, head=head, candidates=candidates):
                        return (np.stack([head.probs(v[candidates[picked]]) for v in views]),
                                np.ones(len(picked), bool))

                    picked, _ = choose(strategy, head.probs(views[0][candidates]), step, seed=run_seed + r,
                                       embeddings=embeddings[candidates], view_probs=view_probs)
                    labelled = np.sort(np.concatenate([labelled, candidates[picked]]))
                curves[strategy] = curve
            runs.append({"fold": fold, "repeat": repeat, "seed": run_seed, "test_rows": int(len(test)),
                         "pool": int(len(pool)), "curves": curves})
    summary = {"catalog": str(catalog_path), "init_from": str(init_from), "image_size": config.image.size,
               "galaxies": int(len(rows)), "classes": class_names, "start": start, "step": step, "rounds": rounds,
               "folds": folds, "repeats": repeats, "head": f"logistic regression (C={PROBE_C}) on the frozen "
               "pooled features", "strategies": list(strategies), "table": summarise(runs, strategies),
               "runs": runs}
    mean_curves = {k: [{"labels": row["labels"], "balanced_accuracy": row[k]["balanced_accuracy"]}
                       for row in summary["table"]] for k in strategies}
    plot_curves(mean_curves, f"balanced accuracy (mean of {folds * repeats} runs)", out / "active.png")
    return write_summary(out, "active", summary, probe_markdown(summary))


def summarise(runs: list[dict], strategies: Sequence[str]) -> list[dict]:
    """Per round and strategy: mean accuracy and balanced accuracy over the runs, and the mean
    paired difference from random (same fold, same start) with its standard error."""
    table = []
    for i, point in enumerate(runs[0]["curves"]["random"]):
        row = {"labels": point["labels"]}
        for strategy in strategies:
            cell = {}
            for metric in ("accuracy", "balanced_accuracy"):
                values = np.array([run["curves"][strategy][i][metric] for run in runs])
                gains = values - np.array([run["curves"]["random"][i][metric] for run in runs])
                cell[metric] = round(float(values.mean()), 4)
                cell[f"{metric}_gain"] = round(float(gains.mean()), 4)
                cell[f"{metric}_gain_se"] = round(float(gains.std(ddof=1) / np.sqrt(len(runs))) if len(runs) > 1
                                                  else float("nan"), 4)
            row[strategy] = cell
        table.append(row)
    return table


def labels_to_reach(table: list[dict], strategy: str, metric: str) -> int | None:
    """The fewest labels (a round's count) at which ``strategy``'s mean ``metric`` reaches random's at
    the last round; None if it never does."""
    target = table[-1]["random"][metric]
    return next((row["labels"] for row in table if row[strategy][metric] >= target), None)


def probe_markdown(s: dict) -> str:
    strategies = s["strategies"]
    others = [k for k in strategies if k != "random"]
    lines = [f"Simulated active learning on {s['catalog']} ({s['galaxies']} labelled galaxies), head only: the backbone "
             f"of {s['init_from']} frozen, a {s['head']} refitted each round. {s['folds']} folds × {s['repeats']} random "
             f"starts of {s['start']} labels, then {s['step']} a round chosen by each strategy. Mean balanced accuracy "
             "on the test folds; in brackets the gain over random on the same fold and start (± standard error):"]
    for metric in ("balanced_accuracy", "accuracy"):
        if metric == "accuracy":
            lines += ["", "Mean accuracy (gain over random ± standard error):"]
        lines += ["", "| labels | " + " | ".join(strategies) + " |", "|---:|" + "---|" * len(strategies)]
        for row in s["table"]:
            cells = [f"{row['random'][metric]:.3f}"]
            cells += [f"{row[k][metric]:.3f} ({row[k][f'{metric}_gain']:+.3f} ± {row[k][f'{metric}_gain_se']:.3f})"
                      for k in others]
            lines.append(f"| {row['labels']} | " + " | ".join(cells) + " |")
    for metric, name in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy")):
        last = s["table"][-1]
        lines += ["", f"Labels each strategy needs to reach random's {name} at {last['labels']} labels "
                  f"({last['random'][metric]:.3f}), to the nearest round:", ""]
        for k in strategies:
            needed = labels_to_reach(s["table"], k, metric)
            lines.append(f"- {k}: " + ("not within these rounds" if needed is None else
                                       f"{needed} ({1 - needed / last['labels']:.0%} fewer)"))
    return "\n".join(lines) + "\n"
