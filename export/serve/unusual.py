"""The most unusual galaxies of an annotation run, for a person to look at: a ranking written as
Parquet, with the score, its parts and the reason in words, and a contact sheet of the top cutouts.

Two signals, each divided by its 99th percentile over the run (so 1 means "as odd as the oddest
1 % of this run" for both, whatever their units):

    isolation  = 1 − mean cosine similarity of a galaxy's embedding to its ISOLATION_K nearest
                 other galaxies of the run (``export.serve.similar``'s index)
    ood        = the bundle's out-of-distribution score (``models.ood``): the distance of its
                 features to the *training* galaxies

    score      = (isolation + ood) / 2

Isolation finds what is rare *in this run* (a merger among thousands of ellipticals, a lens, a
ring, a satellite trail) even when the training set had such galaxies; the OOD score finds what the
models never learnt. The mean ranks a galaxy odd in both senses above one odd in one, and an
extreme value of either alone (a photo's OOD score is tens of times the run's percentile) still
tops the list. ``morphcat bench unusual`` measured the alternatives on a synthetic survey whose
mergers the model never saw (precision at 20: this mean 0.45, isolation alone 0.40, the maximum of
isolation and the training-scaled OOD score 0.20, the OOD score alone 0.10); the mean was chosen
for the reason above, on that one synthetic measurement. ``reason`` says which signal weighs more.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from catalogs.annotations import locate_catalog
from catalogs.errors import CatalogError
from catalogs.sources import MIN_SOURCE_SNR
from export.serve.similar import RunIndex, open_run_index

ISOLATION_K = 10
SCALE_QUANTILE = 0.99
DEFAULT_N = 100
SHEET_COLUMNS = 10
UNUSUAL_FOLDER = "unusual"


@dataclass(frozen=True)
class UnusualRun:
    run_id: str
    table: pl.DataFrame  # every annotated galaxy of the run, most unusual first
    parquet: Path
    sheet: Path | None  # the contact sheet of the top n (None when the catalog's images are not at hand)
    no_sheet_reason: str | None = None


def isolation(index, k: int = ISOLATION_K) -> np.ndarray:
    """1 − the mean cosine similarity of each indexed vector to its ``k`` nearest others."""
    n = len(index)
    if n < 2:
        return np.zeros(n)
    sims, rows = index.search(index.vectors(), min(k + 1, n))
    others = (rows >= 0) & (rows != np.arange(n)[:, None])  # −1: fewer found (HNSW); itself: not a neighbour
    others &= np.cumsum(others, axis=1) <= k
    return 1.0 - np.where(others, sims, 0.0).sum(axis=1) / np.maximum(others.sum(axis=1), 1)


def _scaled(values: np.ndarray) -> np.ndarray:
    scale = float(np.quantile(values, SCALE_QUANTILE)) if len(values) else 1.0
    return values / scale if scale > 0 else np.zeros_like(values)


def _reason(iso: float, iso_raw: float, median_raw: float, ood: float, ood_raw: float, snr: float,
            note: str | None) -> str:
    isolated = (f"isolated: its {ISOLATION_K} nearest galaxies are at mean cosine similarity {1 - iso_raw:.3f} "
                f"(run median {1 - median_raw:.3f})")
    unlike = f"unlike the training galaxies: ood_score {ood_raw:.2f} ({ood:.1f}× the run's 99th percentile)"
    parts = [isolated, unlike] if iso >= ood else [unlike, isolated]
    if snr < MIN_SOURCE_SNR:
        parts.append(f"no centred source (source_snr {snr:.1f})")
    if note:
        parts.append(f"input {note}")
    return "; ".join(parts)


def rank_unusual(out: Path, run_id: str | None = None) -> tuple[RunIndex, pl.DataFrame]:
    """Every annotated galaxy of the run with ``score``, ``isolation``, ``ood_score`` and
    ``reason``, most unusual first (``rank`` 1)."""
    run = open_run_index(out, run_id)
    iso_raw = isolation(run.index)
    scores = pl.DataFrame({"object_id": list(run.index.object_ids), "isolation": _scaled(iso_raw).astype(np.float32),
                           "isolation_raw": iso_raw.astype(np.float32)})
    pred = (run.annotations.scan(run.run_id)
            .select("object_id", "label_pred", "confidence", "ood_score", "ood_flag", "source_snr", "input_note",
                    "ra", "dec").collect())
    table = scores.join(pred, on="object_id", how="left", maintain_order="left")
    median_raw = float(np.median(iso_raw)) if len(iso_raw) else 0.0
    ood = _scaled(table["ood_score"].fill_null(0.0).to_numpy().astype(np.float64))
    iso = table["isolation"].to_numpy().astype(np.float64)
    table = table.with_columns(ood_in_run=pl.Series(ood, dtype=pl.Float32),
                               score=pl.Series((iso + ood) / 2, dtype=pl.Float32),
                               reason=pl.Series([_reason(i, r, median_raw, o, raw, s, n) for i, r, o, raw, s, n in zip(
                                   iso, table["isolation_raw"], ood, table["ood_score"].fill_null(0.0),
                                   table["source_snr"].fill_null(np.inf), table["input_note"])], dtype=pl.String))
    table = table.sort(["score", "object_id"], descending=[True, False]).with_row_index("rank", offset=1)
    return run, table.drop("isolation_raw")


def write_unusual(out: Path, n: int = DEFAULT_N, run_id: str | None = None, catalog: Path | None = None) -> UnusualRun:
    """:func:`rank_unusual`, written to ``OUT/unusual/run=<id>/unusual.parquet`` with the
    contact sheet of the top ``n`` (``contact_sheet.png``) beside it. ``catalog``: where the
    annotated catalog is now, if not where the folder recorded it."""
    index, table = rank_unusual(out, run_id)
    run = index.run_id
    folder = Path(out) / UNUSUAL_FOLDER / f"run={run}"
    folder.mkdir(parents=True, exist_ok=True)
    parquet = folder / "unusual.parquet"
    table.write_parquet(parquet)
    top = table.head(n)
    sheet, why_not = folder / "contact_sheet.png", None
    try:
        found = locate_catalog(index.annotations, catalog)
    except CatalogError as exc:  # the ranking stands without the pictures; the caller says why
        sheet, why_not = None, str(exc)
    else:
        paths = dict(zip(found.table.column("object_id").to_pylist(), found.table.column("image_path").to_pylist()))
        contact_sheet([found.root / paths[i] for i in top["object_id"]], top, sheet)
    (folder / "unusual.json").write_text(json.dumps({"run_id": run, "rows": table.height, "top": n,
                                                     "isolation_k": ISOLATION_K, "sheet": why_not or "written"},
                                                    indent=2))
    return UnusualRun(run, table, parquet, sheet, why_not)


def contact_sheet(images: list[Path], top: pl.DataFrame, path: Path) -> None:
    """The cutouts of ``top`` in rank order, ``SHEET_COLUMNS`` a row, each titled with its rank,
    object id and score; an image that cannot be read is a grey tile saying so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    count = max(len(images), 1)
    cols = min(SHEET_COLUMNS, count)
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, image, row in zip(axes.flat, images, top.iter_rows(named=True)):
        try:
            with Image.open(image) as im:
                ax.imshow(np.asarray(im.convert("RGB").resize((128, 128))))
        except (OSError, ValueError):
            ax.imshow(np.full((128, 128, 3), 128, np.uint8))
            ax.text(64, 64, "unreadable", ha="center", va="center", fontsize=7)
        ax.set_title(f"#{row['rank']} {str(row['object_id'])[-10:]}\nscore {row['score']:.2f}", fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
