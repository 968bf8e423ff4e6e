"""An annotations folder (``morphcat annotate --out``) read back: its manifest, its runs that
have predictions, one run's tables as polars ``LazyFrame``s, and the catalog it annotated. The web
demo and the HATS export read runs through here.

The catalog is the one recorded in the folder's manifest (``catalog.source``), or one given
explicitly (images moved, another machine); either way its rows must have the fingerprint the
manifest recorded, so nothing is ever joined with another catalog's rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from catalogs.contract import Catalog, read_catalog
from catalogs.errors import CatalogError
from catalogs.outputs import ERRORS, PREDICTIONS
from catalogs.fingerprints import rows_fingerprint
from catalogs.shards import MANIFEST_NAME, OutputFolderError, run_folder


@dataclass(frozen=True)
class Annotations:
    """An annotations folder: where it is, its manifest, and its runs that have predictions."""

    out: Path
    manifest: dict
    runs: tuple[str, ...]

    def scan(self, run_id: str, table: str = PREDICTIONS) -> pl.LazyFrame:
        """One run's ``predictions`` (or ``errors``) rows."""
        if run_id not in self.runs:
            raise OutputFolderError(f"{self.out} has no run {run_id!r} with predictions (it has: {', '.join(self.runs)})")
        folder = run_folder(self.out, table, run_id)
        if table == ERRORS and not any(folder.glob("*.parquet")):
            return pl.LazyFrame(schema={"object_id": pl.String, "error_type": pl.String, "message": pl.String})
        return pl.scan_parquet(folder / "*.parquet")

    def bundle_id(self, run_id: str) -> str:
        return self.manifest["runs"][run_id]["bundle_id"]


def open_annotations(out: Path) -> Annotations:
    """The annotations folder at ``out``, or :class:`OutputFolderError` saying why it is not one."""
    out = Path(out)
    manifest_path = out / MANIFEST_NAME
    if not out.is_dir():
        raise OutputFolderError(f"annotations folder {out} does not exist (write one with `annotate_catalog(out=…)`)")
    if not manifest_path.is_file():
        raise OutputFolderError(f"{out} is not an annotations folder: it has no {MANIFEST_NAME} "
                           "(write one with `annotate_catalog(out=…)`)")
    try:
        manifest = json.loads(manifest_path.read_text())
        recorded = list(manifest["runs"])
        manifest["catalog"]["fingerprint"]
    except (ValueError, KeyError, TypeError) as exc:
        raise OutputFolderError(f"{manifest_path} is not a morphcat annotations manifest: {exc}") from None
    runs = tuple(r for r in recorded if any(run_folder(out, PREDICTIONS, r).glob("*.parquet")))
    if not runs:
        raise OutputFolderError(f"{out} holds no predictions yet (runs recorded: {', '.join(recorded) or 'none'})")
    return Annotations(out, manifest, runs)


def locate_catalog(annotations: Annotations, catalog: Path | None = None) -> Catalog:
    """The catalog the folder annotated: ``catalog`` when given, else the one its manifest
    recorded; refused unless its rows are the ones annotated."""
    recorded = annotations.manifest["catalog"]
    path = Path(catalog) if catalog is not None else Path(recorded.get("source") or "")
    if not str(path) or str(path) == ".":
        raise CatalogError(f"{annotations.out} does not record its catalog's path: pass `catalog`")
    if not path.is_file():
        raise CatalogError(f"catalog {path} (recorded in {annotations.out / MANIFEST_NAME}) is not there any more; "
                           "pass its current path with `catalog`")
    found = read_catalog(path)
    fingerprint = rows_fingerprint(found.table)
    if fingerprint != recorded["fingerprint"]:
        raise CatalogError(f"catalog {path} is not the one annotated in {annotations.out}: its rows have "
                           f"fingerprint {fingerprint}, the annotations were made from {recorded['fingerprint']} "
                           f"({recorded['rows']} rows)")
    return found
