"""What ingest makes of a source besides the catalog: the rows it could not take, written beside
the catalog with their reasons, the rows whose image file is missing (kept: annotation reports
each one in its errors table), and the report of it all."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from catalogs.contract import Catalog, resolve_image_path
from catalogs.errors import PathEscapeError

QUOTED = 5  # how many missing image paths a report quotes


def missing_images(catalog: Catalog) -> list[str]:
    """Image paths with no file behind them."""
    missing = []
    for rel in catalog.table.column("image_path").to_pylist():
        try:
            if not resolve_image_path(catalog.root, rel).is_file():
                missing.append(rel)
        except PathEscapeError:  # a symlink pointing outside the root: as good as missing
            missing.append(rel)
    return missing


def write_skipped(skipped: pa.Table, catalog_path: Path) -> Path | None:
    """The skipped source rows beside the catalog (``NAME.skipped.parquet``), if there are any."""
    if skipped.num_rows == 0:
        return None
    path = catalog_path.with_name(catalog_path.stem + ".skipped.parquet")
    pq.write_table(skipped, path)
    return path


def label_counts(table: pa.Table) -> dict[str, int]:
    if "label" not in table.column_names:
        return {}
    counts = table.column("label").value_counts().to_pylist()
    return {str(c["values"]): int(c["counts"]) for c in counts}


@dataclass
class IngestReport:
    catalog_path: str
    rows: int
    source_format: str
    skipped_rows: int = 0
    skipped_path: str | None = None
    missing_images: int = 0
    missing_examples: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def print(self) -> None:
        """The report on the terminal (what ``morphcat ingest`` and ``synth`` print)."""
        from rich.console import Console

        console = Console()
        console.print(f"[bold]{self.catalog_path}[/]: {self.rows} rows ({self.source_format})")
        if self.label_counts:
            console.print("labels: " + ", ".join(f"{k} {v}" for k, v in sorted(self.label_counts.items())))
        if self.skipped_rows:
            console.print(f"[yellow]{self.skipped_rows} source rows could not become catalog rows; "
                          f"each is listed with its reason in {self.skipped_path}[/]")
        if self.missing_images:
            console.print(f"[yellow]{self.missing_images} rows point at missing image files "
                          f"(kept; annotation reports each), e.g. {', '.join(self.missing_examples)}[/]")
        for note in self.notes:
            console.print(f"note: {note}")

    def markdown(self) -> str:
        lines = [
            f"# Catalog `{self.catalog_path}`",
            "",
            "| rows | format | skipped source rows | rows whose image is missing |",
            "|---:|---|---:|---:|",
            f"| {self.rows} | {self.source_format} | {self.skipped_rows} | {self.missing_images} |",
        ]
        if self.label_counts:
            lines += ["", "| label | rows |", "|---|---:|"]
            lines += [f"| {k} | {v} |" for k, v in sorted(self.label_counts.items())]
        if self.notes:
            lines += ["", *[f"- {n}" for n in self.notes]]
        return "\n".join(lines)

    @classmethod
    def of(cls, catalog_path: Path, table: pa.Table, source_format: str, skipped: pa.Table | None = None,
           skipped_path: Path | None = None, missing: list[str] = (), notes=()) -> "IngestReport":
        return cls(catalog_path=str(catalog_path), rows=table.num_rows, source_format=source_format,
                   skipped_rows=0 if skipped is None else skipped.num_rows,
                   skipped_path=str(skipped_path) if skipped_path else None, missing_images=len(missing),
                   missing_examples=list(missing[:QUOTED]), label_counts=label_counts(table), notes=list(notes))
