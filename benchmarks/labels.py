"""``morphcat bench labels``: how far the labels, not the model, limit the accuracy, and what
classical morphology adds.

1. **Label support** (catalogs with GZ2 votes): the GZ2 class rule reads *per-question* debiased
   fractions, so a "merger" or a "spiral" can rest on the few volunteers who reached the deciding
   question. Per class, the share of galaxies whose label a majority of all volunteers supports
   (``catalogs.labels.label_support``, the cumulative fraction of the deciding answer).
2. **The rule on the raw votes** (``--hart``: the Hart16-layout CSV the catalog was ingested from):
   the same rule applied to the volunteers' weighted fractions before the redshift debiasing,
   against the catalog's (debiased) label: how often what the volunteers saw in these pixels gives
   the label the model is scored against. With it, the **noise ceiling** (``noise_ceiling``): how
   often a label survives when each galaxy's votes are drawn again from its debiased fractions with
   its number of volunteers (``total_classifications``).
3. **The floor for the vote fractions**: every galaxy's prediction is its training folds' mean
   of the 37 cumulative fractions, RMSE both ways (per question and Kaggle) on the same folds as
   ``evaluate --cv``: what a regressor that ignores the image scores.
4. **Classical morphology** (statmorph: concentration, asymmetry, smoothness, Gini, M20, shape and
   Sérsic index, plus colour and brightness measured in statmorph's segment) on the model's own
   input, a logistic regression cross-validated over the folds ``evaluate --cv`` uses; with
   ``--cv-predictions`` (``evaluate --cv``'s ``predictions.parquet``) also the CNN's held-out
   probabilities alone and stacked with the morphology (a second-level model trained on the other
   folds' rows): what feeding the features to the head could give, and statmorph's time per galaxy
   against annotation's.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.report import write_summary
from catalogs.labels import ARTIFACT, RULE, SUPPORT_MAJORITY, derive_labels, label_support

MORPHOMETRY = ("concentration", "asymmetry", "smoothness", "gini", "m20", "ellipticity_asymmetry",
               "elongation_asymmetry", "sersic_n", "rpetro_circ", "multimode", "intensity", "deviation",
               "outer_asymmetry", "shape_asymmetry", "colour_ir", "colour_ig", "log_flux", "log_surface_brightness")
SEGMENT_SIGMAS = 2.0  # detection threshold above the sky, in sky σ (on a 3×3-smoothed copy)
SEGMENT_MIN_PIXELS = 9


def support_table(labels: Sequence, cumulative: np.ndarray) -> dict:
    """Per rule class: galaxies, share supported by a majority of volunteers, share under 0.3,
    median support."""
    support = label_support(cumulative, labels)
    lab = np.array(labels, dtype=object)
    out = {}
    for name, _ in RULE:
        s = support[lab == name]
        s = s[~np.isnan(s)]
        if len(s):
            out[name] = {"galaxies": int(len(s)), "supported": float(np.mean(s >= SUPPORT_MAJORITY)),
                         "below_0_3": float(np.mean(s < 0.3)), "median_support": float(np.median(s))}
    rated = support[~np.isnan(support)]
    out["all"] = {"galaxies": int(len(rated)), "supported": float(np.mean(rated >= SUPPORT_MAJORITY)),
                  "below_0_3": float(np.mean(rated < 0.3)), "median_support": float(np.median(rated))}
    return out


CEILING_DRAWS = 200  # resampled vote sets per galaxy: the survival share's error is ≤ 0.035


def noise_ceiling(per_question: np.ndarray, volunteers: np.ndarray, labels: Sequence, draws: int = CEILING_DRAWS,
                  seed: int = 0) -> dict:
    """How often a galaxy's label survives a second set of volunteers: per galaxy, ``draws`` times
    each question's votes are resampled (multinomial) from its debiased fractions with the number
    of volunteers who reached it (``volunteers`` × the cumulative share of its parent answer), and
    the rule re-applied. The mean survival over galaxies, overall and per class, is the all-label
    accuracy a perfect model of the volunteers would score."""
    from catalogs.tree import GZ2_TREE

    f = np.nan_to_num(np.asarray(per_question, dtype=np.float64), nan=0.0)
    cumulative = GZ2_TREE.cumulative(f)
    rng = np.random.default_rng(seed)
    lab = np.asarray(list(labels), dtype=object)
    survived = np.zeros(len(f))
    for _ in range(draws):
        sample = np.full_like(f, np.nan)
        for (_, sl), parent in zip(GZ2_TREE.question_slices, GZ2_TREE.parent_index):
            reach = np.ones(len(f)) if parent is None else cumulative[:, parent]
            n = np.rint(np.asarray(volunteers, dtype=np.float64) * reach).astype(np.int64)
            p = f[:, sl] / np.clip(f[:, sl].sum(axis=1, keepdims=True), 1e-12, None)
            for i in np.flatnonzero(n > 0):
                sample[i, sl] = rng.multinomial(n[i], p[i]) / n[i]
        again = derive_labels({c: sample[:, j] for j, c in enumerate(GZ2_TREE.debiased_columns)})
        survived += again == lab
    share = survived / draws
    rated = np.array([x is not None for x in lab])
    return {"draws": draws, "galaxies": int(rated.sum()), "ceiling": float(share[rated].mean()),
            "per_class": {c: float(share[lab == c].mean()) for c in sorted({x for x in lab[rated]})}}


def volunteers_of(hart_csv: Path, object_ids: Sequence[str]) -> np.ndarray:
    """Each galaxy's number of volunteers (``total_classifications`` of the Hart16-layout CSV);
    NaN for an id it lacks."""
    import pyarrow.csv as pv

    table = pv.read_csv(hart_csv, convert_options=pv.ConvertOptions(
        include_columns=["objid", "total_classifications"], column_types={"objid": "string"}))
    by_id = dict(zip(table.column("objid").to_pylist(), table.column("total_classifications").to_pylist()))
    return np.array([by_id.get(i, np.nan) for i in object_ids], dtype=np.float64)


def raw_rule_agreement(hart_csv: Path, object_ids: Sequence[str], labels: Sequence) -> dict:
    """The class rule applied to the weighted (not debiased) fractions of ``hart_csv``, against
    ``labels``: agreement overall and per label, and how the raw-vote classes are spread."""
    import pyarrow.csv as pv

    wanted = [col.replace("_debiased", "_weighted_fraction") for _, col in RULE]
    table = pv.read_csv(hart_csv, convert_options=pv.ConvertOptions(
        include_columns=["objid", *wanted], column_types={"objid": "string"}))
    raw = derive_labels({col: table.column(w).to_numpy(zero_copy_only=False).astype(np.float64)
                         for (_, col), w in zip(RULE, wanted)})
    by_id = dict(zip(table.column("objid").to_pylist(), raw))
    pairs = [(lab, by_id[i]) for i, lab in zip(object_ids, labels) if i in by_id and lab is not None]
    if not pairs:
        raise ValueError(f"no object_id of the catalog is an objid of {hart_csv}")
    truth, got = (np.array(x, dtype=object) for x in zip(*pairs))
    return {"galaxies": len(pairs), "agreement": float(np.mean(truth == got)),
            "per_label": {c: float(np.mean(got[truth == c] == c)) for c in sorted(set(truth))},
            "raw_classes": {c: int(n) for c, n in zip(*np.unique(got, return_counts=True))}}


def morphometry(pixels: np.ndarray) -> np.ndarray:
    """``MORPHOMETRY`` for one model input ((H, W, 3) uint8): statmorph on the grey image, colour
    and brightness in its segment. NaN where statmorph finds no source at the centre or flags its
    measurement as unusable."""
    import statmorph
    from photutils.segmentation import detect_sources
    from scipy import ndimage

    from catalogs.sources import MAD_TO_SIGMA, SKY_RADIUS

    x = pixels.astype(np.float64)
    h, w = x.shape[:2]
    y, xx = np.mgrid[:h, :w]
    ring = np.hypot((y + 0.5) / h - 0.5, (xx + 0.5) / w - 0.5) > SKY_RADIUS
    sky = np.median(x[ring], axis=0)
    x = x - sky
    grey = x.mean(axis=2)
    sigma = max(MAD_TO_SIGMA * float(np.median(np.abs(grey[ring] - np.median(grey[ring])))), 0.5)
    out = np.full(len(MORPHOMETRY), np.nan)
    seg = detect_sources(ndimage.uniform_filter(grey, 3), SEGMENT_SIGMAS * sigma, n_pixels=SEGMENT_MIN_PIXELS)
    if seg is None:
        return out
    centre = seg.data[h // 2 - 1:h // 2 + 2, w // 2 - 1:w // 2 + 2]
    if not (centre > 0).any():
        return out
    label = int(np.bincount(centre[centre > 0]).argmax())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = statmorph.SourceMorphology(grey, seg, label, gain=1.0)
    if m.flag >= 2:  # statmorph's "bad": the measurement is not to be used
        return out
    mask = seg.data == label
    flux = np.clip(x[mask], 0, None).sum(axis=0) + 1.0  # channels: SDSS i, r, g in R, G, B
    out[:14] = [getattr(m, name) for name in MORPHOMETRY[:14]]
    out[14:] = [np.log10(flux[0] / flux[2]), np.log10(flux[1] / flux[2]), np.log10(flux.sum()),
                np.log10(flux.sum() / mask.sum())]
    return out


def measure(catalog, rows: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray, float]:
    """Morphometry of ``rows``: (features (n, F), the rows that decoded, seconds per galaxy)."""
    from catalogs.decoding import decode_row
    from catalogs.imaging import ImageError

    paths = catalog.table.column("image_path").to_pylist()
    feats, good, seconds = [], [], 0.0
    for r in rows:
        try:
            pixels = decode_row(catalog.root, paths[int(r)], spec).pixels
        except ImageError:
            continue
        t = time.perf_counter()
        feats.append(morphometry(pixels))
        seconds += time.perf_counter() - t
        good.append(int(r))
    return np.array(feats).reshape(-1, len(MORPHOMETRY)), np.array(good, dtype=np.int64), seconds / max(len(good), 1)


def cross_validated(features: np.ndarray, labels: np.ndarray, folds: np.ndarray, class_names: Sequence[str]) -> dict:
    """A logistic regression (balanced class weights) trained on every fold but one, tested on
    that one: accuracy and balanced accuracy over the galaxy classes, mean ± sd over the folds,
    and the pooled recall per class."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pred = np.empty(len(labels), dtype=object)
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        model = make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                              LogisticRegression(max_iter=5000, class_weight="balanced"))
        model.fit(features[train], labels[train])
        pred[test] = model.predict(features[test])
    return scores(labels, pred, folds, class_names)


def scores(labels: np.ndarray, pred: np.ndarray, folds: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy and balanced accuracy over the galaxy rows (artifacts left out, as ``evaluate
    --cv`` scores them) per fold, mean ± sd, and the pooled per-class recall."""
    from models.crossval import _mean_sd
    from models.metrics import classification_metrics

    galaxy = np.array([x != ARTIFACT for x in labels])
    per_fold = [classification_metrics(list(labels[galaxy & (folds == k)]), list(pred[galaxy & (folds == k)]),
                                       list(class_names)) for k in np.unique(folds)]
    pooled = classification_metrics(list(labels[galaxy]), list(pred[galaxy]), list(class_names))
    present = sorted(set(labels[galaxy]))
    return {"accuracy": _mean_sd([m["accuracy"] for m in per_fold]),
            "balanced_accuracy": _mean_sd([m["balanced_accuracy"] for m in per_fold]),
            "recall": {c: round(pooled["per_class"][c]["recall"], 4) for c in present}}


def run_labels_bench(catalog_paths: Sequence[Path], out: Path, hart: Path | None = None,
                     cv_predictions: Path | None = None, folds: int = 5, n: int | None = None) -> dict:
    """Every section of the module docstring, per catalog; ``n`` keeps each catalog's first rows."""
    import polars as pl

    from catalogs.contract import read_catalog
    from catalogs.inputs import ImageSpec
    from catalogs.targets import kaggle_targets, vote_matrix
    from models.crossval import folds_of, mean_vote_baseline
    from models.data import catalog_names

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    spec = ImageSpec()
    held = pl.read_parquet(cv_predictions) if cv_predictions is not None else None
    summary: dict = {"folds": folds, "image": spec.size, "framing": spec.framing, "catalogs": {}}
    for name, path in zip(catalog_names(catalog_paths), catalog_paths):
        catalog = read_catalog(path)
        table = catalog.table if n is None else catalog.table.slice(0, n)
        catalog = type(catalog)(table, catalog.root, catalog.source_format)
        ids = table.column("object_id").to_pylist()
        labels = np.array(table.column("label").to_pylist(), dtype=object)
        entry: dict = {"rows": table.num_rows}
        fold_of = folds_of([catalog], [name], folds)[0]
        if catalog.has_votes:
            targets = kaggle_targets(table)
            entry["support"] = support_table(labels, targets)
            entry["mean_votes"] = mean_vote_baseline(targets, fold_of)
        if hart is not None and catalog.has_votes:
            entry["raw_rule"] = raw_rule_agreement(hart, ids, labels)
            volunteers = volunteers_of(hart, ids)
            known = ~np.isnan(volunteers)
            if known.any():
                entry["noise_ceiling"] = noise_ceiling(vote_matrix(table.filter(known)), volunteers[known],
                                                       labels[known])
        labelled = np.flatnonzero(labels != None)  # noqa: E711 (an object array)
        features, good, seconds = measure(catalog, labelled, spec)
        names = sorted(set(labels[good]))
        entry["morphometry_seconds_per_galaxy"] = seconds
        entry["morphometry_unmeasured"] = float(np.mean(np.isnan(features[:, 0])))
        entry["morphometry"] = cross_validated(features, labels[good], fold_of[good], names)
        if held is not None:
            entry.update(_with_cnn(held.filter(pl.col("catalog") == name), ids, labels, good, features, fold_of))
        summary["catalogs"][name] = entry
    return write_summary(out, "labels", summary, labels_markdown(summary))


def _with_cnn(held, ids: list, labels: np.ndarray, good: np.ndarray, features: np.ndarray, fold_of: np.ndarray) -> dict:
    """The CNN's held-out predictions alone and stacked with the morphometry, on the rows both
    have, over the cross-validation's own folds."""
    if held.height == 0:
        return {}
    p_cols = [c for c in held.columns if c.startswith("p_")]
    names = [c[2:] for c in p_cols]
    row_of = {ids[r]: i for i, r in enumerate(good)}
    keep = [(row_of[o], k) for k, o in enumerate(held["object_id"].to_list()) if o in row_of]
    mine, theirs = (np.array(x, dtype=np.int64) for x in zip(*keep))
    probs = held.select(p_cols).to_numpy()[theirs]
    y = labels[good][mine]
    folds = held["fold"].to_numpy()[theirs]
    if not np.array_equal(folds, fold_of[good][mine]):
        raise ValueError("the predictions' folds are not this catalog's cross-validation folds (same K and names?)")
    cnn = np.array(names, dtype=object)[probs.argmax(axis=1)]
    return {"cnn_rows": int(len(mine)), "cnn": scores(y, cnn, folds, names),
            "stacked": cross_validated(np.hstack([np.log(np.clip(probs, 1e-6, 1.0)), features[mine]]), y, folds, names)}


def labels_markdown(s: dict) -> str:
    def pm(e):
        return f"{e['mean']:.3f} ± {e['sd']:.3f}"

    lines = [f"Label support, the rule on raw votes, and a classical-morphology baseline ({s['folds']}-fold, "
             f"{s['image']} px {s['framing']}-framed model inputs).", ""]
    for name, e in s["catalogs"].items():
        lines += [f"### {name} ({e['rows']} galaxies)", ""]
        if "support" in e:
            lines += [f"| label | galaxies | supported by a majority of volunteers (cumulative ≥ {SUPPORT_MAJORITY}) "
                      "| support < 0.3 | median support |", "|---|---:|---:|---:|---:|"]
            lines += [f"| {c} | {v['galaxies']} | {v['supported']:.2f} | {v['below_0_3']:.2f} | {v['median_support']:.2f} |"
                      for c, v in e["support"].items()]
            lines.append("")
        if "raw_rule" in e:
            r = e["raw_rule"]
            lines += [f"The rule on the volunteers' raw (weighted, not debiased) fractions gives the catalog's label for "
                      f"{r['agreement']:.3f} of {r['galaxies']} galaxies (per label: "
                      + ", ".join(f"{c} {v:.2f}" for c, v in r["per_label"].items()) + "; raw classes: "
                      + ", ".join(f"{c} {v}" for c, v in r["raw_classes"].items()) + ").", ""]
        if "noise_ceiling" in e:
            c = e["noise_ceiling"]
            lines += [f"Noise ceiling: resampling each galaxy's votes ({c['draws']} times, from its debiased fractions "
                      f"with its number of volunteers) and re-applying the rule keeps the label {c['ceiling']:.3f} of the "
                      f"time over {c['galaxies']} galaxies (per class: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in c["per_class"].items())
                      + "): the all-label accuracy of a perfect model of the volunteers.", ""]
        if "mean_votes" in e:
            v = e["mean_votes"]
            lines += [f"Predicting every galaxy's training-fold mean vote fractions: RMSE "
                      f"{pm(v['rmse_per_question'])} per question, {pm(v['rmse_kaggle'])} in the Kaggle definition "
                      "(the floor a regressor must beat).", ""]
        rows = [("classical morphology (statmorph + colour), logistic regression", e["morphometry"])]
        if "cnn" in e:
            rows += [("the CNN's held-out predictions (evaluate --cv)", e["cnn"]),
                     ("CNN probabilities + classical morphology, stacked", e["stacked"])]
        lines += ["| classifier | accuracy | balanced accuracy | recall per class |", "|---|---:|---:|---|"]
        lines += [f"| {what} | {pm(m['accuracy'])} | {pm(m['balanced_accuracy'])} | "
                  + ", ".join(f"{c} {v:.2f}" for c, v in m["recall"].items()) + " |" for what, m in rows]
        lines += ["", f"statmorph: {1000 * e['morphometry_seconds_per_galaxy']:.0f} ms per galaxy; "
                      f"{e['morphometry_unmeasured']:.1%} not measurable (no central source, or flagged bad).", ""]
    return "\n".join(lines)
