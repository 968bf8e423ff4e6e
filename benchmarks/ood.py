"""``morphcat bench ood``: how well a bundle's ``ood_flag`` separates galaxies from non-galaxies.

Annotates, with ``catalog-annotate``, one catalog of three groups:

- ``catalog``: rows of a catalog you give (e.g. the held-out real galaxies you trust),
- ``synthetic``: galaxies of morphcat's synthetic survey (another "survey"),
- ``non-galaxy``: images made here that are not galaxy cutouts: matplotlib's sample photos
  (a portrait, logos), empty sky (noise at sky level, with and without a few stars), flat
  frames (black, grey, white), uniform noise, gradients, checkerboards, stripes and a disc;

and reports per group (and per kind of non-galaxy) how many were flagged, and the spread of
``ood_score`` and ``source_snr``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from catalogs.atomic import write_text
from catalogs.contract import Catalog, read_catalog, write_catalog
from catalogs.inputs import CUTOUT_SIZE
from catalogs.outputs import PREDICTIONS
from catalogs.shards import run_folder

SIDE = CUTOUT_SIZE
PHOTOS = ("grace_hopper.jpg", "logo2.png", "Minduka_Present_Blue_Pack.png")


def non_galaxy_images(seed: int) -> dict[str, np.ndarray]:
    """Kind → (SIDE, SIDE, 3) uint8 image; several seeds per random kind."""
    from matplotlib import cbook
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIDE, :SIDE]
    out: dict[str, np.ndarray] = {}
    for name in PHOTOS:
        with Image.open(cbook.get_sample_data(name)) as im:
            out[f"photo/{name.split('.')[0]}"] = np.asarray(im.convert("RGB").resize((SIDE, SIDE)))
    for k in range(4):
        level, noise = rng.uniform(5, 30), rng.uniform(2, 8)
        sky = rng.normal(level, noise, (SIDE, SIDE, 3))
        out[f"empty_sky/{k}"] = np.clip(sky, 0, 255).astype(np.uint8)
        for _ in range(5):  # a few stars, none at the centre
            cy, cx = rng.integers(20, SIDE - 20, 2)
            if np.hypot(cy - SIDE / 2, cx - SIDE / 2) > 0.2 * SIDE:
                sky += 200 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 2.0**2))[..., None]
        out[f"sky_with_stars/{k}"] = np.clip(sky, 0, 255).astype(np.uint8)
        out[f"noise/{k}"] = rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    for name, value in (("black", 0), ("grey", 128), ("white", 255)):
        out[f"flat/{name}"] = np.full((SIDE, SIDE, 3), value, np.uint8)
    out["pattern/gradient"] = np.stack([x / SIDE * 255, y / SIDE * 255, np.full_like(x, 100)], -1).astype(np.uint8)
    out["pattern/checker"] = np.repeat(((((y // 32) + (x // 32)) % 2) * 255).astype(np.uint8)[..., None], 3, -1)
    out["pattern/stripes"] = np.repeat(((np.sin(x / 6) * 0.5 + 0.5) * 255).astype(np.uint8)[..., None], 3, -1)
    disc = (y - SIDE / 2) ** 2 + (x - SIDE / 2) ** 2 < (SIDE / 5) ** 2
    out["pattern/red_disc_on_white"] = np.where(disc[..., None], [220, 30, 30], [240, 240, 240]).astype(np.uint8)
    return out


def build_catalog(out: Path, catalog: Path | None, synthetic: int, seed: int) -> tuple[Path, pl.DataFrame]:
    """The three groups in one catalog under ``out``, and object_id → group, kind."""
    from PIL import Image

    from catalogs.synthetic import synthesize_survey

    root = out / "images"
    if root.exists():
        shutil.rmtree(root)
    (root / "non-galaxy").mkdir(parents=True)
    ids, paths, groups, kinds = [], [], [], []

    def add(object_id, path, group, kind):
        ids.append(object_id)
        paths.append(path)
        groups.append(group)
        kinds.append(kind)

    for kind, image in non_galaxy_images(seed).items():
        name = kind.replace("/", "-") + ".png"
        Image.fromarray(image).save(root / "non-galaxy" / name)
        add(f"non-galaxy-{kind}", f"non-galaxy/{name}", "non-galaxy", kind.split("/")[0])
    if synthetic:
        synthetic_catalog = synthesize_survey(out=out / "synthetic", n=synthetic, seed=seed, size=SIDE, mix="gz2")
        shutil.copytree(synthetic_catalog.parent / "images", root / "synthetic")
        for oid, path in zip(*_ids_paths(read_catalog(synthetic_catalog))):
            add(f"synthetic-{oid}", f"synthetic/{Path(path).name}", "synthetic", "synthetic galaxy")
    if catalog is not None:
        given = read_catalog(Path(catalog))
        for oid, path in zip(*_ids_paths(given)):
            # Copied, not linked: a link out of the catalog root is refused (path_escape).
            source = given.root / path
            if source.is_file():
                (root / "catalog" / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, root / "catalog" / path)
            add(f"catalog-{oid}", f"catalog/{path}", "catalog", "catalog galaxy")
    table = pa.table({"object_id": ids, "image_path": paths})
    path = write_catalog(Catalog(table, root, "folder"), out / "ood-catalog.parquet")
    return path, pl.DataFrame({"object_id": ids, "group": groups, "kind": kinds})


def _ids_paths(catalog: Catalog) -> tuple[list[str], list[str]]:
    return catalog.table.column("object_id").to_pylist(), catalog.table.column("image_path").to_pylist()


def separation(predictions: pl.DataFrame, groups: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per ``by`` (``group`` or ``kind``): rows, flagged share, ood_score and source_snr spread."""
    score, snr = pl.col("ood_score").cast(pl.Float64), pl.col("source_snr").cast(pl.Float64)
    return (predictions.join(groups, on="object_id").group_by(by)
            .agg(rows=pl.len(), flagged=pl.col("ood_flag").sum(),
                 flagged_share=pl.col("ood_flag").mean().round(3),
                 ood_score_min=score.min().round(2), ood_score_median=score.median().round(2),
                 ood_score_max=score.max().round(2),
                 source_snr_min=snr.min().round(1), source_snr_median=snr.median().round(1))
            .sort(by))


def run_ood_bench(out: Path, bundle: Path, catalog: Path | None, synthetic: int = 200, seed: int = 0) -> dict:
    from export.serve.catalog import annotate_catalog

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path, groups = build_catalog(out, catalog, synthetic, seed)
    summary = annotate_catalog(catalog=path, bundle=Path(bundle), out=out / "annotations")
    predictions = pl.read_parquet(run_folder(out / "annotations", PREDICTIONS, summary["run_id"]) / "*.parquet")
    result = {"bundle_id": summary["bundle_id"], "rows": summary["catalog_rows"], "errors": summary["errors"],
              "groups": separation(predictions, groups, "group").to_dicts(),
              "kinds": separation(predictions, groups, "kind").to_dicts()}
    write_text(out / "ood.json", json.dumps(result, indent=2) + "\n")
    return result


def ood_markdown(r: dict) -> str:
    columns = ("rows", "flagged", "flagged_share", "ood_score_min", "ood_score_median", "ood_score_max",
               "source_snr_min", "source_snr_median")
    lines = [f"Bundle {r['bundle_id']}: {r['rows']} images, {r['errors']} errors.", ""]
    for key, title in (("groups", "group"), ("kinds", "kind")):
        lines += [f"| {title} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
        lines += [f"| {row[title]} | " + " | ".join(str(row[c]) for c in columns) + " |" for row in r[key]]
        lines.append("")
    return "\n".join(lines)
