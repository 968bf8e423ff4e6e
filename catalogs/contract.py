"""The catalog contract: one Arrow schema for every catalog morphcat reads.

A catalog is a table of objects plus a *root* folder; images stay where they are and each row
points at its image relative to that root. ``morphcat ingest`` turns every supported source into
this table and writes it to Parquet, recording the root in the file's metadata.

Columns (only ``object_id`` and ``image_path`` are required):

==================  =========  ==================================================================
column              type       meaning
==================  =========  ==================================================================
object_id           string     unique id; SDSS objids have 18 digits and never pass through float
image_path          string     POSIX path relative to the root; must stay inside the root
ra, dec             float64    degrees; ra in [0, 360], dec in [-90, 90]; null when unknown
label               string     a morphology class (e.g. the 5-class rule in ``catalogs.labels``)
caption             string     a description (e.g. ``catalogs.captions`` templates)
truth_class         string     ground truth of simulated objects (the synthetic survey)
mask_path           string     footprint mask image relative to the root (the synthetic survey)
t01_…_a01_…_debiased float64   GZ2 per-question vote fractions, Hart et al. (2016) names, in [0, 1]
t01_…_a01_…_weighted_fraction  the same before debiasing (user-weighted raw votes): optional; what
                               the pixels show, read by evaluation's "visible" stratum
==================  =========  ==================================================================

Anything else is an unknown column and is refused, so a typo never silently drops data.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from catalogs.errors import (
    MAX_QUOTED_ROWS,
    CatalogError,
    ContractViolation,
    PathEscapeError,
    Problem,
    SourceError,
)
from catalogs.tree import GZ2_TREE

CONTRACT_VERSION = 1
METADATA_KEY = b"morphcat.catalog"
ROW_GROUP_ROWS = 1000  # the default shard size (catalogs.shards.SHARD_SIZE): one group per shard

REQUIRED_COLUMNS = ("object_id", "image_path")
_STRING_OPTIONAL = ("label", "caption", "truth_class", "mask_path")
VOTE_COLUMNS = GZ2_TREE.debiased_columns
RAW_VOTE_COLUMNS = GZ2_TREE.weighted_columns

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("object_id", pa.string(), nullable=False),
        pa.field("image_path", pa.string(), nullable=False),
        pa.field("ra", pa.float64()),
        pa.field("dec", pa.float64()),
        *(pa.field(name, pa.string()) for name in _STRING_OPTIONAL),
        *(pa.field(name, pa.float64()) for name in VOTE_COLUMNS),
        *(pa.field(name, pa.float64()) for name in RAW_VOTE_COLUMNS),
    ]
)
_RANGES = {"ra": (0.0, 360.0), "dec": (-90.0, 90.0), **{c: (0.0, 1.0) for c in VOTE_COLUMNS + RAW_VOTE_COLUMNS}}
# Fractions stored as float32 upstream can exceed 1 by rounding.
_RANGE_TOLERANCE = 1e-6
# Ids that went through a float: scientific notation or a trailing ".0".
_FLOAT_LIKE_ID = re.compile(r"^[+-]?\d+(\.\d*)?[eE][+-]?\d+$|^[+-]?\d+\.0*$")


@dataclass(frozen=True)
class Catalog:
    """A validated catalog table and the root folder its image paths are relative to."""

    table: pa.Table
    root: Path
    source_format: str

    def __len__(self) -> int:
        return self.table.num_rows

    @property
    def has_votes(self) -> bool:
        return all(c in self.table.column_names for c in VOTE_COLUMNS)

    @property
    def has_raw_votes(self) -> bool:
        return all(c in self.table.column_names for c in RAW_VOTE_COLUMNS)

    def image_file(self, row: int) -> Path:
        return resolve_image_path(self.root, self.table.column("image_path")[row].as_py())


def _problem(code, column, detail, mask: np.ndarray | None = None, ids: np.ndarray | None = None):
    if mask is None:
        return Problem(code, column, detail)
    rows = np.flatnonzero(mask)
    quoted = rows[:MAX_QUOTED_ROWS]
    qids = tuple(str(ids[r]) for r in quoted) if ids is not None else ()
    return Problem(code, column, detail, tuple(int(r) for r in quoted), qids, int(len(rows)))


def ids_to_strings(values: pa.Array | pa.ChunkedArray, column: str = "object_id") -> pa.Array:
    """Turn an id column from any source into exact strings, refusing anything lossy.

    Integers convert exactly. Floats are refused: an 18-digit SDSS objid cannot survive a
    float64 (only 15-16 significant digits). Strings that look like they went through a float
    (``5.877e+17``, ``587722981741363294.0``) are refused too.
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_floating(arr.type):
        raise ContractViolation(
            [Problem("id_precision", column,
                     f"ids are {arr.type}; read them as strings — floats keep only ~15 significant "
                     "digits and corrupt 18-digit SDSS objids")]
        )
    if pa.types.is_integer(arr.type):
        return pc.cast(arr, pa.string())
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = pc.cast(arr, pa.string())
    if not pa.types.is_string(arr.type):
        raise ContractViolation([Problem("wrong_type", column, f"ids must be strings, got {arr.type}")])
    return arr


def _check_types(table: pa.Table) -> list[Problem]:
    problems = []
    expected = {f.name: f.type for f in CATALOG_SCHEMA}
    for name in REQUIRED_COLUMNS:
        if name not in table.column_names:
            problems.append(Problem("missing_column", name, "required column is missing"))
    for name in table.column_names:
        if name not in expected:
            hint = " (only the GZ2 '..._debiased' and '..._weighted_fraction' vote fractions are catalog columns)" if name.startswith("t") and "_a" in name else ""
            problems.append(Problem("unknown_column", name, f"not a catalog column{hint}"))
            continue
        got = table.schema.field(name).type
        if got != expected[name]:
            problems.append(Problem("wrong_type", name, f"expected {expected[name]}, got {got}"))
    return problems


def _check_values(table: pa.Table) -> list[Problem]:
    problems = []
    ids = table.column("object_id").to_numpy(zero_copy_only=False)
    id_null = np.array([i is None or i == "" for i in ids], dtype=bool)
    if id_null.any():
        problems.append(_problem("null_values", "object_id", "empty or null object_id", id_null, ids))
    float_like = np.array([i is not None and bool(_FLOAT_LIKE_ID.match(i)) for i in ids], dtype=bool)
    if float_like.any():
        problems.append(_problem("id_precision", "object_id",
                                 "id looks like it went through a float (exponent or '.0'); "
                                 "re-read the source with ids as strings", float_like, ids))
    counts = pc.value_counts(table.column("object_id")).to_pylist()
    dup_values = {c["values"] for c in counts if c["counts"] > 1 and c["values"] not in (None, "")}
    if dup_values:
        dup = np.array([i in dup_values for i in ids], dtype=bool)
        problems.append(_problem("duplicate_id", "object_id",
                                 f"{len(dup_values)} object_id value(s) occur more than once", dup, ids))

    for path_col in ("image_path", "mask_path"):
        if path_col not in table.column_names:
            continue
        paths = table.column(path_col).to_numpy(zero_copy_only=False)
        if path_col == "image_path":
            empty = np.array([p is None or p == "" for p in paths], dtype=bool)
            if empty.any():
                problems.append(_problem("null_values", path_col, "empty or null image path", empty, ids))
        # A path leaving the root ('..', absolute) is that row's problem, not the catalog's: one
        # hostile row must not stop the other millions. resolve_image_path refuses it when the
        # row is read, and annotation reports it as a path_escape error.

    for name, (lo, hi) in _RANGES.items():
        if name not in table.column_names:
            continue
        v = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isnan(v) & ((v < lo - _RANGE_TOLERANCE) | (v > hi + _RANGE_TOLERANCE))
        if bad.any():
            problems.append(_problem("out_of_range", name, f"values outside [{lo:g}, {hi:g}]", bad, ids))
    return problems


def _escapes(path: str) -> bool:
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path):
        return True
    return posixpath.normpath(path.replace("\\", "/")).split("/")[0] == ".."


def validate(table: pa.Table, source: str = "catalog") -> None:
    """Raise :class:`ContractViolation` listing every problem, or return quietly."""
    problems = _check_types(table)
    if table.num_rows == 0:
        problems.append(Problem("empty", None, "the catalog has no rows"))
    # Value checks need the required columns with the right types.
    if not any(p.column in REQUIRED_COLUMNS for p in problems) and table.num_rows:
        problems += _check_values(table)
    if problems:
        raise ContractViolation(problems, source)


def conform(table: pa.Table, source: str = "catalog") -> pa.Table:
    """Cast lossless type variants (large strings, float32, ints for floats), order the columns
    canonically, then :func:`validate`. Ids are never cast here: see :func:`ids_to_strings`."""
    expected = {f.name: f for f in CATALOG_SCHEMA}
    columns, fields = [], []
    for f in CATALOG_SCHEMA:
        if f.name not in table.column_names:
            continue
        col = table.column(f.name)
        lossless = (
            (pa.types.is_string(f.type) and (pa.types.is_large_string(col.type) or pa.types.is_string_view(col.type)))
            or (pa.types.is_floating(f.type) and (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)))
            or pa.types.is_null(col.type)
        )
        if f.name != "object_id" and col.type != f.type and lossless:
            col = pc.cast(col, f.type)
        columns.append(col)
        fields.append(pa.field(f.name, col.type, nullable=f.nullable) if col.type != f.type else f)
    extra = [n for n in table.column_names if n not in expected]
    for n in extra:  # kept so validate() names them
        columns.append(table.column(n))
        fields.append(table.schema.field(n))
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    validate(out, source)
    return out


def resolve_image_path(root: Path, relative: str) -> Path:
    """The file behind a catalog path, refusing one that leaves the root (``..``, absolute,
    or a symlink that points outside)."""
    if _escapes(relative):
        raise PathEscapeError(f"image path {relative!r} leaves the catalog root {root}")
    root_resolved = Path(root).resolve()
    target = (root_resolved / PurePosixPath(relative.replace("\\", "/"))).resolve()
    if not target.is_relative_to(root_resolved):
        raise PathEscapeError(f"image path {relative!r} resolves to {target}, outside the catalog root {root_resolved}")
    return target


def write_catalog(catalog: Catalog, path: Path) -> Path:
    """Write the catalog to Parquet with its root and format in the schema metadata."""
    table = conform(catalog.table, f"catalog for {path}")
    meta = {
        "contract": CONTRACT_VERSION,
        "root": str(Path(catalog.root).resolve()),
        "format": catalog.source_format,
        "rows": table.num_rows,
    }
    table = table.replace_schema_metadata({METADATA_KEY: json.dumps(meta).encode()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    # Row groups of ROW_GROUP_ROWS: a shard reads only the groups its rows are in.
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS)
    tmp.replace(path)  # a reader never sees half a catalog
    return path


def read_rows(path: Path, start: int, stop: int, columns: tuple[str, ...] = ("object_id", "image_path", "ra", "dec"),
              root: Path | None = None) -> Catalog:
    """Rows ``[start, stop)`` of a catalog written by :func:`write_catalog`, reading only the row
    groups that hold them and only ``columns`` (those present): what one shard of an annotation
    run needs, in memory and time that do not grow with the catalog. The whole catalog was
    validated by whoever planned the shards; these rows are conformed again."""
    # The footer (metadata, row groups, schema), parsed once and let go before annotation starts:
    # a million-row catalog's is ~6 MB on disk, tens in memory.
    file = _parquet_file(path)
    meta = _catalog_metadata(path, file.schema_arrow)
    n = file.metadata.num_rows
    if not 0 <= start <= stop <= n:
        raise CatalogError(f"rows {start}…{stop} are not in {path}, which has {n}")
    wanted = [c for c in columns if c in file.schema_arrow.names]
    groups, first, offset = [], None, 0
    for g in range(file.num_row_groups):
        size = file.metadata.row_group(g).num_rows
        if offset + size > start and offset < stop:
            groups.append(g)
            first = offset if first is None else first
        offset += size
    if groups:
        table = file.read_row_groups(groups, columns=wanted).slice(start - first, stop - start)
    else:
        table = file.schema_arrow.empty_table().select(wanted)
    return Catalog(conform(table.replace_schema_metadata(None), f"{path} rows {start}…{stop}"),
                   Path(root) if root is not None else Path(meta["root"]), meta["format"])


def catalog_metadata(path: Path) -> dict:
    """The morphcat metadata of a catalog Parquet file, refusing files that are not catalogs."""
    return _catalog_metadata(path, _parquet_file(path).schema_arrow)


def _parquet_file(path: Path) -> pq.ParquetFile:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"catalog file {path} does not exist")
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SourceError(f"{path} is not a readable Parquet file: {exc}") from None


def _catalog_metadata(path: Path, schema: pa.Schema) -> dict:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise CatalogError(f"{path} is not a morphcat catalog (no '{METADATA_KEY.decode()}' metadata); "
                           "create one with `morphcat ingest`")
    meta = json.loads(raw)
    if meta.get("contract") != CONTRACT_VERSION:
        raise CatalogError(f"{path} uses catalog contract {meta.get('contract')}, this morphcat reads {CONTRACT_VERSION}")
    return meta


def read_catalog(path: Path, root: Path | None = None) -> Catalog:
    """Read and re-validate a catalog written by :func:`write_catalog`.

    ``root`` overrides the recorded root, for images that moved since ingest.
    """
    meta = catalog_metadata(path)
    root = Path(root) if root is not None else Path(meta["root"])
    if not root.is_dir():
        raise CatalogError(f"catalog root {root} (recorded in {path}) is not a folder; "
                           "pass the images' current folder as `root`")
    table = pq.read_table(path).replace_schema_metadata(None)
    return Catalog(conform(table, str(path)), root, meta["format"])
