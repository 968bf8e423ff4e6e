"""What the readers share: :class:`ReadResult`, the ``skipped`` table, the finishing of a
catalog from its columns, and the checks and parsers of source files (CSV headers, numeric and
string columns, folder scans), each with errors that name the file and what is wrong."""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from catalogs.contract import Catalog, conform
from catalogs.errors import SourceError

SKIPPED_SCHEMA = pa.schema(
    [pa.field("object_id", pa.string()), pa.field("source_row", pa.int64()), pa.field("reason", pa.string())]
)
# How many of a file's column names an error message lists before summarising.
_MAX_LISTED_COLUMNS = 40


@dataclass(frozen=True)
class ReadResult:
    """What a reader made of a source: the catalog, the rows it could not use, and remarks."""

    catalog: Catalog
    skipped: pa.Table = field(default_factory=lambda: SKIPPED_SCHEMA.empty_table())
    notes: tuple[str, ...] = ()

    @property
    def n_skipped(self) -> int:
        return self.skipped.num_rows


# --------------------------------------------------------------------------- helpers for readers


def skipped_table(ids: Sequence[str | None] = (), rows: Sequence[int] = (), reasons: Sequence[str] = ()) -> pa.Table:
    """The ``skipped`` table from parallel lists (empty when none)."""
    return pa.Table.from_arrays(
        [pa.array(list(ids), pa.string()), pa.array(list(rows), pa.int64()), pa.array(list(reasons), pa.string())],
        schema=SKIPPED_SCHEMA,
    )


def concat_skipped(tables: Iterable[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return SKIPPED_SCHEMA.empty_table()
    return pa.concat_tables(tables).sort_by("source_row").combine_chunks()


def finish(columns: dict[str, pa.Array], root: Path, fmt: str, source: Path,
           skipped: pa.Table | None = None, notes: Iterable[str] = ()) -> ReadResult:
    """Build the table (catalog columns only), conform it to the contract and wrap it up."""
    table = pa.table(columns)
    table = conform(table, f"{fmt} source {source}")
    return ReadResult(Catalog(table, Path(root), fmt),
                      skipped if skipped is not None else SKIPPED_SCHEMA.empty_table(),
                      tuple(notes))


def require_exists(src: Path, what: str = "source") -> Path:
    src = Path(src)
    if not src.exists():
        raise SourceError(f"{what} {src} does not exist")
    return src


def short_error(exc: BaseException, limit: int = 400) -> str:
    """The gist of a library exception: its first paragraph, bounded."""
    text = str(exc).strip().split("\n\n")[0].strip() or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def list_columns(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_MAX_LISTED_COLUMNS])
    more = f", … ({len(names)} columns in all)" if len(names) > _MAX_LISTED_COLUMNS else ""
    return shown + more


def require_columns(path: Path, have: Sequence[str], required: Sequence[str], hint: str = "") -> None:
    """Raise a :class:`SourceError` naming every missing column and listing what the file has."""
    missing = [c for c in required if c not in have]
    if missing:
        raise SourceError(
            f"{path.name}: missing required column(s) {', '.join(repr(c) for c in missing)}"
            f"{'; ' + hint if hint else ''}. The file has: {list_columns(list(have)) or '(no columns)'}"
        )


def csv_header(path: Path) -> list[str]:
    """The column names of a CSV (plain or gzip), BOM and surrounding whitespace removed."""
    try:
        raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
        with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
            first = next(csv.reader(text), None)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path.name}: cannot read the CSV header: {short_error(exc)}") from None
    if not first:
        raise SourceError(f"{path.name}: empty file (no CSV header)")
    return [c.strip() for c in first]


def read_csv_strings(path: Path, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Read a CSV with **every** column as a string (ids never go through int/float inference),
    keeping only ``columns`` (clean names from :func:`csv_header`) when given. Values are
    stripped of surrounding whitespace; empty values are null."""
    header = csv_header(path)
    seen: set[str] = set()
    dups = sorted({c for c in header if c in seen or seen.add(c)})
    if dups:
        raise SourceError(f"{path.name}: duplicate column name(s) {', '.join(map(repr, dups))}")
    try:
        df = pl.read_csv(path, infer_schema=False, has_header=True)
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise SourceError(f"{path.name}: cannot parse as CSV: {short_error(exc)}") from None
    if len(df.columns) != len(header):
        raise SourceError(f"{path.name}: cannot parse as CSV: header has {len(header)} columns, "
                          f"parsed {len(df.columns)}")
    df = df.rename(dict(zip(df.columns, header)))
    if columns is not None:
        df = df.select([c for c in columns])
    return df.with_columns(
        pl.col(c).str.strip_chars().replace("", None) for c in df.columns
    )


def read_csv_columns(path: Path, wanted: Sequence[str]) -> pl.DataFrame:
    """Like :func:`read_csv_strings` but parses only the ``wanted`` columns (present ones) —
    for wide files such as the 240k-row Hart16 table."""
    header = csv_header(path)
    raw = _raw_header_names(path, header)
    pick = [c for c in wanted if c in header]
    try:
        df = pl.read_csv(path, infer_schema=False, has_header=True,
                         columns=[raw[header.index(c)] for c in pick])
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        raise SourceError(f"{path.name}: cannot parse as CSV: {short_error(exc)}") from None
    df = df.rename(dict(zip(df.columns, pick)))
    return df.with_columns(pl.col(c).str.strip_chars().replace("", None) for c in df.columns)


def _raw_header_names(path: Path, clean: list[str]) -> list[str]:
    """The header names as polars sees them (BOM stripped, whitespace kept)."""
    raw = gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")
    with raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        first = next(csv.reader(text))
    if len(first) != len(clean):  # pragma: no cover - same file read twice
        raise SourceError(f"{path.name}: header changed while reading")
    return first


def float_column(values: pl.Series | pa.Array | pa.ChunkedArray, path: Path, column: str,
                 row_numbers: np.ndarray | None = None) -> pa.Array:
    """A source column → float64 with nulls for missing values (empty, NaN). Unparseable text
    is a :class:`SourceError` quoting the first offending rows."""
    s = values if isinstance(values, pl.Series) else pl.from_arrow(values)
    if isinstance(s, pl.DataFrame):  # pragma: no cover - from_arrow of a table
        s = s.to_series()
    if s.dtype == pl.String:
        parsed = s.cast(pl.Float64, strict=False)
        bad = (s.is_not_null() & parsed.is_null()).to_numpy()
        if bad.any():
            idx = np.flatnonzero(bad)
            rows = row_numbers[idx] if row_numbers is not None else idx
            quoted = ", ".join(f"row {int(r)}: {s[int(i)]!r}" for r, i in zip(rows[:5], idx[:5]))
            raise SourceError(f"{path.name}: column '{column}' has {len(idx)} value(s) that are not "
                              f"numbers ({quoted}{', …' if len(idx) > 5 else ''})")
    elif s.dtype.is_numeric() or s.dtype == pl.Null:
        parsed = s.cast(pl.Float64)
    else:
        raise SourceError(f"{path.name}: column '{column}' must hold numbers, has {s.dtype}")
    parsed = parsed.fill_nan(None)
    return parsed.to_arrow().cast(pa.float64())


def string_column(values: pl.Series) -> pa.Array:
    return values.cast(pl.String).to_arrow().cast(pa.string())


@dataclass(frozen=True)
class FolderScan:
    """Files found under a folder: POSIX paths relative to it, sorted, with their ids."""

    paths: tuple[str, ...]
    ids: tuple[str, ...]
    notes: tuple[str, ...]
    other_suffixes: dict[str, int]


def scan_folder(folder: Path, accept: Callable[[str], bool], id_of: Callable[[str], str],
                kind: str) -> FolderScan:
    """Every file under ``folder`` (recursive) whose name ``accept`` takes, sorted by relative
    POSIX path for determinism; hidden files and folders (name starting with '.') are ignored
    and counted in a note. Two files with the same id are a :class:`SourceError` naming both."""
    found: list[str] = []
    hidden = 0
    other: dict[str, int] = {}
    try:
        entries = sorted(folder.rglob("*"))
    except OSError as exc:
        raise SourceError(f"cannot list {folder}: {short_error(exc)}") from None
    for p in entries:
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            hidden += p.is_file()
            continue
        if not p.is_file():
            continue
        if accept(p.name):
            found.append(rel.as_posix())
        else:
            suffix = "".join(p.suffixes[-1:]).lower() or "(none)"
            other[suffix] = other.get(suffix, 0) + 1
    found.sort()
    ids = [id_of(Path(r).name) for r in found]
    first: dict[str, str] = {}
    for rel, i in zip(found, ids):
        if i in first:
            raise SourceError(f"two {kind} files have the same id {i!r}: {folder / first[i]} and "
                              f"{folder / rel}; ids are file names without the extension and must be unique")
        first[i] = rel
    notes = []
    if hidden:
        notes.append(f"ignored {hidden} hidden file(s) (name or folder starting with '.') in {folder}")
    if other:
        listed = ", ".join(f"{n} {s}" for s, n in sorted(other.items()))
        notes.append(f"ignored {sum(other.values())} file(s) that are not {kind} files in {folder}: {listed}")
    return FolderScan(tuple(found), tuple(ids), tuple(notes), other)
